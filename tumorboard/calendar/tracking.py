"""Invitations follow the meetings: a commit that changed a meeting's time, place or status, or
an agenda, syncs that meeting's invitations (REQUEST / CANCEL to the outbox) in the same
transaction, all touched meetings in one set-based sync. One mechanism for every path:
coordinator pages, the API, the engine, the CLI.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy.session import Session
from sqlalchemy import event
from sqlalchemy.orm import attributes

from tumorboard.boards.models import Meeting
from tumorboard.cases.models import Assignment
from tumorboard.db import now_utc
from tumorboard.rows import id_in

TRACKED_FIELDS = ("start_at", "end_at", "location", "status", "sequence")
_KEY = "tumorboard.meetings_to_sync"
_BUSY = "tumorboard.syncing_invitations"
_SAVED = "tumorboard.meetings_to_sync_before_savepoints"


def _collect(session: Any, _context: Any, _instances: Any) -> None:
    pending: set[int] = session.info.setdefault(_KEY, set())
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Assignment) and obj.meeting_id is not None:
            pending.add(obj.meeting_id)
        elif isinstance(obj, Meeting) and obj.id is not None and any(
            attributes.get_history(obj, name).has_changes() for name in TRACKED_FIELDS
        ):
            pending.add(obj.id)


def mark_meetings_touched(session: Any, meeting_ids: Iterable[int]) -> None:
    """Have these meetings' invitations synced at commit: for agenda changes written with Core
    statements, which the flush-time collection of changed Assignment objects does not see."""
    session.info.setdefault(_KEY, set()).update(meeting_ids)


def _sync_at_commit(session: Any) -> None:
    # before_commit also fires when a savepoint is released: act on the real commit only
    if not session.in_nested_transaction():
        sync_touched(session)


def sync_touched(session: Any) -> None:
    """Sync now the invitations of the meetings touched so far, as the commit would (a large
    pass does it after each batch of its plan, so that its commit does not carry all of it)."""
    if session.info.get(_BUSY):
        return
    from tumorboard.calendar import services  # looked up at call time (benches time it)

    session.info[_BUSY] = True
    try:
        session.flush()  # collect what the last changes touched
        pending: set[int] = session.info.pop(_KEY, set())
        if pending:
            upcoming = session.scalars(  # past meetings are history
                sa.select(Meeting.id).where(id_in(Meeting.id, pending), Meeting.end_at > now_utc())
                .order_by(Meeting.id)).all()
            services.sync_meetings_invitations(upcoming)
        session.info.pop(_KEY, None)  # the sync's own flushes touch no meeting we still owe
    finally:
        session.info.pop(_BUSY, None)


def _remember(session: Any, transaction: Any) -> None:
    if transaction.nested:  # a savepoint: what is owed before it, should it roll back
        saved = session.info.setdefault(_SAVED, weakref.WeakKeyDictionary())  # gone with it
        saved[transaction] = set(session.info.get(_KEY, ()))


def _forget(session: Any, previous_transaction: Any) -> None:
    """A rollback: of the whole transaction, nothing is owed any more; of a savepoint, what
    was owed before it (the changes before it stand)."""
    saved = session.info.get(_SAVED, {}).pop(previous_transaction, None)
    if previous_transaction.parent is None:
        session.info.pop(_KEY, None)
        session.info.pop(_SAVED, None)
    elif saved is not None:
        session.info[_KEY] = saved


def install() -> None:
    """Listen on every Flask-SQLAlchemy session (idempotent)."""
    for name, listener in (("before_flush", _collect), ("before_commit", _sync_at_commit),
                           ("after_transaction_create", _remember), ("after_soft_rollback", _forget)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
