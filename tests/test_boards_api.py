"""The boards, meetings and assignments API, and the board form: validation and conflicts."""

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
from tumorboard.auth.services import issue_api_token
from tumorboard.boards.models import Board, Meeting
from tumorboard.boards.services import cancel_meeting, materialise_meetings
from tumorboard.cases import assignments as svc
from tumorboard.cases.models import Assignment
from tumorboard.extensions import db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


class Api:
    def __init__(self, client: FlaskClient, *roles: str, **kw: Any) -> None:
        self.client = client
        self.user = make_user(*roles, **kw)
        _, secret = issue_api_token(self.user, "tests")
        self.headers = {"Authorization": f"Bearer {secret}"}

    def __getattr__(self, method: str) -> Any:
        def call(url: str, **kw: Any) -> Any:
            return getattr(self.client, method)("/api/v1" + url, headers=self.headers, **kw)
        return call


@pytest.fixture
def api(client: FlaskClient) -> Api:
    return Api(client, "coordinator")


def board_body(**kw: Any) -> dict[str, Any]:
    return {"name": "Skin MDT", "sites": ["skin"], "rrule": "FREQ=WEEKLY;BYDAY=WE",
            "timezone": "Europe/London", "first_date": "2026-03-04", "start_time": "13:00:00",
            "duration_minutes": 60, "capacity_minutes": 60, "specialties": ["pathology"], **kw}


def meetings_of(board: Board) -> list[Meeting]:
    materialise_meetings(board, now=NOW)
    return list(db.session.scalars(
        sa.select(Meeting).where(Meeting.board_id == board.id).order_by(Meeting.start_at)))


def board_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Board))


# --- boards -------------------------------------------------------------------------------------

def test_create_read_and_update_a_board(api: Api) -> None:
    member = make_user("specialist", specialty="pathology")
    created = api.post("/boards", json=board_body(member_ids=[member.id]))
    assert created.status_code == 201, created.json
    body = created.json
    assert body["sites"] == ["skin"] and body["members"][0]["specialty"] == "pathology"
    meetings = api.get(f"/meetings?board_id={body['id']}&page_size=100")
    assert meetings.status_code == 200 and len(meetings.json) == 12
    assert meetings.json[0]["local_start"] == "2026-03-04T13:00:00+00:00"
    assert meetings.json[0]["ical_uid"] == f"meeting-{meetings.json[0]['id']}@tumorboard.test"
    assert "X-Pagination" in meetings.headers
    changed = api.patch(f"/boards/{body['id']}", json={"capacity_minutes": 90, "location": "Room 7"})
    assert changed.status_code == 200 and changed.json["capacity_minutes"] == 90
    assert api.get(f"/meetings/{meetings.json[0]['id']}").json["location"] == "Room 7"
    assert api.get(f"/boards/{body['id']}").json["location"] == "Room 7"
    listing = api.get("/boards")
    assert [b["name"] for b in listing.json] == ["Skin MDT"]


@pytest.mark.parametrize(("change", "field"), [
    ({"rrule": "every wednesday"}, "rrule"),
    ({"rrule": "FREQ=MINUTELY"}, "rrule"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"sites": ["spleen"]}, "sites"),
    ({"duration_minutes": "sixty"}, "duration_minutes"),
    ({"duration_minutes": "60"}, "duration_minutes"),  # a string is not an integer
    ({"first_date": "4 March"}, "first_date"),
    ({"colour": "blue"}, "colour"),  # unknown fields are an error
])
def test_board_validation_errors(api: Api, change: dict[str, Any], field: str) -> None:
    response = api.post("/boards", json=board_body(**change))
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    assert response.json["error"]["code"] == "validation_error"
    assert board_count() == 0


def test_board_name_conflict_and_unknown_board(api: Api) -> None:
    assert api.post("/boards", json=board_body()).status_code == 201
    again = api.post("/boards", json=board_body())
    assert again.status_code == 409 and "name" in again.json["error"]["fields"]
    assert api.get("/boards/999999").status_code == 404
    assert api.patch("/boards/999999", json={"name": "x"}).status_code == 404
    assert api.patch("/boards/999999", json={"name": "x"}).json["error"]["code"] == "not_found"


def test_board_writes_need_a_coordinator(client: FlaskClient) -> None:
    oncologist = Api(client, "oncologist", specialty="medical_oncology")
    assert oncologist.get("/boards").status_code == 200
    assert oncologist.post("/boards", json=board_body()).status_code == 403
    specialist = Api(client, "specialist", specialty="pathology")
    assert specialist.get("/boards").status_code == 403


# --- meetings -----------------------------------------------------------------------------------

def test_meeting_filters_and_naive_datetimes(api: Api) -> None:
    board = make_board()
    meetings = meetings_of(board)
    cancel_meeting(meetings[1], now=NOW)
    in_march = api.get("/meetings", query_string={"board_id": board.id, "from": "2026-03-01T00:00:00Z",
                                                   "to": "2026-04-01T00:00:00+00:00"})
    assert [m["start"][:10] for m in in_march.json] == ["2026-03-03", "2026-03-10", "2026-03-17",
                                                         "2026-03-24", "2026-03-31"]
    cancelled = api.get("/meetings", query_string={"status": "cancelled"})
    assert [m["id"] for m in cancelled.json] == [meetings[1].id]
    naive = api.get("/meetings", query_string={"from": "2026-03-01T00:00:00"})
    assert naive.status_code == 422 and "from" in naive.json["error"]["fields"]
    assert api.get("/meetings", query_string={"status": "postponed"}).status_code == 422


