"""Quorum: is every needed specialty covered by someone who accepted? And the alert when not.

A specialty is covered when at least one active invitee of that specialty has ACCEPTED.
A meeting needs the board's core specialties plus those of every case actively on its agenda;
a case needs its own specialties.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from tumorboard.auth.models import User, UserRole
from tumorboard.boards.models import Meeting
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.services import agenda_url, cases_on_agenda, meeting_title, when_text
from tumorboard.cases.models import Case
from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.notifications.services import build_text_message, enqueue
from tumorboard.vocab import label

DEFAULT_ALERT_HOURS = 72


@dataclass(frozen=True)
class Quorum:
    """Specialties needed, covered by an acceptance, and still missing."""

    required: frozenset[str]
    accepted: frozenset[str]
    missing: frozenset[str]
    met: bool

    @property
    def missing_labels(self) -> list[str]:
        return [label(s) for s in sorted(self.missing)]


def accepted_specialties_query(meeting_id: int | sa.ColumnElement[int]) -> sa.Select[tuple[str]]:
    """The specialties (with repeats) of the ACCEPTED active invitees of a meeting: an id, or a
    column to correlate with (the agenda page asks for them in its meeting's query)."""
    return (
        sa.select(User.specialty).join(Invitation, Invitation.user_id == User.id)
        .where(Invitation.meeting_id == meeting_id, Invitation.active.is_(True),
               Invitation.partstat == "ACCEPTED", User.specialty.is_not(None))
    )


def accepted_specialties(meeting: Meeting) -> frozenset[str]:
    """Specialties with at least one ACCEPTED active invitee of `meeting`."""
    return frozenset(db.session.scalars(accepted_specialties_query(meeting.id).distinct()))


def quorum_of(required: Iterable[str], accepted: Iterable[str]) -> Quorum:
    """The quorum when `required` specialties are needed and `accepted` ones have accepted."""
    needed, covered = frozenset(required), frozenset(accepted)
    missing = needed - covered
    return Quorum(required=needed, accepted=covered & needed, missing=missing, met=not missing)


def meeting_quorum(meeting: Meeting, cases: list[Case] | None = None) -> Quorum:
    """Quorum of `meeting`: the board's core specialties plus those of the cases on its agenda
    (`cases`, when the caller has loaded them already)."""
    required = set(meeting.board.specialty_names)
    for case in cases_on_agenda(meeting) if cases is None else cases:
        required.update(case.specialty_names)
    return quorum_of(required, accepted_specialties(meeting))


def case_quorum(case: Case, meeting: Meeting) -> Quorum:
    """Quorum for one case at `meeting`: the case's own required specialties."""
    return quorum_of(case.specialty_names, accepted_specialties(meeting))


def coordinators() -> list[User]:
    """Active users holding the coordinator role."""
    return list(db.session.scalars(
        sa.select(User).join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == "coordinator", User.active.is_(True)).order_by(User.id)
    ))


def send_quorum_alerts(now: datetime | None = None, hours_before: int | None = None) -> int:
    """Alert every coordinator, once per meeting, about scheduled meetings starting within
    QUORUM_ALERT_HOURS (default 72) whose quorum is not met. The number of mails written.

    No PHI: board, time, missing specialties and the agenda link. The caller commits.
    """
    now = now or now_utc()
    hours = hours_before if hours_before is not None else int(
        current_app.config.get("QUORUM_ALERT_HOURS", DEFAULT_ALERT_HOURS))
    meetings = db.session.scalars(
        sa.select(Meeting).where(Meeting.status == "scheduled", Meeting.start_at > now,
                                 Meeting.start_at <= now + timedelta(hours=hours))
        .order_by(Meeting.start_at, Meeting.id)
    ).all()
    recipients = coordinators() if meetings else []
    written = 0
    for meeting in meetings:
        quorum = meeting_quorum(meeting)
        if quorum.met:
            continue
        subject = f"Quorum not met: {meeting_title(meeting)}, {when_text(meeting)}"
        text = "\n".join([
            subject, "",
            "No one has accepted yet for: " + ", ".join(quorum.missing_labels) + ".",
            f"Agenda (sign-in required): {agenda_url(meeting)}", "",
        ])
        for user in recipients:
            message = build_text_message(to=user.email, subject=subject, text=text)
            if enqueue(kind="alert", to=user.email, message=message,
                       dedupe_key=f"quorum-alert:{meeting.id}:{user.email}") is not None:
                written += 1
    return written
