"""The home page: each role's sections show what they should, other roles see none of them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_board, make_calendar_meeting, make_case, make_user, put_on_agenda
from tests.helpers import login
from tumorboard.audit.models import AuditEvent
from tumorboard.calendar.models import Invitation
from tumorboard.cases.models import RecordItem
from tumorboard.consensus.models import Consensus, ConsensusFollowup
from tumorboard.extensions import db
from tumorboard.main import services

NOW = datetime(2031, 2, 1, 12, 0, tzinfo=UTC)
COORDINATOR_SECTIONS = ("queue", "missing-records", "meetings", "urgent", "unassigned", "overdue-followups")
SPECIALIST_SECTIONS = ("my-meetings",)
ONCOLOGIST_SECTIONS = ("awaiting-consensus", "drafts", "my-followups")
ALL_SECTIONS = COORDINATOR_SECTIONS + SPECIALIST_SECTIONS + ONCOLOGIST_SECTIONS


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def world(app, frozen) -> SimpleNamespace:
    onc = make_user("oncologist", specialty="medical_oncology", name="Dr Primary")
    path = make_user("specialist", specialty="pathology", name="Dr Path")
    rad = make_user("specialist", specialty="radiology", name="Dr Rad")
    board = make_board(name="Breast Home MDT", specialties=("pathology", "radiology"), members=(path, rad))
    upcoming = make_calendar_meeting(board, start=NOW + timedelta(days=3))
    past = make_calendar_meeting(board, start=NOW - timedelta(days=4))
    older = make_calendar_meeting(board, start=NOW - timedelta(days=30), status="held")

    def case(mrn: str, **kw):
        return make_case(oncologist=onc, mrn=mrn, specialties=("pathology",), **kw)

    queued = case("HOME-QUEUE", status="ready", ready_at=NOW - timedelta(days=1),
                  deadline=date(2031, 2, 5), schedule_note="Not placed: no meeting serves the site in time.")
    missing = case("HOME-MISSING", status="intake", deadline=date(2031, 3, 1))
    db.session.add(RecordItem(case_id=missing.id, kind="pathology", label="Slides from St Elsewhere",
                              requested_at=NOW - timedelta(days=6)))
    db.session.add(RecordItem(case_id=missing.id, kind="labs", label="Blood panel",
                              received_at=NOW - timedelta(days=2)))
    urgent = case("HOME-URGENT", status="ready", urgency="urgent", ready_at=NOW - timedelta(hours=5),
                  urgent_slot_latest_start=NOW + timedelta(hours=40), deadline=date(2031, 2, 10))
    on_agenda = case("HOME-AGENDA", status="scheduled", minutes=25, deadline=date(2031, 2, 20))
    put_on_agenda(on_agenda, upcoming)
    waiting = case("HOME-WAITING", status="scheduled", deadline=date(2031, 2, 25))
    put_on_agenda(waiting, past)
    drafted = case("HOME-DRAFT", status="scheduled", deadline=date(2031, 2, 25))
    put_on_agenda(drafted, past)
    db.session.add(Consensus(case_id=drafted.id, meeting_id=past.id, status="draft"))
    followed = case("HOME-FOLLOW", status="discussed", deadline=date(2031, 1, 20))
    put_on_agenda(followed, older)
    signed = Consensus(case_id=followed.id, meeting_id=older.id, status="signed",
                       signed_at=NOW - timedelta(days=29), signed_by_id=onc.id,
                       concordance="concordant", followup_owner_id=onc.id, followup_due=date(2031, 1, 15))
    db.session.add(signed)
    db.session.flush()
    db.session.add(ConsensusFollowup(consensus_id=signed.id, case_id=followed.id, owner_id=onc.id,
                                     due=date(2031, 1, 15)))
    db.session.add(Invitation(meeting_id=upcoming.id, user_id=path.id, partstat="ACCEPTED"))
    db.session.add(Invitation(meeting_id=upcoming.id, user_id=rad.id, partstat="NEEDS-ACTION"))
    db.session.flush()
    return SimpleNamespace(onc=onc, path=path, rad=rad, board=board, upcoming=upcoming, past=past,
                           queued=queued, missing=missing, urgent=urgent, on_agenda=on_agenda,
                           waiting=waiting, drafted=drafted, followed=followed)


def _sections(html: str) -> set[str]:
    return set(re.findall(r'<section class="card home-section" id="([a-z-]+)"', html))


def _section(html: str, name: str) -> str:
    start = html.index(f'id="{name}"')
    return html[start:html.index("</section>", start)]


def _home(client, user) -> str:
    login(client, user.email)
    response = client.get("/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_coordinator_sections(client, world) -> None:
    html = _home(client, make_user("coordinator"))
    assert _sections(html) == set(COORDINATOR_SECTIONS)
    queue = _section(html, "queue")
    assert "HOME-QUEUE" in queue and 'class="risk-at_risk"' in queue  # 4 days left, not scheduled
    assert "HOME-FOLLOW" not in queue  # discussed: not in the open queue
    missing = _section(html, "missing-records")
    assert "Slides from St Elsewhere" in missing and "Blood panel" not in missing and "(6 d)" in missing
    meetings = _section(html, "meetings")
    assert "Breast Home MDT" in meetings and "25 / 60" in meetings
    assert "Missing: Radiology" in meetings  # pathology accepted, radiology not yet
    assert "HOME-URGENT" in _section(html, "urgent")
    unassigned = _section(html, "unassigned")
    assert "HOME-QUEUE" in unassigned and "no meeting serves the site in time" in unassigned
    assert "HOME-FOLLOW" in _section(html, "overdue-followups")


def test_coordinator_home_reads_are_audited(client, world) -> None:
    user = make_user("coordinator")
    _home(client, user)
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "home.read")).one()
    assert event.actor_id == user.id and world.queued.id in event.details["case_ids"]


def test_specialist_sections(client, world) -> None:
    html = _home(client, world.rad)
    assert _sections(html) == set(SPECIALIST_SECTIONS)
    mine = _section(html, "my-meetings")
    assert "Breast Home MDT" in mine and "Needs-action" in mine
    # one-click accept: a POST form to the signed RSVP link, with the CSRF token
    form = re.search(r'<form class="inline" method="post" action="(/rsvp/[^"]+)">', mine)
    assert form and 'name="csrf_token"' in mine and 'value="ACCEPTED"' in mine
    assert f"/feeds/{world.rad.feed_token}.ics" in mine
    assert "HOME-" not in html  # no patient on a specialist's home page


def test_specialist_one_click_accept(client, world) -> None:
    html = _home(client, world.rad)
    action = re.search(r'action="(/rsvp/[^"]+)"', _section(html, "my-meetings")).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    response = client.post(action, data={"csrf_token": token, "answer": "ACCEPTED"})
    assert response.status_code == 303
    invitation = db.session.scalars(sa.select(Invitation).where(Invitation.user_id == world.rad.id)).one()
    db.session.refresh(invitation)
    assert invitation.partstat == "ACCEPTED"
    meetings = services.upcoming_meetings(NOW)
    assert meetings[0].quorum.met


def test_accepted_invitation_shows_no_accept_button(client, world) -> None:
    mine = _section(_home(client, world.path), "my-meetings")
    assert "Accepted" in mine and 'value="ACCEPTED"' not in mine


def test_oncologist_sections(client, world) -> None:
    html = _home(client, world.onc)
    assert _sections(html) == set(ONCOLOGIST_SECTIONS)
    waiting = _section(html, "awaiting-consensus")
    assert "HOME-WAITING" in waiting and "HOME-DRAFT" in waiting and "my patient" in waiting
    assert "HOME-AGENDA" not in waiting  # its meeting has not started
    assert f"/cases/{world.waiting.id}/meetings/{world.past.id}/consensus" in waiting
    assert "HOME-DRAFT" in _section(html, "drafts") and "HOME-WAITING" not in _section(html, "drafts")
    followups = _section(html, "my-followups")
    assert "HOME-FOLLOW" in followups and "Overdue" in followups


def test_other_oncologist_sees_no_followups_of_others(client, world) -> None:
    html = _home(client, make_user("oncologist", specialty="medical_oncology"))
    assert "HOME-FOLLOW" not in _section(html, "my-followups")
    assert "my patient" not in html


def test_admin_sees_no_section(client, world) -> None:
    html = _home(client, make_user("admin"))
    assert _sections(html) == set()
    assert "HOME-" not in html


def test_several_roles_see_each_section(client, world) -> None:
    user = make_user("coordinator", "oncologist", "specialist", specialty="medical_oncology")
    assert _sections(_home(client, user)) == set(ALL_SECTIONS)


def test_each_section_is_a_bounded_number_of_queries(app, world) -> None:
    """The page costs the same number of queries with 1 or 10 upcoming meetings (no N+1)."""
    from sqlalchemy import event

    user = make_user("coordinator", "oncologist", "specialist", specialty="medical_oncology")
    db.session.add(Invitation(meeting_id=world.upcoming.id, user_id=user.id))

    def count() -> int:
        seen = []
        engine = db.session.get_bind().engine
        listener = lambda *a, **k: seen.append(1)  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            home = services.home_for(user, now=NOW)
            for item in home.meetings + home.invitations:
                getattr(item, "meeting", item).board.name  # noqa: B018 - what the page reads
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(seen)

    db.session.expire_all()
    before = count()
    for day in range(5, 14):
        meeting = make_calendar_meeting(world.board, start=NOW + timedelta(days=day))
        db.session.add(Invitation(meeting_id=meeting.id, user_id=user.id))
    db.session.flush()
    db.session.expire_all()
    assert count() <= before
