"""Boards, their meetings (materialised from the RRULE) and urgent slots.

Services flush; the caller (view, API handler, job) commits once. Refusals raise DomainError
before anything changes. Times are aware UTC inside; a board's wall-clock times live in its zone.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from dateutil.rrule import HOURLY, MINUTELY, SECONDLY, rrule, rrulestr
from flask import current_app
from sqlalchemy.orm import selectinload

from tumorboard.audit.services import record
from tumorboard.auth.models import User
from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty, Meeting
from tumorboard.calendar.quorum import Quorum, accepted_specialties_query, quorum_of
from tumorboard.cases.models import Assignment, Case, CaseSpecialty
from tumorboard.db import comma_joined, inline_param, joined_list, now_utc, split_joined
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.vocab import MEETING_KINDS, MEETING_STATUSES, SITES, SPECIALTIES, label

#: fields of a board that decide when its meetings happen
SCHEDULE_FIELDS = ("rrule", "timezone", "first_date", "start_time", "duration_minutes")
BOARD_FIELDS = (
    "name", "rrule", "timezone", "first_date", "start_time", "duration_minutes", "location",
    "video_url", "capacity_minutes", "default_case_minutes", "active",
)
#: a rule must give a meeting within this long after its first date
_FIRST_OCCURRENCE_WITHIN = timedelta(days=5 * 366)
_UNTIL_UTC = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)
_RULE_CHARS = re.compile(r"^[A-Z0-9=;,+\-]+$")


# --- validation -------------------------------------------------------------------------------

def zone_or_error(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA zone `name`; DomainError (422) for an unknown or malformed one."""
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise DomainError(f"Unknown time zone {name!r}.",
                          fields={field: ["Not a known IANA time zone, e.g. Europe/London."]}) from exc


def normalise_rrule(text: str) -> str:
    """The rule upper-cased, without an "RRULE:" prefix or spaces (no validation)."""
    rule = (text or "").strip().upper().replace(" ", "")
    return rule[len("RRULE:"):] if rule.startswith("RRULE:") else rule


