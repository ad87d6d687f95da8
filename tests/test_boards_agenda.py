"""Agendas: the assignment service, the coordinator's agenda page and who may read it."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import markupsafe
import pytest
import sqlalchemy as sa
import time_machine
from flask.testing import FlaskClient

from tests.factories import make_board, make_case, make_user
from tests.helpers import login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.boards.models import Meeting
from tumorboard.boards.services import cancel_meeting, freeze_agenda, materialise_meetings
from tumorboard.cases import assignments as svc
from tumorboard.cases.models import Assignment
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.errors import DomainError
from tumorboard.extensions import db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday; the default board meets Tuesdays 08:00


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def meetings_of(board) -> list[Meeting]:
    materialise_meetings(board, now=NOW)
    return list(db.session.scalars(
        sa.select(Meeting).where(Meeting.board_id == board.id).order_by(Meeting.start_at)))


def ready_case(**kw):
    return make_case(status="ready", ready_at=NOW - timedelta(days=3), minutes=kw.pop("minutes", 10), **kw)


# --- the service --------------------------------------------------------------------------------

def test_assign_appends_schedules_and_moves_off_the_old_meeting(app) -> None:
    first, second = meetings_of(make_board())[:2]
    a, b = ready_case(), ready_case()
    one = svc.assign(a, first, source="engine", now=NOW)
    two = svc.assign(b, first, source="coordinator", pinned=True, minutes=15, now=NOW)
    assert [x.case_id for x in svc.agenda(first)] == [a.id, b.id]
    assert (one.position, two.position) == (1, 2)
    assert a.status == b.status == "scheduled"
    assert svc.minutes_used(first) == 25
    assert two.pinned and two.source == "coordinator" and two.minutes == 15

    moved = svc.move(one, second, now=NOW)
    assert not one.active and moved.active and moved.meeting_id == second.id
    assert [x.case_id for x in svc.agenda(first)] == [b.id]
    assert svc.agenda(first)[0].position == 1  # renumbered
    assert a.status == "scheduled"
    # back again: the old row is re-used (one row per case and meeting), at the end of the agenda
    back = svc.move(moved, first, now=NOW)
    assert back.id == one.id and back.active and back.position == 2
    actions = db.session.scalars(sa.select(AuditEvent.action)
                                 .where(AuditEvent.object_type == "assignment").order_by(AuditEvent.id))
    assert list(actions) == ["assignment.create", "assignment.create", "assignment.move", "assignment.move"]


def test_assign_refusals_change_nothing(app) -> None:
    board = make_board(sites=("breast",), capacity_minutes=20)
    meeting, cancelled, held = meetings_of(board)[:3]
    cancel_meeting(cancelled, now=NOW)
    held.status = "held"
    case = ready_case()

    def refused(target, *, case=case, source="engine", pinned=False, now=NOW) -> DomainError:
        with pytest.raises(DomainError) as info:
            svc.assign(case, target, source=source, pinned=pinned, now=now)
        return info.value

    assert refused(cancelled).status == 409
    assert refused(held).status == 409
    assert refused(meeting, now=meeting.start_at + timedelta(minutes=1)).status == 409  # started
    assert refused(meeting, case=ready_case(site="lung")).status == 422  # board does not serve lung
    assert refused(meeting, case=make_case(status="intake")).status == 409
    assert case.status == "ready"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Assignment)) == 0


def test_frozen_agenda_is_closed_to_the_engine_not_to_coordinators(app) -> None:
    first, second = meetings_of(make_board())[:2]
    on_frozen = ready_case()
    assignment = svc.assign(on_frozen, first, source="engine", now=NOW)
    freeze_agenda(first, now=NOW)
    with pytest.raises(DomainError) as add:
        svc.assign(ready_case(), first, source="engine", now=NOW)
    assert add.value.status == 409
    with pytest.raises(DomainError):
        svc.move(assignment, second, source="engine", now=NOW)  # the engine cannot take it away
    with pytest.raises(DomainError):
        svc.unassign(assignment, source="engine", now=NOW)
    assert assignment.active
    svc.assign(ready_case(), first, source="coordinator", now=NOW)
    assert len(svc.agenda(first)) == 2


def test_capacity_is_a_limit_except_for_a_coordinator_pin(app) -> None:
    meeting = meetings_of(make_board(capacity_minutes=25))[0]
    svc.assign(ready_case(minutes=20), meeting, source="engine", now=NOW)
    extra = ready_case(minutes=10)
    for source, pinned in (("engine", False), ("engine", True), ("coordinator", False)):
        with pytest.raises(DomainError) as full:
            svc.assign(extra, meeting, source=source, pinned=pinned, now=NOW)
        assert full.value.status == 409 and "20 of 25 minutes" in full.value.message
    assert not svc.is_overbooked(meeting)
    svc.assign(extra, meeting, source="coordinator", pinned=True, now=NOW)
    assert svc.minutes_used(meeting) == 30 and svc.is_overbooked(meeting)
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "assignment.create")
                               .order_by(AuditEvent.id.desc())).first()
    assert event.details["overbooked"] is True


def test_unassign_reorder_and_pin(app) -> None:
    meeting = meetings_of(make_board(capacity_minutes=60))[0]
    cases = [ready_case() for _ in range(3)]
    rows = [svc.assign(c, meeting, source="engine", now=NOW) for c in cases]
    svc.reorder(meeting, rows[2], "up")
    assert [a.case_id for a in svc.agenda(meeting)] == [cases[0].id, cases[2].id, cases[1].id]
    svc.reorder(meeting, rows[0], "up")  # already first: nothing happens
    svc.reorder(meeting, rows[0], "down")
    assert [a.case_id for a in svc.agenda(meeting)] == [cases[2].id, cases[0].id, cases[1].id]
    svc.set_pinned(rows[1], True)
    assert rows[1].pinned and rows[1].source == "coordinator"
    svc.set_pinned(rows[1], False)
    assert not rows[1].pinned

    signalled: list[int] = []

    def receiver(case, **_kw):
        signalled.append(case.id)

    case_needs_scheduling.connect(receiver)
    try:
        svc.unassign(rows[2], now=NOW)
    finally:
        case_needs_scheduling.disconnect(receiver)
    assert cases[2].status == "ready" and signalled == [cases[2].id]
    assert [(a.case_id, a.position) for a in svc.agenda(meeting)] == [(cases[0].id, 1), (cases[1].id, 2)]
    with pytest.raises(DomainError):
        svc.unassign(rows[2], now=NOW)  # already off the agenda


# --- the agenda page ----------------------------------------------------------------------------

@pytest.fixture
def coordinator(client: FlaskClient, frozen_clock: None):
    user = make_user("coordinator")
    login(client, user.email)
    return user


def agenda_url(meeting: Meeting) -> str:
    return f"/meetings/{meeting.id}"


def test_coordinator_pins_a_case_and_reads_the_agenda(client: FlaskClient, coordinator) -> None:
    meeting = meetings_of(make_board(capacity_minutes=30))[0]
    case = ready_case(mrn="SYN-000123", display_name="Synthetic Avery")
    other_site = ready_case(site="lung", mrn="SYN-LUNG")
    page = client.get(agenda_url(meeting)).get_data(as_text=True)
    assert "SYN-000123" in page and "SYN-LUNG" not in page  # only eligible cases are offered
    response = post_form(client, f"/meetings/{meeting.id}/cases", {"case_id": case.id, "pinned": "y"},
                         form_url=agenda_url(meeting))
    assert response.status_code == 302
    page = client.get(agenda_url(meeting)).get_data(as_text=True)
    assert "Synthetic Avery" in page and "10 of 30 minutes" in page and "pinned" in page
    row = db.session.scalar(sa.select(Assignment).where(Assignment.case_id == case.id))
    assert row.pinned and row.source == "coordinator" and row.active
    db.session.refresh(case)
    assert case.status == "scheduled"
    reads = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "meeting.agenda_read")).all()
    assert reads and reads[-1].details["case_ids"] == [case.id] and reads[-1].actor_id == coordinator.id
    # a case of a site the board does not serve cannot be posted either
    refused = post_form(client, f"/meetings/{meeting.id}/cases", {"case_id": other_site.id},
                        form_url=agenda_url(meeting))
    assert refused.status_code == 422
    db.session.refresh(other_site)
    assert other_site.status == "ready"


MARKUP = '<script>alert("x")</script> & Co'


def escaped(text: str) -> set[str]:
    """`text` HTML-escaped, either way (Jinja writes a quote as &#34;, html.escape as &quot;)."""
    return {str(markupsafe.escape(text)), html.escape(text)}


def test_agenda_escapes_everything_users_typed(client: FlaskClient, coordinator) -> None:
    meeting = meetings_of(make_board(name=f"Board {MARKUP}"))[0]
    meeting.location = f"Room {MARKUP}"
    svc.assign(ready_case(display_name=f"On {MARKUP}", mrn="SYN-<b>1</b>"), meeting, source="engine", now=NOW)
    ready_case(display_name=f"Offered {MARKUP}", mrn="SYN-<i>2</i>")  # in the "add a case" list
    page = client.get(agenda_url(meeting)).get_data(as_text=True)
    assert "<script" not in page and 'alert("x")' not in page and " & Co" not in page
    assert "<b>" not in page and "<i>2" not in page
    for text, times in ((f"Board {MARKUP}", 2), (f"Room {MARKUP}", 1), (f"On {MARKUP}", 1),
                        ("SYN-<b>1</b>", 6)):  # the MRN: the link and the five buttons of its row
        assert sum(page.count(form) for form in escaped(text)) == times, text
    offered = (f"SYN-&lt;i&gt;2&lt;/i&gt; · Offered {form} · Breast · ready" for form in escaped(MARKUP))
    assert any(option in page for option in offered)


def test_agenda_actions_reorder_pin_move_remove_freeze(client: FlaskClient, coordinator) -> None:
    board = make_board(capacity_minutes=60)
    meeting, later = meetings_of(board)[:2]
    a, b = ready_case(), ready_case()
    first = svc.assign(a, meeting, source="engine", now=NOW)
    second = svc.assign(b, meeting, source="engine", now=NOW)
    url = agenda_url(meeting)

    assert post_form(client, f"/assignments/{second.id}/reorder", {"direction": "up"},
                     form_url=url).status_code == 302
    assert [x.case_id for x in svc.agenda(meeting)] == [b.id, a.id]
    assert post_form(client, f"/assignments/{second.id}/reorder", {"direction": "sideways"},
                     form_url=url).status_code == 422

    assert post_form(client, f"/assignments/{first.id}/pin", {"pinned": "1"}, form_url=url).status_code == 302
    db.session.refresh(first)
    assert first.pinned

    assert post_form(client, f"/meetings/{meeting.id}/freeze", {}, form_url=url).status_code == 302
    db.session.refresh(meeting)
    assert meeting.agenda_frozen_at == NOW
    assert "frozen since" in client.get(url).get_data(as_text=True)

    assert post_form(client, f"/assignments/{first.id}/move", {"meeting_id": later.id},
                     form_url=url).status_code == 302
    assert [x.case_id for x in svc.agenda(later)] == [a.id]
    assert db.session.scalar(sa.select(Assignment).where(
        Assignment.case_id == a.id, Assignment.active.is_(True))).pinned  # the pin travels with it

    assert post_form(client, f"/assignments/{second.id}/remove", {}, form_url=url).status_code == 302
    assert svc.agenda(meeting) == []
    db.session.refresh(b)
    assert b.status == "ready"

    assert post_form(client, f"/meetings/{meeting.id}/unfreeze", {}, form_url=url).status_code == 302
    db.session.refresh(meeting)
    assert meeting.agenda_frozen_at is None


def test_move_page_offers_meetings_of_boards_serving_the_site(client: FlaskClient, coordinator) -> None:
    board = make_board(sites=("breast",))
    meeting, later = meetings_of(board)[:2]
    lung_meeting = meetings_of(make_board(sites=("lung",)))[0]
    assignment = svc.assign(ready_case(mrn="SYN-MOVE"), meeting, source="engine", now=NOW)
    assert f"/assignments/{assignment.id}/move" in client.get(agenda_url(meeting)).get_data(as_text=True)

    page = client.get(f"/assignments/{assignment.id}/move").get_data(as_text=True)
    assert "SYN-MOVE" in page
    assert f'value="{later.id}"' in page  # the board's next meeting
    assert f'value="{meeting.id}"' not in page and f'value="{lung_meeting.id}"' not in page
    read = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "case.read")).all()[-1]
    assert read.object_id == str(assignment.case_id) and read.details == {"what": "move form"}


