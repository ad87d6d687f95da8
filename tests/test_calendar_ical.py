"""tumorboard.calendar.ical / imip: builders, parser, iMIP mail, a real CalDAV server.

Pure tests (no app, no database): run with --noconftest. The real-client samples are
read from ../shared/ics-samples/ (never copied here); fixtures written fresh below
reproduce their quirks.
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import vobject
from icalendar import Calendar

from tumorboard.calendar.ical import (
    PRODID,
    Attendee,
    ItipError,
    MeetingEvent,
    as_calendar_object,
    build_cancel,
    build_declinecounter,
    build_feed,
    build_request,
    parse_itip,
)
from tumorboard.calendar.imip import build_imip_message

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "ics-samples" / "ics"
SAMPLE_FILES = sorted(SAMPLES.glob("*.ics")) if SAMPLES.is_dir() else []

LONDON = ZoneInfo("Europe/London")
STAMP = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
ALICE = Attendee(email="alice@hospital.example", name="Dr Alice Path")
BOB = Attendee(email="bob@hospital.example", name="Bob Rad", role="OPT-PARTICIPANT")


def make_event(**changes) -> MeetingEvent:
    """The fields the app passes: board name, time, place, case count, agenda URL."""
    fields = {
        "uid": "meeting-42@tumorboard.example",
        "sequence": 3,
        "start": datetime(2026, 7, 1, 8, 0, tzinfo=LONDON),
        "end": datetime(2026, 7, 1, 9, 0, tzinfo=LONDON),
        "tzid": "Europe/London",
        "summary": "Breast MDT",
        "location": "Room 4, Oncology Centre",
        "description": "3 cases",
        "url": "https://tumorboard.example/meetings/42/agenda",
        "organizer_email": "mdt@tumorboard.example",
        "organizer_name": "MDT Coordinator",
        "attendees": (ALICE, BOB),
        "dtstamp": STAMP,
    }
    fields.update(changes)
    return MeetingEvent(**fields)


def vobj(ics: bytes):
    """Independent parser: vobject."""
    return vobject.readOne(ics.decode("utf-8"))


def unfold(text: str) -> str:
    return re.sub(r"\r?\n[ \t]", "", text)


# --------------------------------------------------------------------------- REQUEST


def test_request_validates_with_vobject_and_round_trips():
    ics = build_request(make_event())
    assert b"\r\n" in ics and not re.search(rb"[^\r]\n", ics)  # CRLF only
    assert all(len(line) <= 75 for line in ics.split(b"\r\n"))
    cal = vobj(ics)
    assert cal.method.value == "REQUEST"
    assert cal.prodid.value == PRODID
    assert cal.version.value == "2.0"
    ev = cal.vevent
    assert ev.uid.value == "meeting-42@tumorboard.example"
    assert ev.sequence.value == "3"
    assert ev.status.value == "CONFIRMED"
    assert ev.dtstart.params["X-VOBJ-ORIGINAL-TZID"] == ["Europe/London"]
    assert ev.dtstart.value.utcoffset() == timedelta(hours=1)
    assert ev.organizer.value == "mailto:mdt@tumorboard.example"
    assert ev.organizer.params["CN"] == ["MDT Coordinator"]
    attendees = {a.value: a.params for a in ev.contents["attendee"]}
    assert attendees["mailto:alice@hospital.example"] == {
        "CUTYPE": ["INDIVIDUAL"],
        "ROLE": ["REQ-PARTICIPANT"],
        "PARTSTAT": ["NEEDS-ACTION"],
        "RSVP": ["TRUE"],
        "CN": ["Dr Alice Path"],
    }
    assert attendees["mailto:bob@hospital.example"]["ROLE"] == ["OPT-PARTICIPANT"]

    msg = parse_itip(ics)
    assert (msg.method, msg.uid, msg.sequence) == ("REQUEST", "meeting-42@tumorboard.example", 3)
    assert msg.dtstamp == STAMP
    assert msg.organizer == "mdt@tumorboard.example"
    assert [r.email for r in msg.replies] == ["alice@hospital.example", "bob@hospital.example"]
    assert msg.start == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "utc_hour"), [(date(2026, 7, 1), 7), (date(2026, 1, 14), 8), (date(2026, 10, 26), 8)]
)
def test_london_wall_time_is_0800_in_summer_and_winter(day, utc_hour):
    start = datetime.combine(day, datetime.min.time(), LONDON).replace(hour=8)
    ics = build_request(make_event(start=start, end=start + timedelta(hours=1)))
    text = unfold(ics.decode())
    assert f"DTSTART;TZID=Europe/London:{day:%Y%m%d}T080000" in text
    assert text.count("BEGIN:VTIMEZONE") == 1 and "TZID:Europe/London" in text
    dtstart = vobj(ics).vevent.dtstart.value
    assert dtstart.astimezone(UTC).hour == utc_hour
    assert parse_itip(ics).start.astimezone(UTC).hour == utc_hour


@pytest.mark.parametrize(
    "tzid",
    [
        "Europe/London",
        "Europe/Dublin",  # negative DST in tzdata
        "America/New_York",
        "Australia/Sydney",  # southern hemisphere
        "Asia/Kolkata",  # no DST
        "Asia/Jerusalem",  # not an n-th weekday rule: RDATE fallback
    ],
)
def test_generated_vtimezone_matches_tzdata(tzid):
    zone = ZoneInfo(tzid)
    start = datetime(2026, 11, 5, 8, 0, tzinfo=zone)
    ics = build_request(make_event(tzid=tzid, start=start, end=start + timedelta(hours=1)))
    tzinfo = vobj(ics).vtimezone.gettzinfo()  # vobject reads the VTIMEZONE itself
    for year in (2026, 2027):
        for month in range(1, 13):
            for day in (1, 15, 28):
                local = datetime(year, month, day, 12)
                expected = local.replace(tzinfo=zone).utcoffset()
                assert local.replace(tzinfo=tzinfo).utcoffset() == expected, (tzid, local)


def test_outlook_friendly_rrule_vtimezone_for_the_board_zone():
    text = unfold(build_request(make_event()).decode())
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3" in text
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10" in text
    assert "RDATE" not in text


def test_sequence_and_text_escaping():
    event = make_event(sequence=7, summary="Lung MDT; weekly, room\nB", location="")
    ics = build_request(event)
    ev = vobj(ics).vevent
    assert ev.sequence.value == "7"
    assert ev.summary.value == "Lung MDT; weekly, room\nB"
    assert "location" not in ev.contents
    assert parse_itip(ics).sequence == 7


def test_non_ascii_and_long_values_fold_without_breaking_utf8():
    name = "Dr Zoë Ångström-Øvergård " * 4
    ics = build_request(make_event(attendees=(Attendee(email="z@h.example", name=name),)))
    for line in ics.split(b"\r\n"):
        assert len(line) <= 75
        line.decode("utf-8")  # every physical line is valid UTF-8 on its own
    assert vobj(ics).vevent.attendee.params["CN"] == [name]


# --------------------------------------------------------------------------- CANCEL etc.


def test_cancel_whole_meeting_has_all_attendees():
    ics = build_cancel(make_event(sequence=4))
    cal = vobj(ics)
    assert cal.method.value == "CANCEL"
    assert cal.vevent.status.value == "CANCELLED"
    assert cal.vevent.sequence.value == "4"
    assert len(cal.vevent.contents["attendee"]) == 2
    msg = parse_itip(ics)
    assert (msg.method, msg.sequence) == ("CANCEL", 4)


def test_cancel_for_a_removed_attendee_names_only_them():
    ics = build_cancel(make_event(), attendees=[BOB])
    ev = vobj(ics).vevent
    assert [a.value for a in ev.contents["attendee"]] == ["mailto:bob@hospital.example"]
    assert ev.status.value == "CANCELLED"


def test_declinecounter():
    ics = build_declinecounter(make_event(), ALICE)
    cal = vobj(ics)
    assert cal.method.value == "DECLINECOUNTER"
    assert [a.value for a in cal.vevent.contents["attendee"]] == ["mailto:alice@hospital.example"]
    assert parse_itip(ics).method == "DECLINECOUNTER"


def test_meeting_event_refuses_bad_input():
    with pytest.raises(ValueError, match="aware"):
        make_event(start=datetime(2026, 7, 1, 8))
    with pytest.raises(ValueError, match="after start"):
        make_event(end=datetime(2026, 7, 1, 7, tzinfo=LONDON))
    with pytest.raises(ValueError, match="time zone"):
        make_event(tzid="Mars/Olympus")
    with pytest.raises(ValueError, match="email"):
        Attendee(email="not an email")
    with pytest.raises(ValueError, match="PARTSTAT"):
        Attendee(email="a@b.example", partstat="MAYBE")


# --------------------------------------------------------------------------- feed


def test_feed_one_vtimezone_per_zone_and_no_method():
    ny = ZoneInfo("America/New_York")
    events = [
        make_event(uid=f"meeting-{i}@h", start=s, end=s + timedelta(hours=1), tzid=tz)
        for i, (s, tz) in enumerate(
            [
                (datetime(2026, 1, 5, 8, tzinfo=LONDON), "Europe/London"),
                (datetime(2027, 6, 5, 8, tzinfo=LONDON), "Europe/London"),
                (datetime(2026, 3, 5, 17, tzinfo=ny), "America/New_York"),
            ]
        )
    ]
    ics = build_feed(events, "Breast MDT — Dr Alice")
    text = ics.decode()
    assert "METHOD" not in text
    assert text.count("BEGIN:VTIMEZONE") == 2
    cal = vobj(ics)
    assert cal.contents["x-wr-calname"][0].value == "Breast MDT — Dr Alice"
    assert [e.uid.value for e in cal.vevent_list] == ["meeting-0@h", "meeting-1@h", "meeting-2@h"]
    assert cal.vevent_list[1].dtstart.value.utcoffset() == timedelta(hours=1)
    assert cal.vevent_list[2].dtstart.value.astimezone(UTC).hour == 22


def test_feed_of_1000_events_is_fast():
    start = datetime(2026, 1, 5, 8, tzinfo=LONDON)
    events = [
        make_event(
            uid=f"meeting-{i}@h",
            start=start + timedelta(days=i),
            end=start + timedelta(days=i, hours=1),
        )
        for i in range(1000)
    ]
    build_feed(events[:1], "warm-up")
    best = min(_timed(lambda: build_feed(events, "Breast MDT")) for _ in range(3))
    assert best < 0.25, f"1,000-event feed took {best * 1000:.0f} ms"
    assert len(Calendar.from_ical(build_feed(events, "x")).walk("VEVENT")) == 1000


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- privacy


def test_privacy_nothing_but_the_passed_fields():
    event = make_event()
    cal = Calendar.from_ical(build_request(event))
    assert {k for k in cal} == {"VERSION", "PRODID", "METHOD"}
    (vevent,) = cal.walk("VEVENT")
    assert {c.name for c in cal.subcomponents} == {"VTIMEZONE", "VEVENT"}
    assert vevent.subcomponents == []  # no VALARM or anything else
    assert set(vevent) == {
        "UID", "SEQUENCE", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "LOCATION",
        "DESCRIPTION", "URL", "STATUS", "ORGANIZER", "ATTENDEE",
    }  # fmt: skip
    passed_text = {
        event.uid, event.summary, event.location, event.description, event.url,
    }  # fmt: skip
    for key in ("UID", "SUMMARY", "LOCATION", "DESCRIPTION", "URL"):
        assert str(vevent[key]) in passed_text
    names = {event.organizer_name, ALICE.name, BOB.name}
    emails = {event.organizer_email, ALICE.email, BOB.email}
    for address in [vevent["ORGANIZER"], *vevent["ATTENDEE"]]:
        assert address.email in emails
        assert address.params["CN"] in names
        assert set(address.params) <= {"CN", "CUTYPE", "ROLE", "PARTSTAT", "RSVP"}
    # The whole text holds only these values, structure and the zone definition.
    body = unfold(build_request(event).decode())
    assert "X-" not in body and "COMMENT" not in body.split("END:VTIMEZONE")[1]


# --------------------------------------------------------------------------- CalDAV


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def radicale(tmp_path_factory):
    root = tmp_path_factory.mktemp("radicale")
    port = _free_port()
    config = root / "config"
    config.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n"
        "[auth]\ntype = none\n"
        f"[storage]\nfilesystem_folder = {root / 'collections'}\n"
        "[rights]\ntype = owner_only\n"
        "[logging]\nlevel = warning\n"
    )
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-m", "radicale", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-300:]
                pytest.skip(f"Radicale could not start: {err}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.skip("Radicale did not answer within 10 s")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _dav(port: int, method: str, path: str, body: bytes = b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        auth = base64.b64encode(b"alice:x").decode()
        conn.request(method, path, body=body, headers={"Authorization": f"Basic {auth}", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_radicale_accepts_the_event(radicale):
    status, _ = _dav(radicale, "MKCALENDAR", "/alice/board/")
    assert status == 201
    ics = build_request(make_event())
    obj = as_calendar_object(ics)
    assert b"METHOD" not in obj
    headers = {"Content-Type": "text/calendar; charset=utf-8"}
    status, body = _dav(radicale, "PUT", "/alice/board/meeting-42.ics", obj, headers)
    assert status == 201, body
    status, body = _dav(radicale, "GET", "/alice/board/meeting-42.ics")
    assert status == 200
    stored = vobj(body).vevent
    assert stored.uid.value == "meeting-42@tumorboard.example"
    assert stored.dtstart.value == make_event().start
    # A feed (no METHOD) with one event is a valid calendar object as it stands.
    feed = build_feed([make_event(uid="meeting-43@h", attendees=())], "Board")
    status, body = _dav(radicale, "PUT", "/alice/board/meeting-43.ics", feed, headers)
    assert status == 201, body


# --------------------------------------------------------------------------- real samples


def _sample_ids():
    return [p.name for p in SAMPLE_FILES] or ["(absent)"]


@pytest.fixture(params=SAMPLE_FILES or [None], ids=_sample_ids())
def sample(request) -> Path:
    if request.param is None:
        pytest.skip(f"real-client samples not found at {SAMPLES}")
    return request.param


def test_every_real_client_sample_parses(sample):
    data = sample.read_bytes()
    msg = parse_itip(data)
    independent = vobject.readOne(data.decode("utf-8"))
    assert msg.method == independent.method.value.upper()
    assert msg.uid == independent.vevent.uid.value
    seq = independent.vevent.contents.get("sequence")
    assert msg.sequence == (int(seq[0].value) if seq else 0)
    assert msg.dtstamp is None or msg.dtstamp.tzinfo is UTC
    assert msg.start is not None
    if isinstance(msg.start, datetime):
        assert msg.start.utcoffset() is not None
    attendees = independent.vevent.contents.get("attendee", [])
    expected = {}
    for a in attendees:
        address = re.sub(r"(?i)^mailto:", "", a.value).strip().lower()
        expected[address] = a.params.get("PARTSTAT", ["NEEDS-ACTION"])[0].upper()
    assert {r.email: r.partstat for r in msg.replies} == expected
    if msg.method == "REPLY":
        assert len(msg.replies) == 1
    # Wrapped in an email as clients send it, the result is the same.
    assert parse_itip(_as_email(data, "base64")) == msg


def _as_email(ics: bytes, cte: str, *, attachment_only: bool = False) -> bytes:
    """A fresh MIME wrapper: mixed > alternative > (plain, text/calendar) + .ics file."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "someone@example.org"
    msg["To"] = "mdt@tumorboard.example"
    msg["Subject"] = "Accepted: Breast MDT"
    msg.set_content("I will attend.")
    text = ics.decode("utf-8")
    if not attachment_only:
        msg.add_alternative(text, subtype="calendar", cte=cte, params={"method": "REPLY"})
    msg.add_attachment(ics, maintype="application", subtype="ics", filename="invite.ics")
    return bytes(msg)


