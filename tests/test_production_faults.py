"""Faults as production meets them, on PostgreSQL with committed data: the database connection
dropped in the middle of a job, a process killed between sending a mail and marking it sent, an
SMTP server refusing one message of a batch. (SMTP down before a batch and going away in the
middle of one: tests/test_notifications_outbox.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import OperationalError

from tests.factories import ready_cases_and_two_meetings
from tests.smtp_fixture import Collector, SmtpServer, free_port
from tumorboard.audit.models import AuditEvent
from tumorboard.cases.models import Assignment, Case
from tumorboard.extensions import db
from tumorboard.jobs.tasks import JOBS, run_job
from tumorboard.notifications.models import OutboxMessage
from tumorboard.notifications.services import build_text_message, deliver_due, enqueue
from tumorboard.notifications.smtp import SmtpSender

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.postgres


@pytest.fixture
def smtp(pg_app: Flask) -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    pg_app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_TIMEOUT=5)
    yield server
    server.stop()


def terminate_own_backend() -> None:
    """Kill this session's PostgreSQL connection from another connection (an admin, a failover,
    a network cut look the same to us)."""
    pid = db.session.scalar(sa.text("SELECT pg_backend_pid()"))
    with db.engine.connect() as admin:
        assert admin.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def queue(n: int) -> list[tuple[int, str]]:
    """n committed outbox messages; (id, Message-ID) each."""
    rows = []
    for i in range(n):
        to = f"person{i}@example.org"
        row = enqueue(kind="alert", to=to, message=build_text_message(to=to, subject=f"m{i}", text="x"))
        rows.append(row)
    db.session.commit()
    return [(row.id, row.message_id) for row in rows]


def statuses() -> list[str]:
    return list(db.session.scalars(sa.select(OutboxMessage.status).order_by(OutboxMessage.id)))


# --- the database connection dropped in the middle of a job --------------------------------

def test_connection_dropped_during_the_assign_job_leaves_nothing_half_applied(
    pg_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tumorboard.planning import bulk

    with pg_app.app_context():
        ready_cases_and_two_meetings(12)
        audit_before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
        db.session.remove()

    real_status = bulk.change_status_many

    def lose_the_database_then_schedule(*args: Any, **kwargs: Any) -> Any:
        terminate_own_backend()  # the cases placed (written, not committed), then the connection dies
        return real_status(*args, **kwargs)

    monkeypatch.setattr(bulk, "change_status_many", lose_the_database_then_schedule)
    with pytest.raises(OperationalError):
        run_job(pg_app, "assign", JOBS["assign"])
    monkeypatch.setattr(bulk, "change_status_many", real_status)

    with pg_app.app_context():  # rolled back as a whole: no case placed, nothing audited
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Assignment)) == 0
        assert set(db.session.scalars(sa.select(Case.status))) == {"ready"}
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == audit_before
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0
        db.session.remove()

    assert run_job(pg_app, "assign", JOBS["assign"]) == 12  # the next run (a new connection) completes
    with pg_app.app_context():
        placed = db.session.execute(sa.select(Assignment.case_id, sa.func.count())
                                    .where(Assignment.active.is_(True)).group_by(Assignment.case_id)).all()
        assert len(placed) == 12 and all(count == 1 for _, count in placed)
        assert set(db.session.scalars(sa.select(Case.status))) == {"scheduled"}
        db.session.remove()


def test_connection_dropped_after_a_send_resends_only_that_message_with_its_message_id(
    pg_app: Flask, smtp: SmtpServer
) -> None:
    """The SMTP server took message 3, then the job's connection died before the row was marked
    sent: the job fails; messages 1–2 stay sent, 3 is sent again on the next run (the one
    documented duplicate: same bytes, same Message-ID), 4–5 once."""
    with pg_app.app_context():
        rows = queue(5)
        real = SmtpSender()
        sent: list[str] = []

        def send(from_addr: str, to_addrs: Any, data: bytes) -> None:
            real(from_addr, to_addrs, data)
            sent.append(to_addrs[0])
            if len(sent) == 3:
                terminate_own_backend()

        try:
            with pytest.raises(OperationalError):
                deliver_due(send=send)
        finally:
            real.close()
        db.session.rollback()
        db.session.remove()

    with pg_app.app_context():
        assert statuses() == ["sent", "sent", "pending", "pending", "pending"]
        assert JOBS["deliver-outbox"]() == 3  # the next run, on a new connection
        assert statuses() == ["sent"] * 5
        db.session.remove()
    ids = smtp.message_ids()
    assert sorted(ids) == sorted([m for _, m in rows] + [rows[2][1]])  # all, and message 3 twice
    third = [r.data for r in smtp.received if r.message_id == rows[2][1]]
    assert len(third) == 2 and third[0] == third[1]


# --- a scheduler process killed between sending and marking sent ---------------------------

KILLED_AFTER_SENDING = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from tumorboard import create_app
    from tumorboard.notifications.services import deliver_due
    from tumorboard.notifications.smtp import SmtpSender

    app = create_app("testing", SQLALCHEMY_DATABASE_URI={url!r}, SMTP_HOST="127.0.0.1", SMTP_PORT={port})
    with app.app_context():
        real, count = SmtpSender(), []

        def send(from_addr, to_addrs, data):
            real(from_addr, to_addrs, data)
            count.append(1)
            if len(count) == {k}:
                os.kill(os.getpid(), signal.SIGKILL)  # accepted by the server, row not yet marked

        deliver_due(send=send)
""")


