"""Boards (recurring MDT series) and their meetings."""

from __future__ import annotations

from datetime import date, datetime, time

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tumorboard.auth.models import new_token
from tumorboard.db import UTCDateTime, check_in, now_utc
from tumorboard.extensions import db
from tumorboard.vocab import MEETING_KINDS, MEETING_STATUSES, SITES, SPECIALTIES


class Board(db.Model):
    __tablename__ = "boards"
    __table_args__ = (
        sa.CheckConstraint("duration_minutes > 0", name="duration_positive"),
        sa.CheckConstraint("capacity_minutes >= 0", name="capacity_nonnegative"),
        sa.CheckConstraint("default_case_minutes > 0", name="case_minutes_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    #: RFC 5545 RRULE (without the "RRULE:" prefix), expanded in `timezone`
    rrule: Mapped[str] = mapped_column(sa.String(500))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    #: first occurrence, local wall-clock date and time in `timezone`
    first_date: Mapped[date] = mapped_column(sa.Date)
    start_time: Mapped[time] = mapped_column(sa.Time)
    duration_minutes: Mapped[int] = mapped_column(default=60)
    location: Mapped[str] = mapped_column(sa.String(300), default="")
    video_url: Mapped[str] = mapped_column(sa.String(500), default="")
    capacity_minutes: Mapped[int] = mapped_column(default=60)
    default_case_minutes: Mapped[int] = mapped_column(default=10)
    active: Mapped[bool] = mapped_column(default=True)
    #: secret part of the board's calendar feed URL; rotate to revoke
    feed_token: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_token)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    sites: Mapped[list[BoardSite]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    specialties: Mapped[list[BoardSpecialty]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    #: loaded when asked for (lists: boards_query): an agenda or a feed does not need them
    members: Mapped[list[BoardMember]] = relationship(cascade="all, delete-orphan")

    @property
    def site_names(self) -> list[str]:
        return sorted(s.site for s in self.sites)

    @property
    def specialty_names(self) -> list[str]:
        return sorted(s.specialty for s in self.specialties)


class BoardSite(db.Model):
    __tablename__ = "board_sites"
    __table_args__ = (check_in("site", SITES, "site"),)

    board_id: Mapped[int] = mapped_column(
        sa.ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(sa.String(40), primary_key=True, index=True)


class BoardSpecialty(db.Model):
    """A core specialty the board needs for quorum."""

    __tablename__ = "board_specialties"
    __table_args__ = (check_in("specialty", SPECIALTIES, "specialty"),)

    board_id: Mapped[int] = mapped_column(
        sa.ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True
    )
    specialty: Mapped[str] = mapped_column(sa.String(40), primary_key=True)


class BoardMember(db.Model):
    __tablename__ = "board_members"

    board_id: Mapped[int] = mapped_column(
        sa.ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )

    user = relationship("User", lazy="joined")


class Meeting(db.Model):
    """One occurrence of a board, materialised from its RRULE, or an ad-hoc urgent slot."""

    __tablename__ = "meetings"
    __table_args__ = (
        sa.UniqueConstraint("board_id", "recurrence_id"),
        sa.CheckConstraint("end_at > start_at", name="ends_after_start"),
        sa.CheckConstraint("capacity_minutes >= 0", name="capacity_nonnegative"),
        sa.CheckConstraint("sequence >= 0", name="sequence_nonnegative"),
        check_in("status", MEETING_STATUSES, "status"),
        check_in("kind", MEETING_KINDS, "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(sa.ForeignKey("boards.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(sa.String(10), default="regular")
    #: the RRULE occurrence this meeting materialises (stays put when the meeting is moved);
    #: NULL for an ad-hoc urgent slot
    recurrence_id: Mapped[datetime | None] = mapped_column(UTCDateTime)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(10), default="scheduled")
    location: Mapped[str] = mapped_column(sa.String(300), default="")
    capacity_minutes: Mapped[int] = mapped_column(default=60)
    #: iCalendar UID and SEQUENCE; SEQUENCE rises on every change of time or place
    ical_uid: Mapped[str] = mapped_column(sa.String(200), unique=True)
    sequence: Mapped[int] = mapped_column(default=0)
    #: once set, the agenda is published: the engine adds nothing and moves nothing away
    agenda_frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    board: Mapped[Board] = relationship(lazy="joined")
