"""The board's consensus recommendation per case and meeting, its amendments and its follow-up.

Immutability: a signed `Consensus` row never changes again, and `ConsensusAmendment` rows are never
changed or deleted. The follow-up work item (owner, due date, confirmation) lives in its own table,
`ConsensusFollowup`, so confirming it does not touch the signed record. Two guards enforce this:

* on every database, a `before_flush` listener refuses to flush a signed consensus that is dirty
  or deleted, and any amendment that is dirty or deleted (`ImmutableRecordError`, a 409);
* on PostgreSQL, triggers refuse the same at the database (`POSTGRESQL_DDL`, installed after
  `create_all`; the lead copies the constants into the Alembic migration, `POSTGRESQL_DROP_DDL`
  for the downgrade).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import DDL, event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from tumorboard.db import UTCDateTime, check_in, now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.vocab import CONCORDANCE, CONSENSUS_STATUSES

#: the content of a consensus: what the board decided (editable in a draft, amendable once signed)
CONTENT_FIELDS = (
    "specialties_present",
    "board_diagnosis",
    "concordance",
    "management_changed",
    "management_change",
    "recommendation_kinds",
    "recommendation",
    "rationale",
    "trial_eligible",
    "trial_notes",
    "dissent",
    "followup_owner_id",
    "followup_due",
)


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
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
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
    #: the board deferred the case (e.g. records missing): it goes back to ready for another meeting
    deferred: Mapped[bool] = mapped_column(default=False)
    followup_owner_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    followup_due: Mapped[date | None] = mapped_column(sa.Date)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    signed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    case = relationship("Case")
    meeting = relationship("Meeting")
    followup_owner = relationship("User", foreign_keys=[followup_owner_id])
    signed_by = relationship("User", foreign_keys=[signed_by_id])
    amendments: Mapped[list[ConsensusAmendment]] = relationship(
        back_populates="consensus", order_by="ConsensusAmendment.id"
    )
    followup: Mapped[ConsensusFollowup | None] = relationship(back_populates="consensus")

    @property
    def signed(self) -> bool:
        return self.status == "signed"

    def fields(self) -> dict[str, Any]:
        return {c.key: getattr(self, c.key) for c in self.__table__.columns}

    def content(self) -> dict[str, Any]:
        """The content as recorded (as signed, for a signed record)."""
        return {name: getattr(self, name) for name in CONTENT_FIELDS}

    def current(self) -> dict[str, Any]:
        """The content in force: the record with its amendments applied in order."""
        values = self.content()
        for amendment in self.amendments:
            values.update(amendment.typed_changes())
        return values


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
    #: what changed, as field → new value (JSON: dates as ISO strings)
    changes: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)

    consensus: Mapped[Consensus] = relationship(back_populates="amendments")
    author = relationship("User")

    def typed_changes(self) -> dict[str, Any]:
        """`changes` with dates back as `date` objects."""
        values = dict(self.changes or {})
        if isinstance(values.get("followup_due"), str):
            values["followup_due"] = date.fromisoformat(values["followup_due"])
        return values


class ConsensusFollowup(db.Model):
    """The follow-up a signed (not deferred) consensus hands to an oncologist; confirmed once done."""

    __tablename__ = "consensus_followups"

    id: Mapped[int] = mapped_column(primary_key=True)
    consensus_id: Mapped[int] = mapped_column(
        sa.ForeignKey("consensus.id", ondelete="RESTRICT"), unique=True
    )
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="RESTRICT"), index=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    due: Mapped[date] = mapped_column(sa.Date, index=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    consensus: Mapped[Consensus] = relationship(back_populates="followup")
    case = relationship("Case")
    owner = relationship("User", foreign_keys=[owner_id])


class ImmutableRecordError(DomainError):
    """A write to a signed consensus or to an amendment reached the session."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, code="immutable")


# --- database guard (PostgreSQL): constants for the Alembic migration too
CONSENSUS_IMMUTABLE_FUNCTION = """
CREATE OR REPLACE FUNCTION consensus_signed_immutable() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'signed' THEN
        RAISE EXCEPTION USING
            MESSAGE = 'consensus ' || OLD.id || ' is signed and cannot be changed: append an amendment',
            ERRCODE = 'restrict_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""
CONSENSUS_IMMUTABLE_TRIGGER = """
CREATE TRIGGER consensus_signed_immutable BEFORE UPDATE OR DELETE ON consensus
FOR EACH ROW EXECUTE FUNCTION consensus_signed_immutable()
"""
AMENDMENT_APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION consensus_amendments_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'consensus amendment ' || OLD.id || ' is append-only and cannot be changed',
        ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql
"""
AMENDMENT_APPEND_ONLY_TRIGGER = """
CREATE TRIGGER consensus_amendments_append_only BEFORE UPDATE OR DELETE ON consensus_amendments
FOR EACH ROW EXECUTE FUNCTION consensus_amendments_append_only()
"""
#: run in this order after the two tables exist (upgrade)
POSTGRESQL_DDL = (
    CONSENSUS_IMMUTABLE_FUNCTION,
    CONSENSUS_IMMUTABLE_TRIGGER,
    AMENDMENT_APPEND_ONLY_FUNCTION,
    AMENDMENT_APPEND_ONLY_TRIGGER,
)
#: the downgrade (before the tables are dropped)
POSTGRESQL_DROP_DDL = (
    "DROP TRIGGER IF EXISTS consensus_amendments_append_only ON consensus_amendments",
    "DROP FUNCTION IF EXISTS consensus_amendments_append_only()",
    "DROP TRIGGER IF EXISTS consensus_signed_immutable ON consensus",
    "DROP FUNCTION IF EXISTS consensus_signed_immutable()",
)

for _table, _statements in (
    (Consensus.__table__, (CONSENSUS_IMMUTABLE_FUNCTION, CONSENSUS_IMMUTABLE_TRIGGER)),
    (ConsensusAmendment.__table__, (AMENDMENT_APPEND_ONLY_FUNCTION, AMENDMENT_APPEND_ONLY_TRIGGER)),
):
    for _statement in _statements:
        event.listen(_table, "after_create", DDL(_statement).execute_if(dialect="postgresql"))


# --- ORM guard (every database)
def _committed_status(consensus: Consensus) -> str | None:
    history = sa.inspect(consensus).attrs.status.history
    return history.deleted[0] if history.deleted else consensus.status


@event.listens_for(Session, "before_flush")
def _refuse_changes_to_signed_records(session: Session, _context: Any, _instances: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, Consensus) and _committed_status(obj) == "signed":
            raise ImmutableRecordError(f"Consensus {obj.id} is signed and cannot be deleted.")
        if isinstance(obj, ConsensusAmendment):
            raise ImmutableRecordError("An amendment cannot be deleted: amendments are append-only.")
    for obj in session.dirty:
        if isinstance(obj, Consensus) and _committed_status(obj) == "signed" and session.is_modified(
            obj, include_collections=False
        ):
            raise ImmutableRecordError(
                f"Consensus {obj.id} is signed and cannot be changed: append an amendment instead."
            )
        if isinstance(obj, ConsensusAmendment) and session.is_modified(obj, include_collections=False):
            raise ImmutableRecordError("An amendment cannot be changed: amendments are append-only.")
