"""The board's consensus recommendation per case and meeting, and its amendments."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tumorboard.db import UTCDateTime, check_in, now_utc
from tumorboard.extensions import db
from tumorboard.vocab import CONCORDANCE, CONSENSUS_STATUSES


class Consensus(db.Model):
    """Draft until an oncologist signs it; signed rows are immutable (amend instead)."""

    __tablename__ = "consensus"
    __table_args__ = (
        sa.UniqueConstraint("case_id", "meeting_id"),
        check_in("status", CONSENSUS_STATUSES, "status"),
        check_in("concordance", CONCORDANCE, "concordance"),
        sa.CheckConstraint(
            "(status = 'signed') = (signed_at IS NOT NULL AND signed_by_id IS NOT NULL)",
            name="signed_fields",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="RESTRICT"))
    meeting_id: Mapped[int] = mapped_column(
        sa.ForeignKey("meetings.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(sa.String(10), default="draft")
    specialties_present: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    board_diagnosis: Mapped[str] = mapped_column(sa.Text, default="")
    concordance: Mapped[str | None] = mapped_column(sa.String(20))
    management_changed: Mapped[bool | None] = mapped_column()
    management_change: Mapped[str] = mapped_column(sa.Text, default="")
    #: structured kinds (surgery, systemic_therapy, …) plus free text
    recommendation_kinds: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    recommendation: Mapped[str] = mapped_column(sa.Text, default="")
    rationale: Mapped[str] = mapped_column(sa.Text, default="")
    trial_eligible: Mapped[bool | None] = mapped_column()
    trial_notes: Mapped[str] = mapped_column(sa.Text, default="")
    dissent: Mapped[str] = mapped_column(sa.Text, default="")
    followup_owner_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    followup_due: Mapped[date | None] = mapped_column(sa.Date)
    followup_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    signed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    case = relationship("Case")
    meeting = relationship("Meeting")
    amendments: Mapped[list[ConsensusAmendment]] = relationship(
        back_populates="consensus", order_by="ConsensusAmendment.id"
    )

    def fields(self) -> dict[str, Any]:
        return {c.key: getattr(self, c.key) for c in self.__table__.columns}


class ConsensusAmendment(db.Model):
    """Append-only: a change to a signed consensus, with author, time and reason."""

    __tablename__ = "consensus_amendments"

    id: Mapped[int] = mapped_column(primary_key=True)
    consensus_id: Mapped[int] = mapped_column(
        sa.ForeignKey("consensus.id", ondelete="RESTRICT"), index=True
    )
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    reason: Mapped[str] = mapped_column(sa.Text)
    #: what changed, as field → new value
    changes: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)

    consensus: Mapped[Consensus] = relationship(back_populates="amendments")
    author = relationship("User")
