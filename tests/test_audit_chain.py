"""The hash chain: `flask tumorboard audit verify`, tampering (edit, delete, insert), canonical
JSON and time across PostgreSQL and SQLite, streaming verification."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import sqlalchemy as sa
import time_machine
from flask import Flask

from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import (
    GENESIS,
    _hash,
    canonical,
    find_tampering,
    iter_rows,
    record,
    verify_chain,
)
from tumorboard.extensions import db


def _chain(n: int = 5) -> list[AuditEvent]:
    events = [record(f"test.step{i}", "case", i, details={"i": i}) for i in range(n)]
    db.session.commit()  # seals them (the test's outer transaction still rolls back)
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


def test_a_row_inserted_behind_the_services_back_is_not_in_the_chain(app: Flask) -> None:
    _chain(2)
    db.session.execute(sa.insert(AuditEvent).values(at=datetime.now(UTC), action="case.read",
                                                    object_type="case", object_id="9", details={}))
    problem = find_tampering()
    assert problem is not None and problem.kind == "unsealed" and "not in the chain" in problem.message


def test_events_are_sealed_when_their_transaction_commits(app: Flask) -> None:
    event = record("test.pending")
    assert event.seq is None and event.hash is None  # no chain lock held while the request works
    db.session.commit()
    assert event.seq == 1 and event.prev_hash == GENESIS and event.hash == _hash(event)


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
            written.append(record("test.time", "case", "42", details={
                "tuple": (1, 2), "when": date(2026, 1, 2), "nested": {"b": 1, "a": [True, None, 1.5]},
                "unicode": "Zoë – naïve", 7: "int key"}))
    db.session.commit()  # seal
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


def test_first_row_links_to_genesis(app: Flask) -> None:
    event = record("test.first")
    db.session.commit()
    assert event.prev_hash == GENESIS


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
    assert len(statements) == 5  # unsealed rows?, then 3 + 3 + 1 rows and an empty page
    assert all("LIMIT" in s.upper() for s in statements)
    assert not db.session.identity_map  # plain rows: nothing piles up in the session