def test_a_process_killed_between_send_and_commit_resends_that_message_once_with_the_same_id(
    pg_app: Flask, smtp: SmtpServer, scratch_postgres: str
) -> None:
    with pg_app.app_context():
        rows = queue(4)
        db.session.remove()
    script = KILLED_AFTER_SENDING.format(root=str(ROOT), url=scratch_postgres, port=smtp.port, k=2)
    killed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PGAPPNAME": "tb-killed"})
    assert killed.returncode == -9, killed.stderr
    assert sorted(smtp.message_ids()) == sorted(m for _, m in rows[:2])

    with pg_app.app_context():
        # PostgreSQL notices the dead client and rolls its transaction back (bounded wait).
        deadline = time.monotonic() + 30
        gone = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tb-killed'")
        while db.session.scalar(gone):
            assert time.monotonic() < deadline, "the killed process's session never ended"
            db.session.rollback()
            time.sleep(0.02)
        assert statuses() == ["sent", "pending", "pending", "pending"]  # message 2 sent, not marked
        assert JOBS["deliver-outbox"]() == 3
        assert statuses() == ["sent"] * 4
        db.session.remove()
    ids = smtp.message_ids()
    assert sorted(ids) == sorted([m for _, m in rows] + [rows[1][1]])
    assert ids.count(rows[1][1]) == 2 and all(ids.count(m) == 1 for i, (_, m) in enumerate(rows) if i != 1)
    second = [r.data for r in smtp.received if r.message_id == rows[1][1]]
    assert second[0] == second[1]  # the same bytes: mail and calendar clients merge the two


# --- the SMTP server refuses one message of a batch (a transient 4xx on DATA) --------------

class RefuseOneData(Collector):
    """Answers 451 (try again later) to the DATA of one recipient, once."""

    def __init__(self, recipient: str) -> None:
        super().__init__()
        self.recipient, self.refused = recipient, 0

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if self.recipient in envelope.rcpt_tos and not self.refused:
            self.refused += 1
            return "451 4.3.0 temporary local problem, try later"
        return await super().handle_DATA(server, session, envelope)


def test_smtp_failing_on_message_k_retries_that_one_and_delivers_the_rest_once(
    pg_app: Flask, smtp: SmtpServer
) -> None:
    smtp.stop()
    smtp.handler = RefuseOneData("person2@example.org")
    smtp.start()
    with pg_app.app_context():
        rows = queue(5)
        now = datetime.now(UTC)
        report = deliver_due(now=now)
        assert report.failed == [rows[2][0]] and len(report.sent) == 4 and not report.stopped
        assert statuses() == ["sent", "sent", "pending", "sent", "sent"]
        assert deliver_due(now=now).attempted == 0  # waits its backoff
        assert deliver_due(now=now + timedelta(minutes=2)).sent == [rows[2][0]]
        db.session.remove()
    assert sorted(smtp.message_ids()) == sorted(m for _, m in rows)  # each exactly once
