"""Benchmark a 1,000-event calendar feed (issue 5: under 250 ms).

    .venv/bin/python bench/bench_feed.py [--events 1000] [--repeat 7]

A temporary SQLite database with one board and `--events` upcoming meetings; times, median and
worst of `--repeat` runs after a warm-up: building the feed cold (per-process cache cleared),
the cached path (the usual case: nothing changed), and a whole HTTP GET of /feeds/boards/<token>.ics
through the WSGI app (query + ETag + body), plus a conditional GET answered 304.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tumorboard import create_app  # noqa: E402
from tumorboard.boards.models import Board, BoardSite, Meeting  # noqa: E402
from tumorboard.calendar import services as calendar  # noqa: E402
from tumorboard.extensions import db  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs), max(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="tb-feed-")
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/feed.db")
    with app.app_context():
        db.create_all()
        board = Board(name="Breast MDT", rrule="FREQ=DAILY", timezone="Europe/London",
                      first_date=date(2027, 1, 1), start_time=clock(8), location="Room 3",
                      sites=[BoardSite(site="breast")])
        db.session.add(board)
        db.session.flush()
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        db.session.add_all(Meeting(board_id=board.id, start_at=start + timedelta(days=i),
                                   end_at=start + timedelta(days=i, hours=1), location="Room 3",
                                   ical_uid=f"meeting-{i}@bench.test") for i in range(args.events))
        db.session.commit()
        token = board.feed_token

        def cold() -> None:
            calendar._FEED_CACHE.clear()
            calendar.board_feed(db.session.get(Board, board.id))

        results = {
            f"build {args.events} events (cold)": timed(cold, args.repeat),
            f"build {args.events} events (cached)": timed(
                lambda: calendar.board_feed(db.session.get(Board, board.id)), args.repeat),
        }
    client = app.test_client()
    first = client.get(f"/feeds/boards/{token}.ics")
    assert first.status_code == 200 and first.data.count(b"BEGIN:VEVENT") == args.events
    etag = first.headers["ETag"]
    results["HTTP GET, cold cache"] = timed(
        lambda: (calendar._FEED_CACHE.clear(), client.get(f"/feeds/boards/{token}.ics")), args.repeat)
    results["HTTP GET, cached"] = timed(lambda: client.get(f"/feeds/boards/{token}.ics"), args.repeat)
    results["HTTP GET If-None-Match (304)"] = timed(
        lambda: client.get(f"/feeds/boards/{token}.ics", headers={"If-None-Match": etag}), args.repeat)
    size = len(first.data) / 1024
    print(f"feed of {args.events} events, {size:.0f} KiB; median / worst of {args.repeat} (ms)")
    for name, (median, worst) in results.items():
        print(f"  {name:<38} {median:7.1f} / {worst:7.1f}")


if __name__ == "__main__":
    main()
