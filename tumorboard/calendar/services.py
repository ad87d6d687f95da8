"""Invitations (iMIP through the outbox), incoming iTIP replies, RSVP answers and feeds.

Privacy rule: everything built here leaves the hospital, so it carries only the board name, time,
place, the number of cases and links behind sign-in (agenda) or behind a signed token (RSVP) —
never a case's name, MRN, diagnosis or question.

Who is invited (`expected_attendees`):
* board members whose specialty is a required (core) specialty of the board — REQ-PARTICIPANT;
* board members whose specialty a case actively on the agenda requires — REQ-PARTICIPANT;
* the referring oncologist of each case on the agenda — OPT-PARTICIPANT (welcome to present the
  case, not needed for the meeting to go ahead), unless already required above.
They count towards quorum like anyone else when they accept.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from email.utils import formataddr
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import attributes, joinedload, lazyload, make_transient_to_detached

from tumorboard.audit.services import record, record_many
from tumorboard.auth.models import User, new_token
from tumorboard.boards.models import Board, BoardMember, Meeting
from tumorboard.calendar.ical import (
    Attendee,
    ItipError,
    ItipMessage,
    MeetingEvent,
    build_cancel,
    build_declinecounter,
    build_feed,
    build_request,
    parse_itip,
)
from tumorboard.calendar.imip import header_text, imip_bytes
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.tokens import make_rsvp_token
from tumorboard.cases.models import Assignment, Case, CaseSpecialty
from tumorboard.db import now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.notifications.services import Draft, enqueue_many, new_message_id, sender_address
from tumorboard.rows import id_in, update_rows
from tumorboard.vocab import PARTSTATS

ORGANIZER_NAME = "tumorboard"
#: feeds show meetings that ended up to this many days ago, and everything ahead
FEED_PAST_DAYS = 60
#: methods only an organizer sends: we are the organizer, so they are refused
ORGANIZER_METHODS = frozenset({"REQUEST", "CANCEL", "ADD", "PUBLISH", "DECLINECOUNTER"})
ANSWERS = ("ACCEPTED", "TENTATIVE", "DECLINED")


# --------------------------------------------------------------------------- links and text


def base_url() -> str:
    return str(current_app.config["SERVER_NAME_FOR_LINKS"]).rstrip("/")


def agenda_url(meeting: Meeting) -> str:
    """The meeting's agenda page (behind sign-in)."""
    return _agenda_url(meeting.id)


def _agenda_url(meeting_id: int) -> str:
    return f"{base_url()}/meetings/{meeting_id}"


def rsvp_url(invitation: Invitation) -> str:
    """The public, signed answer page of one invitation."""
    return f"{base_url()}/rsvp/{make_rsvp_token(invitation.id)}"


def user_feed_url(user: User) -> str:
    return f"{base_url()}/feeds/{user.feed_token}.ics"


def board_feed_url(board: Board) -> str:
    return f"{base_url()}/feeds/boards/{board.feed_token}.ics"


def when_text(meeting: Meeting) -> str:
    """'Tue 7 Jul 2026, 08:00–09:00 (Europe/London)' in the board's zone."""
    zone = ZoneInfo(meeting.board.timezone)
    start, end = meeting.start_at.astimezone(zone), meeting.end_at.astimezone(zone)
    return f"{start:%a} {start.day} {start:%b %Y, %H:%M}–{end:%H:%M} ({meeting.board.timezone})"


def meeting_title(meeting: Meeting) -> str:
    """The PHI-free SUMMARY: the board name (and the kind of slot)."""
    return _title(meeting.board.name, meeting.kind)


def _title(board_name: str, kind: str) -> str:
    return f"{board_name} (urgent slot)" if kind == "urgent" else board_name


def meeting_location(meeting: Meeting) -> str:
    return _place(meeting.location, meeting.board.location)


def _place(location: str | None, board_location: str | None) -> str:
    return location or board_location or ""


def case_count(meeting: Meeting) -> int:
    """Number of cases actively on the meeting's agenda."""
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(Assignment)
        .where(Assignment.meeting_id == meeting.id, Assignment.active.is_(True))
    ) or 0


