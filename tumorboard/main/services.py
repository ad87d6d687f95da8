"""The home page's sections, one per role; each section is one query (two for the queue: its rows
and its count, from the cases feature)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import contains_eager, joinedload, lazyload, selectinload

from tumorboard.auth.models import User
from tumorboard.boards.models import Meeting
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.quorum import Quorum
from tumorboard.cases.models import Assignment, Case, RecordItem
from tumorboard.cases.services import QueueFilters, QueuePage, queue_page
from tumorboard.consensus.models import Consensus, ConsensusFollowup
from tumorboard.consensus.services import followups_query
from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.metrics.services import quorum_by_meeting
from tumorboard.planning.services import urgent_requests

#: rows per section (each section links to its full page)
LIMIT = 15
#: the page shows a meeting's board name only: skip the board's eager collections (members,
#: sites, specialties) and a case's specialties, which the models load by default
BOARD_ONLY = (joinedload(Meeting.board).lazyload("*"),)
NO_CASE_SPECIALTIES = lazyload(Case.specialties)


@dataclass(frozen=True)
class MissingRecord:
    case_id: int
    mrn: str
    display_name: str
    deadline: date
    label: str
    kind: str
    #: when it was asked for (else when the case was registered)
    since: datetime


@dataclass(frozen=True)
class UpcomingMeeting:
    meeting: Meeting
    used_minutes: int
    cases: int
    quorum: Quorum


@dataclass(frozen=True)
class WaitingCase:
    case: Case
    meeting: Meeting
    consensus_id: int | None


@dataclass
class Home:
    """What the home page shows; a section is None when the user's roles do not include it."""

    queue: QueuePage | None = None
    missing_records: list[MissingRecord] | None = None
    meetings: list[UpcomingMeeting] | None = None
    urgent: list[Case] | None = None
    unassigned: list[Case] | None = None
    overdue_followups: list[ConsensusFollowup] | None = None
    invitations: list[Invitation] | None = None
    feed_url: str | None = None
    awaiting_consensus: list[WaitingCase] | None = None
    drafts: list[Consensus] | None = None
    my_followups: list[ConsensusFollowup] | None = None
    case_ids: set[int] = field(default_factory=set)


# --------------------------------------------------------------------------- coordinator


def missing_records(limit: int = LIMIT) -> list[MissingRecord]:
    """Required records not yet received of cases in intake, earliest deadline first."""
    rows = db.session.execute(
        sa.select(Case.id, Case.mrn, Case.display_name, Case.deadline, RecordItem.label, RecordItem.kind,
                  sa.func.coalesce(RecordItem.requested_at, Case.created_at))
        .join(RecordItem, RecordItem.case_id == Case.id)
        .where(Case.status == "intake", RecordItem.required.is_(True), RecordItem.received_at.is_(None))
        .order_by(Case.deadline, Case.id, RecordItem.id).limit(limit)
    ).all()
    return [MissingRecord(r[0], r[1], r[2], r[3], r[4], r[5], _aware(r[6])) for r in rows]


def _aware(value: Any) -> datetime:
    if isinstance(value, str):  # coalesce() loses the column type on SQLite
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def upcoming_meetings(now: datetime | None = None, limit: int = LIMIT) -> list[UpcomingMeeting]:
    """Scheduled meetings not yet started, soonest first, with minutes used, cases and quorum."""
    now = now or now_utc()
    used = (sa.select(Assignment.meeting_id, sa.func.sum(Assignment.minutes).label("used"),
                      sa.func.count().label("cases"))
            .where(Assignment.active.is_(True)).group_by(Assignment.meeting_id).subquery())
    rows = db.session.execute(
        sa.select(Meeting, sa.func.coalesce(used.c.used, 0), sa.func.coalesce(used.c.cases, 0))
        .outerjoin(used, used.c.meeting_id == Meeting.id)
        .where(Meeting.status == "scheduled", Meeting.start_at > now)
        .options(*BOARD_ONLY)
        .order_by(Meeting.start_at, Meeting.id).limit(limit)
    ).all()
    quorums = quorum_by_meeting([m.id for m, _, _ in rows])
    return [UpcomingMeeting(m, int(u), int(c), quorums[m.id]) for m, u, c in rows]


def unassigned_cases(limit: int = LIMIT) -> list[Case]:
    """Ready cases the engine could not place, with its reason ("Not placed: …")."""
    return list(db.session.scalars(
        sa.select(Case).where(Case.status == "ready", Case.schedule_note.startswith("Not placed:"))
        .options(NO_CASE_SPECIALTIES).order_by(Case.deadline, Case.id).limit(limit)
    ))


# --------------------------------------------------------------------------- specialist


