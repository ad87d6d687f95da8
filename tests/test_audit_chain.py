"""The hash chain: `flask tumorboard audit verify`, tampering (edit, delete, insert), canonical
JSON and time across PostgreSQL and SQLite, streaming verification."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import sqlalchemy as sa
import time_machine
from flask import Flask

from tests.helpers import commit_and_seal, recorded
from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import (
    GENESIS,
    _hash,
    canonical,
    find_tampering,
    iter_rows,
    pending,
    record,
    seal_pending,
    verify_chain,
)
from tumorboard.extensions import db
from tumorboard.jobs.scheduler import INTERVALS
from tumorboard.jobs.tasks import JOBS


def _chain(n: int = 5) -> list[AuditEvent]:
    events = [recorded(f"test.step{i}", "case", i, details={"i": i}) for i in range(n)]
    commit_and_seal()
    db.session.expire_all()
    return events


def _verify(app: Flask):
    return app.test_cli_runner().invoke(args=["tumorboard", "audit", "verify", "--batch", "2"])


def test_verify_passes_on_an_intact_chain(app: Flask) -> None:
    events = _chain()
    result = _verify(app)
    assert result.exit_code == 0, result.output
    assert "intact: 5 rows" in result.output and events[-1].hash in result.output


def test_verify_passes_on_an_empty_trail(app: Flask) -> None:
    result = _verify(app)
    assert result.exit_code == 0 and "intact: 0 rows" in result.output


def test_edited_row_is_named(app: Flask) -> None:
    events = _chain()
    target = events[2]
    db.session.execute(sa.update(AuditEvent).where(AuditEvent.id == target.id)
                       .values(details={"i": 99}))
    result = _verify(app)
    assert result.exit_code == 1
    assert f"id={target.id} action=test.step2 problem=edited" in result.output
    assert "was edited" in result.output


def test_edited_and_rehashed_row_breaks_the_next_link(app: Flask) -> None:
    events = _chain()
    row = db.session.get(AuditEvent, events[1].id)
    row.actor_email = "someone.else@example.org"
    row.hash = _hash(row)
    db.session.flush()
    problem = find_tampering(batch=2)
    assert problem is not None and problem.id == events[2].id and problem.kind == "link_broken"
    assert f"row {events[1].id} was edited and re-hashed" in problem.message


def test_deleted_row_is_found_at_the_next_row(app: Flask) -> None:
    events = _chain()
    db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id == events[3].id))
    result = _verify(app)
    assert result.exit_code == 1
    assert f"id={events[4].id} action=test.step4 problem=link_broken" in result.output
    assert "deleted or inserted before it" in result.output


def test_deleted_first_row_is_found(app: Flask) -> None:
    events = _chain()
    db.session.execute(sa.delete(AuditEvent).where(AuditEvent.id == events[0].id))
    problem = find_tampering()
    assert problem is not None and problem.id == events[1].id and problem.kind == "link_broken"
    assert "at the start of the trail" in problem.message


def _forge(seq: int, prev_hash: str) -> AuditEvent:
    forged = AuditEvent(at=datetime.now(UTC), actor_id=None, actor_email="intruder@example.org",
                        action="case.read", object_type="case", object_id="7", ip="203.0.113.9",
                        details={}, seq=seq, prev_hash=prev_hash)
    forged.hash = _hash(forged)  # a self-consistent row: only the chain can give it away
    db.session.add(forged)
    db.session.flush()
    return forged


def _chain_with_a_gap() -> list[AuditEvent]:
    """Three sealed rows with a gap in `seq` after the first (room for a forger)."""
    events = _chain(3)
    for event in reversed(events[1:]):
        db.session.execute(sa.update(AuditEvent).where(AuditEvent.id == event.id)
                           .values(seq=AuditEvent.seq + 100))
    db.session.expire_all()
    return events


def test_inserted_row_is_found_at_the_next_row(app: Flask) -> None:
    events = _chain_with_a_gap()
    _forge(events[0].seq + 1, prev_hash=events[0].hash)  # slipped in, linked to its predecessor
    result = _verify(app)
    assert result.exit_code == 1
    assert f"id={events[1].id} action=test.step1 problem=" in result.output
    assert ("deleted or inserted before it" in result.output) or ("was edited" in result.output)


def test_inserted_row_with_a_made_up_link_is_named_itself(app: Flask) -> None:
    events = _chain_with_a_gap()
    forged = _forge(events[0].seq + 1, prev_hash="f" * 64)
    problem = find_tampering()
    assert problem is not None and problem.id == forged.id and problem.kind == "link_broken"


def test_events_wait_for_the_sealer_then_join_the_chain_in_id_order(app: Flask) -> None:
    event = recorded("test.pending")
    db.session.commit()
    assert event.seq is None and event.hash is None  # committed; no chain lock on the way
    assert pending().count == 1 and find_tampering() is None
    later = recorded("test.later")
    db.session.commit()
    assert seal_pending() == 2 and seal_pending() == 0  # a second run finds nothing left
    db.session.commit()
    assert (event.seq, later.seq) == (1, 2) and event.prev_hash == GENESIS
    assert event.hash == _hash(event) and later.prev_hash == event.hash
    assert pending().count == 0 and find_tampering() is None


def test_a_rolled_back_event_never_reaches_the_chain(app: Flask) -> None:
    with db.session.begin_nested() as savepoint:
        record("test.gone")
        savepoint.rollback()
    kept = recorded("test.kept")
    commit_and_seal()
    assert [row.action for row in iter_rows()] == ["test.kept"] and kept.seq == 1


def test_verify_reports_waiting_events_and_fails_when_the_sealer_is_not_running(app: Flask) -> None:
    _chain(2)
    with time_machine.travel(datetime(2026, 5, 1, 9, 0, tzinfo=UTC), tick=False):
        record("test.waiting")
        db.session.commit()
    with time_machine.travel(datetime(2026, 5, 1, 9, 4, tzinfo=UTC), tick=False):
        result = _verify(app)
        assert result.exit_code == 0
        assert "1 newer events wait for the sealer, the oldest for 240 s" in result.output
    with time_machine.travel(datetime(2026, 5, 1, 9, 6, tzinfo=UTC), tick=False):
        result = _verify(app)
        assert result.exit_code == 1 and "NOT SEALED" in result.output and "seal-audit" in result.output
        sealed = app.test_cli_runner().invoke(args=["tumorboard", "audit", "seal"])
        assert sealed.exit_code == 0 and "sealed 1 events" in sealed.output
        result = _verify(app)
        assert result.exit_code == 0 and "intact: 3 rows" in result.output and "wait" not in result.output


def test_the_scheduler_seals_every_second(app: Flask) -> None:
    assert INTERVALS["seal-audit"] == 1
    record("test.job")
    db.session.commit()
    assert JOBS["seal-audit"]() == 1 and pending().count == 0


def test_verify_chain_keeps_returning_the_first_bad_event(app: Flask) -> None:
    events = _chain(3)
    assert verify_chain() is None
    db.session.execute(sa.update(AuditEvent).where(AuditEvent.id == events[1].id).values(ip="10.0.0.1"))
    db.session.expire_all()
    assert verify_chain().id == events[1].id


def test_hash_is_stable_after_a_round_trip(app: Flask, dialect: str) -> None:
    written = []
    for moment in (datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC),  # microseconds, DST night
                   datetime(2026, 7, 1, 12, 0, 0, 0, tzinfo=UTC),  # no microseconds at all
                   datetime(2026, 10, 25, 1, 30, 0, 1, tzinfo=UTC)):
        with time_machine.travel(moment, tick=False):
            written.append(recorded("test.time", "case", "42", details={
                "tuple": (1, 2), "when": date(2026, 1, 2), "nested": {"b": 1, "a": [True, None, 1.5]},
                "unicode": "Zoë – naïve", 7: "int key"}))
    commit_and_seal()
    expected = [(e.id, e.at, e.hash, canonical(e)) for e in written]
    db.session.expire_all()
    for (event_id, at, stored_hash, payload), row in zip(expected, iter_rows(batch=2), strict=True):
        assert row.id == event_id
        assert row.at == at and row.at.microsecond == at.microsecond  # exact, microseconds kept
        assert canonical(row) == payload, dialect
        assert hashlib.sha256(canonical(row)).hexdigest() == stored_hash
    orm = db.session.get(AuditEvent, expected[0][0])
    assert _hash(orm) == orm.hash
    assert orm.details["tuple"] == [1, 2] and orm.details["when"] == "2026-01-02" and orm.details["7"]
    assert find_tampering() is None


def test_verification_streams_in_batches(app: Flask) -> None:
    _chain(7)
    statements: list[str] = []
    connection = db.session.connection()

    def _capture(_conn, _cursor, statement, *_args) -> None:
        if "audit_events" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(connection, "before_cursor_execute", _capture)
    try:
        assert find_tampering(batch=3) is None
    finally:
        sa.event.remove(connection, "before_cursor_execute", _capture)
    assert len(statements) == 4  # 3 + 3 + 1 rows and an empty page
    assert all("LIMIT" in s.upper() for s in statements)
    assert not db.session.identity_map  # plain rows: nothing piles up in the session