def test_move_and_cancel_a_meeting(api: Api) -> None:
    meeting = meetings_of(make_board())[0]
    moved = api.patch(f"/meetings/{meeting.id}",
                      json={"start": "2026-03-03T09:00:00+00:00", "duration_minutes": 45, "location": "B2"})
    assert moved.status_code == 200, moved.json
    assert moved.json["sequence"] == 1 and moved.json["end"] == "2026-03-03T09:45:00+00:00"
    assert moved.json["recurrence_id"] == "2026-03-03T08:00:00+00:00"
    naive = api.patch(f"/meetings/{meeting.id}", json={"start": "2026-03-03T10:00:00"})
    assert naive.status_code == 422 and "start" in naive.json["error"]["fields"]
    both = api.patch(f"/meetings/{meeting.id}", json={"status": "cancelled", "location": "C"})
    assert both.status_code == 422
    assert api.patch(f"/meetings/{meeting.id}", json={"status": "postponed"}).status_code == 422
    assert api.patch(f"/meetings/{meeting.id}", json={"sequence": 9}).status_code == 422
    cancelled = api.patch(f"/meetings/{meeting.id}", json={"status": "cancelled"})
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert cancelled.json["sequence"] == 2
    again = api.patch(f"/meetings/{meeting.id}", json={"location": "D"})
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert api.patch("/meetings/999999", json={"location": "D"}).status_code == 404


def test_urgent_slot_and_materialise(api: Api) -> None:
    board = make_board(capacity_minutes=60)
    slot = api.post("/meetings/urgent-slots", json={
        "board_id": board.id, "start": "2026-03-05T17:00:00+00:00", "duration_minutes": 30,
        "capacity_minutes": 20, "location": "Huddle"})
    assert slot.status_code == 201, slot.json
    assert slot.json["kind"] == "urgent" and slot.json["recurrence_id"] is None
    assert slot.json["capacity_minutes"] == 20 and slot.json["end"] == "2026-03-05T17:30:00+00:00"
    unknown = api.post("/meetings/urgent-slots", json={"board_id": 999999, "start": "2026-03-05T17:00:00Z"})
    assert unknown.status_code == 422 and "board_id" in unknown.json["error"]["fields"]
    naive = api.post("/meetings/urgent-slots", json={"board_id": board.id, "start": "2026-03-05T17:00:00"})
    assert naive.status_code == 422 and "start" in naive.json["error"]["fields"]
    first = api.post(f"/boards/{board.id}/materialise")
    assert first.status_code == 200 and first.json["created"] == 12
    assert api.post(f"/boards/{board.id}/materialise").json == {"created": 0}


# --- assignments --------------------------------------------------------------------------------

def test_assignment_lifecycle(api: Api) -> None:
    first, second = meetings_of(make_board(capacity_minutes=30))[:2]
    a, b = make_case(status="ready"), make_case(status="ready")
    created = api.post("/assignments", json={"case_id": a.id, "meeting_id": first.id, "pinned": True})
    assert created.status_code == 201, created.json
    assert created.json["pinned"] and created.json["source"] == "coordinator"
    assert created.json["position"] == 1 and created.json["overbooked"] is False
    other = api.post("/assignments", json={"case_id": b.id, "meeting_id": first.id}).json
    reordered = api.patch(f"/assignments/{other['id']}", json={"position": 1})
    assert reordered.status_code == 200 and reordered.json["position"] == 1
    assert [x["case_id"] for x in api.get(f"/assignments?meeting_id={first.id}").json] == [b.id, a.id]
    moved = api.patch(f"/assignments/{created.json['id']}", json={"meeting_id": second.id})
    assert moved.status_code == 200 and moved.json["meeting_id"] == second.id and moved.json["pinned"]
    assert api.delete(f"/assignments/{moved.json['id']}").status_code == 204
    db.session.refresh(a)
    assert a.status == "ready"
    assert api.get(f"/assignments?case_id={a.id}").json == []
    assert len(api.get(f"/assignments?case_id={a.id}&include_inactive=true").json) == 2


