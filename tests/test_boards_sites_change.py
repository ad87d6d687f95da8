"""A board that stops serving a site takes that site's cases off its upcoming meetings (as a
coordinator's removal: back to ready, audited, `case_needs_scheduling`), and says how many."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask.testing import FlaskClient

from tests.factories import make_board, make_case, make_user
from tests.helpers import login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.services import issue_api_token
from tumorboard.boards.models import Board, Meeting
from tumorboard.boards.services import change_board, freeze_agenda, mark_held, materialise_meetings
from tumorboard.cases.assignments import active_assignment, assign
from tumorboard.cases.models import Case
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.extensions import db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday; the board meets on Tuesdays at 08:00


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def signalled() -> Iterator[list[int]]:
    received: list[int] = []

    def receiver(case: Case, **_kw: Any) -> None:
        received.append(case.id)

    case_needs_scheduling.connect(receiver)
    try:
        yield received
    finally:
        case_needs_scheduling.disconnect(receiver)


def upcoming(board: Board) -> list[Meeting]:
    materialise_meetings(board, now=NOW)
    return list(db.session.scalars(
        sa.select(Meeting).where(Meeting.board_id == board.id).order_by(Meeting.start_at)))


def scheduled_case(site: str, meeting: Meeting, **kw: Any) -> Case:
    case = make_case(site=site, status="ready")
    assign(case, meeting, now=NOW, **{"source": "engine", **kw})
    return case


def removals() -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "assignment.remove")
                                   .order_by(AuditEvent.id)))


def test_dropping_a_site_takes_its_cases_off_upcoming_meetings_frozen_or_pinned(app, signalled) -> None:
    board = make_board(sites=("breast", "lung"), capacity_minutes=120)
    first, second = upcoming(board)[:2]
    lung = scheduled_case("lung", first)
    breast = scheduled_case("breast", first)
    pinned_lung = scheduled_case("lung", second, source="coordinator", pinned=True)
    freeze_agenda(second, now=NOW)

    change = change_board(board, {"sites": ["breast"]}, now=NOW)

    assert change.board is board and [c.id for c in change.taken_off] == [lung.id, pinned_lung.id]
    assert (lung.status, pinned_lung.status, breast.status) == ("ready", "ready", "scheduled")
    assert active_assignment(lung) is None and active_assignment(pinned_lung) is None
    assert active_assignment(breast).meeting_id == first.id
    assert sorted(signalled) == sorted([lung.id, pinned_lung.id])
    assert [(e.details["case_id"], e.details["source"]) for e in removals()] == [
        (lung.id, "coordinator"), (pinned_lung.id, "coordinator")]
    dropped = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "board.sites_dropped"))
    assert dropped.details == {"sites": ["lung"], "case_ids": [lung.id, pinned_lung.id]}


def test_started_and_held_meetings_keep_their_cases(app, signalled) -> None:
    board = make_board(sites=("breast", "lung"))
    first, second, third = upcoming(board)[:3]
    held = scheduled_case("lung", first)
    started = scheduled_case("lung", second)
    later = scheduled_case("lung", third)
    after_second_started = second.start_at + timedelta(minutes=30)
    mark_held(first, now=after_second_started)

    change = change_board(board, {"sites": ["breast"]}, now=after_second_started)

    assert [c.id for c in change.taken_off] == [later.id] and signalled == [later.id]
    assert active_assignment(held).meeting_id == first.id and held.status == "scheduled"
    assert active_assignment(started).meeting_id == second.id and started.status == "scheduled"
    assert later.status == "ready"


def test_keeping_every_site_takes_nothing_off(app, signalled) -> None:
    board = make_board(sites=("breast", "lung"))
    first = upcoming(board)[0]
    lung = scheduled_case("lung", first)
    change = change_board(board, {"sites": ["lung", "breast", "skin"], "location": "Room 9"}, now=NOW)
    assert change.taken_off == [] and signalled == [] and removals() == []
    assert active_assignment(lung).meeting_id == first.id
    dropped = sa.select(AuditEvent.id).where(AuditEvent.action == "board.sites_dropped")
    assert db.session.scalar(dropped) is None


def _form(board: Board, **changes: Any) -> dict[str, Any]:
    return {"name": board.name, "sites": board.site_names, "rrule": board.rrule,
            "timezone": board.timezone, "first_date": board.first_date.isoformat(),
            "start_time": board.start_time.strftime("%H:%M"), "duration_minutes": str(board.duration_minutes),
            "capacity_minutes": str(board.capacity_minutes), "default_case_minutes": "10",
            "specialties": board.specialty_names, "active": "y", **changes}


def test_the_board_form_tells_the_coordinator_how_many_cases_were_taken_off(client: FlaskClient) -> None:
    board = make_board(sites=("breast", "lung"), capacity_minutes=120)
    first = upcoming(board)[0]
    cases = [scheduled_case("lung", first) for _ in range(2)]
    login(client, make_user("coordinator").email)
    url = f"/boards/{board.id}"
    response = post_form(client, url, _form(board, sites=["breast"]), follow_redirects=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Board saved." in page
    assert "2 case(s) of sites the board no longer serves were taken off its upcoming meetings" in page
    db.session.expire_all()
    assert [c.status for c in cases] == ["ready", "ready"]
    again = post_form(client, url, _form(board, name="Renamed MDT"), follow_redirects=True)
    assert "Board saved." in again.get_data(as_text=True)
    assert "no longer serves" not in again.get_data(as_text=True)


def test_the_api_takes_the_cases_off_too(client: FlaskClient) -> None:
    board = make_board(sites=("breast", "lung"))
    lung = scheduled_case("lung", upcoming(board)[0])
    _, secret = issue_api_token(make_user("coordinator"), "tests")
    response = client.patch(f"/api/v1/boards/{board.id}", json={"sites": ["breast"]},
                            headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200 and response.json["sites"] == ["breast"]
    db.session.expire_all()
    assert lung.status == "ready" and active_assignment(lung) is None
