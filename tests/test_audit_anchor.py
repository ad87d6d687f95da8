"""Anchoring the audit chain's head: `verify` prints it as N:HASH and, given an earlier one with
`--anchor`, also fails when rows were deleted from the end or the tail was rewritten and re-chained
(which the links alone cannot show)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.helpers import commit_and_seal, recorded
from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import GENESIS, _hash, chain_head, check_anchor, find_tampering
from tumorboard.extensions import db


def _chain(n: int, start: int = 0) -> list[AuditEvent]:
    events = [recorded(f"test.step{i}", "case", i, details={"i": i}) for i in range(start, start + n)]
    commit_and_seal()
    db.session.expire_all()
    return events


def _verify(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["tumorboard", "audit", "verify", "--batch", "2", *args])


def _head() -> str:
    count, head = chain_head()
    return f"{count}:{head}"


def _cut_tail(k: int) -> None:
    last = db.session.scalar(sa.select(sa.func.max(AuditEvent.seq)))
    db.session.execute(sa.delete(AuditEvent).where(AuditEvent.seq > last - k))
    db.session.expire_all()


def test_verify_prints_the_head_and_accepts_it_as_anchor(app: Flask) -> None:
    events = _chain(5)
    result = _verify(app)
    assert result.exit_code == 0, result.output
    assert f"head 5:{events[-1].hash}" in result.output
    anchored = _verify(app, "--anchor", f"5:{events[-1].hash}")
    assert anchored.exit_code == 0, anchored.output
    assert "anchor 5 holds" in anchored.output


def test_an_earlier_anchor_holds_as_the_trail_grows(app: Flask) -> None:
    _chain(3)
    earlier = _head()
    _chain(4, start=3)
    result = _verify(app, "--anchor", earlier)
    assert result.exit_code == 0, result.output
    assert "intact: 7 rows" in result.output


def test_rows_deleted_from_the_end_fail_only_against_an_anchor(app: Flask) -> None:
    _chain(5)
    anchor = _head()
    _cut_tail(2)
    assert find_tampering() is None  # the links alone cannot tell
    assert _verify(app).exit_code == 0
    result = _verify(app, "--anchor", anchor)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [f"audit trail TAMPERED: anchor {anchor} does not hold: the trail has 3 rows but the "
                     "anchor names row 5: rows were deleted from its end"]


def test_a_rewritten_tail_fails_against_an_anchor(app: Flask) -> None:
    events = _chain(5)
    anchor, (before_last, last) = _head(), (events[3].hash, events[4].hash)
    _cut_tail(1)
    forged = AuditEvent(at=datetime.now(UTC), actor_id=None, actor_email="intruder@example.org",
                        action="test.step4", object_type="case", object_id="4", ip=None,
                        details={"i": 4}, seq=5, prev_hash=before_last)
    forged.hash = _hash(forged)  # correctly chained: only the anchor can give it away
    db.session.add(forged)
    db.session.flush()
    assert find_tampering() is None
    result = _verify(app, "--anchor", anchor)
    assert result.exit_code == 1
    assert f"row 5 has hash {forged.hash}, the anchor says {last}" in result.output
    assert "rewritten at or before row 5" in result.output


def test_chain_tampering_is_still_reported_first(app: Flask) -> None:
    events = _chain(3)
    anchor = _head()
    db.session.execute(sa.update(AuditEvent).where(AuditEvent.id == events[0].id).values(details={"i": 9}))
    result = _verify(app, "--anchor", anchor)
    assert result.exit_code == 1 and "problem=edited" in result.output


@pytest.mark.parametrize("anchor", ["5", "x:" + "a" * 64, "5:abc", "5:" + "g" * 64, "-1:" + "a" * 64])
def test_a_malformed_anchor_is_a_usage_error(app: Flask, anchor: str) -> None:
    result = _verify(app, "--anchor", anchor)
    assert result.exit_code == 2 and "N:HASH" in result.output


def test_the_empty_trail_head_anchors_too(app: Flask) -> None:
    result = _verify(app)
    assert result.exit_code == 0 and f"head 0:{GENESIS}" in result.output
    assert _verify(app, "--anchor", f"0:{GENESIS}").exit_code == 0
    _chain(2)
    assert _verify(app, "--anchor", f"0:{GENESIS}").exit_code == 0


def test_check_anchor(app: Flask) -> None:
    events = _chain(3)
    assert check_anchor(3, events[2].hash) is None
    assert check_anchor(2, events[1].hash) is None
    assert "anchor says" in check_anchor(2, events[2].hash)
    assert "rows were deleted from its end" in check_anchor(4, events[2].hash)
    assert "not the head of an empty trail" in check_anchor(0, events[0].hash)
