"""The outbox: every email is written here in the transaction that caused it."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from tumorboard.db import UTCDateTime, check_in, now_utc
from tumorboard.extensions import db
from tumorboard.vocab import OUTBOX_STATUSES


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        check_in("status", OUTBOX_STATUSES, "status"),
        sa.Index("ix_outbox_messages_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: invite, cancel, declinecounter, alert, notice …
    kind: Mapped[str] = mapped_column(sa.String(30))
    to_addr: Mapped[str] = mapped_column(sa.String(254))
    #: stable Message-ID: a re-delivery after a crash carries the same one, so clients merge it
    message_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    #: makes "send once" messages idempotent (e.g. "quorum-alert:meeting:12")
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)
    subject: Mapped[str] = mapped_column(sa.String(300))
    #: the whole RFC 5322 message as built when the change happened
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    status: Mapped[str] = mapped_column(sa.String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
