"""CPU of one gunicorn worker per request, page by page: what a request costs in the real server
(socket, HTTP parsing, access log, WSGI and the app), where bench_pages.py measures the app alone.

    .venv/bin/python bench/bench_worker.py                 # 10,000 cases, 300 requests per page

Seeds the scratch PostgreSQL database `tb_bench_worker` as bench_load.py does (dropped
afterwards), places every case with one pass (agendas full), starts `gunicorn -c gunicorn.conf.py`
with ONE sync worker in the production configuration, signs in, and sends each page's requests
one after another (a new connection each, as bench_load.py does). The worker's CPU (utime +
stime from /proc) over the requests, divided by their number, is the figure; `/health` (one
`SELECT 1`, no session) shows the fixed cost of any request. Nothing runs concurrently, so the
figures do not include contention, but they do depend on how fast the machine is at the time.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_load import (  # noqa: E402
    Workload,
    _children,
    _stat,
    reference_speed,
    seed,
    sign_in,
    start_gunicorn,
)

from tests.pgcheck import scratch_database  # noqa: E402
from tumorboard import create_app  # noqa: E402
from tumorboard.extensions import db  # noqa: E402

SCRATCH = "tb_bench_worker"


def get(port: int, path: str, cookie: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path, headers={"Cookie": cookie, "Connection": "close"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 200, (path, response.status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per page")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    with scratch_database(args.pg_url, SCRATCH) as url:
        setup = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with setup.app_context():
            db.create_all()
            seed(args.cases)
            from tumorboard.planning.services import run_pass, vacuum_after_pass

            run_pass()
            db.session.commit()
            vacuum_after_pass()
            workload = Workload.of_seeded(args.cases)
            db.session.remove()
            db.engine.dispose()
        server = start_gunicorn(url, args.port, 1)
        try:
            cookie = sign_in(args.port, 1)[0]
            worker = _children(server.pid)[0]
            print(f"{reference_speed()}\n{'page':<8} {'worker CPU ms/request':>22} {'wall ms/request':>16}")
            for kind in ("queue", "case", "agenda", "feed", "health"):
                paths: list[str] = []
                while len(paths) < args.requests + 100:
                    drawn, path = workload.next()
                    if kind == "health":
                        paths.append("/health")
                    elif drawn == kind:
                        paths.append(path)
                for path in paths[:100]:  # warm-up: templates, compiled SQL, prepared statements
                    get(args.port, path, cookie)
                cpu, started = _stat(worker)[1], time.perf_counter()  # type: ignore[index]
                for path in paths[100:]:
                    get(args.port, path, cookie)
                cpu = _stat(worker)[1] - cpu  # type: ignore[index]
                wall = time.perf_counter() - started
                print(f"{kind:<8} {cpu / args.requests * 1000:>22.2f} {wall / args.requests * 1000:>16.2f}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