def _description(meeting: Meeting, count: int, rsvp: str | None) -> str:
    cases = "1 case" if count == 1 else f"{count} cases"
    parts = [f"{cases} on the agenda.", f"Agenda (sign-in required): {agenda_url(meeting)}"]
    if meeting.board.video_url:
        parts.append(f"Video: {meeting.board.video_url}")
    if rsvp:
        parts.append(f"Answer: {rsvp}")
    return "\n".join(parts)


# --------------------------------------------------------------------------- who is invited


def cases_on_agenda(meeting: Meeting) -> list[Case]:
    """Cases with an active assignment to `meeting`, in agenda order."""
    return list(db.session.scalars(
        sa.select(Case).join(Assignment, Assignment.case_id == Case.id)
        .where(Assignment.meeting_id == meeting.id, Assignment.active.is_(True))
        .order_by(Assignment.position, Assignment.id)
    ))


@dataclass
class _Agenda:
    """What the invitations of one meeting depend on in its agenda (active assignments)."""

    count: int = 0
    #: specialties the cases on it require
    specialties: set[str] = field(default_factory=set)
    #: their referring oncologists
    referrers: set[int] = field(default_factory=set)


def _agendas(meeting_ids: list[int]) -> dict[int, _Agenda]:
    """meeting id → its _Agenda, for all these meetings at once (two queries)."""
    agendas = {meeting_id: _Agenda() for meeting_id in meeting_ids}
    active = (Assignment.active.is_(True), id_in(Assignment.meeting_id, meeting_ids))
    for meeting_id, referrer in db.session.execute(
        sa.select(Assignment.meeting_id, Case.referring_oncologist_id)
        .join(Case, Case.id == Assignment.case_id).where(*active)
    ):
        agendas[meeting_id].count += 1
        agendas[meeting_id].referrers.add(referrer)
    for meeting_id, specialty in db.session.execute(
        sa.select(Assignment.meeting_id, CaseSpecialty.specialty)
        .join(CaseSpecialty, CaseSpecialty.case_id == Assignment.case_id).where(*active)
    ):
        agendas[meeting_id].specialties.add(specialty)
    return agendas


def _active_users(user_ids: set[int]) -> dict[int, User]:
    """The active users among `user_ids` (one query; none when there are none)."""
    if not user_ids:
        return {}
    return {u.id: u for u in db.session.scalars(
        sa.select(User).where(id_in(User.id, user_ids), User.active.is_(True)).options(lazyload(User.roles)))}


def _expected(meeting: Meeting, agenda: _Agenda, referrers: dict[int, User]) -> dict[int, str]:
    """user id → ROLE of everyone who should be invited to `meeting` (the module docstring's
    rules); `referrers` holds the active referring oncologists of its agenda."""
    board = meeting.board
    needed = set(board.specialty_names) | agenda.specialties
    expected: dict[int, str] = {}
    for member in board.members:
        user = member.user
        if user.active and user.specialty in needed:
            expected[user.id] = "REQ-PARTICIPANT"
    for user_id in sorted(agenda.referrers - set(expected)):
        if user_id in referrers:
            expected[user_id] = "OPT-PARTICIPANT"
    return expected


def expected_attendees(meeting: Meeting) -> dict[int, str]:
    """user id → iCalendar ROLE of everyone who should be invited (see the module docstring)."""
    db.session.flush()
    agenda = _agendas([meeting.id])[meeting.id]
    return _expected(meeting, agenda, _active_users(agenda.referrers))


# --------------------------------------------------------------------------- building messages


@dataclass
class _Meeting:
    """What every message about one meeting shares (computed once per sync)."""

    meeting: Meeting
    invitations: list[Invitation]
    count: int

    @cached_property
    def attendees(self) -> tuple[Attendee, ...]:
        active = sorted((i for i in self.invitations if i.active), key=lambda i: i.user.email)
        return tuple(attendee_of(i) for i in active)


def attendee_of(invitation: Invitation) -> Attendee:
    return Attendee(email=invitation.user.email, name=invitation.user.name, role=invitation.role,
                    partstat=invitation.partstat)