def test_agenda_refusals_show_a_message_and_change_nothing(client: FlaskClient, coordinator) -> None:
    breast = make_board(sites=("breast",))
    lung_meeting = meetings_of(make_board(sites=("lung",), specialties=("pathology",)))[0]
    meeting = meetings_of(breast)[0]
    assignment = svc.assign(ready_case(), meeting, source="engine", now=NOW)
    response = post_form(client, f"/assignments/{assignment.id}/move", {"meeting_id": lung_meeting.id},
                         form_url=agenda_url(meeting))
    assert response.status_code == 422
    assert "does not discuss breast cases" in response.get_data(as_text=True)
    db.session.refresh(assignment)
    assert assignment.active and assignment.meeting_id == meeting.id

    cancel = post_form(client, f"/meetings/{meeting.id}/cancel", {}, form_url=agenda_url(meeting))
    assert cancel.status_code == 302
    again = post_form(client, f"/meetings/{meeting.id}/freeze", {},
                      form_url=agenda_url(meetings_of(breast)[1]))
    assert again.status_code == 409 and "cancelled meeting cannot be frozen" in again.get_data(as_text=True)


def test_specialists_read_only_agendas_of_their_boards(client: FlaskClient, frozen_clock: None) -> None:
    member = make_user("specialist", specialty="pathology")
    outsider = make_user("specialist", specialty="radiology")
    oncologist = make_user("oncologist", specialty="medical_oncology")
    mine = meetings_of(make_board(members=(member,)))[0]
    theirs = meetings_of(make_board())[0]
    svc.assign(ready_case(mrn="SYN-SECRET"), theirs, source="engine", now=NOW)

    login(client, member.email)
    assert client.get(agenda_url(mine)).status_code == 200
    assert client.get(agenda_url(theirs)).status_code == 403
    listing = client.get("/meetings").get_data(as_text=True)
    assert f"/meetings/{mine.id}\"" in listing and f"/meetings/{theirs.id}\"" not in listing
    # a specialist reads but never changes an agenda
    assert client.post(f"/meetings/{mine.id}/freeze").status_code in (400, 403)
    page = client.get(agenda_url(mine)).get_data(as_text=True)
    assert "Freeze agenda" not in page and "Add a case" not in page

    client.post("/logout")
    other = client.application.test_client()
    login(other, outsider.email)
    assert other.get(agenda_url(mine)).status_code == 403
    assert other.get(f"/api/v1/meetings/{mine.id}").status_code == 403

    third = client.application.test_client()
    login(third, oncologist.email)
    page = third.get(agenda_url(theirs))
    assert page.status_code == 200 and "SYN-SECRET" in page.get_data(as_text=True)
    assert third.get("/boards/new").status_code == 403


def test_meetings_list_shows_fill_and_filters_by_board(client: FlaskClient, coordinator) -> None:
    breast = make_board(name="Breast MDT", capacity_minutes=40)
    lung = make_board(name="Thoracic MDT", sites=("lung",), specialties=("pathology",))
    meeting = meetings_of(breast)[0]
    meetings_of(lung)
    svc.assign(ready_case(minutes=15), meeting, source="engine", now=NOW)
    page = client.get("/meetings").get_data(as_text=True)
    assert "Breast MDT" in page and "Thoracic MDT" in page and "15 / 40 min" in page
    assert "Tue 03 Mar 2026 08:00 GMT" in page  # the board's local time
    only = client.get(f"/meetings?board_id={lung.id}").get_data(as_text=True)
    assert "Thoracic MDT" in only and "15 / 40 min" not in only
