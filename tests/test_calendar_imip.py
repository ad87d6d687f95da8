"""imip_bytes writes what the stdlib `email` package writes for the iMIP structure, byte for byte
(boundaries aside, random in both): the reference below is the EmailMessage build it replaced."""

from __future__ import annotations

import email
import email.policy
import itertools
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

import pytest

from tumorboard.calendar import imip
from tumorboard.calendar.ical import Attendee, MeetingEvent, build_cancel, build_request
from tumorboard.calendar.imip import build_imip_message, header_text, imip_bytes

SMTP = email.policy.SMTP


def stdlib_imip(*, ics: bytes, method: str, subject: str, text: str, sender: str, to: str,
                message_id: str, date: datetime, html: str | None = None) -> bytes:
    """The iMIP message as EmailMessage + set_content build it (the SMTP policy)."""
    def cte(value: str) -> str:
        return "7bit" if value.isascii() else "quoted-printable"

    msg = EmailMessage(policy=SMTP)
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"], msg["Message-ID"], msg["MIME-Version"] = format_datetime(date), message_id, "1.0"
    alternative = MIMEPart(policy=SMTP)
    alternative.set_content(text, subtype="plain", charset="utf-8", cte=cte(text))
    if html is not None:
        alternative.add_alternative(html, subtype="html", charset="utf-8", cte=cte(html))
    ics_text = ics.decode()
    alternative.add_alternative(ics_text, subtype="calendar", charset="UTF-8",
                                cte="7bit" if ics_text.isascii() else "base64", params={"method": method})
    attachment = MIMEPart(policy=SMTP)
    attachment.set_content(ics, maintype="application", subtype="ics", disposition="attachment",
                           filename="invite.ics", params={"name": "invite.ics"})
    msg["Content-Type"] = "multipart/mixed"
    msg.attach(alternative)
    msg.attach(attachment)
    return msg.as_bytes(policy=SMTP)


def same_boundaries(data: bytes) -> bytes:
    for n, boundary in enumerate(re.findall(rb'boundary="([^"]+)"', data)):
        data = data.replace(boundary, b"BOUNDARY-%d" % n)
    return data


def event(**kw: object) -> MeetingEvent:
    values: dict[str, object] = {
        "uid": "meeting-1@tumorboard.test", "sequence": 2, "start": datetime(2031, 1, 7, 8, tzinfo=UTC),
        "end": datetime(2031, 1, 7, 9, tzinfo=UTC), "tzid": "Europe/London", "summary": "Breast MDT",
        "organizer_email": "tumorboard@localhost", "organizer_name": "tumorboard",
        "dtstamp": datetime(2031, 1, 1, tzinfo=UTC), "location": "Room 4",
        "description": "1 case on the agenda.\nAnswer: http://tumorboard.test/rsvp/abc.def",
        "attendees": (Attendee(email="path@example.org", name="Dr Pat Hology"),), **kw}
    return MeetingEvent(**values)  # type: ignore[arg-type]


ICS = {
    "request": build_request(event()),
    "non-ascii cancel": build_cancel(event(summary="Brust- und Lungen-MDT — Zürich",
                                           attendees=(Attendee(email="u@example.org", name="Dr Ünï"),))),
    "long description": build_request(event(description="x" * 400)),
}
SUBJECTS = ["Invitation: Breast MDT, Tue 7 Jan 2031, 08:00–09:00 (Europe/London)", "Cancelled",
            "Updated: " + "A very long board name " * 5 + "— ünïcode",
            "a; b, c: \"quoted\" (paren) =?utf-8?q?x?="]
TEXTS = ["Invitation\n\nWhere: Room 4\n1 case on the agenda.\n", "", "no final newline",
         "ünïcode – text\n" + "long line " * 20 + "\n", "a\r\nb\rc\n\ttab  \n"]
PEOPLE = [("tumorboard <tumorboard@localhost>", "path@example.org"),
          ("MDT Büro <mdt@tumorboard.example>", "Dr Ünï <u@example.org>")]


@pytest.mark.parametrize("ics_name", ICS)
@pytest.mark.parametrize("html", [None, "<p>Grüße</p>"])
@pytest.mark.parametrize("date", [datetime(2031, 1, 1, 9, tzinfo=UTC),
                                  datetime(2031, 6, 1, 9, 30, 5, tzinfo=timezone(timedelta(hours=2)))])
def test_imip_bytes_are_the_stdlib_message(ics_name: str, html: str | None, date: datetime) -> None:
    ics = ICS[ics_name]
    method = "CANCEL" if b"METHOD:CANCEL" in ics else "REQUEST"
    for subject, text, (sender, to) in itertools.product(SUBJECTS, TEXTS, PEOPLE):
        args = {"ics": ics, "method": method, "subject": subject, "text": text, "sender": sender, "to": to,
                "message_id": "<tb-0123456789abcdef@tumorboard.test>", "date": date, "html": html}
        data = imip_bytes(**args)  # type: ignore[arg-type]
        assert same_boundaries(data) == same_boundaries(stdlib_imip(**args))  # type: ignore[arg-type]
        msg = email.message_from_bytes(data, policy=SMTP)
        assert msg.as_bytes() == data  # parsed and written again: the same bytes
        assert header_text("Subject", subject) == str(msg["Subject"])


def test_build_imip_message_is_imip_bytes_parsed() -> None:
    args = {"ics": ICS["request"], "method": "request", "subject": SUBJECTS[0], "text": TEXTS[0],
            "sender": PEOPLE[0][0], "to": PEOPLE[0][1], "message_id": "<tb-1@tumorboard.test>",
            "date": datetime(2031, 1, 1, 9, tzinfo=UTC)}
    msg = build_imip_message(**args)  # type: ignore[arg-type]
    assert same_boundaries(bytes(msg)) == same_boundaries(imip_bytes(**args))  # type: ignore[arg-type]
    assert same_boundaries(msg.as_bytes()) == same_boundaries(stdlib_imip(**{**args, "method": "REQUEST"}))
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        imip_bytes(**{**args, "to": "a@example.org\r\nBcc: x@example.org"})  # type: ignore[arg-type]


def test_a_boundary_found_in_the_content_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([1, 1, 2, 3])  # the first two collide with the text
    monkeypatch.setattr(imip._random, "randrange", lambda _stop: next(draws))
    taken = "--" + "=" * 15 + "1".zfill(19) + "=="
    data = imip_bytes(ics=ICS["request"], method="REQUEST", subject="s", text=f"{taken}\n",
                      sender="a@example.org", to="b@example.org", message_id="<m@h>")
    boundaries = re.findall(rb'boundary="([^"]+)"', data)
    assert [int(b.strip(b"=")) for b in boundaries] == [3, 2]  # mixed (drawn last), alternative
    assert all(data.count(b"--" + boundary) == 3 for boundary in boundaries)  # start, between, close