def meeting_event(meeting: Meeting, *, attendees: Sequence[Attendee] = (), description: str = "",
                  dtstamp: datetime | None = None) -> MeetingEvent:
    """The PHI-free MeetingEvent of `meeting` (organizer MAIL_FROM, named "tumorboard")."""
    board = meeting.board
    return _event(meeting.id, meeting.ical_uid, meeting.sequence, meeting.status, meeting.kind,
                  meeting.start_at, meeting.end_at, meeting.location, board.name, board.location,
                  board.timezone, description=description, dtstamp=dtstamp or now_utc(),
                  sender=sender_address(), attendees=attendees)


def _event(meeting_id: int, uid: str, sequence: int, status: str, kind: str, start: datetime,
           end: datetime, location: str | None, board_name: str, board_location: str | None,
           timezone: str, *, description: str, dtstamp: datetime, sender: str,
           attendees: Sequence[Attendee] = ()) -> MeetingEvent:
    """`meeting_event` from the meeting's values (the feeds have them as plain rows)."""
    return MeetingEvent(
        uid=uid, sequence=sequence, start=start, end=end, tzid=timezone,
        summary=_title(board_name, kind), location=_place(location, board_location),
        description=description, url=_agenda_url(meeting_id), organizer_email=sender,
        organizer_name=ORGANIZER_NAME, attendees=tuple(attendees), dtstamp=dtstamp,
        status="CANCELLED" if status == "cancelled" else "CONFIRMED",
    )


_SUBJECTS = {
    "invite": "Invitation",
    "update": "Updated",
    "cancel": "Cancelled",
    "uninvite": "No longer needed",
    "declinecounter": "New time not possible",
}


def _itip_draft(ctx: _Meeting, invitation: Invitation, kind: str, dedupe_key: str | None = None,
                dtstamp: datetime | None = None) -> Draft:
    """One iMIP message about ctx.meeting to one attendee, ready for the outbox."""
    meeting = ctx.meeting
    me = attendee_of(invitation)
    rsvp = rsvp_url(invitation) if kind in {"invite", "update"} else None
    event = meeting_event(meeting, attendees=ctx.attendees,
                          description=_description(meeting, ctx.count, rsvp), dtstamp=dtstamp)
    if kind in {"invite", "update"}:
        method, ics = "REQUEST", build_request(event)
    elif kind == "declinecounter":
        method, ics = "DECLINECOUNTER", build_declinecounter(event, me)
    else:  # cancel (whole meeting) or uninvite (this attendee only): CANCEL to this attendee
        method, ics = "CANCEL", build_cancel(event, [me])
    subject = f"{_SUBJECTS[kind]}: {meeting_title(meeting)}, {when_text(meeting)}"
    lines = [subject, "", f"Where: {meeting_location(meeting) or 'see the agenda'}",
             event.description]
    if kind == "uninvite":
        lines.append("You are no longer needed at this meeting: it has been removed from your calendar.")
    if kind == "declinecounter":
        lines.append("The meeting stays at the time above.")
    message_id = new_message_id()
    body = imip_bytes(
        ics=ics, method=method, subject=subject, text="\n".join(lines) + "\n",
        sender=formataddr((ORGANIZER_NAME, sender_address())), to=me.email, message_id=message_id,
    )
    return Draft(kind=kind, to=me.email, message_id=message_id, subject=header_text("Subject", subject),
                 body=body, dedupe_key=dedupe_key)


def _enqueue_itip(ctx: _Meeting, invitation: Invitation, kind: str,
                  dedupe_key: str | None = None) -> bool:
    """Write one iMIP message about ctx.meeting to one attendee; True when written."""
    return enqueue_many([_itip_draft(ctx, invitation, kind, dedupe_key)])[0]


def _reset_answer(invitation: Invitation) -> None:
    # RFC 5546 practice: a changed time or place needs a fresh answer.
    invitation.partstat = "NEEDS-ACTION"
    invitation.replied_at = None
    invitation.delegated_to = None
    invitation.comment = None


# --------------------------------------------------------------------------- sync


@dataclass
class SyncResult:
    """Emails of the attendees each kind of message was written to."""

    meeting_id: int
    invited: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.invited) + len(self.updated) + len(self.removed) + len(self.cancelled)


@dataclass(frozen=True)
class _Send:
    """A message the sync owes one attendee."""

    invitation: Invitation
    kind: str
    dedupe_key: str | None = None


def _invitations(meeting: Meeting) -> dict[int, Invitation]:
    return {i.user_id: i for i in db.session.scalars(
        sa.select(Invitation).where(Invitation.meeting_id == meeting.id)
    )}


