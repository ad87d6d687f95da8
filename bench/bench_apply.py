"""One assignment pass over 10,000 ready cases on PostgreSQL: how long each phase takes.

    .venv/bin/python bench/bench_apply.py                     # 10,000 cases, 5 s solver budget
    .venv/bin/python bench/bench_apply.py --cases 1000 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Creates a scratch database `tb_bench_apply` (dropped afterwards), seeds it with `seed()` from
bench/bench_load.py (60 boards, 720 meetings over 12 weeks, `--cases` ready cases), then runs
`run_pass()` in-process and times its phases: build (Problem from the database), solve (the
engine), apply (the Plan written: row locks, assignments, statuses, audit rows, notes), the rest
of the pass (requests marked done, the pass's audit row) and the commit (invitations synced to
the outbox, the audit chain sealed). Then checks the chain and runs a second pass (nothing left
to change but the cases the first one could not place).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.bench_load import seed  # noqa: E402
from tests.pgcheck import scratch_database  # noqa: E402
from tumorboard import create_app  # noqa: E402
from tumorboard.extensions import db  # noqa: E402

SCRATCH = "tb_bench_apply"
#: (module, function) timed; `run_pass` and the commit hook look them up at call time
PLANNING, CALENDAR = "tumorboard.planning.services", "tumorboard.calendar.services"
TIMED = ((PLANNING, "build_problem"), (PLANNING, "solve_snapshot"), (PLANNING, "apply_plan"),
         (CALENDAR, "sync_meetings_invitations"))


def timed_phases(timings: dict[str, float], marks: dict[str, float]) -> Callable[[], None]:
    """Time the functions in TIMED (adding up into `timings`, the last end in `marks`) and mark
    when the commit starts (a before_commit listener put first) and when the audit chain is
    sealed (one put after the app's: invitation sync, then seal). Returns the undo function."""
    import importlib

    from flask_sqlalchemy.session import Session

    modules = [(importlib.import_module(module), name) for module, name in TIMED]
    saved = [(module, name, getattr(module, name)) for module, name in modules]

    def wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                marks[name] = time.perf_counter()
                timings[name] = timings.get(name, 0.0) + marks[name] - started
        return timed

    def commit_starts(_session: Any) -> None:
        marks["commit"] = time.perf_counter()

    def sealed(_session: Any) -> None:
        marks["sealed"] = time.perf_counter()

    for module, name, func in saved:
        setattr(module, name, wrap(name, func))
    sa.event.listen(Session, "before_commit", commit_starts, insert=True)
    sa.event.listen(Session, "before_commit", sealed)

    def restore() -> None:
        for module, name, func in saved:
            setattr(module, name, func)
        sa.event.remove(Session, "before_commit", commit_starts)
        sa.event.remove(Session, "before_commit", sealed)
    return restore


def one_pass(label: str) -> None:
    from tumorboard.planning.services import run_pass

    timings: dict[str, float] = {}
    marks: dict[str, float] = {}
    restore = timed_phases(timings, marks)
    try:
        started = time.perf_counter()
        result = run_pass()
        in_pass = time.perf_counter() - started
        db.session.commit()
        done = time.perf_counter()
    finally:
        restore()
    apply = timings["apply_plan"]
    rest = in_pass - timings["build_problem"] - timings["solve_snapshot"] - apply
    synced = max(marks.get("sync_meetings_invitations", 0.0), marks["commit"])
    invitations, seal, commit = synced - marks["commit"], marks["sealed"] - synced, done - marks["sealed"]
    total = apply + rest + invitations + seal + commit
    print(f"{label}: {len(result.changes)} changes, {len(result.refused)} refused, "
          f"{len(result.skipped_stale)} skipped (stale), "
          f"{len(result.plan['urgent_slot_requests'])} urgent slot requests, "
          f"{len(result.touched_meetings)} meetings touched")
    print(f"  build {timings['build_problem']:.2f} s | solve {timings['solve_snapshot']:.2f} s | "
          f"apply {apply:.2f} s | rest of the pass {rest:.2f} s | at commit: invitation sync "
          f"{invitations:.2f} s, audit seal {seal:.2f} s, flush + COMMIT {commit:.2f} s")
    print(f"  apply + rest + commit {total:.2f} s; without the invitation sync {total - invitations:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--time-limit", type=float, default=5.0, help="solver budget, seconds")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    with scratch_database(args.pg_url, SCRATCH) as url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url,
                         PLANNER_TIME_LIMIT_SECONDS=args.time_limit)
        try:
            with app.app_context():
                db.create_all()
                started = time.perf_counter()
                print(f"seeded {seed(args.cases)} in {time.perf_counter() - started:.1f} s; "
                      f"nproc={os.cpu_count()}")
                one_pass("first pass")
                counts = {table: db.session.scalar(sa.text(f"SELECT count(*) FROM {table}"))  # noqa: S608
                          for table in ("assignments", "audit_events", "outbox_messages", "invitations")}
                print(f"  rows after it: {counts}")
                from tumorboard.audit.services import find_tampering

                started = time.perf_counter()
                problem = find_tampering()
                print(f"  audit chain verified in {time.perf_counter() - started:.2f} s: "
                      f"{'clean' if problem is None else problem.message}")
                db.session.rollback()  # the verification's own reads
                one_pass("second pass")
                db.session.remove()
        finally:
            with app.app_context():
                db.engine.dispose()


if __name__ == "__main__":
    main()