def parse_rrule(text: str, dtstart: datetime, zone: ZoneInfo) -> rrule:
    """Parse one RFC 5545 RRULE against a naive local `dtstart`.

    An UNTIL given in UTC ("...Z", as RFC 5545 asks) is converted to the board's wall clock,
    because the rule is expanded on naive local times. Raises ValueError for anything that is
    not a single bounded-frequency RRULE.
    """
    rule = normalise_rrule(text)
    if not rule or not _RULE_CHARS.match(rule):
        raise ValueError("give a single RRULE such as FREQ=WEEKLY;BYDAY=TU")

    def _local_until(match: re.Match[str]) -> str:
        utc = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return "UNTIL=" + utc.astimezone(zone).strftime("%Y%m%dT%H%M%S")

    if not rule.startswith("FREQ=") and ";FREQ=" not in rule:
        raise ValueError("FREQ is required")
    parsed = rrulestr(_UNTIL_UTC.sub(_local_until, rule), dtstart=dtstart)
    if not isinstance(parsed, rrule):
        raise ValueError("give a single RRULE")
    if parsed._freq in (HOURLY, MINUTELY, SECONDLY):  # dateutil keeps these private
        raise ValueError("meetings repeat at most daily: FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    if parsed._count is not None and parsed._count < 1:
        raise ValueError("COUNT must be at least 1")
    return parsed


def validate_board_values(values: dict[str, Any]) -> dict[str, list[str]]:
    """Field errors of a complete set of board values (empty when valid)."""
    errors: dict[str, list[str]] = {}
    name = (values.get("name") or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 200:
        errors["name"] = ["At most 200 characters."]
    sites = values.get("sites") or []
    unknown_sites = sorted(set(sites) - set(SITES))
    if not sites:
        errors["sites"] = ["Choose at least one tumor site."]
    elif unknown_sites:
        errors["sites"] = [f"Unknown tumor site: {', '.join(unknown_sites)}."]
    unknown_specialties = sorted(set(values.get("specialties") or []) - set(SPECIALTIES))
    if unknown_specialties:
        errors["specialties"] = [f"Unknown specialty: {', '.join(unknown_specialties)}."]
    zone: ZoneInfo | None = None
    try:
        zone = zone_or_error(values.get("timezone") or "")
    except DomainError as exc:
        errors.update(exc.fields)
    first_date, start_time = values.get("first_date"), values.get("start_time")
    if not isinstance(first_date, date):
        errors["first_date"] = ["A first date is required."]
    if not isinstance(start_time, time):
        errors["start_time"] = ["A start time is required."]
    if zone is not None and isinstance(first_date, date) and isinstance(start_time, time):
        try:
            dtstart = datetime.combine(first_date, start_time.replace(tzinfo=None))
            parsed = parse_rrule(values.get("rrule") or "", dtstart, zone)
            if not _has_occurrence(parsed, dtstart, dtstart + _FIRST_OCCURRENCE_WITHIN):
                raise ValueError("the rule gives no meeting in the five years after the first date")
        except (ValueError, TypeError, OverflowError) as exc:
            errors["rrule"] = [f"Not a valid recurrence rule: {exc}."]
    for key, low in (("duration_minutes", 1), ("capacity_minutes", 0), ("default_case_minutes", 1)):
        value = values.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            errors[key] = [f"A whole number of minutes, at least {low}."]
    for key, limit in (("location", 300), ("video_url", 500)):
        if len(values.get(key) or "") > limit:
            errors[key] = [f"At most {limit} characters."]
    return errors


def _has_occurrence(parsed: rrule, start: datetime, end: datetime) -> bool:
    bounded = parsed.replace(count=None, until=end) if parsed._count else parsed
    first = bounded.after(start, inc=True)
    return first is not None and first <= end


def _check_members(member_ids: Iterable[int]) -> list[User]:
    ids = sorted(set(member_ids))
    users = db.session.scalars(sa.select(User).where(User.id.in_(ids))).all() if ids else []
    found = {u.id: u for u in users}
    problems = [f"user {i} does not exist" for i in ids if i not in found]
    problems += [f"{u.name} is not an active specialist" for u in users
                 if not u.active or not u.has_role("specialist")]
    if problems:
        raise DomainError("Members must be active specialists.", fields={"member_ids": problems})
    return [found[i] for i in ids]


# --- boards -----------------------------------------------------------------------------------

def board_values(board: Board) -> dict[str, Any]:
    """A board's editable values (as `create_board` takes them)."""
    values = {key: getattr(board, key) for key in BOARD_FIELDS}
    values.update(sites=board.site_names, specialties=board.specialty_names,
                  member_ids=sorted(m.user_id for m in board.members))
    return values


def _check_name_free(name: str, board_id: int | None = None) -> None:
    # the exact name too: SQLite's lower() folds ASCII only ("É" stays "É"), and an exact duplicate
    # must be refused here, not by the unique constraint at flush (a 500)
    name = name.strip()
    query = sa.select(Board.id).where(sa.or_(Board.name == name, sa.func.lower(Board.name) == name.lower()))
    if board_id is not None:
        query = query.where(Board.id != board_id)
    if db.session.scalar(query) is not None:
        raise DomainError("A board with this name exists already.",
                          fields={"name": ["A board with this name exists already."]}, status=409,
                          code="conflict")


def create_board(values: dict[str, Any], *, now: datetime | None = None) -> Board:
    """Create a board from `values` (see BOARD_FIELDS + sites, specialties, member_ids) and
    materialise its meetings for the horizon. Refuses invalid values with field errors (422)."""
    values = {"location": "", "video_url": "", "active": True, "specialties": [], "member_ids": [],
              "default_case_minutes": 10, **values}
    errors = validate_board_values(values)
    if errors:
        raise DomainError("The board has invalid fields: " + ", ".join(sorted(errors)), fields=errors)
    _check_name_free(values["name"])
    members = _check_members(values["member_ids"])
    board = Board(**{key: values[key] for key in BOARD_FIELDS})
    board.name = board.name.strip()
    board.rrule = normalise_rrule(board.rrule)
    board.sites = [BoardSite(site=s) for s in sorted(set(values["sites"]))]
    board.specialties = [BoardSpecialty(specialty=s) for s in sorted(set(values["specialties"]))]
    board.members = [BoardMember(user_id=u.id) for u in members]
    db.session.add(board)
    db.session.flush()
    record("board.create", "board", board.id, details=_audit_values(board_values(board)))
    if board.active:
        materialise_meetings(board, now=now)
    return board


@dataclass(frozen=True)
class BoardChange:
    """What `change_board` did: the board, and the cases it took off the board's upcoming
    meetings because the board no longer serves their site."""

    board: Board
    taken_off: list[Case]


def update_board(board: Board, changes: dict[str, Any], *, now: datetime | None = None) -> Board:
    """Change a board (see `change_board`) and return it."""
    return change_board(board, changes, now=now).board


def change_board(board: Board, changes: dict[str, Any], *, now: datetime | None = None) -> BoardChange:
    """Change a board. A new schedule cancels its future meetings that no longer fit the rule
    (their cases go back to ready) and materialises the new ones; a new location or capacity
    reaches future meetings that still carry the old value. Deactivating cancels future meetings.
    A site the board stops serving takes that site's cases off its upcoming meetings."""
    now = now or now_utc()
    before = board_values(board)
    values = {**before, **changes}
    errors = validate_board_values(values)
    if errors:
        raise DomainError("The board has invalid fields: " + ", ".join(sorted(errors)), fields=errors)
    if values["name"].strip() != board.name:
        _check_name_free(values["name"], board.id)
    members = _check_members(values["member_ids"])
    for key in BOARD_FIELDS:
        setattr(board, key, values[key])
    board.name = board.name.strip()
    board.rrule = normalise_rrule(board.rrule)
    if set(values["sites"]) != set(before["sites"]):
        board.sites = [BoardSite(site=s) for s in sorted(set(values["sites"]))]
    if set(values["specialties"]) != set(before["specialties"]):
        board.specialties = [BoardSpecialty(specialty=s) for s in sorted(set(values["specialties"]))]
    if {u.id for u in members} != set(before["member_ids"]):
        board.members = [BoardMember(user_id=u.id) for u in members]
    db.session.flush()
    after = board_values(board)
    changed = {k: [_plain(before[k]), _plain(after[k])] for k in after if before[k] != after[k]}
    record("board.update", "board", board.id, details={"changed": changed})
    if not board.active:
        for meeting in _future_meetings(board, now):
            cancel_meeting(meeting, now=now)
        return BoardChange(board, [])
    taken_off = _take_off_unserved(board, set(before["sites"]) - set(after["sites"]), now)
    schedule_changed = any(before[k] != after[k] for k in SCHEDULE_FIELDS)
    for meeting in _future_meetings(board, now):
        _follow_board(meeting, board, before, schedule_changed, now)
    materialise_meetings(board, now=now)
    return BoardChange(board, taken_off)


def _take_off_unserved(board: Board, dropped: set[str], now: datetime) -> list[Case]:
    """Take the cases of the `dropped` sites off the board's upcoming scheduled meetings (frozen
    agendas too: a coordinator edits boards), each as a coordinator's removal (back to ready,
    audited, `case_needs_scheduling` sent)."""
    from tumorboard.cases.assignments import agenda, unassign

    if not dropped:
        return []
    taken_off = [unassign(item, source="coordinator", now=now)
                 for meeting in _future_meetings(board, now)
                 for item in agenda(meeting) if item.case.site in dropped]
    if taken_off:
        record("board.sites_dropped", "board", board.id, details={
            "sites": sorted(dropped), "case_ids": [c.id for c in taken_off]})
    return taken_off


def _follow_board(meeting: Meeting, board: Board, before: dict[str, Any], schedule_changed: bool,
                  now: datetime) -> None:
    """Bring one future meeting in line with its board's new values."""
    if meeting.kind != "regular":
        return
    if schedule_changed and meeting.recurrence_id not in _occurrence_set(board, meeting.recurrence_id):
        cancel_meeting(meeting, now=now)
        return
    untouched = meeting.start_at == meeting.recurrence_id  # not moved on its own
    changed = False
    new_end = meeting.start_at + timedelta(minutes=board.duration_minutes)
    if untouched and before["duration_minutes"] != board.duration_minutes:
        meeting.end_at, changed = new_end, True
    if before["location"] != board.location and meeting.location == _meeting_location_of(before):
        meeting.location, changed = _meeting_location(board), True
    if before["capacity_minutes"] != board.capacity_minutes and \
            meeting.capacity_minutes == before["capacity_minutes"]:
        meeting.capacity_minutes = board.capacity_minutes
    if changed:
        meeting.sequence += 1


def _occurrence_set(board: Board, around: datetime | None) -> set[datetime]:
    if around is None:
        return set()
    return set(occurrences(board, around - timedelta(hours=1), around + timedelta(hours=1)))


def remove_board(board: Board, *, now: datetime | None = None) -> str:
    """Delete a board that never had a meeting; otherwise deactivate it (future meetings are
    cancelled, history stays). Returns "deleted" or "deactivated"."""
    has_meetings = db.session.scalar(sa.select(Meeting.id).where(Meeting.board_id == board.id).limit(1))
    if has_meetings is None:
        record("board.delete", "board", board.id, details={"name": board.name})
        db.session.delete(board)
        db.session.flush()
        return "deleted"
    if board.active:
        update_board(board, {"active": False}, now=now)
    return "deactivated"


def _audit_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in values.items()}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | time) else value