def _invitations_of(meeting_ids: list[int]) -> dict[int, dict[int, Invitation]]:
    """meeting id → user id → invitation, for all these meetings at once."""
    found: dict[int, dict[int, Invitation]] = {meeting_id: {} for meeting_id in meeting_ids}
    for inv in db.session.scalars(
        sa.select(Invitation).where(id_in(Invitation.meeting_id, meeting_ids)).order_by(Invitation.id)
        .options(joinedload(Invitation.user).lazyload(User.roles))
    ):
        found[inv.meeting_id][inv.user_id] = inv
    return found


def _meetings(meeting_ids: list[int]) -> list[Meeting]:
    """These meetings in the given order, with their boards and the boards' members."""
    loaded = {m.id: m for m in db.session.scalars(
        sa.select(Meeting).where(id_in(Meeting.id, meeting_ids))
        .options(joinedload(Meeting.board).selectinload(Board.members).joinedload(BoardMember.user)
                 .lazyload(User.roles)))}
    return [loaded[meeting_id] for meeting_id in meeting_ids if meeting_id in loaded]


def sync_meetings_invitations(meeting_ids: Iterable[int]) -> dict[int, SyncResult]:
    """Bring the invitations of these meetings in line with who is needed; idempotent. A
    handful of statements whatever the number of meetings; meeting id → SyncResult, in the
    order given (ids of no meeting are left out).

    New attendee → Invitation + REQUEST; no longer needed → inactive + CANCEL to them only;
    meeting.sequence above what an attendee last got → update REQUEST (answer reset to
    NEEDS-ACTION); meeting cancelled → CANCEL to every active attendee, once. Every REQUEST lists
    all active attendees with their PARTSTAT. Messages go to the outbox; the caller commits.
    """
    db.session.flush()  # the session's own changes first: the queries below read the rows
    meetings = _meetings(list(dict.fromkeys(meeting_ids)))
    ids = [m.id for m in meetings]
    invitations, agendas = _invitations_of(ids), _agendas(ids)
    referrers = _active_users(set().union(*(a.referrers for a in agendas.values())))
    sends: dict[int, list[_Send]] = {}
    for meeting in meetings:
        if meeting.status == "cancelled":
            sends[meeting.id] = _cancel_all(meeting, invitations[meeting.id])
        elif meeting.status == "scheduled":
            expected = _expected(meeting, agendas[meeting.id], referrers)
            sends[meeting.id] = _follow(meeting, invitations[meeting.id], expected, referrers)
    _write_invitations(inv for invs in invitations.values() for inv in invs.values())
    drafts: list[tuple[int, _Send, Draft]] = []
    dtstamp = now_utc()
    for meeting in meetings:
        if sends.get(meeting.id):
            ctx = _Meeting(meeting, list(invitations[meeting.id].values()), agendas[meeting.id].count)
            drafts.extend((meeting.id, send, _itip_draft(ctx, send.invitation, send.kind, send.dedupe_key,
                                                          dtstamp=dtstamp))
                          for send in sends[meeting.id])
    written = enqueue_many([draft for _, _, draft in drafts])
    results = {m.id: SyncResult(meeting_id=m.id) for m in meetings}
    for (meeting_id, send, _), ok in zip(drafts, written, strict=True):
        if ok:
            getattr(results[meeting_id], _RESULT_LIST[send.kind]).append(send.invitation.user.email)
    record_many(("invitation.sync", "meeting", r.meeting_id,
                 {k: v for k, v in asdict(r).items() if k != "meeting_id" and v})
                for r in results.values() if r.sent)
    return results


#: the SyncResult list each kind of message goes to
_RESULT_LIST = {"invite": "invited", "update": "updated", "uninvite": "removed", "cancel": "cancelled"}


def _cancel_all(meeting: Meeting, invitations: dict[int, Invitation]) -> list[_Send]:
    """A cancelled meeting: CANCEL to every active attendee that got something, once per SEQUENCE."""
    sends = []
    for inv in invitations.values():
        if inv.active and inv.last_sequence_sent is not None:
            key = f"itip-cancel:{meeting.id}:{inv.user_id}:{meeting.sequence}"
            sends.append(_Send(inv, "cancel", key))
            inv.last_sequence_sent = max(inv.last_sequence_sent, meeting.sequence)
    return sends


