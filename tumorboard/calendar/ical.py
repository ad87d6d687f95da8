"""The one module that builds and reads iCalendar objects (RFC 5545, iTIP RFC 5546).

Pure: no Flask, no database, no clock. Builders take frozen dataclasses and return
bytes; :func:`parse_itip` reads a raw ``.ics`` or a raw MIME email and returns an
:class:`ItipMessage`.

Privacy rule (DESIGN.md): invites and feeds leave the hospital, so they carry **no
PHI** - no patient names, MRNs or diagnoses - only the board name, time, place, the
number of cases and a link to the agenda behind login. The builders here write
exactly the fields the caller passes and nothing else (no case data is ever looked
up); the caller is responsible for passing PHI-free text.
"""

from __future__ import annotations

import calendar as _calendar
import email
import email.policy
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import (
    Calendar,
    Timezone,
    TimezoneDaylight,
    TimezoneStandard,
    vRecur,
    vText,
)
from icalendar.error import GloballyUniqueTZIDGuessed
from icalendar.parser import param_value
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

__all__ = [
    "PRODID",
    "Attendee",
    "AttendeeReply",
    "ItipError",
    "ItipMessage",
    "MeetingEvent",
    "as_calendar_object",
    "build_cancel",
    "build_declinecounter",
    "build_feed",
    "build_request",
    "parse_itip",
]

PRODID = "-//tumorboard//tumorboard//EN"

ROLES = frozenset({"CHAIR", "REQ-PARTICIPANT", "OPT-PARTICIPANT", "NON-PARTICIPANT"})
PARTSTATS = frozenset({"NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED"})
EVENT_STATUSES = frozenset({"TENTATIVE", "CONFIRMED", "CANCELLED"})

_EMAIL_RE = re.compile(r"^[^\s@<>\"]+@[^\s@<>\"]+$")


# --------------------------------------------------------------------------- input


def _check_email(value: str, what: str) -> None:
    if not _EMAIL_RE.match(value or ""):
        raise ValueError(f"{what} is not an email address: {value!r}")


def _check_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")


@dataclass(frozen=True, kw_only=True)
class Attendee:
    """One invited calendar user (an ATTENDEE line)."""

    email: str
    name: str = ""
    role: str = "REQ-PARTICIPANT"
    partstat: str = "NEEDS-ACTION"
    rsvp: bool = True

    def __post_init__(self) -> None:
        _check_email(self.email, "attendee email")
        if self.role not in ROLES:
            raise ValueError(f"unknown ROLE {self.role!r}")
        if self.partstat not in PARTSTATS:
            raise ValueError(f"unknown PARTSTAT {self.partstat!r}")


@dataclass(frozen=True, kw_only=True)
class MeetingEvent:
    """One meeting as it goes into an invite or a feed. All text must be PHI-free.

    ``start``/``end`` are aware datetimes (any zone); they are written as local wall
    time in ``tzid`` (the board's IANA zone). ``location``, ``description`` and
    ``url`` are omitted from the output when empty.
    """

    uid: str
    sequence: int
    start: datetime
    end: datetime
    tzid: str
    summary: str
    organizer_email: str
    dtstamp: datetime
    organizer_name: str = ""
    location: str = ""
    description: str = ""
    url: str = ""
    attendees: tuple[Attendee, ...] = ()
    status: str = "CONFIRMED"

    def __post_init__(self) -> None:
        if not self.uid or any(c in self.uid for c in "\r\n"):
            raise ValueError("uid must be a non-empty single line")
        if self.sequence < 0:
            raise ValueError("sequence must be >= 0")
        _check_aware(self.start, "start")
        _check_aware(self.end, "end")
        _check_aware(self.dtstamp, "dtstamp")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        try:
            ZoneInfo(self.tzid)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.tzid!r}") from exc
        _check_email(self.organizer_email, "organizer email")
        if any(c.isspace() for c in self.url):
            raise ValueError("url must not contain whitespace")
        if self.status not in EVENT_STATUSES:
            raise ValueError(f"unknown STATUS {self.status!r}")
        if not isinstance(self.attendees, tuple):
            # Frozen dataclass: coerce lists so the event stays hashable.
            object.__setattr__(self, "attendees", tuple(self.attendees))


# --------------------------------------------------------------------------- VTIMEZONE


def _offset_at(zone: ZoneInfo, utc: datetime) -> timedelta:
    return utc.astimezone(zone).utcoffset()  # type: ignore[return-value]


