"""Concurrency on PostgreSQL as production runs it: committed data, separate connections.

Each test builds its own app on `scratch_postgres` (a fresh database, data really committed) and
runs the competing parties in threads with their own app contexts (so their own sessions and
connections) or in processes. On SQLite these tests are skipped: the single-writer file has no
row locks to test.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.factories import make_board, make_calendar_meeting, make_case, make_user, put_on_agenda
from tests.smtp_fixture import SmtpServer, free_port
from tumorboard.cases.models import Assignment, Case
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage
from tumorboard.notifications.services import build_text_message, deliver_due, enqueue
from tumorboard.notifications.smtp import SmtpSender

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.postgres


def in_thread(app: Flask, work: Callable[[], Any]) -> Any:
    """Run `work` in another thread, in its own app context (own session, own connection);
    return its result or raise its exception."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        with app.app_context():
            try:
                outcome["result"] = work()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                outcome["error"] = exc
            finally:
                db.session.remove()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the other party did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def wait_until_blocked(app: Flask, timeout: float = 30) -> None:
    """Poll (bounded) until some session of this database waits on a lock."""
    deadline = time.monotonic() + timeout
    query = sa.text("SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'")
    with app.app_context():
        with db.engine.connect() as conn:
            while conn.scalar(query) == 0:
                assert time.monotonic() < deadline, "nobody waited on a lock"
                time.sleep(0.01)
                conn.rollback()