def _follow(meeting: Meeting, invitations: dict[int, Invitation], expected: dict[int, str],
            referrers: dict[int, User]) -> list[_Send]:
    """A scheduled meeting: invitations follow `expected` (new ones added to `invitations`, not
    yet to the session); the messages owed, invites and updates first, then removals."""
    users = {**referrers, **{member.user_id: member.user for member in meeting.board.members}}
    to_request: list[_Send] = []
    removed: list[_Send] = []
    for user_id, role in expected.items():
        inv = invitations.get(user_id)
        if inv is None:
            inv = Invitation(meeting_id=meeting.id, user_id=user_id, user=users[user_id], role=role,
                             partstat="NEEDS-ACTION", active=True, replied_at=None, delegated_to=None,
                             comment=None)  # inserted by _write_invitations
            invitations[user_id] = inv
            to_request.append(_Send(inv, "invite"))
            continue
        inv.role = role
        if not inv.active:
            inv.active = True
            _reset_answer(inv)
            to_request.append(_Send(inv, "invite"))
        elif inv.last_sequence_sent is None:
            to_request.append(_Send(inv, "invite"))
        elif inv.last_sequence_sent < meeting.sequence:
            _reset_answer(inv)
            to_request.append(_Send(inv, "update"))
    for inv in invitations.values():
        if inv.active and inv.user_id not in expected:
            inv.active = False
            if inv.last_sequence_sent is not None:
                removed.append(_Send(inv, "uninvite"))
    sends = to_request + removed
    for send in sends:  # messages without a dedupe key are always written
        send.invitation.last_sequence_sent = meeting.sequence
    return sends


#: the invitation columns a sync writes
_SYNCED_COLUMNS = ("role", "partstat", "active", "last_sequence_sent", "replied_at", "delegated_to",
                   "comment")


def _write_invitations(invitations: Iterable[Invitation]) -> None:
    """Write what the sync did to these invitations with two statements whatever their number
    (a flush makes one UPDATE per run of rows changing the same columns, and one INSERT per row
    on SQLite): one executemany UPDATE of the changed ones, one INSERT … RETURNING of the new
    ones (transient until then), which then join the session as loaded."""
    changed, new = [], []
    for inv in invitations:
        if inv.id is None:
            new.append(inv)
        elif any(attributes.get_history(inv, name).has_changes() for name in _SYNCED_COLUMNS):
            changed.append(inv)
    table = Invitation.__table__
    with db.session.no_autoflush:
        update_rows(Invitation, [{"id": inv.id, **{name: getattr(inv, name) for name in _SYNCED_COLUMNS}}
                                 for inv in changed])  # as written: no longer dirty
        if new:
            now = now_utc()
            rows = [{"meeting_id": inv.meeting_id, "user_id": inv.user_id, "created_at": now,
                     **{name: getattr(inv, name) for name in _SYNCED_COLUMNS}} for inv in new]
            ids = {(meeting_id, user_id): row_id for row_id, meeting_id, user_id in db.session.execute(
                sa.insert(table).returning(table.c.id, table.c.meeting_id, table.c.user_id), rows)}
            for inv in new:
                inv.id, inv.created_at = ids[inv.meeting_id, inv.user_id], now
                make_transient_to_detached(inv)
                db.session.add(inv)


def sync_meeting_invitations(meeting: Meeting) -> SyncResult:
    """`sync_meetings_invitations` for one meeting."""
    db.session.flush()  # a new meeting gets its id
    return sync_meetings_invitations([meeting.id])[meeting.id]


def sync_upcoming_invitations(now: datetime | None = None) -> int:
    """Sync every scheduled or cancelled meeting that has not ended; the number of messages written."""
    now = now or now_utc()
    ids = db.session.scalars(
        sa.select(Meeting.id)
        .where(Meeting.status.in_(("scheduled", "cancelled")), Meeting.end_at > now)
        .order_by(Meeting.start_at, Meeting.id)
    ).all()
    return sum(result.sent for result in sync_meetings_invitations(ids).values())


# --------------------------------------------------------------------------- incoming iTIP


