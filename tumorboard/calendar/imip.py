"""iMIP (RFC 6047): wrap an iTIP ``.ics`` into the email calendar clients expect.

Structure (what Outlook, Gmail, Apple Mail and Thunderbird all recognise)::

    multipart/mixed
      multipart/alternative
        text/plain                       the human text
        text/html                        optional
        text/calendar; method=...        the invite itself (RFC 6047 2.4)
      application/ics; name=invite.ics   the same bytes as an attachment

Privacy rule (DESIGN.md): the mail leaves the hospital - subject, text and ics
must carry no PHI; this module adds nothing beyond what the caller passes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

__all__ = ["ITIP_METHODS", "build_imip_message"]

ITIP_METHODS = frozenset(
    {"PUBLISH", "REQUEST", "REPLY", "ADD", "CANCEL", "REFRESH", "COUNTER", "DECLINECOUNTER"}
)

_MESSAGE_ID_RE = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")


def _text_cte(text: str) -> str:
    # 7bit where possible; quoted-printable keeps non-ASCII text 7-bit safe.
    return "7bit" if text.isascii() else "quoted-printable"


def build_imip_message(
    *,
    ics: bytes,
    method: str,
    subject: str,
    text: str,
    sender: str,
    to: str,
    message_id: str,
    html: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """Build the iMIP email carrying ``ics`` (bytes from tumorboard.calendar.ical).

    ``method`` must equal the METHOD inside ``ics`` (checked). ``message_id`` is the
    caller's stable id, e.g. ``<outbox-42@host>``, so a retried delivery is the same
    message. ``date`` defaults to now (UTC). Serialise with ``msg.as_bytes()`` or
    ``bytes(msg)`` (CRLF line endings, SMTP policy).
    """
    method = method.upper()
    if method not in ITIP_METHODS:
        raise ValueError(f"unknown iTIP method {method!r}")
    if not re.search(rb"(?m)^METHOD:" + method.encode() + rb"\r?$", ics):
        raise ValueError(f"the ics does not carry METHOD:{method}")
    if not _MESSAGE_ID_RE.match(message_id):
        raise ValueError(f"message_id must look like <id@host>, got {message_id!r}")
    when = date if date is not None else datetime.now(UTC)
    if when.utcoffset() is None:
        raise ValueError("date must be timezone-aware")

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender  # header values with CR/LF are refused by the policy
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id
    msg["MIME-Version"] = "1.0"

    # MIMEPart (not EmailMessage) for the parts: no MIME-Version header inside.
    alternative = MIMEPart(policy=policy.SMTP)
    alternative.set_content(text, subtype="plain", charset="utf-8", cte=_text_cte(text))
    if html is not None:
        alternative.add_alternative(html, subtype="html", charset="utf-8", cte=_text_cte(html))
    ics_text = ics.decode("utf-8")
    alternative.add_alternative(
        ics_text,
        subtype="calendar",
        charset="UTF-8",
        # ics lines are folded at 75 octets, so ASCII ics is 7-bit clean.
        cte="7bit" if ics_text.isascii() else "base64",
        params={"method": method},
    )
    attachment = MIMEPart(policy=policy.SMTP)
    attachment.set_content(
        ics,
        maintype="application",
        subtype="ics",
        disposition="attachment",
        filename="invite.ics",
        params={"name": "invite.ics"},
    )
    msg["Content-Type"] = "multipart/mixed"
    msg.attach(alternative)
    msg.attach(attachment)
    return msg
