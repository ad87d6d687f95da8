"""Boards → meetings: RRULE expansion on the local clock, idempotent materialising, cancel, move,
urgent slots."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.factories import make_board, make_case, make_user
from tumorboard.audit.models import AuditEvent
from tumorboard.boards.models import Meeting
from tumorboard.boards.services import (
    cancel_meeting,
    create_board,
    create_urgent_slot,
    mark_held,
    materialise_meetings,
    move_meeting,
    update_board,
)
from tumorboard.cases.assignments import agenda, assign
from tumorboard.cases.models import Assignment
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.errors import DomainError
from tumorboard.extensions import db

LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def meetings_of(board) -> list[Meeting]:
    return list(db.session.scalars(
        sa.select(Meeting).where(Meeting.board_id == board.id).order_by(Meeting.start_at)))


def by_local_date(board, zone: ZoneInfo) -> dict[date, Meeting]:
    return {m.start_at.astimezone(zone).date(): m for m in meetings_of(board)}


@pytest.mark.parametrize(("zone_name", "rule", "first", "now", "before", "after"), [
    # Europe/London: clocks go forward on Sun 29 March 2026, back on Sun 25 October 2026
    ("Europe/London", "FREQ=WEEKLY;BYDAY=TU", date(2026, 1, 6), utc(2026, 3, 1),
     (date(2026, 3, 24), 8), (date(2026, 3, 31), 7)),
    ("Europe/London", "FREQ=WEEKLY;BYDAY=TU", date(2026, 1, 6), utc(2026, 10, 1),
     (date(2026, 10, 20), 7), (date(2026, 10, 27), 8)),
    # America/New_York: forward on Sun 8 March 2026, back on Sun 1 November 2026
    ("America/New_York", "FREQ=WEEKLY;BYDAY=MO", date(2026, 1, 5), utc(2026, 2, 20),
     (date(2026, 3, 2), 13), (date(2026, 3, 9), 12)),
    ("America/New_York", "FREQ=WEEKLY;BYDAY=MO", date(2026, 1, 5), utc(2026, 10, 1),
     (date(2026, 10, 26), 12), (date(2026, 11, 2), 13)),
])
def test_weekly_meeting_keeps_its_local_time_across_dst(
    app, zone_name, rule, first, now, before, after
) -> None:
    board = make_board(rrule=rule, timezone=zone_name, first_date=first, start_time=time(8, 0))
    assert materialise_meetings(board, now=now) > 0
    zone = ZoneInfo(zone_name)
    meetings = by_local_date(board, zone)
    for day, utc_hour in (before, after):
        meeting = meetings[day]
        assert meeting.start_at.astimezone(zone).time() == time(8, 0)  # same wall-clock time
        assert meeting.start_at.hour == utc_hour  # different UTC hour
        assert meeting.end_at - meeting.start_at == timedelta(minutes=board.duration_minutes)
        assert meeting.recurrence_id == meeting.start_at
    assert all(m.start_at.astimezone(zone).time() == time(8, 0) for m in meetings.values())


def test_materialising_covers_the_horizon_and_twice_creates_nothing(app) -> None:
    app.config["MEETING_HORIZON_WEEKS"] = 4
    try:
        board = make_board(capacity_minutes=45, location="Room 2", video_url="https://video.example.org/x")
        assert materialise_meetings(board, now=utc(2026, 3, 1)) == 4  # Tuesdays 3, 10, 17, 24 March
        assert materialise_meetings(board, now=utc(2026, 3, 1)) == 0
        assert materialise_meetings(None, now=utc(2026, 3, 1)) == 0  # all boards: still nothing new
        meetings = meetings_of(board)
        assert len(meetings) == 4
        assert {m.capacity_minutes for m in meetings} == {45} and {m.location for m in meetings} == {"Room 2"}
        assert all(m.ical_uid == f"meeting-{m.id}@tumorboard.test" for m in meetings)
        assert all(m.kind == "regular" and m.status == "scheduled" and m.sequence == 0 for m in meetings)
        # a week later the horizon moved one meeting on
        assert materialise_meetings(None, now=utc(2026, 3, 8)) == 1
    finally:
        app.config["MEETING_HORIZON_WEEKS"] = 12


def test_inactive_boards_get_no_meetings(app) -> None:
    board = make_board(active=False)
    assert materialise_meetings(None, now=utc(2026, 3, 1)) == 0
    assert meetings_of(board) == []


def test_a_cancelled_occurrence_stays_cancelled_and_a_moved_one_keeps_its_time(app) -> None:
    board = make_board()
    now = utc(2026, 3, 1)
    materialise_meetings(board, now=now)
    meetings = by_local_date(board, LONDON)
    cancelled, moved = meetings[date(2026, 3, 10)], meetings[date(2026, 3, 17)]
    cancel_meeting(cancelled, now=now)
    new_start = datetime(2026, 3, 18, 12, 30, tzinfo=LONDON)
    move_meeting(moved, start=new_start, duration_minutes=90, location="Seminar room", now=now)
    count = len(meetings_of(board))

    assert materialise_meetings(board, now=now) == 0
    assert len(meetings_of(board)) == count
    db.session.refresh(cancelled)
    db.session.refresh(moved)
    assert cancelled.status == "cancelled" and cancelled.sequence == 1
    assert moved.start_at == new_start and moved.end_at == new_start + timedelta(minutes=90)
    assert moved.location == "Seminar room" and moved.sequence == 1
    assert moved.recurrence_id == datetime(2026, 3, 17, 8, 0, tzinfo=UTC)  # unchanged


def test_sequence_rises_on_every_move_and_on_cancel(app) -> None:
    board = make_board()
    now = utc(2026, 3, 1)
    materialise_meetings(board, now=now)
    meeting = meetings_of(board)[0]
    move_meeting(meeting, location="Room 9", now=now)
    assert meeting.sequence == 1
    move_meeting(meeting, start=meeting.start_at + timedelta(hours=1), now=now)
    assert meeting.sequence == 2
    move_meeting(meeting, location="Room 9", now=now)  # nothing changed: no new SEQUENCE
    assert meeting.sequence == 2
    cancel_meeting(meeting, now=now)
    assert meeting.sequence == 3 and meeting.status == "cancelled"
    with pytest.raises(DomainError) as refused:
        move_meeting(meeting, location="Room 1", now=now)
    assert refused.value.status == 409
    with pytest.raises(DomainError):
        cancel_meeting(meeting, now=now)
    actions = db.session.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == "meeting", AuditEvent.object_id == str(meeting.id)).order_by(AuditEvent.id))
    assert list(actions) == ["meeting.move", "meeting.move", "meeting.cancel"]


def test_move_refuses_bad_times(app) -> None:
    board = make_board()
    now = utc(2026, 3, 1)
    materialise_meetings(board, now=now)
    meeting = meetings_of(board)[0]
    with pytest.raises(DomainError) as naive:
        move_meeting(meeting, start=datetime(2026, 3, 5, 9, 0), now=now)
    assert "start" in naive.value.fields
    with pytest.raises(DomainError) as backwards:
        move_meeting(meeting, start=utc(2026, 3, 5, 9), end=utc(2026, 3, 5, 8), now=now)
    assert "end" in backwards.value.fields
    with pytest.raises(DomainError) as past:
        move_meeting(meeting, start=utc(2026, 2, 1, 9), now=now)
    assert "start" in past.value.fields
    assert meeting.sequence == 0


def test_cancelling_releases_the_agenda_and_asks_for_scheduling(app) -> None:
    board = make_board()
    now = utc(2026, 3, 1)
    materialise_meetings(board, now=now)
    meeting = meetings_of(board)[0]
    cases = [make_case(status="ready") for _ in range(2)]
    for case in cases:
        assign(case, meeting, source="engine", now=now)
    signalled: list[int] = []

    def receiver(case, **_kw):
        signalled.append(case.id)

    case_needs_scheduling.connect(receiver)
    try:
        cancel_meeting(meeting, now=now)
    finally:
        case_needs_scheduling.disconnect(receiver)
    assert agenda(meeting) == []
    assert all(c.status == "ready" for c in cases)
    assert sorted(signalled) == sorted(c.id for c in cases)
    rows = db.session.scalars(sa.select(Assignment).where(Assignment.meeting_id == meeting.id)).all()
    assert len(rows) == 2 and not any(r.active for r in rows)  # history kept, inactive


def test_urgent_slot(app) -> None:
    board = make_board(capacity_minutes=60, duration_minutes=60, location="Room 1")
    now = utc(2026, 3, 1)
    slot = create_urgent_slot(board, datetime(2026, 3, 4, 17, 0, tzinfo=LONDON), duration_minutes=30,
                              capacity_minutes=20, location="Huddle room", now=now)
    assert slot.kind == "urgent" and slot.recurrence_id is None and slot.status == "scheduled"
    assert slot.start_at == utc(2026, 3, 4, 17) and slot.end_at == utc(2026, 3, 4, 17, 30)
    assert slot.capacity_minutes == 20 and slot.location == "Huddle room"
    assert slot.ical_uid == f"meeting-{slot.id}@tumorboard.test"
    defaults = create_urgent_slot(board, utc(2026, 3, 5, 17), now=now)
    assert (defaults.capacity_minutes, defaults.location) == (60, "Room 1")
    assert defaults.end_at - defaults.start_at == timedelta(minutes=60)
    assert materialise_meetings(board, now=now) > 0  # urgent slots do not disturb the series
    with pytest.raises(DomainError) as past:
        create_urgent_slot(board, utc(2026, 2, 1, 9), now=now)
    assert "start" in past.value.fields


def test_mark_held_keeps_the_agenda_as_history(app) -> None:
    board = make_board()
    materialise_meetings(board, now=utc(2026, 3, 1))
    meeting = meetings_of(board)[0]
    case = make_case(status="ready")
    assign(case, meeting, source="coordinator", now=utc(2026, 3, 1))
    with pytest.raises(DomainError):
        mark_held(meeting, now=utc(2026, 3, 1))  # not started yet
    mark_held(meeting, now=meeting.start_at + timedelta(hours=1))
    assert meeting.status == "held"
    assert [a.case_id for a in agenda(meeting)] == [case.id]


def test_rrule_until_in_utc_and_count_are_honoured(app) -> None:
    board = make_board(rrule="FREQ=WEEKLY;BYDAY=TU;UNTIL=20260317T080000Z", first_date=date(2026, 3, 3))
    assert materialise_meetings(board, now=utc(2026, 3, 1)) == 3
    counted = make_board(rrule="FREQ=DAILY;COUNT=2", first_date=date(2026, 3, 2))
    assert materialise_meetings(counted, now=utc(2026, 3, 1)) == 2


def _values(**kw):
    return {"name": "Skin MDT", "sites": ["skin"], "rrule": "FREQ=WEEKLY;BYDAY=WE",
            "timezone": "Europe/London", "first_date": date(2026, 3, 4), "start_time": time(13, 0),
            "duration_minutes": 60, "capacity_minutes": 60, "default_case_minutes": 10,
            "specialties": ["pathology"], **kw}


def test_create_board_materialises_and_refuses_bad_values(app) -> None:
    specialist = make_user("specialist", specialty="pathology")
    board = create_board(_values(member_ids=[specialist.id]), now=utc(2026, 3, 1))
    assert len(meetings_of(board)) == 12
    assert [m.user_id for m in board.members] == [specialist.id]
    for bad, field in [
        ({"rrule": "every tuesday"}, "rrule"),
        ({"rrule": "FREQ=HOURLY"}, "rrule"),
        ({"rrule": "FREQ=WEEKLY;COUNT=0"}, "rrule"),
        ({"rrule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"}, "rrule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"sites": ["spleen"]}, "sites"),
        ({"specialties": ["astrology"]}, "specialties"),
        ({"member_ids": [make_user("coordinator").id]}, "member_ids"),
    ]:
        with pytest.raises(DomainError) as refused:
            create_board(_values(name=f"Other {field}", **bad), now=utc(2026, 3, 1))
        assert field in refused.value.fields, bad
    with pytest.raises(DomainError) as taken:
        create_board(_values(name="skin mdt"), now=utc(2026, 3, 1))
    assert taken.value.status == 409


def test_changing_the_schedule_cancels_meetings_that_no_longer_fit(app) -> None:
    now = utc(2026, 3, 1)
    board = create_board(_values(), now=now)
    wednesday = meetings_of(board)[0]
    case = make_case(site="skin", status="ready")
    assign(case, wednesday, source="coordinator", now=now)
    update_board(board, {"rrule": "FREQ=WEEKLY;BYDAY=TH", "location": "Room 5"}, now=now)
    db.session.refresh(wednesday)
    assert wednesday.status == "cancelled" and case.status == "ready"
    scheduled = [m for m in meetings_of(board) if m.status == "scheduled"]
    assert scheduled and all(m.start_at.astimezone(LONDON).weekday() == 3 for m in scheduled)
    assert {m.location for m in scheduled} == {"Room 5"}
    update_board(board, {"active": False}, now=now)
    assert all(m.status == "cancelled" for m in meetings_of(board))


def test_coordinator_replaces_a_board_feed_address(app, client) -> None:
    from tests.helpers import login, post_form

    board = make_board()
    old = board.feed_token
    login(client, make_user("coordinator").email)
    page = client.get(f"/boards/{board.id}").get_data(as_text=True)
    assert f"/feeds/boards/{old}.ics" in page
    assert client.get(f"/feeds/boards/{old}.ics").status_code == 200
    response = post_form(client, f"/boards/{board.id}/feed-token", {}, form_url=f"/boards/{board.id}")
    assert response.status_code == 302
    db.session.expire_all()
    assert board.feed_token != old
    assert client.get(f"/feeds/boards/{old}.ics").status_code == 404
    assert client.get(f"/feeds/boards/{board.feed_token}.ics").status_code == 200
