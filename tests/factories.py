"""Factory helpers: build valid rows with sensible defaults, override what a test cares about."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from tumorboard.auth.models import User
from tumorboard.auth.services import create_user
from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty
from tumorboard.cases.models import Case, CaseSpecialty
from tumorboard.cases.services import compute_deadline
from tumorboard.extensions import db
from tumorboard.vocab import SITES

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)


def make_user(*roles: str, specialty: str | None = None, **kw: Any) -> User:
    n = next(_seq)
    return create_user(
        email=kw.pop("email", f"user{n}@example.org"), name=kw.pop("name", f"User {n}"),
        password=kw.pop("password", PASSWORD), roles=list(roles or ("coordinator",)),
        specialty=specialty, **kw,
    )


def make_board(*, sites: tuple[str, ...] = ("breast",), members: tuple[User, ...] = (), **kw: Any) -> Board:
    n = next(_seq)
    specialties = kw.pop("specialties", SITES[sites[0]])
    board = Board(
        name=kw.pop("name", f"Board {n}"), rrule=kw.pop("rrule", "FREQ=WEEKLY;BYDAY=TU"),
        timezone=kw.pop("timezone", "Europe/London"), first_date=kw.pop("first_date", date(2026, 1, 6)),
        start_time=kw.pop("start_time", time(8, 0)), duration_minutes=kw.pop("duration_minutes", 60),
        capacity_minutes=kw.pop("capacity_minutes", 60),
        sites=[BoardSite(site=s) for s in sites],
        specialties=[BoardSpecialty(specialty=s) for s in specialties],
        members=[BoardMember(user_id=u.id) for u in members], **kw,
    )
    db.session.add(board)
    db.session.flush()
    return board


def make_case(*, oncologist: User | None = None, site: str = "breast", **kw: Any) -> Case:
    n = next(_seq)
    oncologist = oncologist or make_user("oncologist", specialty="medical_oncology")
    diagnosed = kw.pop("diagnosis_date", date(2026, 11, 1))
    planned = kw.pop("planned_treatment_start", None)
    case = Case(
        mrn=kw.pop("mrn", f"TEST-{n:06d}"), display_name=kw.pop("display_name", f"Synthetic Patient {n}"),
        site=site, diagnosis_date=diagnosed, planned_treatment_start=planned,
        deadline=kw.pop("deadline", compute_deadline(diagnosed, planned, site)),
        question=kw.pop("question", "Second opinion on the plan."),
        referring_oncologist_id=oncologist.id,
        specialties=[CaseSpecialty(specialty=s) for s in kw.pop("specialties", SITES[site])], **kw,
    )
    db.session.add(case)
    db.session.flush()
    return case


def days(n: int) -> timedelta:
    return timedelta(days=n)


def register_test_case(*, oncologist: User | None = None, **kw: Any) -> Case:
    """A case registered through the cases service (default records checklist, audit included)."""
    from tumorboard.cases.services import register_case

    oncologist = oncologist or make_user("oncologist", specialty="medical_oncology")
    n = next(_seq)
    data = {"mrn": f"REG-{n:06d}", "display_name": f"Synthetic Patient {n}", "site": "breast",
            "diagnosis_date": date(2026, 11, 1), "question": "Second opinion on the plan.",
            "referring_oncologist_id": oncologist.id, **kw}
    return register_case(data)


# --- calendar tests: meetings and agenda entries built directly on the models
def make_calendar_meeting(board: Board, *, start: Any = None, minutes: int = 60, **kw: Any) -> Any:
    """A scheduled meeting of `board` (default: Tue 7 Jan 2031 08:00 London), flushed."""
    from datetime import UTC, datetime

    from tumorboard.boards.models import Meeting

    n = next(_seq)
    start = start or datetime(2031, 1, 7, 8, 0, tzinfo=UTC)
    meeting = Meeting(
        board_id=board.id, board=board, start_at=start, end_at=start + timedelta(minutes=minutes),
        ical_uid=kw.pop("ical_uid", f"meeting-test-{n}@tumorboard.test"),
        location=kw.pop("location", "Room 4, Oncology Centre"), **kw,
    )
    db.session.add(meeting)
    db.session.flush()
    return meeting


def put_on_agenda(case: Case, meeting: Any, **kw: Any) -> Any:
    """An active assignment of `case` to `meeting`, flushed."""
    from tumorboard.cases.models import Assignment

    assignment = Assignment(case_id=case.id, meeting_id=meeting.id, minutes=case.minutes, **kw)
    db.session.add(assignment)
    db.session.flush()
    return assignment


def make_calendar_team(**board_kw: Any) -> Any:
    """A 'Breast MDT' board needing pathology + radiology, members of four specialties, one
    scheduled meeting and one synthetic case (needing surgical oncology) not yet on its agenda."""
    from types import SimpleNamespace

    path = make_user("specialist", specialty="pathology", email="path@example.org", name="Dr Pat Hology")
    rad = make_user("specialist", specialty="radiology", email="rad@example.org", name="Dr Ray Diology")
    surg = make_user("specialist", specialty="surgical_oncology", email="surg@example.org",
                     name="Dr Sue Geon")
    nurse = make_user("specialist", specialty="nursing", email="nurse@example.org", name="Nina Nurse")
    onc = make_user("oncologist", specialty="medical_oncology", email="onc@example.org", name="Dr Onc")
    board = make_board(name=board_kw.pop("name", "Breast MDT"), specialties=("pathology", "radiology"),
                       members=(path, rad, surg, nurse), **board_kw)
    meeting = make_calendar_meeting(board)
    case = make_case(oncologist=onc, display_name="Zelda Quixote", mrn="MRN-998877",
                     question="Suspected hepatic metastasis: resect first?",
                     specialties=("surgical_oncology",))
    return SimpleNamespace(path=path, rad=rad, surg=surg, nurse=nurse, onc=onc, board=board,
                           meeting=meeting, case=case)


# --- consensus tests: a meeting that has started, a scheduled case on its agenda, invitations
#: the consensus tests' clock: two hours after make_consensus_setup()'s meeting started
CONSENSUS_NOW = datetime(2031, 1, 7, 10, 0, tzinfo=UTC)


def make_consensus_setup(*, start: Any = None, **case_kw: Any) -> Any:
    """A breast board meeting (default: 7 Jan 2031 08:00 UTC) with a scheduled synthetic case on
    its agenda, the referring oncologist (the chair), a second oncologist, a coordinator and
    specialists: pathology and radiology accepted, surgical oncology declined, nursing accepted
    but no longer invited (inactive)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from tumorboard.calendar.models import Invitation

    onc = make_user("oncologist", specialty="medical_oncology", name="Dr Chair Onc")
    other_onc = make_user("oncologist", specialty="medical_oncology", name="Dr Other Onc")
    coord = make_user("coordinator", name="Cora Coordinator")
    path = make_user("specialist", specialty="pathology", name="Dr Path")
    rad = make_user("specialist", specialty="radiology", name="Dr Rad")
    surg = make_user("specialist", specialty="surgical_oncology", name="Dr Surg")
    nurse = make_user("specialist", specialty="nursing", name="Nurse Nell")
    board = make_board(members=(path, rad, surg, nurse))
    meeting = make_calendar_meeting(board, start=start or datetime(2031, 1, 7, 8, 0, tzinfo=UTC))
    case = make_case(oncologist=onc, status="scheduled", **case_kw)
    assignment = put_on_agenda(case, meeting)
    for user, partstat, active in ((path, "ACCEPTED", True), (rad, "ACCEPTED", True),
                                   (surg, "DECLINED", True), (nurse, "ACCEPTED", False)):
        db.session.add(Invitation(meeting_id=meeting.id, user_id=user.id, partstat=partstat,
                                  active=active))
    db.session.flush()
    return SimpleNamespace(onc=onc, other_onc=other_onc, coord=coord, path=path, rad=rad, surg=surg,
                           nurse=nurse, board=board, meeting=meeting, case=case, assignment=assignment)