# --- meetings ---------------------------------------------------------------------------------

def link_host() -> str:
    """The host name of SERVER_NAME_FOR_LINKS, used in iCalendar UIDs."""
    return urlsplit(current_app.config["SERVER_NAME_FOR_LINKS"]).hostname or "localhost"


def meeting_uid(meeting_id: int) -> str:
    """The stable iCalendar UID of a meeting: meeting-<id>@<host>."""
    return f"meeting-{meeting_id}@{link_host()}"


def _meeting_location(board: Board) -> str:
    return _meeting_location_of({"location": board.location, "video_url": board.video_url})


def _meeting_location_of(values: dict[str, Any]) -> str:
    # the room, or the video link when the board meets online only
    return (values.get("location") or values.get("video_url") or "")[:300]


def _new_meeting(board: Board, **kw: Any) -> Meeting:
    meeting = Meeting(board=board, board_id=board.id, ical_uid=f"pending-{uuid.uuid4()}", sequence=0,
                      status="scheduled", **kw)
    db.session.add(meeting)
    db.session.flush()
    meeting.ical_uid = meeting_uid(meeting.id)
    return meeting


def occurrences(board: Board, start: datetime, end: datetime) -> list[datetime]:
    """The board's occurrences with start ≤ t ≤ end, as aware UTC datetimes.

    The rule runs on naive wall-clock times in the board's zone, so a weekly 08:00 meeting stays
    08:00 local across daylight-saving changes (its UTC time moves)."""
    zone = ZoneInfo(board.timezone)
    dtstart = datetime.combine(board.first_date, board.start_time.replace(tzinfo=None))
    parsed = parse_rrule(board.rrule, dtstart, zone)
    # a day of slack either side covers any UTC offset; exact bounds are checked in UTC below
    lo = start.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
    hi = end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    result = []
    for local in parsed.between(lo, hi, inc=True):
        at = local.replace(tzinfo=zone).astimezone(UTC)
        if start <= at <= end:
            result.append(at)
    return result