def test_sample_quirks_are_read_right():
    if not SAMPLE_FILES:
        pytest.skip(f"real-client samples not found at {SAMPLES}")
    by_name = {p.name: parse_itip(p.read_bytes()) for p in SAMPLE_FILES}
    for name, msg in by_name.items():
        raw = unfold(SAMPLES.joinpath(name).read_text(encoding="utf-8"))
        if "X-RESPONSE-COMMENT=" in raw:
            comment = re.search(r'X-RESPONSE-COMMENT="([^"]*)"', raw).group(1)
            assert msg.replies[0].comment == comment, name
        if re.search(r"(?m)^DTSTAMP:\d{8}T\d{7}", raw):  # invalid DTSTAMP
            assert msg.dtstamp is None, name
        if "SENT-BY=" in raw and msg.method == "REPLY":
            assert msg.replies[0].sent_by, name
        if re.search(r"(?m)^RECURRENCE-ID", raw):
            assert msg.recurrence_id is not None, name
        tzid = re.search(r"(?m)^DTSTART;TZID=\"?([^\":]+)", raw)
        if tzid and "Standard Time" in tzid.group(1):  # Windows zone, mapped to IANA
            assert isinstance(msg.start.tzinfo, ZoneInfo), name


# --------------------------------------------------------------------------- quirks, fresh


