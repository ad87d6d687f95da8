"""From "the last record of an urgent case arrived" to "the invite is at the SMTP server".

    .venv/bin/python bench/bench_urgent_latency.py            # 8 urgent cases, one after another
    .venv/bin/python bench/bench_urgent_latency.py --runs 8 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Creates a scratch PostgreSQL database (`tb_bench_urgent`, dropped afterwards) with a breast board
(members of the five breast specialties), one meeting per run inside the urgent window (now + 20 h
… ), starts an aiosmtpd server on 127.0.0.1 and the real scheduler process (`flask tumorboard
scheduler`, production configuration, SMTP_PORT pointing at that server). For each run it
registers an urgent case with every record received but one, then — the measured moment — marks
the last record received through the cases service and commits (what the coordinator's click
does), and waits for the iMIP REQUEST carrying the meeting's UID to reach the SMTP server. Prints
each latency and the median / max.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from tests.pgcheck import scratch_database  # noqa: E402
from tumorboard import create_app  # noqa: E402
from tumorboard.extensions import db  # noqa: E402

SCRATCH = "tb_bench_urgent"
PASSWORD = "bench-password-2026"  # noqa: S105 - synthetic users on a scratch database
BREAST = ("medical_oncology", "surgical_oncology", "radiation_oncology", "pathology", "radiology")


class Inbox:
    """aiosmtpd handler: the time each message arrived and its calendar UIDs."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, str]] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: ARG002
        at = time.perf_counter()
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        for part in msg.walk():
            if part.get_content_type() == "text/calendar":
                with self.changed:
                    self.arrived.append((at, part.get_content()))
                    self.changed.notify_all()
        return "250 OK"

    def wait_for(self, uids: list[str], after: float, timeout: float = 60) -> tuple[float, str]:
        """When the first REQUEST for one of `uids` arrived after `after`, and its UID (bounded)."""
        deadline = time.perf_counter() + timeout
        with self.changed:
            while True:
                for at, ics in self.arrived:
                    text = ics.replace("\r\n ", "")
                    for uid in uids:
                        if at >= after and f"UID:{uid}" in text and "METHOD:REQUEST" in text:
                            return at, uid
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise SystemExit(f"no invite within {timeout} s")
                self.changed.wait(left)


def seed(runs: int) -> list[int]:
    """A breast board with its members and one meeting per run, each in the urgent window."""
    from tumorboard.auth.services import create_user
    from tumorboard.boards.models import Board, BoardMember, BoardSite, Meeting

    members = [create_user(email=f"{s}@bench.example.org", name=f"Dr {s}", password=PASSWORD,
                           roles=["specialist"], specialty=s) for s in BREAST]
    board = Board(name="Breast MDT", rrule="FREQ=WEEKLY", timezone="Europe/London", first_date=date.today(),
                  start_time=dtime(8, 0), duration_minutes=60, capacity_minutes=120,
                  sites=[BoardSite(site="breast")], members=[BoardMember(user_id=u.id) for u in members])
    db.session.add(board)
    db.session.flush()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    meetings = []
    for run in range(runs):
        start = now + timedelta(hours=20 + run)
        meeting = Meeting(board_id=board.id, start_at=start, end_at=start + timedelta(hours=1),
                          ical_uid=f"meeting-bench-{run}@bench.example.org", location="Room 1",
                          capacity_minutes=15, kind="urgent")  # one case each: each run invites anew
        db.session.add(meeting)
        meetings.append(meeting)
    db.session.commit()
    return [m.id for m in meetings]


def urgent_case_waiting_for_one_record(n: int) -> Any:
    """An urgent breast case with every required record received except one (returned)."""
    from tumorboard.auth.models import User
    from tumorboard.auth.services import create_user
    from tumorboard.cases.services import mark_received, register_case

    oncologist = db.session.scalar(sa.select(User).where(User.email == "onc@bench.example.org"))
    oncologist = oncologist or create_user(
        email="onc@bench.example.org", name="Dr Onc", password=PASSWORD, roles=["oncologist"],
        specialty="medical_oncology")
    case = register_case({"mrn": f"URG-{n:04d}", "display_name": f"Synthetic Urgent {n}", "site": "breast",
                          "diagnosis_date": date.today() - timedelta(days=5), "question": "Urgent review.",
                          "referring_oncologist_id": oncologist.id, "urgency": "urgent"})
    required = [r for r in case.records if r.required]
    for record in required[:-1]:
        mark_received(record)
    db.session.commit()
    assert case.status == "intake"
    return required[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with scratch_database(args.pg_url, SCRATCH) as url:
        inbox = Inbox()
        with socket.socket() as probe:  # a free local port
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        smtp = Controller(inbox, hostname="127.0.0.1", port=port)
        smtp.start()
        scheduler = None
        try:
            app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
            with app.app_context():
                db.create_all()
                meeting_ids = seed(args.runs)
                from tumorboard.boards.models import Meeting
                from tumorboard.cases.services import mark_received

                uids = [db.session.get(Meeting, m).ical_uid for m in meeting_ids]
                env = {**os.environ, "DATABASE_URL": url, "TUMORBOARD_CONFIG": "production",
                       "SECRET_KEY": "bench-only-secret", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
                       "FLASK_APP": "wsgi", "MEETING_HORIZON_WEEKS": "0"}
                scheduler = subprocess.Popen([sys.executable, "-m", "flask", "tumorboard", "scheduler"],
                                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 60  # its first round of jobs (run at start) is done
                while not db.session.scalar(sa.text("SELECT count(*) FROM audit_events "
                                                    "WHERE action = 'planning.pass'")):
                    assert scheduler.poll() is None and time.monotonic() < deadline, "scheduler did not start"
                    db.session.rollback()
                    time.sleep(0.1)  # polling for the scheduler's first pass
                latencies = []
                for run in range(args.runs):
                    last = urgent_case_waiting_for_one_record(run)
                    t0 = time.perf_counter()
                    mark_received(last)
                    db.session.commit()
                    assert last.case.status == "ready"
                    arrived, uid = inbox.wait_for(uids, t0)
                    latencies.append(arrived - t0)
                    print(f"run {run + 1}: REQUEST for {uid} at the SMTP server after {latencies[-1]:.2f} s")
                    time.sleep(0.7)  # spread the runs over the scheduler's 5 s cycle (different phases)
                print(f"\nready → invite at the SMTP server: median {statistics.median(latencies):.2f} s, "
                      f"max {max(latencies):.2f} s over {len(latencies)} runs")
                db.session.remove()
                db.engine.dispose()
        finally:
            if scheduler is not None:
                scheduler.terminate()
                scheduler.wait(timeout=30)
            smtp.stop()


if __name__ == "__main__":
    main()