def materialise_meetings(board: Board | None = None, now: datetime | None = None) -> int:
    """Create the missing meetings of `board` (all active boards when None) from now to the
    horizon (MEETING_HORIZON_WEEKS). Idempotent: keyed by (board, recurrence id), so a cancelled
    or moved occurrence is never re-created or reset. Returns the number of meetings created."""
    now = now or now_utc()
    end = now + timedelta(weeks=current_app.config.get("MEETING_HORIZON_WEEKS", 12))
    boards = [board] if board is not None else db.session.scalars(
        sa.select(Board).where(Board.active.is_(True)).order_by(Board.id)).all()
    created = 0
    for b in boards:
        if not b.active:
            continue
        wanted = occurrences(b, now, end)
        if not wanted:
            continue
        existing = set(db.session.scalars(sa.select(Meeting.recurrence_id).where(
            Meeting.board_id == b.id, Meeting.recurrence_id >= wanted[0],
            Meeting.recurrence_id <= wanted[-1])).all())
        new = [at for at in wanted if at not in existing]
        for at in new:
            _new_meeting(b, kind="regular", recurrence_id=at, start_at=at,
                         end_at=at + timedelta(minutes=b.duration_minutes),
                         location=_meeting_location(b), capacity_minutes=b.capacity_minutes)
        if new:
            record("meeting.materialise", "board", b.id,
                   details={"created": len(new), "until": end.isoformat()})
        created += len(new)
    return created


