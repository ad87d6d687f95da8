"""One assignment pass over 10,000 ready cases on PostgreSQL: how long each phase takes.

    .venv/bin/python bench/bench_apply.py                     # 10,000 cases, 5 s solver budget
    .venv/bin/python bench/bench_apply.py --cases 1000 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Creates a scratch database `tb_bench_apply` (dropped afterwards), seeds it with `seed()` from
bench/bench_load.py (60 boards, 720 meetings over 12 weeks, `--cases` ready cases), then runs
`run_pass()` in-process (`--batch` changes per batch, no pauses) and times its phases: build
(Problem from the database), solve (the engine), apply (the Plan written: row locks, assignments,
statuses with the cases' notes, audit rows, the invitations of each batch's meetings, the notes
left), the rest of the pass (requests marked done, the pass's audit row) and the commit; the
parts of apply also with the CPU its PostgreSQL backend spent in them (read from /proc: a local
server). Then seals and checks the audit chain and runs a second pass (nothing left to change but
the cases the first one could not place).
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

from bench.bench_load import _stat, seed  # noqa: E402
from tests.pgcheck import scratch_database  # noqa: E402
from tumorboard import create_app  # noqa: E402
from tumorboard.extensions import db  # noqa: E402

SCRATCH = "tb_bench_apply"
#: (module, function) timed; `run_pass` and `apply_plan` look them up at call time
PLANNING = "tumorboard.planning.services"
TIMED = ((PLANNING, "build_problem"), (PLANNING, "solve_snapshot"), (PLANNING, "apply_plan"),
         (PLANNING, "_lock_and_read_states"), (PLANNING, "apply_changes"), (PLANNING, "sync_touched"),
         (PLANNING, "_write_notes"))


def _backend_cpu() -> float:
    """CPU seconds the session's PostgreSQL backend has used (a local server: read from /proc)."""
    pid = db.session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    stat = _stat(pid)
    return stat[1] if stat else 0.0


def timed(timings: dict[str, float]) -> Callable[[], None]:
    """Time the functions in TIMED, adding up into `timings` (wall) and `timings["<name> backend"]`
    (CPU of the session's PostgreSQL backend meanwhile: what competes with the web at full
    priority). Returns the undo function."""
    import importlib

    saved = [(module, name, getattr(module, name))
             for module, name in ((importlib.import_module(module), name) for module, name in TIMED)]

    def wrap(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started, backend = time.perf_counter(), _backend_cpu()
            try:
                return func(*args, **kwargs)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
                timings[f"{name} backend"] = timings.get(f"{name} backend", 0.0) + _backend_cpu() - backend
        return timed_call

    for module, name, func in saved:
        setattr(module, name, wrap(name, func))

    def restore() -> None:
        for module, name, func in saved:
            setattr(module, name, func)
    return restore


def one_pass(label: str) -> None:
    from tumorboard.planning.services import run_pass

    timings: dict[str, float] = {}
    restore = timed(timings)
    try:
        started = time.perf_counter()
        result = run_pass()
        in_pass = time.perf_counter() - started
        db.session.commit()
        commit = time.perf_counter() - started - in_pass
    finally:
        restore()
    apply = timings["apply_plan"]
    rest = in_pass - timings["build_problem"] - timings["solve_snapshot"] - apply
    print(f"{label}: {len(result.changes)} changes, {len(result.refused)} refused, "
          f"{len(result.skipped_stale)} skipped (stale), "
          f"{len(result.plan['urgent_slot_requests'])} urgent slot requests, "
          f"{len(result.touched_meetings)} meetings touched")
    print(f"  build {timings['build_problem']:.2f} s | solve {timings['solve_snapshot']:.2f} s | "
          f"apply {apply:.2f} s | rest of the pass {rest:.2f} s | COMMIT {commit:.2f} s")
    print("  apply, wall (backend CPU): " + ", ".join(
        f"{part} {timings.get(name, 0):.2f} s ({timings.get(f'{name} backend', 0):.2f} s)"
        for part, name in (("all", "apply_plan"), ("locks", "_lock_and_read_states"),
                           ("changes", "apply_changes"), ("invitations", "sync_touched"),
                           ("notes left", "_write_notes"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--time-limit", type=float, default=5.0, help="solver budget, seconds")
    parser.add_argument("--batch", type=int, default=500, help="PLANNER_APPLY_BATCH (no pauses)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    with scratch_database(args.pg_url, SCRATCH) as url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url, PLANNER_TIME_LIMIT_SECONDS=args.time_limit,
                         PLANNER_APPLY_BATCH=args.batch, PLANNER_APPLY_PAUSE=0.0)
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
                from tumorboard.audit.services import find_tampering, seal_pending

                started = time.perf_counter()
                sealed = seal_pending()
                db.session.commit()
                print(f"  audit chain: {sealed} events sealed (as the scheduler's job does) in "
                      f"{time.perf_counter() - started:.2f} s", end="; ")
                started = time.perf_counter()
                problem = find_tampering()
                print(f"verified in {time.perf_counter() - started:.2f} s: "
                      f"{'clean' if problem is None else problem.message}")
                db.session.rollback()  # the verification's own reads
                one_pass("second pass")
                db.session.remove()
        finally:
            with app.app_context():
                db.engine.dispose()


if __name__ == "__main__":
    main()