REPLY_QUIRKS = (
    "BEGIN:VCALENDAR\n"
    "METHOD:reply\n"
    "BEGIN:VEVENT\n"
    "UID:meeting-42@tumorboard.example\n"
    "SEQUENCE:3\n"
    "DTSTAMP:2026071\n"  # invalid
    'DTSTART;TZID="Romance Standard Time":20260701T090000\n'  # quoted, Windows, no VTIMEZONE
    "RECURRENCE-ID;TZID=/vendor.example/Europe/Berlin:20260701T090000\n"
    'ATTENDEE;PARTSTAT=delegated;DELEGATED-TO="MAILTO:Carol@H.example","mailto:dan@h.example";'
    'SENT-BY="mailto:Secretary@H.example";EMAIL=alice@hospital.example;CN=Alice:urn:uuid:1234\n'
    "COMMENT:Sorry\\, clinic that day\\nCarol goes instead\n"
    "END:VEVENT\n"
    "END:VCALENDAR\n"
)


def test_fresh_quirks_reply():
    msg = parse_itip(REPLY_QUIRKS)
    assert msg.method == "REPLY"
    assert msg.dtstamp is None
    assert msg.start == datetime(2026, 7, 1, 9, tzinfo=ZoneInfo("Europe/Paris"))
    assert msg.recurrence_id == datetime(2026, 7, 1, 9, tzinfo=ZoneInfo("Europe/Berlin"))
    (reply,) = msg.replies
    assert reply.email == "alice@hospital.example"  # from EMAIL= (the URI is not mailto)
    assert reply.partstat == "DELEGATED"
    assert reply.delegated_to == ("carol@h.example", "dan@h.example")
    assert reply.sent_by == "secretary@h.example"
    assert reply.comment == "Sorry, clinic that day\nCarol goes instead"
    assert msg.organizer is None


