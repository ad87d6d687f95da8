"""The append-only, hash-chained audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from tumorboard.db import UTCDateTime, now_utc
from tumorboard.extensions import db


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        #: an object's events, and of a kind: a case's status history does not visit its reads
        #: (every page view of a case adds one: thousands over its life)
        sa.Index("ix_audit_events_object_action", "object_type", "object_id", "action"),
        #: the sealer's work list: small (seconds of events), whatever the size of the trail
        sa.Index("ix_audit_events_pending", "id", postgresql_where=sa.text("seq IS NULL"),
                 sqlite_where=sa.text("seq IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)
    #: no foreign key: the trail outlives and never changes with the user rows
    actor_id: Mapped[int | None] = mapped_column(index=True)
    actor_email: Mapped[str | None] = mapped_column(sa.String(254))
    #: e.g. login, login_failed, case.read, case.create, case.update
    action: Mapped[str] = mapped_column(sa.String(60), index=True)
    object_type: Mapped[str | None] = mapped_column(sa.String(40))
    object_id: Mapped[str | None] = mapped_column(sa.String(40))
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    #: position in the chain, the hash of the row before it and this row's own hash (sha256 hex
    #: of its canonical JSON); all three are set by the sealer soon after the row commits
    seq: Mapped[int | None] = mapped_column(unique=True)
    prev_hash: Mapped[str | None] = mapped_column(sa.String(64))
    hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)


#: ANALYZE samples 300 rows per unit of a column's statistics target (30,000 at the default):
#: 180 ms of CPU at full priority for a long trail, after every large pass. Queried only by index
#: lookups, the trail is described as well by 3,000 (27 ms). Migration 0004 sets the same.
STATISTICS_TARGET = 10
_SMALL_SAMPLE = ", ".join(f"ALTER COLUMN {column.name} SET STATISTICS {STATISTICS_TARGET}"
                          for column in AuditEvent.__table__.columns)
sa.event.listen(AuditEvent.__table__, "after_create",
                sa.DDL(f"ALTER TABLE audit_events {_SMALL_SAMPLE}").execute_if(dialect="postgresql"))