def test_assignment_validation_and_conflicts(api: Api) -> None:
    meeting, cancelled = meetings_of(make_board(capacity_minutes=10))[:2]
    cancel_meeting(cancelled, now=NOW)
    case = make_case(status="ready")
    for body, field in [
        ({"case_id": 999999, "meeting_id": meeting.id}, "case_id"),
        ({"case_id": case.id, "meeting_id": 999999}, "meeting_id"),
        ({"case_id": str(case.id), "meeting_id": meeting.id}, "case_id"),
        ({"case_id": case.id}, "meeting_id"),
        ({"case_id": case.id, "meeting_id": meeting.id, "priority": 1}, "priority"),
    ]:
        response = api.post("/assignments", json=body)
        assert response.status_code == 422, body
        assert field in response.json["error"]["fields"], body
    refused = api.post("/assignments", json={"case_id": case.id, "meeting_id": cancelled.id})
    assert refused.status_code == 409 and refused.json["error"]["code"] == "conflict"
    svc.assign(make_case(status="ready"), meeting, source="engine", now=NOW)  # 10 of 10 minutes used
    full = api.post("/assignments", json={"case_id": case.id, "meeting_id": meeting.id})
    assert full.status_code == 409
    pinned = api.post("/assignments", json={"case_id": case.id, "meeting_id": meeting.id, "pinned": True})
    assert pinned.status_code == 201 and pinned.json["overbooked"] is True
    assert api.patch(f"/assignments/{pinned.json['id']}", json={}).status_code == 422
    assert api.delete("/assignments/999999").status_code == 404
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Assignment)) == 2


# --- the board form -----------------------------------------------------------------------------

def form_data(**kw: Any) -> dict[str, Any]:
    return {"name": "Neuro MDT", "sites": ["neuro"], "rrule": "FREQ=WEEKLY;BYDAY=TH",
            "timezone": "America/New_York", "first_date": "2026-03-05", "start_time": "08:00",
            "duration_minutes": "60", "capacity_minutes": "60", "default_case_minutes": "10",
            "specialties": ["pathology", "radiology"], "active": "y", **kw}


@pytest.mark.parametrize(("change", "message"), [
    ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "Not a valid recurrence rule"),
    ({"rrule": "FREQ=SECONDLY"}, "at most daily"),
    ({"timezone": "New York"}, "Not a known IANA time zone"),
    ({"sites": ["spleen"]}, "not a valid choice"),
    ({"duration_minutes": "abc"}, "Not a valid integer value"),
])
def test_board_form_rejects_bad_input(client: FlaskClient, change: dict[str, Any], message: str) -> None:
    login(client, make_user("coordinator").email)
    response = post_form(client, "/boards/new", form_data(**change))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page and 'aria-invalid="true"' in page
    assert board_count() == 0


def test_board_form_creates_and_edits(client: FlaskClient) -> None:
    login(client, make_user("coordinator").email)
    member = make_user("specialist", specialty="radiology", name="Dr Synthetic Ray")
    assert "Dr Synthetic Ray" in client.get("/boards/new").get_data(as_text=True)
    response = post_form(client, "/boards/new", form_data(member_ids=[str(member.id)]))
    assert response.status_code == 302
    board = db.session.scalar(sa.select(Board).where(Board.name == "Neuro MDT"))
    assert board.timezone == "America/New_York" and [m.user_id for m in board.members] == [member.id]
    meetings = meetings_of(board)
    assert meetings and meetings[0].start_at == datetime(2026, 3, 5, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert "Neuro MDT" in client.get("/boards").get_data(as_text=True)
    url = f"/boards/{board.id}"
    edited = post_form(client, url, form_data(name="Neuro-oncology MDT", capacity_minutes="120"))
    assert edited.status_code == 302
    db.session.refresh(board)
    assert board.name == "Neuro-oncology MDT" and board.capacity_minutes == 120 and board.members == []
    bad = post_form(client, url, form_data(rrule="nonsense"))
    assert bad.status_code == 422
    db.session.refresh(board)
    assert board.rrule == "FREQ=WEEKLY;BYDAY=TH"
    removed = post_form(client, f"{url}/remove", {}, form_url=url)
    assert removed.status_code == 302
    db.session.expire_all()  # the request changed rows this session holds
    assert not board.active  # it had meetings: deactivated, not deleted
    assert all(m.status == "cancelled" for m in meetings_of(board) if m.start_at > NOW)


def test_urgent_slot_and_move_forms_use_the_board_clock(client: FlaskClient) -> None:
    login(client, make_user("coordinator").email)
    board = make_board(timezone="America/New_York")
    response = post_form(client, f"/boards/{board.id}/urgent-slot",
                         {"start": "2026-03-10T17:00", "duration_minutes": "30", "capacity_minutes": "20",
                          "location": "Huddle"})
    assert response.status_code == 302
    slot = db.session.scalar(sa.select(Meeting).where(Meeting.kind == "urgent"))
    assert slot.start_at == datetime(2026, 3, 10, 21, 0, tzinfo=UTC)  # 17:00 EDT
    gap = post_form(client, f"/meetings/{slot.id}/edit",
                    {"start": "2026-03-08T02:30", "duration_minutes": "30", "location": "Huddle"})
    assert gap.status_code == 422 and "daylight-saving" in gap.get_data(as_text=True)
    moved = post_form(client, f"/meetings/{slot.id}/edit",
                      {"start": "2026-03-11T07:30", "duration_minutes": "45", "location": "Room 1"})
    assert moved.status_code == 302
    db.session.refresh(slot)
    assert slot.start_at == datetime(2026, 3, 11, 11, 30, tzinfo=UTC) and slot.sequence == 1
    assert slot.end_at - slot.start_at == timedelta(minutes=45)
