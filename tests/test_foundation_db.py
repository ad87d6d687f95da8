from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError

from tests.factories import make_board, make_case, make_user
from tumorboard.boards.models import Meeting
from tumorboard.cases.models import Assignment
from tumorboard.extensions import db


def _meeting(board_id: int, start: datetime, **kw: object) -> Meeting:
    m = Meeting(board_id=board_id, start_at=start, end_at=start + timedelta(hours=1),
                ical_uid=kw.pop("ical_uid", f"meeting-{start.timestamp()}@test"), **kw)
    db.session.add(m)
    db.session.flush()
    return m


def test_aware_datetimes_round_trip_as_utc(app) -> None:
    board = make_board()
    new_york = timezone(timedelta(hours=-5))
    start = datetime(2026, 3, 10, 8, 30, 15, 123456, tzinfo=new_york)
    meeting_id = _meeting(board.id, start).id
    db.session.expire_all()
    stored = db.session.get(Meeting, meeting_id).start_at
    assert stored == start
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 3, 10, 13, 30, 15, 123456, tzinfo=UTC)


def test_utc_comparisons_in_sql_use_the_instant(app) -> None:
    board = make_board()
    _meeting(board.id, datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))))  # 07:00 UTC
    found = db.session.scalar(sa.select(sa.func.count()).select_from(Meeting).where(
        Meeting.start_at < datetime(2026, 6, 1, 7, 30, tzinfo=UTC)))
    assert found == 1


def test_naive_datetime_is_refused(app) -> None:
    board = make_board()
    with pytest.raises(StatementError, match="naive datetime"):
        _meeting(board.id, datetime(2026, 3, 10, 8, 30))


def test_email_is_unique_whatever_the_case(app) -> None:
    make_user(email="Dr.Who@Example.org")
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text(
                "INSERT INTO users (email, name, timezone, active, session_token, feed_token, created_at) "
                "VALUES ('dr.who@example.org', 'x', 'UTC', true, 'a', 'b', CURRENT_TIMESTAMP)"))


def test_email_stored_in_capitals_is_refused_by_the_database(app) -> None:
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text(
                "INSERT INTO users (email, name, timezone, active, session_token, feed_token, created_at) "
                "VALUES ('Upper@Example.org', 'x', 'UTC', true, 'c', 'd', CURRENT_TIMESTAMP)"))


def test_one_assignment_per_case_and_meeting_and_one_active_per_case(app) -> None:
    board = make_board()
    case = make_case()
    m1 = _meeting(board.id, datetime(2026, 12, 1, 8, tzinfo=UTC), ical_uid="m1@test")
    m2 = _meeting(board.id, datetime(2026, 12, 8, 8, tzinfo=UTC), ical_uid="m2@test")
    db.session.add(Assignment(case_id=case.id, meeting_id=m1.id))
    db.session.flush()
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.add(Assignment(case_id=case.id, meeting_id=m2.id))  # a second active one
    with db.session.begin_nested():
        db.session.add(Assignment(case_id=case.id, meeting_id=m2.id, active=False))


def test_status_values_are_checked_by_the_database(app) -> None:
    case = make_case()
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text("UPDATE cases SET status = 'lost' WHERE id = :id"), {"id": case.id})


def test_a_board_with_meetings_cannot_be_deleted_but_a_case_takes_its_records_along(app) -> None:
    board = make_board()
    _meeting(board.id, datetime(2026, 12, 1, 8, tzinfo=UTC))
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text("DELETE FROM boards WHERE id = :id"), {"id": board.id})
    case = make_case()
    db.session.execute(sa.text("INSERT INTO record_items (case_id, kind, label, required) "
                               "VALUES (:c, 'labs', 'Blood panel', true)"), {"c": case.id})
    db.session.execute(sa.text("DELETE FROM cases WHERE id = :id"), {"id": case.id})
    left = db.session.scalar(sa.text("SELECT count(*) FROM record_items WHERE case_id = :c"), {"c": case.id})
    assert left == 0