def my_invitations(user: User, now: datetime | None = None, limit: int = LIMIT) -> list[Invitation]:
    """The user's active invitations to meetings not yet ended (not cancelled), soonest first."""
    return list(db.session.scalars(
        sa.select(Invitation).join(Meeting, Invitation.meeting_id == Meeting.id)
        .where(Invitation.user_id == user.id, Invitation.active.is_(True),
               Meeting.status == "scheduled", Meeting.end_at > (now or now_utc()))
        .options(contains_eager(Invitation.meeting).joinedload(Meeting.board).lazyload("*"),
                 lazyload(Invitation.user))
        .order_by(Meeting.start_at, Meeting.id).limit(limit)
    ))


# --------------------------------------------------------------------------- oncologist


def awaiting_consensus(now: datetime | None = None, limit: int = LIMIT) -> list[WaitingCase]:
    """Scheduled cases whose meeting has started (or was held) with no signed consensus there."""
    now = now or now_utc()
    signed = sa.select(Consensus.id).where(Consensus.case_id == Case.id, Consensus.meeting_id == Meeting.id,
                                           Consensus.status == "signed")
    draft = (sa.select(Consensus.id).where(Consensus.case_id == Case.id, Consensus.meeting_id == Meeting.id)
             .correlate(Case, Meeting).scalar_subquery())
    rows = db.session.execute(
        sa.select(Case, Meeting, draft)
        .join(Assignment, sa.and_(Assignment.case_id == Case.id, Assignment.active.is_(True)))
        .join(Meeting, Meeting.id == Assignment.meeting_id)
        .where(Case.status == "scheduled", Meeting.status != "cancelled", Meeting.start_at <= now,
               ~signed.exists())
        .options(NO_CASE_SPECIALTIES, *BOARD_ONLY)
        .order_by(Meeting.start_at, Assignment.position, Case.id).limit(limit)
    ).all()
    return [WaitingCase(c, m, d) for c, m, d in rows]


def drafts_to_sign(now: datetime | None = None, limit: int = LIMIT) -> list[Consensus]:
    """Draft consensus records of meetings that have started (ready to be signed)."""
    return list(db.session.scalars(
        sa.select(Consensus).join(Meeting, Meeting.id == Consensus.meeting_id)
        .where(Consensus.status == "draft", Meeting.start_at <= (now or now_utc()),
               Meeting.status != "cancelled")
        .options(contains_eager(Consensus.meeting).joinedload(Meeting.board).lazyload("*"),
                 joinedload(Consensus.case).lazyload("*"))
        .order_by(Meeting.start_at, Consensus.id).limit(limit)
    ))


# --------------------------------------------------------------------------- the page

#: what a follow-up row shows: its case, owner and the consensus' meeting (no query per row)
FOLLOWUP_LOADS = (
    joinedload(ConsensusFollowup.case).lazyload("*"), joinedload(ConsensusFollowup.owner).lazyload("*"),
    selectinload(ConsensusFollowup.consensus).lazyload("*"),
)


def home_for(user: User, *, today: date | None = None, now: datetime | None = None) -> Home:
    """Every section the user's roles call for (a user with several roles sees each)."""
    from tumorboard.calendar.services import user_feed_url
    from tumorboard.consensus.services import today_in

    now = now or now_utc()
    home = Home()
    if user.has_role("coordinator"):
        home.queue = queue_page(QueueFilters(), per_page=LIMIT, today=today)
        home.missing_records = missing_records()
        home.meetings = upcoming_meetings(now)
        home.urgent = list(db.session.scalars(urgent_requests().options(NO_CASE_SPECIALTIES).limit(LIMIT)))
        home.unassigned = unassigned_cases()
        overdue_on = today or today_in(user.timezone)
        home.overdue_followups = list(db.session.scalars(
            followups_query(overdue_on=overdue_on).options(*FOLLOWUP_LOADS).limit(LIMIT)))
        home.case_ids |= {r.case.id for r in home.queue.rows} | {r.case_id for r in home.missing_records}
        home.case_ids |= {c.id for c in home.urgent + home.unassigned}
        home.case_ids |= {f.case_id for f in home.overdue_followups}
    if user.has_role("specialist"):
        home.invitations = my_invitations(user, now)
        home.feed_url = user_feed_url(user)
    if user.has_role("oncologist"):
        home.awaiting_consensus = awaiting_consensus(now)
        home.drafts = drafts_to_sign(now)
        home.my_followups = list(db.session.scalars(
            followups_query(owner_id=user.id, pending_only=True).options(*FOLLOWUP_LOADS).limit(LIMIT)))
        home.case_ids |= {w.case.id for w in home.awaiting_consensus} | {d.case_id for d in home.drafts}
        home.case_ids |= {f.case_id for f in home.my_followups}
    return home
