"""Write and verify the hash-chained audit trail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from flask import has_request_context, request
from flask_login import current_user

from tumorboard.audit.models import AuditEvent
from tumorboard.db import now_utc
from tumorboard.extensions import db

GENESIS = "0" * 64


def canonical(event: AuditEvent) -> bytes:
    """The bytes a row's hash covers: every field but the hash, as sorted compact JSON."""
    payload = {
        "at": event.at.isoformat(),
        "actor_id": event.actor_id,
        "actor_email": event.actor_email,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "ip": event.ip,
        "details": event.details or {},
        "prev_hash": event.prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def _hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def _lock_chain() -> None:
    # Writers append one at a time; SQLite has a single writer already.
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('audit_chain'))"))


def record(
    action: str,
    object_type: str | None = None,
    object_id: int | str | None = None,
    *,
    details: dict[str, Any] | None = None,
    actor: Any = None,
) -> AuditEvent:
    """Append an audit event in the current transaction (the caller commits with its change)."""
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    _lock_chain()
    prev = db.session.scalar(sa.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    event = AuditEvent(
        at=now_utc(),
        actor_id=getattr(actor, "id", None),
        actor_email=getattr(actor, "email", None),
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        ip=request.remote_addr if has_request_context() else None,
        details=details or {},
        prev_hash=prev or GENESIS,
    )
    event.hash = _hash(event)
    db.session.add(event)
    db.session.flush()
    return event


def verify_chain(batch: int = 1000) -> AuditEvent | None:
    """The first row whose hash or link is wrong (edited, deleted or inserted), else None."""
    prev = GENESIS
    for event in _iter_events(batch):
        if event.prev_hash != prev or event.hash != _hash(event):
            return event
        prev = event.hash
    return None


def _iter_events(batch: int) -> Iterator[AuditEvent]:
    last_id = 0
    while True:
        rows = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id
