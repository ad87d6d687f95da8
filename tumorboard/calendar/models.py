"""Invitations of specialists to meetings (the iTIP attendee state)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tumorboard.db import UTCDateTime, check_in, now_utc
from tumorboard.extensions import db
from tumorboard.vocab import ATTENDEE_ROLES, PARTSTATS


class Invitation(db.Model):
    __tablename__ = "invitations"
    __table_args__ = (
        sa.UniqueConstraint("meeting_id", "user_id"),
        check_in("partstat", PARTSTATS, "partstat"),
        check_in("role", ATTENDEE_ROLES, "role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(sa.ForeignKey("meetings.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(sa.String(20), default="REQ-PARTICIPANT")
    partstat: Mapped[str] = mapped_column(sa.String(12), default="NEEDS-ACTION")
    #: false when the person is no longer needed (they were sent a CANCEL)
    active: Mapped[bool] = mapped_column(default=True)
    #: SEQUENCE of the last REQUEST/CANCEL written to the outbox for this attendee
    last_sequence_sent: Mapped[int | None] = mapped_column()
    #: DTSTAMP of the reply that set `partstat`; older replies are ignored
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delegated_to: Mapped[str | None] = mapped_column(sa.String(254))
    comment: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    meeting = relationship("Meeting")
    user = relationship("User", lazy="joined")