def _year_transitions(zone: ZoneInfo, year: int) -> list[tuple[datetime, timedelta, timedelta]]:
    """UTC-offset changes in ``year``: (utc instant, offset before, offset after)."""
    found = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    before = _offset_at(zone, t)
    while t < end:
        nxt = t + timedelta(days=1)
        after = _offset_at(zone, nxt)
        if after != before:
            lo, hi = t, nxt  # bisect to the second: offset(lo) == before
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if _offset_at(zone, mid) == before:
                    lo = mid
                else:
                    hi = mid
            found.append((hi, before, after))
        before, t = after, nxt
    return found


def _rule_for(local: datetime) -> tuple[int, str]:
    """(BYMONTH, BYDAY) for a transition at local time ``local``, e.g. (3, '-1SU')."""
    weekday = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[local.weekday()]
    days_in_month = _calendar.monthrange(local.year, local.month)[1]
    if local.day + 7 > days_in_month:
        return local.month, f"-1{weekday}"
    return local.month, f"{(local.day - 1) // 7 + 1}{weekday}"


def _rule_date(year: int, month: int, byday: str) -> date:
    n, weekday = int(byday[:-2]), ("MO", "TU", "WE", "TH", "FR", "SA", "SU").index(byday[-2:])
    days = [
        d
        for d in range(1, _calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).weekday() == weekday
    ]
    return date(year, month, days[n if n < 0 else n - 1])


def _rrule_timezone(tzid: str, first_year: int, last_year: int) -> Timezone | None:
    """A VTIMEZONE with yearly RRULEs (the form Outlook understands), or None.

    Returns None where the zone's rules are not "n-th weekday of a month" for every
    year in the range; the caller then falls back to icalendar's RDATE form.
    """
    zone = ZoneInfo(tzid)
    years = range(first_year, last_year + 1)
    per_year = [_year_transitions(zone, y) for y in years]
    if all(not t for t in per_year):
        offsets = {_offset_at(zone, datetime(y, 7, 1, tzinfo=UTC)) for y in years}
        if len(offsets) != 1:
            return None
        offset = offsets.pop()
        tz = Timezone()
        tz.add("TZID", tzid)
        std = TimezoneStandard()
        std.add("DTSTART", datetime(first_year, 1, 1))
        std.add("TZOFFSETFROM", offset)
        std.add("TZOFFSETTO", offset)
        std.add("TZNAME", datetime(first_year, 7, 1, tzinfo=zone).tzname())
        tz.add_component(std)
        return tz
    if any(len(t) != 2 for t in per_year):
        return None
    observances = []
    for utc, before, after in per_year[0]:
        local = (utc + before).replace(tzinfo=None)  # wall time in TZOFFSETFROM
        month, byday = _rule_for(local)
        for year, transitions in zip(years, per_year, strict=True):
            expected = datetime.combine(_rule_date(year, month, byday), local.time())
            if (expected, before, after) not in {
                ((u + b).replace(tzinfo=None), b, a) for u, b, a in transitions
            }:
                return None
        kind = TimezoneDaylight() if after > before else TimezoneStandard()
        kind.add("DTSTART", local)
        kind.add("TZOFFSETFROM", before)
        kind.add("TZOFFSETTO", after)
        kind.add("RRULE", vRecur({"FREQ": "YEARLY", "BYMONTH": month, "BYDAY": byday}))
        kind.add("TZNAME", utc.astimezone(zone).tzname())
        observances.append(kind)
    tz = Timezone()
    tz.add("TZID", tzid)
    for observance in observances:
        tz.add_component(observance)
    return tz


@lru_cache(maxsize=256)
def _vtimezone_bytes(tzid: str, first_year: int, last_year: int) -> bytes:
    tz = _rrule_timezone(tzid, first_year, last_year)
    if tz is None:
        tz = Timezone.from_tzid(tzid, first_date=date(first_year, 1, 1), last_date=date(last_year + 1, 1, 1))
    return tz.to_ical()


def _vtimezone(tzid: str, starts: Iterable[datetime]) -> bytes:
    """VTIMEZONE for ``tzid`` valid from the year before the first start to the year
    after the last one (cached: a feed does not rebuild it per event)."""
    zone = ZoneInfo(tzid)
    years = {s.astimezone(zone).year for s in starts}
    return _vtimezone_bytes(tzid, min(years) - 1, max(years) + 1)


# --------------------------------------------------------------------------- builders
# VEVENTs are written line by line (icalendar's own escaping, a fast fold):
# building them as icalendar objects took ~210 ms for a 1,000-event feed.


