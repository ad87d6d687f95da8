"""The outbox: write every email with the change that caused it, deliver it later with retries.

`enqueue` stores the whole serialised message in the caller's transaction, so a rolled-back
change sends nothing and a committed one is never lost. `deliver_due` (the scheduler's job)
sends what is due and commits after each message.

The one possible duplicate: a process killed after the SMTP server accepted a message but before
its row was marked sent re-sends it on the next run. It is the same bytes with the same
Message-ID, so mail clients and calendar clients merge the two copies.
"""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage
from tumorboard.notifications.smtp import MESSAGE_ERRORS, SmtpSender

#: send(from_addr, to_addrs, data): raises on failure
SendFunction = Callable[[str, Sequence[str], bytes], None]

DEFAULT_MAX_ATTEMPTS = 10
MAX_BACKOFF = timedelta(hours=1)


def mail_host() -> str:
    """The host part of our Message-IDs: the public host name, else the sender's domain."""
    host = urlsplit(current_app.config.get("SERVER_NAME_FOR_LINKS") or "").hostname
    if not host:
        host = parseaddr(current_app.config["MAIL_FROM"])[1].rpartition("@")[2] or "localhost"
    return host


def new_message_id() -> str:
    """A fresh, globally unique Message-ID `<tb-{uuid}@{host}>`."""
    return f"<tb-{uuid.uuid4().hex}@{mail_host()}>"


def sender_address() -> str:
    """The envelope sender and organizer address (MAIL_FROM, bare address)."""
    return parseaddr(current_app.config["MAIL_FROM"])[1] or current_app.config["MAIL_FROM"]


def build_text_message(*, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text email from MAIL_FROM (name "tumorboard"); `enqueue` adds the Message-ID."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = formataddr(("tumorboard", sender_address()))
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now_utc())
    msg["MIME-Version"] = "1.0"
    msg.set_content(text, charset="utf-8", cte="7bit" if text.isascii() else "quoted-printable")
    return msg


@dataclass(frozen=True)
class Draft:
    """One serialised email for `enqueue_many`: its Message-ID is the one inside `body`."""

    kind: str
    to: str
    message_id: str
    subject: str
    body: bytes
    dedupe_key: str | None = None


def enqueue(
    *, kind: str, to: str, message: EmailMessage, dedupe_key: str | None = None
) -> OutboxMessage | None:
    """Write `message` to the outbox in the current transaction; the caller commits.

    The message keeps the Message-ID it carries (e.g. from `new_message_id()`), else gets one
    here; that id is stored and never changes. With a `dedupe_key` already in the outbox nothing
    is written and None is returned: that is how "send once" messages stay once.
    """
    if dedupe_key is not None and _dedupe_taken(dedupe_key):
        return None
    message_id = message.get("Message-ID")
    if not message_id:
        message_id = new_message_id()
        message["Message-ID"] = message_id
    return _write(Draft(kind=kind, to=to, message_id=str(message_id), dedupe_key=dedupe_key,
                        subject=str(message.get("Subject", "")), body=message.as_bytes(policy=policy.SMTP)))


def enqueue_many(drafts: Sequence[Draft]) -> list[bool]:
    """`enqueue` for many serialised messages, in order, with one executemany INSERT; the caller
    commits. For each draft, whether it was written (False: its dedupe_key is in the outbox
    already, or on an earlier draft). The rows are not loaded into the session."""
    taken = _taken_keys({d.dedupe_key for d in drafts if d.dedupe_key is not None})
    now = now_utc()
    rows, written = [], []
    for draft in drafts:
        fresh = draft.dedupe_key is None or draft.dedupe_key not in taken
        if fresh:
            rows.append(_values(draft, now))
            if draft.dedupe_key is not None:
                taken.add(draft.dedupe_key)
        written.append(fresh)
    if not rows:
        return written
    insert = sa.insert(OutboxMessage.__table__)
    if not any(row["dedupe_key"] for row in rows):
        db.session.execute(insert, rows)
        return written
    try:  # a concurrent writer may have taken a key since we looked: then one by one
        with db.session.begin_nested():
            db.session.execute(insert, rows)
    except IntegrityError:
        return [fresh and _write(draft) is not None for draft, fresh in zip(drafts, written, strict=True)]
    return written