@dataclass
class IngestResult:
    """What an incoming iTIP message did (attendee emails)."""

    method: str
    uid: str
    meeting_id: int
    updated: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    #: attendees answered through the outbox (DECLINECOUNTER, REQUEST on REFRESH)
    answered: list[str] = field(default_factory=list)
    #: attendee lines that are not our invitees (e.g. the delegate of a DELEGATED reply)
    ignored: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _parse(data: bytes | str) -> ItipMessage:
    try:
        return parse_itip(data)
    except ItipError as exc:
        raise DomainError(f"Not a usable iTIP message: {exc}", fields={"body": [str(exc)]},
                          code="itip_invalid") from exc


def ingest_itip(data: bytes | str) -> IngestResult:
    """Apply an incoming iTIP message (raw .ics or raw MIME email); the caller commits.

    REPLY updates the matching invitation (attendee matched by email, case-insensitive) unless
    it is stale: older DTSTAMP than the stored answer, or a SEQUENCE below the one last sent.
    COUNTER is audited and answered with DECLINECOUNTER; REFRESH re-sends the current REQUEST.
    Unknown UID or attendee, an organizer's method, a bad PARTSTAT or malformed data raise
    DomainError(422) before anything changes.
    """
    msg = _parse(data)
    if msg.method in ORGANIZER_METHODS:
        raise DomainError(
            f"A {msg.method} is an organizer's message, and tumorboard organizes its own meetings: "
            "only REPLY, COUNTER and REFRESH are accepted.",
            fields={"method": [f"{msg.method} not accepted"]}, code="itip_unsupported_method",
        )
    if msg.method not in {"REPLY", "COUNTER", "REFRESH"}:
        raise DomainError(f"The iTIP method {msg.method} is not supported: only REPLY, COUNTER "
                          "and REFRESH are accepted.", fields={"method": [f"{msg.method} not supported"]},
                          code="itip_unsupported_method")
    meeting = db.session.scalar(sa.select(Meeting).where(Meeting.ical_uid == msg.uid))
    if meeting is None:
        raise DomainError(f"No meeting of ours has the UID {msg.uid!r}.", fields={"uid": ["unknown UID"]},
                          code="itip_unknown_uid")
    invitations = {i.user.email: i for i in _invitations(meeting).values()}
    matched = [(r, invitations[r.email]) for r in msg.replies if r.email in invitations]
    ignored = [r.email for r in msg.replies if r.email not in invitations]
    if not matched:
        who = ", ".join(ignored) or "none"
        raise DomainError(f"The {msg.method} is from someone not invited to this meeting ({who}).",
                          fields={"attendee": [f"not invited: {who}"]}, code="itip_unknown_attendee")
    result = IngestResult(method=msg.method, uid=msg.uid, meeting_id=meeting.id, ignored=ignored)
    if msg.method == "REPLY":
        _apply_replies(msg, matched, result)
    elif msg.method == "COUNTER":
        _decline_counters(meeting, msg, [inv for _, inv in matched], invitations, result)
    else:
        _refresh(meeting, [inv for _, inv in matched], invitations, result)
    db.session.flush()
    return result


def _apply_replies(msg: ItipMessage, matched: list, result: IngestResult) -> None:
    answers = []
    for reply, inv in matched:  # validate all first: a refusal changes nothing
        partstat = "DELEGATED" if reply.delegated_to else reply.partstat
        if partstat not in PARTSTATS:
            raise DomainError(f"The REPLY of {reply.email} has PARTSTAT {reply.partstat}, which is not "
                              f"one of {', '.join(PARTSTATS)}.", fields={"partstat": [reply.partstat]},
                              code="itip_invalid")
        answers.append((reply, inv, partstat))
    stamp = msg.dtstamp or now_utc()
    for reply, inv, partstat in answers:
        if (not inv.active or msg.sequence < (inv.last_sequence_sent or 0)
                or (inv.replied_at is not None and stamp < inv.replied_at)):
            result.stale.append(reply.email)
            continue
        inv.partstat = partstat
        inv.replied_at = stamp
        inv.comment = reply.comment
        inv.delegated_to = reply.delegated_to[0] if reply.delegated_to else None
        record("invitation.reply", "invitation", inv.id, details={
            "meeting_id": inv.meeting_id, "attendee": reply.email, "partstat": partstat,
            "sequence": msg.sequence, "sent_by": reply.sent_by, "via": "itip",
        })
        result.updated.append(reply.email)