def _fold(line: str) -> bytes:
    """Fold a content line at 75 octets (RFC 5545 3.1), never inside a UTF-8 char."""
    raw = line.encode("utf-8")
    if len(raw) <= 75:
        return raw
    parts, start, limit = [], 0, 75
    while len(raw) - start > limit:
        cut = start + limit
        while raw[cut] & 0xC0 == 0x80:  # continuation byte: step back
            cut -= 1
        if raw[cut - 1] in b"\\^" and cut - 1 > start:  # keep an escape together
            cut -= 1
        parts.append(raw[start:cut])
        start, limit = cut, 74  # continuation lines start with a space
    parts.append(raw[start:])
    return b"\r\n ".join(parts)


def _esc(value: str) -> str:
    return vText(value).to_ical().decode("utf-8")


def _local(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y%m%dT%H%M%S")


def _address_line(name: str, email_: str, params: Sequence[tuple[str, str]]) -> str:
    rendered = "".join(f";{key}={param_value(value)}" for key, value in params if value)
    return f"{name}{rendered}:mailto:{email_}"


def _vevent_lines(event: MeetingEvent, attendees: Sequence[Attendee], status: str) -> list[str]:
    zone = ZoneInfo(event.tzid)
    tzid = param_value(event.tzid)
    lines = [
        "BEGIN:VEVENT",
        f"UID:{_esc(event.uid)}",
        f"SEQUENCE:{event.sequence}",
        f"DTSTAMP:{event.dtstamp.astimezone(UTC):%Y%m%dT%H%M%SZ}",
        f"DTSTART;TZID={tzid}:{_local(event.start, zone)}",
        f"DTEND;TZID={tzid}:{_local(event.end, zone)}",
        f"SUMMARY:{_esc(event.summary)}",
    ]
    if event.location:
        lines.append(f"LOCATION:{_esc(event.location)}")
    if event.description:
        lines.append(f"DESCRIPTION:{_esc(event.description)}")
    if event.url:
        lines.append(f"URL:{event.url}")
    lines.append(f"STATUS:{status}")
    lines.append(_address_line("ORGANIZER", event.organizer_email, [("CN", event.organizer_name)]))
    for attendee in attendees:
        lines.append(
            _address_line(
                "ATTENDEE",
                attendee.email,
                [
                    ("CUTYPE", "INDIVIDUAL"),
                    ("ROLE", attendee.role),
                    ("PARTSTAT", attendee.partstat),
                    ("RSVP", "TRUE" if attendee.rsvp else "FALSE"),
                    ("CN", attendee.name),
                ],
            )
        )
    lines.append("END:VEVENT")
    return lines


def _vcalendar(header: Sequence[str], zones: dict[str, list[datetime]], body: Iterable[str]) -> bytes:
    out = [_fold(line) for line in ("BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}")]
    out.extend(_fold(line) for line in header)
    out.append(b"")  # so the join ends the last header line with CRLF
    chunks = [b"\r\n".join(out)]
    chunks.extend(_vtimezone(tzid, starts) for tzid, starts in zones.items())  # end in CRLF
    chunks.extend(_fold(line) + b"\r\n" for line in body)
    chunks.append(b"END:VCALENDAR\r\n")
    return b"".join(chunks)


def _single(method: str, event: MeetingEvent, attendees: Sequence[Attendee], status: str) -> bytes:
    return _vcalendar(
        [f"METHOD:{method}"],
        {event.tzid: [event.start, event.end]},
        _vevent_lines(event, attendees, status),
    )


def build_request(event: MeetingEvent) -> bytes:
    """iTIP REQUEST (invite or update) for ``event`` to all its attendees.

    Bump ``event.sequence`` for every significant change (time, place). Writes only
    the fields of ``event`` plus PRODID/VERSION/METHOD and the board zone's
    VTIMEZONE - never PHI unless the caller passes it (see the module docstring).
    """
    return _single("REQUEST", event, event.attendees, event.status)


def build_cancel(event: MeetingEvent, attendees: Sequence[Attendee] | None = None) -> bytes:
    """iTIP CANCEL with STATUS:CANCELLED and ``event.sequence`` as given.

    ``attendees=None`` cancels the whole meeting for all its attendees; pass only
    the removed attendee(s) to uninvite them. Same privacy rule as build_request.
    """
    chosen = event.attendees if attendees is None else tuple(attendees)
    if not chosen:
        raise ValueError("a CANCEL needs at least one attendee")
    return _single("CANCEL", event, chosen, "CANCELLED")


def build_declinecounter(event: MeetingEvent, attendee: Attendee) -> bytes:
    """iTIP DECLINECOUNTER: the organizer refuses ``attendee``'s COUNTER proposal.

    Carries the meeting as it stands (current SEQUENCE) and only that attendee.
    Same privacy rule as build_request.
    """
    return _single("DECLINECOUNTER", event, [attendee], event.status)


def build_feed(events: Iterable[MeetingEvent], name: str) -> bytes:
    """A subscribable VCALENDAR (no METHOD) holding ``events``, named ``name``.

    One VTIMEZONE per zone used (built once, cached). Writes organizer and the
    attendees each event carries - pass ``attendees=()`` for a feed that should not
    list people. Same privacy rule as build_request: feeds leave the hospital.
    """
    tzids: dict[str, list[datetime]] = {}
    body: list[str] = []
    for event in events:
        tzids.setdefault(event.tzid, []).extend((event.start, event.end))
        body.extend(_vevent_lines(event, event.attendees, event.status))
    return _vcalendar([f"X-WR-CALNAME:{_esc(name)}"], tzids, body)


def as_calendar_object(ics: bytes) -> bytes:
    """The same calendar without METHOD, as CalDAV storage requires (RFC 4791 4.1)."""
    cal = Calendar.from_ical(ics)
    cal.pop("METHOD", None)
    return cal.to_ical()


# --------------------------------------------------------------------------- parsing


class ItipError(ValueError):
    """The input is not a usable iTIP message; ``str(exc)`` is a one-line reason."""


@dataclass(frozen=True)
class AttendeeReply:
    """One ATTENDEE of a parsed message (the replying one, for a REPLY)."""

    email: str
    partstat: str
    sent_by: str | None = None
    delegated_to: tuple[str, ...] = ()
    delegated_from: tuple[str, ...] = ()
    comment: str | None = None


@dataclass(frozen=True)
class ItipMessage:
    """What the app needs from an incoming iTIP message."""

    method: str
    uid: str
    sequence: int = 0
    dtstamp: datetime | None = None
    recurrence_id: datetime | date | None = None
    organizer: str | None = None
    replies: tuple[AttendeeReply, ...] = field(default_factory=tuple)
    start: datetime | date | None = None


def _decode_text(raw: bytes, charset: str | None = None) -> str:
    for candidate in (charset, "utf-8"):
        if candidate:
            try:
                return raw.decode(candidate)
            except (LookupError, UnicodeDecodeError):
                continue
    return raw.decode("cp1252", errors="replace")


def _calendar_part(raw: bytes | str) -> tuple[str, str | None]:
    """(ics text, MIME method param) from a raw MIME email."""
    if isinstance(raw, bytes):  # bytes keep 8bit parts intact
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    else:
        msg = email.message_from_string(raw, policy=email.policy.default)
    by_rank: dict[int, tuple[str, str | None]] = {}
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = (part.get_filename() or "").lower()
        if ctype == "text/calendar":
            rank = 0
        elif ctype == "application/ics":
            rank = 1
        elif filename.endswith(".ics"):
            rank = 2
        else:
            continue
        if rank in by_rank:
            continue
        payload = part.get_payload(decode=True) or b""
        by_rank[rank] = (
            _decode_text(payload, part.get_content_charset()),
            part.get_param("method"),
        )
    if not by_rank:
        raise ItipError("not iCalendar data: neither an .ics file nor an email with a calendar part")
    return by_rank[min(by_rank)]


def _email_of(address: object) -> str | None:
    """Lower-cased email of a CAL-ADDRESS (``mailto:``/``MAILTO:`` stripped)."""
    value = str(address).strip()
    if value[:7].lower() == "mailto:":
        value = value[7:].strip()
    params = getattr(address, "params", None) or {}
    if "@" not in value and params.get("EMAIL"):
        value = str(params["EMAIL"]).strip()  # RFC 7986 EMAIL= when the URI is not mail
    return value.lower() or None


def _emails(values: object) -> tuple[str, ...]:
    if values is None:
        return ()
    items = values if isinstance(values, list | tuple) else [values]
    return tuple(e for e in (_email_of(v) for v in items) if e)


def _listify(value: object) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _dt(prop: object) -> datetime | date | None:
    """The date or aware datetime of a date property; None if missing or broken.

    Naive (floating, or a TZID that is neither known nor defined) is read as UTC.
    A Windows TZID is mapped to its IANA zone.
    """
    if prop is None:
        return None
    try:
        value = prop.dt  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return None  # icalendar's vBroken: the data was invalid
    if not isinstance(value, datetime):
        return value if isinstance(value, date) else None
    tzid = str(getattr(prop, "params", {}).get("TZID", "")).strip('"')
    olson = WINDOWS_TO_OLSON.get(tzid)
    if olson:
        return value.astimezone(ZoneInfo(olson))
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_text(value: object) -> str | None:
    text = "\n".join(str(v) for v in _listify(value)).strip()
    return text or None


def parse_itip(data: bytes | str) -> ItipMessage:
    """Parse an iTIP message from a raw ``.ics`` or a raw MIME email.

    In an email the first text/calendar part wins, else an application/ics part,
    else any ``*.ics`` attachment (base64 / quoted-printable decoded). A message
    whose ics lacks METHOD takes the MIME part's ``method=`` parameter.

    Tolerates real-client quirks: missing ORGANIZER/DTSTAMP/PRODID/VTIMEZONE, Windows
    TZIDs, quoted TZIDs, an invalid DTSTAMP (-> None), LF-only or unfolded lines,
    EMAIL= parameters, upper-case MAILTO:. Naive times are read as UTC. With several
    VEVENTs the master (no RECURRENCE-ID) is used, else the first.

    Raises ItipError with a one-line reason when the input cannot be used.
    """
    if isinstance(data, bytes):
        text = _decode_text(data)
    elif isinstance(data, str):
        text = data
    else:
        raise ItipError("expected bytes or str")
    text = text.lstrip("\ufeff \t\r\n")
    mime_method = None
    if not text[:15].upper().startswith("BEGIN:VCALENDAR"):
        text, mime_method = _calendar_part(data)
        text = text.lstrip("\ufeff \t\r\n")
        if not text[:15].upper().startswith("BEGIN:VCALENDAR"):
            raise ItipError("the calendar part does not start with BEGIN:VCALENDAR")
    try:
        with warnings.catch_warnings():
            # "/vendor/Europe/Berlin" TZIDs: icalendar guesses the zone and warns.
            warnings.simplefilter("ignore", GloballyUniqueTZIDGuessed)
            cal = Calendar.from_ical(text)
            return _message_from(cal, mime_method)
    except ItipError:
        raise
    except Exception as exc:  # icalendar raises ValueError, KeyError, IndexError...
        raise ItipError(f"unparsable iCalendar data: {_one_line(str(exc))}") from exc


def _message_from(cal: Calendar, mime_method: str | None) -> ItipMessage:
    if getattr(cal, "name", None) != "VCALENDAR":
        raise ItipError("not iCalendar data: no VCALENDAR")
    method = str(cal.get("METHOD") or mime_method or "").strip().upper()
    if not method:
        raise ItipError("the iCalendar data has no METHOD, so it is not an iTIP message")
    vevents = cal.walk("VEVENT")
    if not vevents:
        raise ItipError(f"the {method} message has no VEVENT")
    vevent = next((v for v in vevents if "RECURRENCE-ID" not in v), vevents[0])
    uid = str(vevent.get("UID") or "").strip()
    if not uid:
        raise ItipError(f"the {method} message has no UID")
    try:
        sequence = int(vevent.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        sequence = 0
    dtstamp = _dt(vevent.get("DTSTAMP"))
    dtstamp = dtstamp.astimezone(UTC) if isinstance(dtstamp, datetime) else None
    organizer = vevent.get("ORGANIZER")
    comment = _plain_text(vevent.get("COMMENT")) if method in {"REPLY", "COUNTER"} else None
    replies = []
    for attendee in _listify(vevent.get("ATTENDEE")):
        address = _email_of(attendee)
        if not address:
            continue
        params = attendee.params
        replies.append(
            AttendeeReply(
                email=address,
                partstat=str(params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
                sent_by=next(iter(_emails(params.get("SENT-BY"))), None),
                delegated_to=_emails(params.get("DELEGATED-TO")),
                delegated_from=_emails(params.get("DELEGATED-FROM")),
                comment=_plain_text(params.get("X-RESPONSE-COMMENT")) or comment,
            )
        )
    if method == "REPLY" and not replies:
        raise ItipError("the REPLY has no ATTENDEE, so there is no answer to record")
    return ItipMessage(
        method=method,
        uid=uid,
        sequence=sequence,
        dtstamp=dtstamp,
        recurrence_id=_dt(vevent.get("RECURRENCE-ID")),
        organizer=_email_of(organizer) if organizer is not None else None,
        replies=tuple(replies),
        start=_dt(vevent.get("DTSTART")),
    )
