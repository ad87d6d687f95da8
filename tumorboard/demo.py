"""Synthetic demo data: invented people and cases only, never real patient data."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from tumorboard.auth.models import User
from tumorboard.auth.services import create_user
from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty
from tumorboard.cases.models import Case, CaseSpecialty, RecordItem
from tumorboard.cases.services import compute_deadline
from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.vocab import SITES, SPECIALTIES

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105 - synthetic demo accounts only
DOMAIN = "demo.example.org"  # IANA-reserved: demo mail never reaches anyone

BOARDS = [
    # name, sites, RRULE, zone, weekday offset, start time
    ("Breast MDT", ["breast"], "FREQ=WEEKLY;BYDAY=TU", "Europe/London", time(8, 0)),
    ("Thoracic MDT", ["lung"], "FREQ=WEEKLY;BYDAY=TH", "Europe/London", time(13, 0)),
    ("Lower GI MDT", ["colorectal"], "FREQ=WEEKLY;BYDAY=WE", "Europe/London", time(7, 30)),
    ("Upper GI & Sarcoma MDT", ["upper_gi", "sarcoma"], "FREQ=WEEKLY;BYDAY=MO", "Europe/London", time(12, 0)),
    ("Uro-oncology MDT", ["prostate", "urology"], "FREQ=WEEKLY;BYDAY=FR", "America/New_York", time(8, 0)),
    ("Gynae-oncology MDT", ["gynae"], "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH", "Europe/London", time(9, 0)),
]

FIRST = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Harper", "Jordan", "Kai", "Logan",
         "Morgan", "Parker", "Quinn", "Reese", "Riley", "Rowan", "Sage", "Skyler", "Taylor", "Wren"]
LAST = ["Ashdown", "Brookfield", "Calder", "Dunmore", "Elswick", "Fenwick", "Garside", "Holloway",
        "Ingram", "Kettering", "Larkhill", "Marlow", "Northam", "Oakridge", "Pembury", "Redmire"]


def seed_demo(seed: int = 2026, cases: int = 100) -> bool:
    """Create the demo users, boards and cases; False (and nothing changes) if already there."""
    if db.session.scalar(sa.select(User.id).where(User.email == f"coordinator@{DOMAIN}")):
        return False
    rng = random.Random(seed)
    people = _users()
    specialists = [u for u in people if u.specialty]
    oncologists = [u for u in people if u.has_role("oncologist")]
    for name, sites, rule, zone, start in BOARDS:
        needed = sorted({s for site in sites for s in SITES[site]})
        board = Board(
            name=name, rrule=rule, timezone=zone, first_date=date.today() - timedelta(days=HISTORY_DAYS + 7),
            start_time=start, duration_minutes=90, capacity_minutes=90, default_case_minutes=10,
            location=f"{name} room, Level 3", video_url="https://video.example.org/mdt",
            sites=[BoardSite(site=s) for s in sites],
            specialties=[BoardSpecialty(specialty=s) for s in needed],
            members=[BoardMember(user_id=u.id) for u in specialists if u.specialty in needed],
        )
        db.session.add(board)
    for n in range(cases):
        _case(rng, n, rng.choice(oncologists), people[0])
    db.session.flush()
    _history(rng, people, oncologists)
    db.session.flush()
    _schedule(rng)
    return True


def _schedule(rng: random.Random) -> None:
    """Materialise the boards' meetings, let the engine place the ready cases, invite the
    specialists and record a realistic spread of answers (most accept)."""
    from tumorboard.boards.services import materialise_meetings
    from tumorboard.calendar.models import Invitation
    from tumorboard.calendar.services import sync_upcoming_invitations
    from tumorboard.planning.services import run_pass

    materialise_meetings()
    run_pass()
    sync_upcoming_invitations()
    answers = ["ACCEPTED"] * 15 + ["DECLINED"] * 2 + ["TENTATIVE", "NEEDS-ACTION", "NEEDS-ACTION"]
    pending = db.session.scalars(sa.select(Invitation).where(Invitation.replied_at.is_(None))
                                 .order_by(Invitation.id))
    for invitation in pending:
        invitation.partstat = rng.choice(answers)
        if invitation.partstat != "NEEDS-ACTION":
            invitation.replied_at = now_utc()


def _users() -> list[User]:
    users = [
        create_user(email=f"coordinator@{DOMAIN}", name="Casey Coordinator", password=DEMO_PASSWORD,
                    roles=["coordinator"]),
        create_user(email=f"specialist@{DOMAIN}", name="Dr Sam Specialist", password=DEMO_PASSWORD,
                    roles=["specialist"], specialty="pathology"),
        create_user(email=f"oncologist@{DOMAIN}", name="Dr Olive Oncologist", password=DEMO_PASSWORD,
                    roles=["oncologist", "specialist"], specialty="medical_oncology"),
        create_user(email=f"admin@{DOMAIN}", name="Ada Admin", password=DEMO_PASSWORD, roles=["admin"]),
    ]
    for specialty in SPECIALTIES:
        for i in (1, 2):
            roles = ["specialist", "oncologist"] if specialty == "medical_oncology" else ["specialist"]
            users.append(create_user(
                email=f"{specialty.replace('_', '.')}.{i}@{DOMAIN}",
                name=f"Dr {FIRST[(len(users) * 7) % len(FIRST)]} {LAST[len(users) % len(LAST)]}",
                password=DEMO_PASSWORD, roles=roles, specialty=specialty,
            ))
    return users


def _case(rng: random.Random, n: int, oncologist: User, coordinator: User) -> Case:
    site = rng.choice(["breast", "lung", "colorectal", "upper_gi", "prostate", "gynae", "sarcoma"])
    diagnosed = date.today() - timedelta(days=rng.randint(5, 80))
    planned = diagnosed + timedelta(days=rng.randint(40, 100)) if rng.random() < 0.3 else None
    urgent = rng.random() < 0.1
    received = rng.random() < 0.6
    case = Case(
        mrn=f"DEMO-{100000 + n}", display_name=f"{rng.choice(FIRST)} {rng.choice(LAST)} (synthetic)",
        site=site, diagnosis_date=diagnosed, planned_treatment_start=planned,
        deadline=compute_deadline(diagnosed, planned, site),
        question=rng.choice([
            "Second opinion on the primary treatment plan.",
            "Is neoadjuvant therapy indicated before surgery?",
            "Review of pathology grade and staging before treatment.",
            "Candidate for a clinical trial?",
        ]),
        referring_oncologist_id=oncologist.id, urgency="urgent" if urgent else "routine",
        minutes=rng.choice([5, 10, 10, 15, 20]), status="ready" if received else "intake",
        ready_at=now_utc() - timedelta(days=rng.randint(0, 5)) if received else None,
        created_by_id=coordinator.id,
        specialties=[CaseSpecialty(specialty=s) for s in SITES[site]],
    )
    requested = now_utc() - timedelta(days=rng.randint(3, 20))
    for kind, label in (("imaging", "Staging CT"), ("pathology", "Pathology slides"),
                        ("labs", "Blood panel"), ("clinic_notes", "Referral letter")):
        got = received or rng.random() < 0.5
        case.records.append(RecordItem(kind=kind, label=label, requested_at=requested,
                                       received_at=requested + timedelta(days=2) if got else None))
    db.session.add(case)
    return case


# --- history (home and metrics): past meetings, discussed and closed cases, signed consensus
# records with a spread of concordance values, answered invitations. Synthetic, like the rest.
HISTORY_DAYS = 120
CONCORDANCE_WEIGHTS = (("concordant", 70), ("minor_discrepancy", 18), ("major_discrepancy", 8),
                       ("new_diagnosis", 4))
ANSWER_WEIGHTS = (("ACCEPTED", 65), ("DECLINED", 10), ("TENTATIVE", 10), ("NEEDS-ACTION", 15))


def _pick(rng: random.Random, weights: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in weights], [w for _, w in weights])[0]


def _history(rng: random.Random, people: list[User], oncologists: list[User]) -> None:
    """Past meetings of every board over HISTORY_DAYS, each with 2–5 cases and answered invites:
    held with signed consensus records (follow-ups mostly confirmed), except meetings of the last
    3 days, still awaiting their consensus (the oncologist's home page shows them)."""
    from tumorboard.boards.models import Meeting
    from tumorboard.boards.services import occurrences
    from tumorboard.calendar.models import Invitation
    from tumorboard.cases.models import Assignment
    from tumorboard.consensus.models import Consensus, ConsensusFollowup

    now = now_utc()
    n = 0
    for board in db.session.scalars(sa.select(Board).order_by(Board.id)).all():
        for at in occurrences(board, now - timedelta(days=HISTORY_DAYS), now - timedelta(hours=2)):
            recent = now - at < timedelta(days=3)
            meeting = Meeting(
                board_id=board.id, board=board, kind="regular", recurrence_id=at, start_at=at,
                end_at=at + timedelta(minutes=board.duration_minutes), location=board.location,
                capacity_minutes=board.capacity_minutes, status="scheduled" if recent else "held",
                ical_uid=f"meeting-demo-{board.id}-{at:%Y%m%d%H%M}@{DOMAIN}",
            )
            db.session.add(meeting)
            db.session.flush()
            for member in board.members:
                answer = _pick(rng, ANSWER_WEIGHTS)
                db.session.add(Invitation(
                    meeting_id=meeting.id, user_id=member.user_id, partstat=answer, last_sequence_sent=0,
                    replied_at=None if answer == "NEEDS-ACTION" else at - timedelta(days=rng.randint(1, 6))))
            for position in range(1, rng.randint(2, 5) + 1):
                n += 1
                oncologist = rng.choice(oncologists)
                case = _past_case(rng, n, board.site_names[0], at, oncologist, people[0])
                db.session.add(Assignment(case=case, meeting_id=meeting.id, minutes=case.minutes,
                                          position=position, source="engine"))
                if not recent:
                    _signed(rng, case, meeting, oncologist, now, Consensus, ConsensusFollowup)


def _signed(rng: random.Random, case: Case, meeting: object, oncologist: User, now: datetime,
            consensus_model: type, followup_model: type) -> None:
    """A signed consensus of `case` at `meeting`, and its follow-up (confirmed when due)."""
    at = meeting.start_at  # type: ignore[attr-defined]
    signed_at = at + timedelta(hours=rng.randint(1, 96))
    concordance = _pick(rng, CONCORDANCE_WEIGHTS)
    changed = rng.random() < (0.15 if concordance == "concordant" else 0.6)
    due = (signed_at + timedelta(days=rng.randint(7, 28))).date()
    consensus = consensus_model(
        case=case, meeting_id=meeting.id, status="signed",  # type: ignore[attr-defined]
        specialties_present=SITES[case.site], board_diagnosis="Synthetic board diagnosis.",
        concordance=concordance, management_changed=changed,
        management_change="Plan changed (synthetic)." if changed else "",
        recommendation_kinds=[rng.choice(["surgery", "systemic_therapy", "radiotherapy", "surveillance",
                                          "clinical_trial"])],
        recommendation="Synthetic recommendation.", rationale="Synthetic rationale.",
        trial_eligible=rng.random() < 0.2, followup_owner_id=oncologist.id, followup_due=due,
        created_by_id=oncologist.id, signed_by_id=oncologist.id, signed_at=signed_at, created_at=at,
    )
    db.session.add(consensus)
    done = due < now.date() and rng.random() < 0.8
    case.status = "closed" if done else "discussed"
    db.session.add(followup_model(
        consensus=consensus, case=case, owner_id=oncologist.id, due=due,
        confirmed_at=datetime.combine(due, time(12), tzinfo=UTC) if done else None,
        confirmed_by_id=oncologist.id if done else None))


def _past_case(rng: random.Random, n: int, site: str, meeting_at: datetime, oncologist: User,
               coordinator: User) -> Case:
    """A case referred some weeks before `meeting_at`, ready days later, every record received."""
    created = meeting_at - timedelta(days=rng.randint(8, 45), hours=rng.randint(0, 12))
    ready = min(created + timedelta(days=rng.expovariate(1 / 6)), meeting_at - timedelta(days=2))
    diagnosed = created.date() - timedelta(days=rng.randint(5, 40))
    planned = diagnosed + timedelta(days=rng.randint(30, 80)) if rng.random() < 0.3 else None
    case = Case(
        mrn=f"DEMO-{200000 + n}", display_name=f"{rng.choice(FIRST)} {rng.choice(LAST)} (synthetic)",
        site=site, diagnosis_date=diagnosed, planned_treatment_start=planned,
        deadline=compute_deadline(diagnosed, planned, site), question="Second opinion on the plan.",
        referring_oncologist_id=oncologist.id, urgency="urgent" if rng.random() < 0.08 else "routine",
        minutes=rng.choice([10, 10, 15, 20]), status="scheduled", ready_at=ready,
        schedule_note="Discussed at a past meeting (demo history).", created_by_id=coordinator.id,
        created_at=created, specialties=[CaseSpecialty(specialty=s) for s in SITES[site]],
    )
    for kind, label in (("imaging", "Staging CT"), ("pathology", "Pathology slides"),
                        ("labs", "Blood panel"), ("clinic_notes", "Referral letter")):
        case.records.append(RecordItem(kind=kind, label=label, requested_at=created,
                                       received_at=min(created + timedelta(days=1), ready)))
    db.session.add(case)
    return case