def make_signed_consensus() -> Any:
    """`make_consensus_setup()` with a consensus signed by the chair (`.consensus`): a synthetic
    breast recommendation whose follow-up (the chair's) is due on 1 February 2031. Committed."""
    from datetime import date

    from tumorboard.consensus import services

    s = make_consensus_setup()
    s.consensus = services.create_draft(s.case, s.meeting, {
        "board_diagnosis": "Invasive ductal carcinoma (synthetic)", "concordance": "concordant",
        "management_changed": False, "recommendation_kinds": ["surgery"],
        "recommendation": "Wide local excision.", "followup_due": date(2031, 2, 1),
    }, actor=s.onc)
    services.sign(s.consensus, actor=s.onc)
    db.session.commit()
    return s


def invitation_of(meeting: Any, user: User) -> Any:
    """The invitation of `user` to `meeting`, read afresh from the database (None if none)."""
    import sqlalchemy as sa

    from tumorboard.calendar.models import Invitation

    db.session.expire_all()
    return db.session.scalar(sa.select(Invitation).where(Invitation.meeting_id == meeting.id,
                                                         Invitation.user_id == user.id))


def ready_cases_and_two_meetings(n: int) -> None:
    """n ready breast cases (no specialties asked) and one board meeting in 3 and in 10 days,
    room for them all; committed."""
    now = datetime.now(UTC)
    board = make_board(sites=("breast",), specialties=())
    for week in range(2):
        make_calendar_meeting(board, start=now + timedelta(days=3 + 7 * week), capacity_minutes=120)
    oncologist = make_user("oncologist", specialty="medical_oncology")
    for _ in range(n):
        make_case(status="ready", oncologist=oncologist, specialties=(), ready_at=now - timedelta(days=3),
                  diagnosis_date=date.today() - timedelta(days=10))
    db.session.commit()