def _decline_counters(meeting: Meeting, msg: ItipMessage, invs: list[Invitation],
                      invitations: dict[str, Invitation], result: IngestResult) -> None:
    ctx = _Meeting(meeting, list(invitations.values()), case_count(meeting))
    proposed = msg.start.isoformat() if msg.start is not None else None
    for inv in invs:
        record("itip.counter", "invitation", inv.id, details={
            "meeting_id": meeting.id, "attendee": inv.user.email, "proposed_start": proposed,
            "sequence": msg.sequence,
        })
        key = None
        if msg.dtstamp is not None:  # the same COUNTER imported twice is declined once
            key = f"declinecounter:{meeting.id}:{inv.user_id}:{msg.dtstamp:%Y%m%dT%H%M%SZ}"
        if _enqueue_itip(ctx, inv, "declinecounter", dedupe_key=key):
            result.answered.append(inv.user.email)


def _refresh(meeting: Meeting, invs: list[Invitation], invitations: dict[str, Invitation],
             result: IngestResult) -> None:
    ctx = _Meeting(meeting, list(invitations.values()), case_count(meeting))
    for inv in invs:
        if meeting.status == "cancelled" or not inv.active:
            kind = "cancel" if meeting.status == "cancelled" else "uninvite"
        else:
            kind = "update"
        _enqueue_itip(ctx, inv, kind)
        inv.last_sequence_sent = meeting.sequence
        record("itip.refresh", "invitation", inv.id, details={"meeting_id": meeting.id, "sent": kind})
        result.answered.append(inv.user.email)


# --------------------------------------------------------------------------- RSVP


def answer_rsvp(invitation: Invitation, partstat: str) -> Invitation:
    """Record an answer given on the RSVP page (replied_at = now), audited; the caller commits."""
    if partstat not in ANSWERS:
        raise DomainError(f"The answer must be one of {', '.join(ANSWERS)}.",
                          fields={"answer": ["unknown answer"]})
    if not invitation.active:
        raise DomainError("You are no longer invited to this meeting.", status=409, code="not_invited")
    if invitation.meeting.status != "scheduled":
        raise DomainError(f"This meeting is {invitation.meeting.status}: no answer is needed.",
                          status=409, code="meeting_not_scheduled")
    invitation.partstat = partstat
    invitation.replied_at = now_utc()
    invitation.delegated_to = None
    invitation.comment = None
    record("invitation.reply", "invitation", invitation.id, details={
        "meeting_id": invitation.meeting_id, "attendee": invitation.user.email,
        "partstat": partstat, "via": "rsvp",
    })
    db.session.flush()
    return invitation


# --------------------------------------------------------------------------- feeds


@dataclass(frozen=True)
class Feed:
    body: bytes
    #: the latest change of a meeting in the feed (None when empty)
    last_modified: datetime | None
    #: a strong validator of `body` (the hash of everything the body is built from)
    etag: str


#: built feeds by content key, per process (a 1,000-event feed takes ~150 ms to build)
_FEED_CACHE: OrderedDict[str, bytes] = OrderedDict()
_FEED_CACHE_SIZE = 128
_FEED_CACHE_LOCK = threading.Lock()


#: what a feed's body is built from, besides its name and the site's address and sender
_FEED_KEY_COLUMNS = (
    Meeting.id, Meeting.ical_uid, Meeting.sequence, Meeting.status, Meeting.kind, Meeting.start_at,
    Meeting.end_at, Meeting.location, Meeting.updated_at,
    Board.name, Board.location, Board.timezone, Board.video_url,
)

#: a board's feed by its token, in one statement built once: a row per meeting in the feed (the
#: key columns), or one row without a meeting (id NULL) for a board with none; no row, no board
_BOARD_FEED = (
    sa.select(*_FEED_KEY_COLUMNS).select_from(Board)
    .outerjoin(Meeting, sa.and_(Meeting.board_id == Board.id, Meeting.end_at >= sa.bindparam("since")))
    .where(Board.feed_token == sa.bindparam("token"))
    .order_by(Meeting.start_at, Meeting.id)
)