def _values(draft: Draft, now: datetime) -> dict[str, Any]:
    return {"kind": draft.kind, "to_addr": draft.to, "message_id": draft.message_id,
            "dedupe_key": draft.dedupe_key, "subject": draft.subject[:300], "body": draft.body,
            "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}


def _write(draft: Draft) -> OutboxMessage | None:
    """One outbox row through the ORM (None when its dedupe_key is taken meanwhile)."""
    row = OutboxMessage(**_values(draft, now_utc()))
    if draft.dedupe_key is None:
        db.session.add(row)
        db.session.flush()
        return row
    try:  # a concurrent writer may have taken the key since we looked
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        if _dedupe_taken(draft.dedupe_key):
            return None
        raise
    return row


def _dedupe_taken(key: str) -> bool:
    return db.session.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)) is not None


def _taken_keys(keys: set[str]) -> set[str]:
    """Of these dedupe keys, those already in the outbox."""
    if not keys:
        return set()
    return set(db.session.scalars(
        sa.select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(keys))))


@dataclass
class DeliveryReport:
    """What one `deliver_due` run did (counts and the ids of the rows concerned)."""

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    #: the server was unreachable: the run stopped, the rest waits for the next run
    stopped: bool = False

    @property
    def attempted(self) -> int:
        return len(self.sent) + len(self.failed) + len(self.dead)


def backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after `attempts` failures: 1, 2, 4 … minutes, at most 1 h."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _next_due(now: datetime, skip: set[int]) -> OutboxMessage | None:
    query = (
        sa.select(OutboxMessage)
        .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if skip:
        query = query.where(OutboxMessage.id.not_in(skip))
    return db.session.scalar(query)


def deliver_due(
    *, now: datetime | None = None, batch: int = 50, send: SendFunction | None = None
) -> DeliveryReport:
    """Send up to `batch` due pending messages, committing after each one.

    Each row is locked while it is sent (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two
    workers never send the same row. A failure adds an attempt, records the error and waits
    1, 2, 4 … minutes (capped at 1 h); after OUTBOX_MAX_ATTEMPTS the row is dead. When the
    server cannot be reached the run stops: the remaining rows stay pending, untouched.
    `send` replaces SMTP (tests); `now` defaults to the current time.
    """
    now = now or now_utc()
    max_attempts = int(current_app.config.get("OUTBOX_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
    own_sender = send is None
    sender: SendFunction = SmtpSender() if send is None else send
    report = DeliveryReport()
    from_addr = sender_address()
    done: set[int] = set()
    try:
        for _ in range(batch):
            row = _next_due(now, done)
            if row is None:
                break
            done.add(row.id)
            try:
                sender(from_addr, [row.to_addr], row.body)
            except Exception as exc:  # noqa: BLE001 - any failure is recorded on the row
                row.attempts += 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                if row.attempts >= max_attempts:
                    row.status = "dead"
                    report.dead.append(row.id)
                else:
                    row.next_attempt_at = now + backoff(row.attempts)
                    report.failed.append(row.id)
                db.session.commit()
                if _server_unreachable(exc):
                    report.stopped = True
                    break
                continue
            # A crash here (sent, not yet marked) is the one possible duplicate: see the module doc.
            row.status = "sent"
            row.sent_at = now
            row.attempts += 1
            row.last_error = None
            db.session.commit()
            report.sent.append(row.id)
    finally:
        if own_sender and isinstance(sender, SmtpSender):
            sender.close()
    return report


def _server_unreachable(exc: Exception) -> bool:
    if isinstance(exc, MESSAGE_ERRORS):
        return False
    return isinstance(exc, OSError | smtplib.SMTPException)