def wait_until_connected(app: Flask, name: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Poll (bounded) until a process with application_name `name` is connected."""
    deadline = time.monotonic() + timeout
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
    with app.app_context():
        with db.engine.connect() as conn:
            while conn.scalar(query, {"name": name}) == 0:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, f"{name} never connected"
                time.sleep(0.01)
                conn.rollback()


def active(case_id: int) -> Assignment | None:
    return db.session.scalar(sa.select(Assignment).where(Assignment.case_id == case_id,
                                                         Assignment.active.is_(True)))


# --- (1) two scheduler processes never double-send ------------------------------------------

def test_two_deliveries_at_once_send_each_message_exactly_once(pg_app: Flask) -> None:
    server = SmtpServer(free_port())
    server.start()
    pg_app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=server.port, SMTP_TIMEOUT=5)
    try:
        with pg_app.app_context():
            for i in range(12):
                to = f"person{i}@example.org"
                enqueue(kind="alert", to=to, message=build_text_message(to=to, subject=f"m{i}", text="x"))
            db.session.commit()
            expected = sorted(db.session.scalars(sa.select(OutboxMessage.message_id)))
            db.session.remove()

        # Both workers hold a locked row at the same moment (the barrier), then drain the rest.
        both_busy = threading.Barrier(2, timeout=30)
        reports: list[Any] = []
        errors: list[BaseException] = []

        def worker() -> None:
            first = [True]
            with pg_app.app_context():
                real = SmtpSender()

                def send(from_addr: str, to_addrs: Any, data: bytes) -> None:
                    if first[0]:
                        first[0] = False
                        both_busy.wait()
                    real(from_addr, to_addrs, data)

                try:
                    reports.append(deliver_due(send=send))
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
                finally:
                    real.close()
                    db.session.remove()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(reports) == 2 and all(report.sent for report in reports)  # both really worked
        sent_ids = [i for report in reports for i in report.sent]
        assert len(sent_ids) == len(set(sent_ids)) == 12
        assert sorted(server.message_ids()) == expected  # each Message-ID arrived exactly once
        with pg_app.app_context():
            statuses = set(db.session.scalars(sa.select(OutboxMessage.status)))
            db.session.remove()
        assert statuses == {"sent"}
    finally:
        server.stop()


# --- (2) no lost update between a coordinator and the engine --------------------------------

def _board_with_two_meetings() -> tuple[Any, Any, Any]:
    now = datetime.now(UTC)
    board = make_board(sites=("breast",), specialties=(), capacity_minutes=120)
    soon = make_calendar_meeting(board, start=now + timedelta(days=3), capacity_minutes=120)
    later = make_calendar_meeting(board, start=now + timedelta(days=10), capacity_minutes=120)
    return board, soon, later


def test_a_pin_committed_while_the_engine_solves_survives_the_engine(pg_app: Flask) -> None:
    """The engine's Problem says "case on `later`, not pinned, past its deadline there: move it to
    `soon`". Before the engine applies, a coordinator pins it on `later` and commits. The engine
    must see the pin (re-read under FOR UPDATE, not its cached snapshot objects) and leave it."""
    from tumorboard.cases.assignments import set_pinned
    from tumorboard.planning.services import apply_plan, build_problem, solve_snapshot

    with pg_app.app_context():
        _, soon, later = _board_with_two_meetings()
        case = make_case(status="scheduled", ready_at=datetime.now(UTC) - timedelta(days=3), specialties=(),
                         deadline=date.today() + timedelta(days=6))
        put_on_agenda(case, later, source="engine")
        db.session.commit()
        case_id, soon_id, later_id = case.id, soon.id, later.id
        db.session.remove()

    with pg_app.app_context():
        snapshot = build_problem()
        plan = solve_snapshot(snapshot)
        assert {"case": f"c{case_id}", "meeting": f"m{soon_id}"} in plan["assignments"]

        def coordinator_pins() -> None:
            set_pinned(active(case_id), True)
            db.session.commit()

        in_thread(pg_app, coordinator_pins)
        result = apply_plan(snapshot, plan)
        db.session.commit()
        assert result.skipped_stale == [case_id] and result.changes == []
        db.session.remove()

    with pg_app.app_context():
        kept = active(case_id)
        assert kept is not None and kept.meeting_id == later_id and kept.pinned
        db.session.remove()


def test_a_case_withdrawn_while_the_engine_solves_stays_withdrawn(pg_app: Flask) -> None:
    """The engine plans to place a ready case; a coordinator withdraws it and commits first. The
    engine must not put it on an agenda nor write "scheduled" over "withdrawn"."""
    from tumorboard.cases.services import set_status
    from tumorboard.planning.services import apply_plan, build_problem, solve_snapshot

    with pg_app.app_context():
        _, soon, _ = _board_with_two_meetings()
        case = make_case(status="ready", ready_at=datetime.now(UTC) - timedelta(days=3), specialties=(),
                         diagnosis_date=date.today() - timedelta(days=10))
        db.session.commit()
        case_id, soon_id = case.id, soon.id
        db.session.remove()

    with pg_app.app_context():
        snapshot = build_problem()
        plan = solve_snapshot(snapshot)
        assert {"case": f"c{case_id}", "meeting": f"m{soon_id}"} in plan["assignments"]

        def coordinator_withdraws() -> None:
            set_status(db.session.get(Case, case_id), "withdrawn", reason="patient moved away")
            db.session.commit()

        in_thread(pg_app, coordinator_withdraws)
        result = apply_plan(snapshot, plan)
        db.session.commit()
        assert result.skipped_stale == [case_id]
        db.session.remove()

    with pg_app.app_context():
        assert db.session.get(Case, case_id).status == "withdrawn"
        assert active(case_id) is None
        db.session.remove()


def test_a_coordinator_edit_waits_for_the_engine_and_the_engine_sees_it_done(pg_app: Flask) -> None:
    """The other order: the engine holds its row locks; a coordinator's move of the same case
    blocks until the engine commits, then applies on top of the engine's result (nothing lost)."""
    from tumorboard.cases.assignments import move
    from tumorboard.planning.services import apply_plan, build_problem, solve_snapshot

    with pg_app.app_context():
        _, soon, later = _board_with_two_meetings()
        case = make_case(status="ready", ready_at=datetime.now(UTC) - timedelta(days=3), specialties=(),
                         diagnosis_date=date.today() - timedelta(days=10))
        db.session.commit()
        case_id, soon_id, later_id = case.id, soon.id, later.id
        db.session.remove()

    with pg_app.app_context():
        snapshot = build_problem()
        result = apply_plan(snapshot, solve_snapshot(snapshot))  # rows locked, not committed yet
        assert [c.case_id for c in result.changes] == [case_id]
        started = threading.Event()
        outcome: dict[str, Any] = {}

        def coordinator_moves() -> None:
            with pg_app.app_context():
                started.set()
                try:
                    from tumorboard.cases.services import load_case

                    load_case(case_id, for_update=True)  # what the agenda views do first
                    assignment = active(case_id)
                    outcome["found"] = assignment.meeting_id if assignment else None
                    move(assignment, db.session.get(type(later), later_id), pinned=True)
                    db.session.commit()
                except BaseException as exc:  # noqa: BLE001
                    outcome["error"] = exc
                finally:
                    db.session.remove()

        thread = threading.Thread(target=coordinator_moves)
        thread.start()
        assert started.wait(timeout=30)
        wait_until_blocked(pg_app)  # the coordinator waits on the engine's row lock
        assert "found" not in outcome
        db.session.commit()
        db.session.remove()
    thread.join(timeout=60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["found"] == soon_id  # it saw the engine's committed placement

    with pg_app.app_context():
        final = active(case_id)
        assert final is not None and final.meeting_id == later_id and final.pinned
        db.session.remove()


# --- (3) web workers editing while a pass runs ----------------------------------------------

def start_gunicorn(database_url: str, log: Path, workers: int = 3) -> tuple[subprocess.Popen[str], int]:
    """gunicorn with gunicorn.conf.py (sync workers, production config) on a free local port;
    returns once /health answers (bounded wait)."""
    port = free_port()
    env = {**os.environ, "TUMORBOARD_CONFIG": "production", "SECRET_KEY": "test-only-secret",
           "DATABASE_URL": database_url, "GUNICORN_BIND": f"127.0.0.1:{port}",
           "GUNICORN_WORKERS": str(workers), "GUNICORN_ACCESSLOG": "/dev/null",
           "GUNICORN_LOGLEVEL": "warning"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        finally:
            conn.close()
        assert time.monotonic() < deadline, "gunicorn did not answer"
        time.sleep(0.05)


class Api:
    """A coordinator's JSON client with its own bearer token (reconnects: sync workers close)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        import json

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw and response.status != 500 else raw
        finally:
            conn.close()


def test_coordinators_editing_through_gunicorn_during_a_pass_get_no_500(
    pg_app: Flask, scratch_postgres: str, tmp_path: Path
) -> None:
    import random

    from tumorboard.auth.services import issue_api_token

    now = datetime.now(UTC)
    with pg_app.app_context():
        tokens = [issue_api_token(make_user("coordinator"), "load")[1] for _ in range(3)]
        oncologist = make_user("oncologist", specialty="medical_oncology")
        meetings = []
        for site in ("breast", "lung"):
            board = make_board(sites=(site,), specialties=(), capacity_minutes=150)
            meetings += [make_calendar_meeting(board, start=now + timedelta(days=3 + 7 * w),
                                               capacity_minutes=150) for w in range(4)]
        case_ids = []
        for i in range(80):
            site = ("breast", "lung")[i % 2]
            case = make_case(site=site, status="ready", oncologist=oncologist, specialties=(),
                             ready_at=now - timedelta(days=3),
                             diagnosis_date=date.today() - timedelta(days=20))
            case_ids.append(case.id)
        for i, case_id in enumerate(case_ids[:20]):  # some already placed (by the engine, earlier)
            case = db.session.get(Case, case_id)
            meeting = meetings[(i % 2) * 4 + 3]
            put_on_agenda(case, meeting, source="engine", position=i + 1)
            case.status = "scheduled"
        db.session.commit()
        meeting_ids = [(m.id, m.board.site_names[0]) for m in meetings]
        db.session.remove()

    server, port = start_gunicorn(scratch_postgres, tmp_path / "gunicorn.log", workers=2)
    env = {**os.environ, "DATABASE_URL": scratch_postgres, "TUMORBOARD_CONFIG": "development",
           "FLASK_APP": "wsgi", "PLANNER_TIME_LIMIT_SECONDS": "1"}
    statuses: list[int] = []
    failures: list[str] = []
    passing = threading.Event()
    edits_during_pass = [0]
    stop = threading.Event()

    def coordinator(token: str, seed: int) -> None:
        rng = random.Random(seed)
        api = Api(port, token)
        while not stop.is_set():
            case_id = rng.choice(case_ids)
            status, found = api.call("GET", f"/api/v1/assignments?case_id={case_id}")
            if status != 200:
                failures.append(f"GET assignments {status}: {found!r}")
                continue
            site = "breast" if case_ids.index(case_id) % 2 == 0 else "lung"
            target = rng.choice([m for m, s in meeting_ids if s == site])
            action = rng.random()
            if not found:
                status, body = api.call("POST", "/api/v1/assignments",
                                        {"case_id": case_id, "meeting_id": target, "pinned": action < 0.5})
            elif action < 0.4:
                status, body = api.call("PATCH", f"/api/v1/assignments/{found[0]['id']}",
                                        {"pinned": not found[0]["pinned"]})
            elif action < 0.8:
                status, body = api.call("PATCH", f"/api/v1/assignments/{found[0]['id']}",
                                        {"meeting_id": target})
            else:
                status, body = api.call("DELETE", f"/api/v1/assignments/{found[0]['id']}")
            statuses.append(status)
            if passing.is_set():
                edits_during_pass[0] += 1
            if status >= 500:
                failures.append(f"{status}: {body!r}")

    threads = [threading.Thread(target=coordinator, args=(t, n)) for n, t in enumerate(tokens)]
    try:
        assign = subprocess.Popen([sys.executable, "-m", "flask", "tumorboard", "assign"], cwd=ROOT,
                                  env={**env, "PGAPPNAME": "tb-pass"}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        wait_until_connected(pg_app, "tb-pass", assign)  # its imports done: the pass starts now
        passing.set()
        for thread in threads:
            thread.start()
        out, err = assign.communicate(timeout=120)
        passing.clear()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)
        log = (tmp_path / "gunicorn.log").read_text()
    assert assign.returncode == 0, err[-3000:]
    assert "change(s)" in out
    assert not failures, (failures[:5], log[-6000:])
    assert "Traceback" not in log and "IntegrityError" not in log, log[-3000:]
    assert edits_during_pass[0] > 0 and set(statuses) <= {200, 201, 204, 409, 422}, set(statuses)

    with pg_app.app_context():  # the end state is consistent
        per_case = db.session.execute(
            sa.select(Assignment.case_id, sa.func.count()).where(Assignment.active.is_(True))
            .group_by(Assignment.case_id)).all()
        assert all(count == 1 for _, count in per_case)
        placed = {case_id for case_id, _ in per_case}
        for case in db.session.scalars(sa.select(Case).where(Case.id.in_(case_ids))):
            assert (case.status == "scheduled") == (case.id in placed), (case.id, case.status)
        db.session.remove()