def test_unknown_tzid_without_vtimezone_is_read_as_utc():
    ics = REPLY_QUIRKS.replace('"Romance Standard Time"', "Nowhere Standard Time 1")
    assert parse_itip(ics).start == datetime(2026, 7, 1, 9, tzinfo=UTC)


def test_email_quoted_printable_and_nested_alternative():
    ics = build_request(make_event(summary="Réunion MDT — 8bit ✓"))
    for cte in ("quoted-printable", "base64", "8bit"):
        assert parse_itip(_as_email(ics, cte)).uid == "meeting-42@tumorboard.example"
    assert parse_itip(_as_email(ics, "base64", attachment_only=True)).method == "REQUEST"
    # str input works as well as bytes
    assert parse_itip(_as_email(ics, "base64").decode("ascii")).sequence == 3
    reply = _ics(
        "METHOD:REPLY", "BEGIN:VEVENT", "UID:u1", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:a@b.example",
        "COMMENT:Running late — ✓", "END:VEVENT",
    )  # fmt: skip
    for cte in ("8bit", "quoted-printable", "base64"):
        assert parse_itip(_as_email(reply, cte)).replies[0].comment == "Running late — ✓"


def test_empty_feed_is_valid():
    ics = build_feed([], "Nothing yet")
    assert b"\r\n\r\n" not in ics
    assert vobj(ics).contents["x-wr-calname"][0].value == "Nothing yet"