def _future_meetings(board: Board, now: datetime) -> list[Meeting]:
    return list(db.session.scalars(sa.select(Meeting).where(
        Meeting.board_id == board.id, Meeting.status == "scheduled", Meeting.start_at > now,
    ).order_by(Meeting.start_at)).all())


def _refuse_unless_scheduled(meeting: Meeting, action: str) -> None:
    if meeting.status != "scheduled":
        raise DomainError(f"A {meeting.status} meeting cannot be {action}.",
                          fields={"status": [f"the meeting is {meeting.status}"]}, status=409,
                          code="conflict")


def cancel_meeting(meeting: Meeting, *, now: datetime | None = None) -> list[Any]:
    """Cancel one meeting (SEQUENCE + 1). Its assignments become inactive, their cases go back to
    ready and `case_needs_scheduling` is sent for each. Returns the released cases."""
    from tumorboard.cases.assignments import release_meeting

    _refuse_unless_scheduled(meeting, "cancelled")
    meeting.status = "cancelled"
    meeting.sequence += 1
    db.session.flush()
    record("meeting.cancel", "meeting", meeting.id, details={"sequence": meeting.sequence})
    return release_meeting(meeting)


def move_meeting(meeting: Meeting, *, start: datetime | None = None, end: datetime | None = None,
                 duration_minutes: int | None = None, location: str | None = None,
                 now: datetime | None = None) -> Meeting:
    """Move one meeting to a new time (aware `start` with `end` or `duration_minutes`) and/or a
    new location. SEQUENCE rises when something changed; the recurrence id stays."""
    _refuse_unless_scheduled(meeting, "moved")
    now = now or now_utc()
    errors: dict[str, list[str]] = {}
    for key, value in (("start", start), ("end", end)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            errors[key] = ["Give a time with a UTC offset."]
    if end is not None and duration_minutes is not None:
        errors["end"] = ["Give either an end or a duration, not both."]
    if duration_minutes is not None and duration_minutes < 1:
        errors["duration_minutes"] = ["At least 1 minute."]
    if location is not None and len(location) > 300:
        errors["location"] = ["At most 300 characters."]
    if errors:
        raise DomainError("The move has invalid fields: " + ", ".join(sorted(errors)), fields=errors)
    new_start = (start or meeting.start_at).astimezone(UTC)
    if duration_minutes is not None:
        new_end = new_start + timedelta(minutes=duration_minutes)
    elif end is not None:
        new_end = end.astimezone(UTC)
    else:
        new_end = new_start + (meeting.end_at - meeting.start_at)
    if new_end <= new_start:
        raise DomainError("The meeting must end after it starts.",
                          fields={"end": ["must be after the start"]})
    if start is not None and new_start != meeting.start_at and new_start <= now:
        raise DomainError("A meeting cannot be moved into the past.",
                          fields={"start": ["must be in the future"]})
    before = {"start": meeting.start_at.isoformat(), "end": meeting.end_at.isoformat(),
              "location": meeting.location}
    meeting.start_at, meeting.end_at = new_start, new_end
    if location is not None:
        meeting.location = location.strip()
    after = {"start": meeting.start_at.isoformat(), "end": meeting.end_at.isoformat(),
             "location": meeting.location}
    if after != before:
        meeting.sequence += 1
        db.session.flush()
        record("meeting.move", "meeting", meeting.id,
               details={"before": before, "after": after, "sequence": meeting.sequence})
    return meeting


def mark_held(meeting: Meeting, *, now: datetime | None = None) -> Meeting:
    """Record that the meeting took place. Its assignments stay as the history of who was discussed."""
    _refuse_unless_scheduled(meeting, "marked held")
    if meeting.start_at > (now or now_utc()):
        raise DomainError("A meeting can be marked held only once it has started.",
                          fields={"status": ["the meeting has not started yet"]}, status=409,
                          code="conflict")
    meeting.status = "held"
    db.session.flush()
    record("meeting.held", "meeting", meeting.id)
    return meeting


def create_urgent_slot(board: Board, start: datetime, duration_minutes: int | None = None,
                       capacity_minutes: int | None = None, location: str | None = None, *,
                       now: datetime | None = None) -> Meeting:
    """An ad-hoc urgent meeting of `board` at aware `start` (kind urgent, no recurrence id);
    duration, capacity and location default to the board's."""
    errors: dict[str, list[str]] = {}
    if start.tzinfo is None or start.utcoffset() is None:
        errors["start"] = ["Give a time with a UTC offset."]
    elif start <= (now or now_utc()):
        errors["start"] = ["An urgent slot must be in the future."]
    duration = board.duration_minutes if duration_minutes is None else duration_minutes
    capacity = board.capacity_minutes if capacity_minutes is None else capacity_minutes
    if duration < 1:
        errors["duration_minutes"] = ["At least 1 minute."]
    if capacity < 0:
        errors["capacity_minutes"] = ["Cannot be negative."]
    if location is not None and len(location) > 300:
        errors["location"] = ["At most 300 characters."]
    if not board.active:
        raise DomainError("The board is inactive.", fields={"board_id": ["the board is inactive"]},
                          status=409, code="conflict")
    if errors:
        raise DomainError("The urgent slot has invalid fields: " + ", ".join(sorted(errors)), fields=errors)
    start = start.astimezone(UTC)
    meeting = _new_meeting(
        board, kind="urgent", recurrence_id=None, start_at=start,
        end_at=start + timedelta(minutes=duration), capacity_minutes=capacity,
        location=(location.strip() if location is not None else _meeting_location(board)),
    )
    record("meeting.urgent_slot", "meeting", meeting.id,
           details={"board_id": board.id, "start": start.isoformat(), "duration_minutes": duration})
    return meeting


def freeze_agenda(meeting: Meeting, *, now: datetime | None = None) -> Meeting:
    """Publish the agenda: the engine adds nothing to it and moves nothing away from it."""
    _refuse_unless_scheduled(meeting, "frozen")
    if meeting.agenda_frozen_at is None:
        meeting.agenda_frozen_at = now or now_utc()
        db.session.flush()
        record("meeting.agenda_freeze", "meeting", meeting.id)
    return meeting


def unfreeze_agenda(meeting: Meeting) -> Meeting:
    """Open a frozen agenda to the engine again."""
    _refuse_unless_scheduled(meeting, "unfrozen")
    if meeting.agenda_frozen_at is not None:
        meeting.agenda_frozen_at = None
        db.session.flush()
        record("meeting.agenda_unfreeze", "meeting", meeting.id)
    return meeting


# --- reading ----------------------------------------------------------------------------------

def is_member(user: Any, board_id: int) -> bool:
    """True when `user` is a member of the board."""
    return db.session.scalar(sa.select(BoardMember.user_id).where(
        BoardMember.board_id == board_id, BoardMember.user_id == user.id)) is not None


def sees_all_boards(user: Any) -> bool:
    """Coordinators and oncologists see every meeting; specialists only their boards'."""
    return user.has_role("coordinator", "oncologist")


def can_read_agenda(user: Any, meeting: Meeting | AgendaMeeting) -> bool:
    """Whether `user` may read the meeting's agenda (and the meeting)."""
    return sees_all_boards(user) or (user.has_role("specialist") and is_member(user, meeting.board_id))


def meetings_query(*, user: Any = None, board_id: int | None = None, start: datetime | None = None,
                   end: datetime | None = None, status: str | None = None,
                   kind: str | None = None) -> sa.Select[tuple[Meeting]]:
    """Meetings by start time, filtered; a specialist `user` sees only their boards' meetings."""
    query = sa.select(Meeting).order_by(Meeting.start_at, Meeting.id)
    if user is not None and not sees_all_boards(user):
        query = query.where(Meeting.board_id.in_(
            sa.select(BoardMember.board_id).where(BoardMember.user_id == user.id)))
    if board_id is not None:
        query = query.where(Meeting.board_id == board_id)
    if start is not None:
        query = query.where(Meeting.start_at >= start)
    if end is not None:
        query = query.where(Meeting.start_at < end)
    if status is not None:
        assert status in MEETING_STATUSES  # noqa: S101 - callers validate
        query = query.where(Meeting.status == status)
    if kind is not None:
        assert kind in MEETING_KINDS  # noqa: S101
        query = query.where(Meeting.kind == kind)
    return query


def boards_query(*, active: bool | None = None) -> sa.Select[tuple[Board]]:
    """Boards by name, with their members."""
    query = sa.select(Board).options(selectinload(Board.members)).order_by(Board.name)
    if active is not None:
        query = query.where(Board.active.is_(active))
    return query


def boards_serving(site: str) -> sa.Select[tuple[Board]]:
    """Active boards that serve a tumor site."""
    return boards_query(active=True).where(
        Board.id.in_(sa.select(BoardSite.board_id).where(BoardSite.site == site)))


def local_time(meeting: Meeting, at: datetime | None = None) -> datetime:
    """`at` (default the meeting's start) on the board's wall clock."""
    return (at or meeting.start_at).astimezone(ZoneInfo(meeting.board.timezone))


def local_to_utc(naive: datetime, zone_name: str, field: str = "start") -> datetime:
    """A naive wall-clock time in `zone_name` as aware UTC; refuses a time skipped by DST."""
    zone = ZoneInfo(zone_name)
    aware = naive.replace(tzinfo=zone)
    utc = aware.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != naive:
        raise DomainError("That local time does not exist (the clocks change).",
                          fields={field: ["This time is skipped by a daylight-saving change."]})
    return utc


# --- the agenda page --------------------------------------------------------------------------
# The page only displays, so it reads plain rows (no ORM entities) in statements built once:
# on a page this size, building a select and loading entities cost more than running the SQL.
# Per-row work is kept to a minimum (list comprehensions): a page has many rows.

def _rows(statement: sa.Select[Any], **params: Any) -> sa.CursorResult[Any]:
    """Plain rows of a select, run on the session's connection (in its transaction, without the
    ORM's result processing or autoflush: services flush their changes themselves)."""
    return db.session.connection().execute(statement, params)


def _spaced(names: list[str]) -> str:
    return ", ".join([name.replace("_", " ") for name in names]) if names else ""


_AGENDA_MEETING = (  # the meeting, its board's, and the specialties accepted (see calendar.quorum)
    sa.select(
        Meeting.id, Meeting.board_id, Meeting.kind, Meeting.status, Meeting.location,
        Meeting.capacity_minutes, Meeting.start_at, Meeting.end_at, Meeting.agenda_frozen_at,
        Board.name.label("board_name"), Board.timezone,
        joined_list(BoardSite.site, BoardSite.board_id == Meeting.board_id).label("sites"),
        joined_list(BoardSpecialty.specialty, BoardSpecialty.board_id == Meeting.board_id)
        .label("specialties"),
        accepted_specialties_query(Meeting.id).with_only_columns(comma_joined(User.specialty))
        .scalar_subquery().label("accepted"),
    )
    .join(Board, Board.id == Meeting.board_id)
    .where(Meeting.id == sa.bindparam("meeting_id"))
)

_AGENDA_ITEMS = (  # the rows of cases.assignments.agenda(), in its order
    sa.select(
        Assignment.id, Assignment.minutes, Assignment.pinned, Case.id.label("case_id"), Case.mrn,
        Case.display_name, Case.site, Case.deadline, Case.urgency,
        joined_list(CaseSpecialty.specialty, CaseSpecialty.case_id == Case.id).label("specialties"),
    )
    .join(Case, Case.id == Assignment.case_id)
    .where(Assignment.meeting_id == sa.bindparam("meeting_id"), Assignment.active.is_(True))
    .order_by(Assignment.position, Assignment.id)
)


@dataclass(frozen=True)
class AgendaMeeting:
    """A meeting as its agenda page shows it: with its board's name, zone, sites and core
    specialties, and the specialties accepted so far."""

    id: int
    board_id: int
    board_name: str
    timezone: str
    kind: str
    status: str
    location: str
    capacity_minutes: int
    start_at: datetime
    end_at: datetime
    agenda_frozen_at: datetime | None
    sites: list[str]
    specialties: list[str]
    accepted: frozenset[str]


class AgendaItem(NamedTuple):
    """One case on an agenda, with its display texts ready (the page shows many: a tuple is
    made in a third of the time of a frozen dataclass)."""

    id: int  #: the assignment's
    case_id: int
    mrn: str
    display_name: str
    minutes: int
    pinned: bool
    urgent: bool
    specialties: list[str]
    site_label: str
    deadline_text: str
    specialties_text: str
    #: the case's specialties no one has accepted for yet, spaced ("" when its quorum is met)
    missing_text: str


def agenda_meeting(meeting_id: int) -> AgendaMeeting | None:
    """The meeting `meeting_id` as its agenda page shows it (None when there is none)."""
    row = _rows(_AGENDA_MEETING, meeting_id=meeting_id).one_or_none()
    if row is None:
        return None
    return AgendaMeeting(
        id=row.id, board_id=row.board_id, board_name=row.board_name, timezone=row.timezone,
        kind=row.kind, status=row.status, location=row.location, capacity_minutes=row.capacity_minutes,
        start_at=row.start_at, end_at=row.end_at, agenda_frozen_at=row.agenda_frozen_at,
        sites=split_joined(row.sites), specialties=split_joined(row.specialties),
        accepted=frozenset(split_joined(row.accepted)),
    )


def agenda_items(meeting: AgendaMeeting) -> list[AgendaItem]:
    """The cases actively on the meeting's agenda, in agenda order."""
    items = []
    for row in _rows(_AGENDA_ITEMS, meeting_id=meeting.id).all():  # fetchall: one call, not one a row
        specialties = split_joined(row.specialties)
        missing = [s for s in specialties if s not in meeting.accepted]
        items.append(AgendaItem(
            id=row.id, case_id=row.case_id, mrn=row.mrn, display_name=row.display_name,
            minutes=row.minutes, pinned=row.pinned, urgent=row.urgency == "urgent",
            specialties=specialties, site_label=label(row.site), deadline_text=row.deadline.isoformat(),
            specialties_text=_spaced(specialties), missing_text=_spaced(missing),
        ))
    return items


def agenda_candidates(meeting: AgendaMeeting, limit: int) -> list[tuple[int, str]]:
    """The first `limit` cases by deadline that may be added to the meeting's agenda (see
    cases.assignments.eligible_cases), each as its id and text "MRN · name · Site · status"."""
    rows = _rows(_agenda_candidates_statement(), meeting_id=meeting.id, board_id=meeting.board_id,
                 limit=limit).all()
    return [(c.id, f"{c.mrn} · {c.display_name} · {label(c.site)} · {c.status}") for c in rows]


@functools.cache
def _agenda_candidates_statement() -> sa.Select[Any]:
    """agenda_candidates' statement, built once: eligible_cases with the meeting's id and board
    as bound parameters (it reads only those two)."""
    from tumorboard.cases.assignments import eligible_cases

    meeting = SimpleNamespace(id=sa.bindparam("meeting_id"), board_id=sa.bindparam("board_id"))
    return eligible_cases(meeting).with_only_columns(  # type: ignore[arg-type]
        Case.id, Case.mrn, Case.display_name, Case.site, Case.status,
    ).limit(inline_param("limit"))


def agenda_quorum(meeting: AgendaMeeting, items: Iterable[AgendaItem]) -> Quorum:
    """The meeting's quorum (see calendar.quorum.meeting_quorum) from what its page has read."""
    required = set(meeting.specialties).union(*[item.specialties for item in items])
    return quorum_of(required, meeting.accepted)
