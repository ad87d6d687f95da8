"""Cases awaiting a second opinion, their records checklist and meeting assignments."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tumorboard.db import UTCDateTime, check_in, now_utc, sql_in
from tumorboard.extensions import db
from tumorboard.vocab import (
    ASSIGNMENT_SOURCES,
    CASE_STATUSES,
    OPEN_CASE_STATUSES,
    RECORD_KINDS,
    SITES,
    SPECIALTIES,
    URGENCIES,
)

#: the index's rows: the cases not yet discussed (`inline_in` in the queries that use it)
_OPEN = sql_in("status", OPEN_CASE_STATUSES)


class Case(db.Model):
    __tablename__ = "cases"
    __table_args__ = (
        check_in("status", CASE_STATUSES, "status"),
        check_in("urgency", URGENCIES, "urgency"),
        check_in("site", SITES, "site"),
        sa.CheckConstraint("minutes > 0", name="minutes_positive"),
        sa.Index("ix_cases_status_deadline", "status", "deadline"),
        # the queue and an agenda's candidates read the open cases by deadline, never the closed
        # ones (a year's worth, and more every week)
        sa.Index("ix_cases_open_deadline", "deadline", postgresql_where=_OPEN, sqlite_where=_OPEN),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: opaque patient reference from the hospital's records (PHI)
    mrn: Mapped[str] = mapped_column(sa.String(64), index=True)
    display_name: Mapped[str] = mapped_column(sa.String(200))
    site: Mapped[str] = mapped_column(sa.String(40), index=True)
    diagnosis_date: Mapped[date] = mapped_column(sa.Date)
    question: Mapped[str] = mapped_column(sa.Text)
    referring_oncologist_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    urgency: Mapped[str] = mapped_column(sa.String(10), default="routine")
    planned_treatment_start: Mapped[date | None] = mapped_column(sa.Date)
    #: planned treatment start if given, else diagnosis date + the site's pre-treatment window
    deadline: Mapped[date] = mapped_column(sa.Date, index=True)
    minutes: Mapped[int] = mapped_column(default=10)
    status: Mapped[str] = mapped_column(sa.String(10), default="intake")
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: written reason when a coordinator marked the case ready with records missing
    readiness_override: Mapped[str | None] = mapped_column(sa.Text)
    #: the scheduling engine's last word on this case (where it went and why, or why not)
    schedule_note: Mapped[str | None] = mapped_column(sa.Text)
    #: set while the engine asks for an urgent slot: the latest start that still helps
    urgent_slot_latest_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    referring_oncologist = relationship("User", foreign_keys=[referring_oncologist_id])
    specialties: Mapped[list[CaseSpecialty]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    records: Mapped[list[RecordItem]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="RecordItem.id"
    )

    @property
    def specialty_names(self) -> list[str]:
        return sorted(s.specialty for s in self.specialties)


class CaseSpecialty(db.Model):
    """A specialty that must be present when the case is discussed."""

    __tablename__ = "case_specialties"
    __table_args__ = (check_in("specialty", SPECIALTIES, "specialty"),)

    case_id: Mapped[int] = mapped_column(
        sa.ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    specialty: Mapped[str] = mapped_column(sa.String(40), primary_key=True)


class RecordItem(db.Model):
    """One line of a case's records checklist (imaging, slides, labs, notes…)."""

    __tablename__ = "record_items"
    __table_args__ = (
        sa.UniqueConstraint("case_id", "label"),
        check_in("kind", RECORD_KINDS, "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    label: Mapped[str] = mapped_column(sa.String(200))
    required: Mapped[bool] = mapped_column(default=True)
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship(back_populates="records")


class Assignment(db.Model):
    """A case on a meeting's agenda. At most one active assignment per case."""

    __tablename__ = "assignments"
    __table_args__ = (
        sa.UniqueConstraint("case_id", "meeting_id"),
        sa.Index(
            "uq_assignments_case_active",
            "case_id",
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        ),
        check_in("source", ASSIGNMENT_SOURCES, "source"),
        sa.CheckConstraint("minutes > 0", name="minutes_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(sa.ForeignKey("cases.id", ondelete="CASCADE"))
    meeting_id: Mapped[int] = mapped_column(
        sa.ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    minutes: Mapped[int] = mapped_column(default=10)
    position: Mapped[int] = mapped_column(default=0)
    source: Mapped[str] = mapped_column(sa.String(12), default="engine")
    #: a coordinator's decision: the engine never moves a pinned case
    pinned: Mapped[bool] = mapped_column(default=False)
    #: false once the case left this meeting; on a held meeting it stays (history) until the case
    #: is put on another meeting (e.g. deferred for missing records)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    case: Mapped[Case] = relationship()
    meeting = relationship("Meeting")
