"""The outbox: written with the change, delivered to a real SMTP server, nothing lost or doubled."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests import smtp_fixture
from tests.smtp_fixture import SmtpServer
from tumorboard.calendar.ical import Attendee, MeetingEvent, build_request
from tumorboard.calendar.imip import build_imip_message
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage
from tumorboard.notifications.services import (
    backoff,
    build_text_message,
    deliver_due,
    enqueue,
    new_message_id,
)
from tumorboard.notifications.smtp import SmtpSender

NOW = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)
smtp_server = smtp_fixture.smtp_server  # a real SMTP server (aiosmtpd) per test


def invite_message(to: str) -> object:
    event = MeetingEvent(
        uid="meeting-1@tumorboard.test", sequence=0, start=datetime(2031, 1, 7, 8, tzinfo=UTC),
        end=datetime(2031, 1, 7, 9, tzinfo=UTC), tzid="Europe/London", summary="Breast MDT",
        organizer_email="tumorboard@localhost", dtstamp=NOW, attendees=(Attendee(email=to),),
    )
    return build_imip_message(ics=build_request(event), method="REQUEST", subject="Invitation: Breast MDT",
                              text="1 case on the agenda.", sender="tumorboard@localhost", to=to,
                              message_id=new_message_id())


def queue(n: int, *, prefix: str = "person") -> list[OutboxMessage]:
    rows = []
    for i in range(n):
        to = f"{prefix}{i}@example.org"
        row = enqueue(kind="invite", to=to, message=invite_message(to))
        assert row is not None
        rows.append(row)
    db.session.commit()
    return rows


def outbox() -> list[OutboxMessage]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def test_enqueue_is_part_of_the_callers_transaction(app) -> None:
    savepoint = db.session.begin_nested()
    enqueue(kind="alert", to="a@example.org",
            message=build_text_message(to="a@example.org", subject="Hello", text="Body"))
    savepoint.rollback()  # the change that caused it was rolled back: no mail either
    assert outbox() == []
    row = enqueue(kind="alert", to="a@example.org",
                  message=build_text_message(to="a@example.org", subject="Hello", text="Body"))
    assert row is not None and row.status == "pending" and row.subject == "Hello"
    assert row.message_id.startswith("<tb-") and row.message_id.endswith("@tumorboard.test>")
    assert f"Message-ID: {row.message_id}".encode() in row.body  # the id is inside the stored bytes


def test_dedupe_key_sends_once(app) -> None:
    first = enqueue(kind="alert", to="a@example.org", dedupe_key="quorum-alert:1:a@example.org",
                    message=build_text_message(to="a@example.org", subject="Quorum", text="x"))
    again = enqueue(kind="alert", to="a@example.org", dedupe_key="quorum-alert:1:a@example.org",
                    message=build_text_message(to="a@example.org", subject="Quorum", text="x"))
    assert first is not None and again is None
    assert len(outbox()) == 1


def test_delivery_reaches_the_smtp_server_with_the_calendar_part(smtp_server: SmtpServer) -> None:
    (row,) = queue(1)
    report = deliver_due(now=NOW)
    assert report.sent == [row.id] and not report.stopped
    (received,) = smtp_server.received
    assert received.rcpt_tos == ["person0@example.org"]
    assert received.data.replace(b"\r\n", b"\n") == row.body.replace(b"\r\n", b"\n")
    msg = received.message
    assert msg["Message-ID"] == row.message_id
    calendar = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert calendar.get_param("method") == "REQUEST"
    assert "METHOD:REQUEST" in calendar.get_content()
    (stored,) = outbox()
    assert stored.status == "sent" and stored.sent_at == NOW and stored.attempts == 1
    assert deliver_due(now=NOW + timedelta(hours=1)).attempted == 0  # nothing is sent twice


def test_smtp_down_keeps_everything_pending_then_delivers_each_once(smtp_server: SmtpServer) -> None:
    rows = queue(3)
    smtp_server.stop()
    report = deliver_due(now=NOW)
    assert report.stopped and report.sent == [] and report.failed == [rows[0].id]
    first, *rest = outbox()
    assert first.status == "pending" and first.attempts == 1 and "Connection" in (first.last_error or "")
    assert first.next_attempt_at == NOW + timedelta(minutes=1)
    assert all(r.status == "pending" and r.attempts == 0 for r in rest)  # untouched

    smtp_server.start()
    assert deliver_due(now=NOW + timedelta(seconds=30)).sent == [r.id for r in rows[1:]]  # first not yet due
    assert deliver_due(now=NOW + timedelta(minutes=2)).sent == [rows[0].id]
    assert sorted(smtp_server.message_ids()) == sorted(r.message_id for r in rows)  # each exactly once
    assert all(r.status == "sent" for r in outbox())


def test_outage_in_the_middle_of_a_batch_loses_nothing_and_duplicates_nothing(
    smtp_server: SmtpServer, app
) -> None:
    rows = queue(5)
    calls = []

    with app.app_context():
        real = SmtpSender()

    def flaky(from_addr, to_addrs, data):  # the server goes away at the third message
        calls.append(to_addrs[0])
        if len(calls) == 3:
            smtp_server.stop()
        real(from_addr, to_addrs, data)

    try:
        report = deliver_due(now=NOW, send=flaky)
    finally:
        real.close()
    assert report.sent == [r.id for r in rows[:2]] and report.failed == [rows[2].id] and report.stopped
    assert [r.status for r in outbox()] == ["sent", "sent", "pending", "pending", "pending"]

    smtp_server.start()
    later = NOW + timedelta(minutes=5)
    assert sorted(deliver_due(now=later).sent) == [r.id for r in rows[2:]]
    ids = smtp_server.message_ids()
    assert sorted(ids) == sorted(r.message_id for r in rows) and len(set(ids)) == 5


def test_a_refused_recipient_fails_alone_and_the_batch_goes_on(smtp_server: SmtpServer) -> None:
    rows = queue(3)
    smtp_server.handler.refuse.add("person1@example.org")
    report = deliver_due(now=NOW)
    assert report.sent == [rows[0].id, rows[2].id] and report.failed == [rows[1].id]
    assert not report.stopped
    refused = outbox()[1]
    assert refused.status == "pending" and "550" in (refused.last_error or "")


def test_backoff_doubles_up_to_an_hour_then_the_message_is_dead(app, monkeypatch) -> None:
    assert [backoff(n).total_seconds() / 60 for n in (1, 2, 3, 4, 7, 8, 20)] == [1, 2, 4, 8, 60, 60, 60]
    monkeypatch.setitem(app.config, "OUTBOX_MAX_ATTEMPTS", 3)
    (row,) = queue(1)

    def down(*_args):
        raise smtplib.SMTPServerDisconnected("gone")

    now = NOW
    for expected_delay in (1, 2):
        assert deliver_due(now=now, send=down).failed == [row.id]
        (stored,) = outbox()
        assert stored.next_attempt_at == now + timedelta(minutes=expected_delay)
        assert deliver_due(now=now, send=down).attempted == 0  # not due yet
        now = stored.next_attempt_at
    assert deliver_due(now=now, send=down).dead == [row.id]
    (stored,) = outbox()
    assert stored.status == "dead" and stored.attempts == 3 and "gone" in stored.last_error
    assert deliver_due(now=now + timedelta(days=1), send=down).attempted == 0


def test_killed_after_sending_resends_the_same_bytes_with_the_same_message_id(
    smtp_server: SmtpServer, app
) -> None:
    (row,) = queue(1)

    class Killed(BaseException):
        pass

    with app.app_context():
        real = SmtpSender()

    def send_then_die(from_addr, to_addrs, data):
        real(from_addr, to_addrs, data)
        raise Killed  # the process dies before the row is marked sent

    with pytest.raises(Killed):
        deliver_due(now=NOW, send=send_then_die)
    real.close()
    db.session.rollback()
    assert outbox()[0].status == "pending"
    assert deliver_due(now=NOW).sent == [row.id]
    first, second = smtp_server.received
    assert first.data == second.data and first.message_id == second.message_id == row.message_id
