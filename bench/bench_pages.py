"""CPU cost of each page of the load mix, in process: what one request costs the web worker.

    .venv/bin/python bench/bench_pages.py                       # 10,000 cases, 300 requests per page
    .venv/bin/python bench/bench_pages.py --pages case --profile    # cProfile of the case page

Seeds a scratch PostgreSQL database (`tb_bench_pages`, dropped afterwards) as bench_load.py does,
places every case with one assignment pass (so agendas and case pages are full, the steady
state), signs in through the login form and times each page of bench_load.py's mix through the
WSGI app in the production configuration (Flask's test client: no socket, no gunicorn). Reports,
per page: CPU of this process per request (median and p90, `time.process_time`), wall per request
SQL statements per request and the CPU of the app's PostgreSQL backends per request. The CPU
figures are the ones that decide how many requests two cores serve.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from bench_load import PASSWORD, Workload, _stat, reference_speed, seed  # noqa: E402

from tests.pgcheck import scratch_database  # noqa: E402
from tumorboard import create_app  # noqa: E402
from tumorboard.extensions import db  # noqa: E402

SCRATCH = "tb_bench_pages"


def sign_in(client) -> None:  # noqa: ANN001 - Flask test client
    page = client.get("/login").get_data()
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page).group(1).decode()
    response = client.post("/login", data={"csrf_token": token, "email": "coordinator@bench.example.org",
                                           "password": PASSWORD}, headers={"Referer": "https://localhost/login"})
    assert response.status_code == 302, response.status_code


def print_by_package(stats: pstats.Stats, requests: int) -> None:
    """Own CPU time and Python function calls per request, summed by library. The times are
    inflated by profiling; the calls are not, and do not depend on how busy the machine is:
    compare them between versions of the code."""
    totals: dict[str, list[float]] = {}
    for (filename, _, _), (_, calls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        match = re.search(r"site-packages/([^/]+)", filename)
        key = match.group(1) if match else ("templates" if "/templates/" in filename else
                                           "tumorboard" if "/tumorboard/" in filename else "stdlib/builtins")
        total = totals.setdefault(key, [0.0, 0])
        total[0] += tottime
        total[1] += calls
    print(f"  {'library':<20} {'ms/request':>10} {'calls/request':>14}   "
          f"(all: {sum(c for _, c in totals.values()) / requests:,.0f} calls/request)")
    for key, (seconds, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"  {key:<20} {seconds / requests * 1000:10.2f} {calls / requests:14,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per page")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--pages", default="queue,case,agenda,feed", help="which pages, comma-separated")
    parser.add_argument("--profile", action="store_true", help="cProfile the pages (CPU clock), top 45")
    parser.add_argument("--by-calls", action="store_true", help="with --profile: also the top 40 by calls")
    parser.add_argument("--database", default=SCRATCH, help="name of the scratch database")
    parser.add_argument("--explain", action="store_true",
                        help="EXPLAIN (ANALYZE, BUFFERS) each SELECT of one request per page (the backend)")
    parser.add_argument("--plans", action="store_true",
                        help="the statements the app's connection has prepared: generic or custom plans")
    parser.add_argument("--no-pass", action="store_true", help="measure before any pass (empty agendas)")
    parser.add_argument("--no-vacuum", action="store_true",
                        help="measure right after the pass, before its VACUUM (ANALYZE)")
    args = parser.parse_args()

    with scratch_database(args.pg_url, args.database) as url:
        setup = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with setup.app_context():
            db.create_all()
            seed(args.cases)
            from tumorboard.planning.services import run_pass, vacuum_after_pass

            if args.no_pass:
                vacuum_after_pass()  # as bench_load.py does after seeding
                print("seeded; no pass (agendas empty)")
            else:
                result = run_pass()
                db.session.commit()
                if not args.no_vacuum:  # as the scheduler's job does after a large pass
                    vacuum_after_pass()
                print(f"seeded and placed: {len(result.changes)} changes")
            pages = Workload.of_seeded(args.cases, draws=3)
            db.session.remove()
            db.engine.dispose()

        os.environ.update(SECRET_KEY="bench-only-secret", DATABASE_URL=url)  # noqa: S106 - scratch
        app = create_app("production")
        statements = [0]
        seen: list[tuple[str, object]] = []

        def count(_conn, _cursor, statement, parameters, *_rest) -> None:  # noqa: ANN001
            statements[0] += 1
            seen.append((statement, parameters))

        with app.app_context():
            sa.event.listen(db.engine, "before_cursor_execute", count)
        client = app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"
        client.environ_base["HTTP_HOST"] = "localhost"
        sign_in(client)
        kinds = args.pages.split(",")
        print(reference_speed())
        print(f"{'page':<8} {'cpu p50 ms':>10} {'cpu p90 ms':>10} {'wall p50 ms':>11} {'SQL/req':>8} "
              f"{'backend ms':>10}")
        for kind in kinds:
            for _ in range(50):  # warm-up: templates, compiled SQL, prepared statements
                assert client.get(pages.path(kind)).status_code == 200
            cpu, wall = [], []
            statements[0] = 0
            backend = backends_cpu(url)
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            for _ in range(args.requests):
                path = pages.path(kind)
                c0, w0 = time.process_time(), time.perf_counter()
                if profiler:
                    profiler.enable()
                response = client.get(path)
                if profiler:
                    profiler.disable()
                cpu.append((time.process_time() - c0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            cpu.sort()
            backend = backends_cpu(url) - backend
            print(f"{kind:<8} {statistics.median(cpu):>10.2f} {cpu[int(len(cpu) * 0.9)]:>10.2f} "
                  f"{statistics.median(wall):>11.2f} {statements[0] / args.requests:>8.1f} "
                  f"{backend / args.requests * 1000:>10.2f}")
            if profiler:
                stats = pstats.Stats(profiler)
                stats.sort_stats("cumulative").print_stats(45)
                stats.sort_stats("tottime").print_stats(30)
                if args.by_calls:
                    stats.sort_stats("ncalls").print_stats(40)
                print_by_package(stats, args.requests)
            if args.explain:
                seen.clear()
                assert client.get(pages.path(kind)).status_code == 200
                explain([(sql, params) for sql, params in seen if sql.lstrip().upper().startswith("SELECT")],
                        app)
        if args.plans:
            prepared_plans(app)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def prepared_plans(app) -> None:  # noqa: ANN001 - Flask app
    """What PostgreSQL planned for the statements psycopg prepared on the app's connection (the
    one the requests, one at a time, used): a custom plan is made again at every execution."""
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT generic_plans, custom_plans, statement FROM pg_prepared_statements "
            "ORDER BY custom_plans DESC").all()
    print(f"{'generic':>8} {'custom':>8}  statement prepared on the app's connection")
    for generic, custom, statement in rows:
        print(f"{generic:>8} {custom:>8}  {' '.join(statement.split())[:110]}")


def backends_cpu(url: str) -> float:
    """CPU seconds so far of the app's PostgreSQL backends (every client of the scratch database
    but the one asking; a local server: read from /proc)."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'")]
    return sum(stat[1] for stat in map(_stat, pids) if stat is not None)


def explain(statements: list[tuple[str, object]], app) -> None:  # noqa: ANN001 - Flask app
    """Each statement's plan, run (EXPLAIN ANALYZE): the time and the shared buffers it took."""
    with app.app_context(), db.engine.connect() as conn:
        for sql, params in statements:
            plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)]
            timing = " | ".join(line.strip() for line in plan
                                if line.startswith(("Planning Time", "Execution Time")))
            buffers = next((line.strip() for line in plan if "Buffers" in line), "")
            print(f"    {timing} | {buffers} | {' '.join(sql.split())[:150]}")
            for line in plan[:40]:
                print(f"        {line}")


if __name__ == "__main__":
    main()