def _feed_event(row: Sequence[Any], sender: str) -> MeetingEvent:
    """The feed's event of one meeting, from its row of _FEED_KEY_COLUMNS: the agenda link as
    description, the last change as DTSTAMP."""
    (meeting_id, uid, sequence, status, kind, start, end, location, updated_at,
     board_name, board_location, timezone, _video_url) = row
    return _event(meeting_id, uid, sequence, status, kind, start, end, location, board_name,
                  board_location, timezone, sender=sender, dtstamp=updated_at,
                  description=f"Agenda (sign-in required): {_agenda_url(meeting_id)}")


def _feed(rows: Sequence[Sequence[Any]], name: str) -> Feed:
    """The feed named `name` of the meetings in `rows` (rows of _FEED_KEY_COLUMNS). Its key (and
    ETag) is the hash of the rows; the body is built from them only when the key is new."""
    sender = sender_address()
    digest = hashlib.sha256(repr((name, base_url(), sender)).encode())
    for row in rows:
        digest.update(repr(tuple(row)).encode())
    key = digest.hexdigest()
    with _FEED_CACHE_LOCK:
        body = _FEED_CACHE.get(key)
        if body is not None:
            _FEED_CACHE.move_to_end(key)
    if body is None:
        body = build_feed((_feed_event(row, sender) for row in rows), name)
        with _FEED_CACHE_LOCK:
            _FEED_CACHE[key] = body
            while len(_FEED_CACHE) > _FEED_CACHE_SIZE:
                _FEED_CACHE.popitem(last=False)
    last = max((row[8] for row in rows), default=None)  # updated_at
    return Feed(body, last, key)


def _feed_since() -> datetime:
    return now_utc() - timedelta(days=FEED_PAST_DAYS)


def user_feed(user: User) -> Feed:
    """The personal feed: meetings of the user's active invitations (cancelled ones included)."""
    rows = db.session.execute(
        sa.select(*_FEED_KEY_COLUMNS).join(Board, Board.id == Meeting.board_id)
        .join(Invitation, Invitation.meeting_id == Meeting.id)
        .where(Invitation.user_id == user.id, Invitation.active.is_(True), Meeting.end_at >= _feed_since())
        .order_by(Meeting.start_at, Meeting.id)
    ).all()
    return _feed(rows, f"tumorboard: {user.name}")


def board_feed_by_token(token: str) -> Feed | None:
    """The feed of the board whose feed address carries `token`: all its meetings (cancelled
    ones included). None when no board has that token."""
    # plain rows on the session's connection: the ORM's result processing would double the cost
    rows = db.session.connection().execute(_BOARD_FEED, {"token": token, "since": _feed_since()}).all()
    if not rows:
        return None
    return _feed([row for row in rows if row[0] is not None], rows[0][9])  # the meetings; board name


def board_feed(board: Board) -> Feed:
    """The board's feed: all its meetings (cancelled ones included)."""
    feed = board_feed_by_token(board.feed_token)
    assert feed is not None  # noqa: S101 - the board exists
    return feed


def feed_for_user(user: User) -> bytes:
    """The personal iCalendar feed (bytes)."""
    return user_feed(user).body


def feed_for_board(board: Board) -> bytes:
    """The board's iCalendar feed (bytes)."""
    return board_feed(board).body


def rotate_user_feed_token(user: User) -> str:
    """Give the user a new feed URL; the old one stops working at once. Audited."""
    user.feed_token = new_token()
    record("feed_token.rotate", "user", user.id)
    db.session.flush()
    return user.feed_token


def rotate_board_feed_token(board: Board) -> str:
    """Give the board a new feed URL; the old one stops working at once. Audited."""
    board.feed_token = new_token()
    record("feed_token.rotate", "board", board.id)
    db.session.flush()
    return board.feed_token


def upcoming_invitations(user: User, now: datetime | None = None) -> list[Invitation]:
    """The user's active invitations to meetings that have not ended, soonest first."""
    return list(db.session.scalars(
        sa.select(Invitation).join(Meeting, Invitation.meeting_id == Meeting.id)
        .where(Invitation.user_id == user.id, Invitation.active.is_(True),
               Meeting.end_at > (now or now_utc()))
        .order_by(Meeting.start_at)
    ))