def test_email_whose_ics_lacks_method_takes_the_mime_param():
    ics = as_calendar_object(build_request(make_event()))
    msg = parse_itip(_as_email(ics, "base64"))
    assert msg.method == "REPLY"  # from Content-Type: text/calendar; method=REPLY


def _ics(*lines: str) -> bytes:
    return "\r\n".join(["BEGIN:VCALENDAR", *lines, "END:VCALENDAR", ""]).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello world", "not iCalendar"),
        (b"", "not iCalendar"),
        (b"\x00\xff\xfe garbage", "not iCalendar"),
        (b"BEGIN:VCALENDAR\r\nfoo\r\nEND:VCALENDAR\r\n", "unparsable"),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n", "unparsable"),
        (_ics("VERSION:2.0", "BEGIN:VEVENT", "UID:x", "END:VEVENT"), "no METHOD"),
        (_ics("METHOD:REPLY"), "no VEVENT"),
        (_ics("METHOD:REPLY", "BEGIN:VEVENT", "UID:x", "END:VEVENT"), "no ATTENDEE"),
        (_ics("METHOD:REPLY", "BEGIN:VEVENT", "ATTENDEE:mailto:a@b.c", "END:VEVENT"), "no UID"),
        (b"From: a@b.c\r\nSubject: hi\r\n\r\njust text\r\n", "not iCalendar"),
    ],
)
def test_malformed_input_raises_a_clear_itip_error(data, message):
    with pytest.raises(ItipError, match=message) as info:
        parse_itip(data)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


# --------------------------------------------------------------------------- iMIP


def test_imip_message_structure():
    ics = build_request(make_event(summary="Breast MDT — July"))
    msg = build_imip_message(
        ics=ics,
        method="REQUEST",
        subject="Invitation: Breast MDT",
        text="You are invited.",
        html="<p>You are invited.</p>",
        sender="MDT <mdt@tumorboard.example>",
        to="alice@hospital.example",
        message_id="<outbox-42@tumorboard.example>",
    )
    raw = msg.as_bytes()
    assert bytes(msg) == raw and b"\r\n" in raw
    back = email.message_from_bytes(raw, policy=email.policy.default)
    assert back["Message-ID"] == "<outbox-42@tumorboard.example>"
    assert back["Subject"] == "Invitation: Breast MDT"
    assert back["Date"].datetime.tzinfo is not None
    assert back.get_content_type() == "multipart/mixed"
    alternative, attachment = back.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html, calendar_part = alternative.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert calendar_part.get_content_type() == "text/calendar"
    assert calendar_part.get_param("method") == "REQUEST"
    assert calendar_part.get_content_charset() == "utf-8"
    assert calendar_part.get_payload(decode=True) == ics
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_param("name") == "invite.ics"
    assert attachment.get_payload(decode=True) == ics
    assert parse_itip(raw).uid == "meeting-42@tumorboard.example"


def test_imip_cancel_and_refusals():
    ics = build_cancel(make_event())
    msg = build_imip_message(
        ics=ics, method="cancel", subject="Cancelled", text="x", sender="a@b.example",
        to="c@d.example", message_id="<outbox-43@h>", date=STAMP,
    )  # fmt: skip
    back = email.message_from_bytes(bytes(msg), policy=email.policy.default)
    assert back.get_payload()[0].get_payload()[-1].get_param("method") == "CANCEL"
    assert back["Date"].datetime == STAMP
    common = {"subject": "s", "text": "t", "sender": "a@b.example", "to": "c@d.example"}
    with pytest.raises(ValueError, match="METHOD:REQUEST"):
        build_imip_message(ics=ics, method="REQUEST", message_id="<m@h>", **common)
    with pytest.raises(ValueError, match="message_id"):
        build_imip_message(ics=ics, method="CANCEL", message_id="no-brackets", **common)
    with pytest.raises(ValueError):
        injected = {**common, "subject": "a\r\nBcc: x@y"}
        build_imip_message(ics=ics, method="CANCEL", message_id="<m@h>", **injected)
