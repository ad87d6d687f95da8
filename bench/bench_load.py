"""Load on the web app as production runs it: gunicorn (sync workers) on 127.0.0.1, PostgreSQL
seeded with 10,000 synthetic cases, mixed reads at a fixed rate — idle, then while an assignment
pass over all 10,000 cases runs beside it (niced, as the scheduler runs it), then once more with
every agenda full (the steady state).

    .venv/bin/python bench/bench_load.py                 # 10,000 cases, 200 req/s, 20 s per phase
    .venv/bin/python bench/bench_load.py --rate 200 --duration 20 --workers 5 \\
        --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Creates a scratch database `tb_bench_load` (dropped afterwards), bulk-inserts 60 boards (10 per
site, 6 sites, weekly, 3 specialist members each), their meetings for 12 weeks (capacity 150 min)
and 10,000 ready cases (10 min each) with their records checklists and an audit trail of 12 events
each (registered, made ready, read ten times); before them, as in a service in use, 20 weeks of
held meetings that discussed 10,000 cases, now closed. Runs `VACUUM ANALYZE`, starts
`gunicorn -c gunicorn.conf.py wsgi:app` in the production configuration and drives it with an
open-loop generator (one uvloop event loop, a bare non-blocking socket per request, ~0.2–0.35 ms
of CPU each: it shares the 2 cores it measures; each request is sent when it is due, on its own
connection, with one of a few signed-in session cookies, whatever is still in flight; a session
sends the cookie its last answer set, as a browser does). Latency is measured from the moment a request was
*due*, so a stalled server counts against itself (no coordinated omission); a request not
answered 5 s after it was due counts as dropped. Localhost only.

Mix: 35 % case queue (`/cases`, a page of 50, optionally filtered by site), 30 % a case page
(`/cases/<id>`, an audited PHI read: it appends to the audit chain), 25 % a meeting's agenda
(`/meetings/<id>`), 10 % a board's iCalendar feed (`/feeds/boards/<token>.ics`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import http.client
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
import uvloop  # noqa: E402

from tests.pgcheck import scratch_database  # noqa: E402
from tumorboard import create_app  # noqa: E402
from tumorboard.extensions import db  # noqa: E402

SITES = ["breast", "lung", "colorectal", "upper_gi", "prostate", "gynae"]
SPECIALTIES = ["pathology", "radiology", "surgical_oncology", "radiation_oncology", "nursing"]
BOARDS_PER_SITE = 10
WEEKS = 12
#: weeks of held meetings before today, with the closed cases discussed at them (as many as open)
PAST_WEEKS = 20
PASSWORD = "bench-password-2026"  # noqa: S105 - synthetic bench user on a scratch database
SCRATCH = "tb_bench_load"
#: a request still unsent this long after it was due is dropped (status -1, an error) so that an
#: overloaded run ends in bounded time
MAX_LATE = 5.0
LAGS: list[tuple[float, float]] = []


# --- seeding ----------------------------------------------------------------------------------

def seed(n_cases: int, seed: int = 11) -> dict[str, Any]:
    """Bulk-insert boards, meetings and `n_cases` ready cases (in the current app context), after
    a history of held meetings that discussed as many cases, now closed."""
    from tumorboard.auth.services import create_user
    from tumorboard.boards.models import Board, BoardMember, BoardSite, Meeting
    from tumorboard.cases.models import Assignment, Case, RecordItem
    from tumorboard.cases.services import DEFAULT_RECORDS

    rng = random.Random(seed)
    now = datetime.now(UTC)
    coordinator = create_user(email="coordinator@bench.example.org", name="Bench Coordinator",
                              password=PASSWORD, roles=["coordinator", "oncologist"],
                              specialty="medical_oncology")
    specialists = [create_user(email=f"spec{i}@bench.example.org", name=f"Bench Specialist {i}",
                               password=PASSWORD, roles=["specialist"],
                               specialty=SPECIALTIES[i % len(SPECIALTIES)]) for i in range(30)]
    db.session.flush()
    boards, sites, members, meetings = [], [], [], []
    first = date.today() + timedelta(days=1)
    for s, site in enumerate(SITES):
        for k in range(BOARDS_PER_SITE):
            b = len(boards) + 1
            boards.append({"id": b, "name": f"{site} MDT {k + 1}", "rrule": "FREQ=WEEKLY",
                           "timezone": "Europe/London", "first_date": first,
                           "start_time": datetime(2030, 1, 1, 8).time(), "duration_minutes": 90,
                           "capacity_minutes": 150, "default_case_minutes": 10, "active": True,
                           "feed_token": f"bench-board-{b}", "location": "Room 1", "video_url": "",
                           "created_at": now})
            sites.append({"board_id": b, "site": site})
            members += [{"board_id": b, "user_id": specialists[(s * 5 + j) % 30].id} for j in range(3)]
            for w in range(-PAST_WEEKS, WEEKS):
                start = now + timedelta(days=2 + k % 7, weeks=w, hours=s)
                start = start.replace(minute=0, second=0, microsecond=0)
                meetings.append({"id": len(meetings) + 1, "board_id": b, "kind": "regular",
                                 "recurrence_id": start, "start_at": start,
                                 "end_at": start + timedelta(minutes=90),
                                 "status": "held" if w < 0 else "scheduled",
                                 "location": "Room 1", "capacity_minutes": 150,
                                 "ical_uid": f"meeting-{len(meetings) + 1}@bench", "sequence": 0,
                                 "created_at": now, "updated_at": now})
    db.session.execute(sa.insert(Board), boards)
    db.session.execute(sa.insert(BoardSite), sites)
    db.session.execute(sa.insert(BoardMember), members)
    db.session.execute(sa.insert(Meeting), meetings)
    cases = []
    for c in range(1, n_cases + 1):
        diagnosed = date.today() - timedelta(days=rng.randint(0, 60))
        cases.append({"id": c, "mrn": f"LOAD-{c:06d}", "display_name": f"Synthetic {c}",
                      "site": rng.choice(SITES), "diagnosis_date": diagnosed,
                      "question": "Synthetic.", "referring_oncologist_id": coordinator.id,
                      "urgency": "urgent" if rng.random() < 0.05 else "routine",
                      "deadline": diagnosed + timedelta(days=90), "minutes": 10, "status": "ready",
                      "ready_at": now - timedelta(days=rng.uniform(2.5, 10)),
                      "created_at": now - timedelta(days=20), "updated_at": now})
    # a service in use: as many closed cases, each discussed at a held meeting of its site (so
    # that no table the pages read starts empty, and the queue's open cases are found among them)
    held: dict[str, list[dict[str, Any]]] = {site: [] for site in SITES}
    for m in meetings:
        if m["status"] == "held":
            held[sites[m["board_id"] - 1]["site"]].append(m)
    assignments = []
    for c in range(n_cases + 1, 2 * n_cases + 1):
        site = rng.choice(SITES)
        meeting = rng.choice(held[site])
        diagnosed = meeting["start_at"].date() - timedelta(days=rng.randint(20, 60))
        cases.append({"id": c, "mrn": f"LOAD-{c:06d}", "display_name": f"Synthetic {c}",
                      "site": site, "diagnosis_date": diagnosed,
                      "question": "Synthetic.", "referring_oncologist_id": coordinator.id,
                      "urgency": "urgent" if rng.random() < 0.05 else "routine",
                      "deadline": diagnosed + timedelta(days=90), "minutes": 10, "status": "closed",
                      "ready_at": meeting["start_at"] - timedelta(days=rng.uniform(2.5, 10)),
                      "created_at": meeting["start_at"] - timedelta(days=20),
                      "updated_at": meeting["end_at"]})
        assignments.append({"case_id": c, "meeting_id": meeting["id"], "minutes": 10, "position": 0,
                            "source": "engine", "pinned": False, "active": True,
                            "created_at": meeting["start_at"] - timedelta(days=2)})
    db.session.execute(sa.insert(Case), cases)
    db.session.execute(sa.insert(Assignment), assignments)
    # each case's records checklist, as registration makes it, every item received (ready cases)
    db.session.execute(sa.insert(RecordItem), [
        {"case_id": case["id"], "kind": kind, "label": label, "required": True,
         "requested_at": case["created_at"], "received_at": case["ready_at"]}
        for case in cases for kind, label in DEFAULT_RECORDS])
    # the audit trail of weeks in service (each case registered, made ready, read ten times), so
    # that the planner's statistics, and the plans the web caches, are those of a trail in use
    db.session.execute(sa.text(
        "INSERT INTO audit_events (at, actor_id, actor_email, action, object_type, object_id, details) "
        "SELECT now() - interval '20 days' + g * interval '1 second', :actor, :email, "
        "CASE g % 12 WHEN 0 THEN 'case.create' WHEN 1 THEN 'case.status' ELSE 'case.read' END, "
        "'case', (g / 12 + 1)::text, '{}' "
        "FROM generate_series(0, :n * 12 - 1) AS g"),
        {"actor": coordinator.id, "email": coordinator.email, "n": n_cases})
    for table in ("boards", "meetings", "cases"):  # ids were given explicitly: move the sequences on
        db.session.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                                   f"(SELECT max(id) FROM {table}))"))
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))  # as autovacuum leaves a settled database
    return {"ready cases": n_cases, "closed cases": len(cases) - n_cases, "boards": len(boards),
            "meetings ahead": sum(m["status"] == "scheduled" for m in meetings), "held": len(assignments)}


# --- the load generator -----------------------------------------------------------------------

@dataclass
class Sample:
    kind: str
    latency: float  #: seconds from the moment the request was due to the end of the response
    status: int
    due: float = 0.0  #: seconds from the start of the run to the moment the request was due


@dataclass
class Client:
    """One signed-in browser: a session cookie, reconnecting when the sync worker closes."""

    port: int
    cookie: str = ""
    conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                all_headers = {"Cookie": self.cookie} if self.cookie else {}
                all_headers.update(headers or {})
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
                continue
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    self.cookie = value.split(";", 1)[0]
            if response.will_close:
                self.close()
            return response.status, data, response
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def sign_in(self, email: str) -> None:
        status, page, _ = self.request("GET", "/login")
        token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
            rb'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert status == 200 and token, status
        from urllib.parse import urlencode

        form = urlencode({"csrf_token": token.group(1).decode(), "email": email, "password": PASSWORD})
        status, _, _ = self.request("POST", "/login", form,
                                    {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, f"sign-in failed: {status}"


@dataclass
class Workload:
    case_ids: list[int]
    meeting_ids: list[int]
    feed_tokens: list[str]
    rng: random.Random

    @classmethod
    def of_seeded(cls, n_cases: int, draws: int = 5) -> Workload:
        """What `seed(n_cases)` made for the load to read (in its app context): its open cases, the
        meetings to come (not the held ones) and the boards' feeds; `draws` seeds the choices."""
        from tumorboard.boards.models import Board, Meeting

        return cls(list(range(1, n_cases + 1)),
                   list(db.session.scalars(sa.select(Meeting.id).where(Meeting.status == "scheduled"))),
                   list(db.session.scalars(sa.select(Board.feed_token))), random.Random(draws))

    def next(self) -> tuple[str, str]:
        """The mix: 35 % queue, 30 % case, 25 % agenda, 10 % feed; (kind, path)."""
        roll = self.rng.random()
        kind = "queue" if roll < 0.35 else "case" if roll < 0.65 else "agenda" if roll < 0.90 else "feed"
        return kind, self.path(kind)

    def path(self, kind: str) -> str:
        """A page of this kind, drawn at random."""
        if kind == "queue":
            site = self.rng.choice(["", *SITES])
            return f"/cases?site={site}" if site else "/cases"
        if kind == "case":
            return f"/cases/{self.rng.choice(self.case_ids)}"
        if kind == "agenda":
            return f"/meetings/{self.rng.choice(self.meeting_ids)}"
        return f"/feeds/boards/{self.rng.choice(self.feed_tokens)}.ics"


class _InFlight:
    """One GET on its own non-blocking socket, driven by the loop's reader/writer callbacks (no
    task, future or transport per request: the generator shares the 2 cores it measures, so it
    is kept as cheap as it can be in Python)."""

    __slots__ = ("at", "kind", "session", "sock", "status")

    def __init__(self, at: float, kind: str, session: int) -> None:
        self.at, self.kind, self.session = at, kind, session
        self.sock: socket.socket | None = None
        self.status = 0


async def _drive(port: int, workload: Workload, cookies: list[str], rate: float, duration: float,
                 until: subprocess.Popen[Any] | None, max_duration: float) -> list[Sample]:
    samples: list[Sample] = []
    in_flight: set[_InFlight] = set()
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    address = ("127.0.0.1", port)
    clock = time.perf_counter  # not loop.time(): libuv's clock counts whole milliseconds
    start = clock()

    def done(request: _InFlight, status: int) -> None:
        sock = request.sock
        if sock is not None:
            loop.remove_reader(sock)
            loop.remove_writer(sock)
            sock.close()
            request.sock = None
        in_flight.discard(request)
        samples.append(Sample(request.kind, clock() - request.at, status, request.at - start))
        if sending_over and not in_flight and not finished.done():
            finished.set_result(None)

    def send(request: _InFlight, payload: bytes) -> None:
        loop.remove_writer(request.sock)
        try:
            request.sock.send(payload)  # a few hundred bytes: the socket's buffer takes them at once
        except OSError:
            done(request, 0)
            return
        loop.add_reader(request.sock, receive, request)

    def receive(request: _InFlight) -> None:
        try:
            data = request.sock.recv(65536)
        except OSError:
            done(request, 0)
            return
        if not data:  # the sync worker closes the connection after its answer
            done(request, request.status)
        elif not request.status:
            request.status = int(data[9:12]) if data[9:12].isdigit() else 0  # "HTTP/1.1 200 OK"
            renewed = data.find(b"\r\nSet-Cookie: ", 0, data.find(b"\r\n\r\n"))
            if renewed != -1:  # as a browser does: the session's next requests send the new cookie
                cookies[request.session] = data[renewed + 14:data.index(b";", renewed)].decode()

    sending_over = False

    def sweep() -> None:  # a request not answered MAX_LATE after it was due is dropped
        now = clock()
        for request in [r for r in in_flight if now - r.at > MAX_LATE]:
            done(request, -1)
        if not finished.done():
            loop.call_later(0.1, sweep)

    sweep()
    LAGS.clear()

    def probe(expected: float) -> None:  # how late the generator's own loop runs its callbacks
        now = clock()
        LAGS.append((now - start, now - expected))
        if not finished.done():
            loop.call_later(0.005, probe, now + 0.005)

    probe(clock())
    n = 0
    while True:
        at = start + n / rate
        elapsed = at - start
        if elapsed >= max_duration or (elapsed >= duration and (until is None or until.poll() is not None)):
            break
        delay = at - clock()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the open-loop generator
        kind, path = workload.next()
        request = _InFlight(at, kind, n % len(cookies))
        in_flight.add(request)
        sock = request.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        payload = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookies[request.session]}"
                   "\r\nConnection: close\r\n\r\n").encode()
        if sock.connect_ex(address) not in (0, errno.EINPROGRESS):
            done(request, 0)
        else:
            loop.add_writer(sock, send, request, payload)  # writable: connected
        n += 1
    sending_over = True
    if in_flight:
        await finished
    finished.cancel()
    return samples


def sign_in(port: int, sessions: int) -> list[str]:
    """The cookies of `sessions` signed-in sessions (argon2: done once, before any clock starts)."""
    cookies = []
    for _ in range(sessions):
        client = Client(port)
        client.sign_in("coordinator@bench.example.org")
        cookies.append(client.cookie)
        client.close()
    return cookies


def drive(port: int, workload: Workload, rate: float, duration: float, cookies: list[str],
          until: subprocess.Popen[Any] | None = None, max_duration: float = 900) -> list[Sample]:
    """Send requests at `rate` per second for `duration` s (and, with `until`, on until that
    process ends, at most `max_duration`) from one event loop, open loop: each request is sent
    when due, on its own connection, whatever the server is still working on; the samples."""
    # No garbage collection while it measures: a full collection of this process (the app, its
    # seeding, the samples) stopped the loop for 95 ms in a pass's last seconds (gc.callbacks),
    # and every request due meanwhile was counted late against the server
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        # libuv: ~0.2 ms less CPU per request than asyncio's own loop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_drive(port, workload, cookies, rate, duration, until, max_duration))
    finally:
        gc.enable()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


def report(label: str, samples: list[Sample], seconds: float, timeline: float = 0) -> None:
    errors = [s for s in samples if s.status != 200]
    dropped = sum(1 for s in samples if s.status == -1)
    print(f"\n{label}: {len(samples)} requests due in {seconds:.1f} s, errors {len(errors)} "
          f"{sorted({s.status for s in errors})} (of which {dropped} dropped: > {MAX_LATE:.0f} s late)")
    print(f"  {'kind':<8} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind in ("all", "queue", "case", "agenda", "feed"):
        lat = [s.latency * 1000 for s in samples if kind == "all" or s.kind == kind]
        if lat and kind != "all":
            lat = [s.latency * 1000 for s in samples if s.kind == kind and s.status != -1]
        if lat:
            print(f"  {kind:<8} {len(lat):>6} {statistics.median(lat):>8.1f} {percentile(lat, 99):>8.1f} "
                  f"{max(lat):>8.1f}")
    if timeline and LAGS:
        print(f"  generator loop lag max ms per {timeline:.0f} s:", " ".join(
            f"{max([lag * 1000 for t, lag in LAGS if start <= t < start + timeline] or [0]):.0f}"
            for start in range(0, int(max(s.due for s in samples)) + 1, int(timeline))))
    if timeline:
        print(f"  p99 ms per {timeline:.0f} s of the run:", " ".join(
            f"{percentile([s.latency * 1000 for s in samples if start <= s.due < start + timeline], 99):.0f}"
            for start in range(0, int(max(s.due for s in samples)) + 1, int(timeline))))


# --- how fast the machine is right now -----------------------------------------------------------

def reference_speed() -> str:
    """A fixed pure-Python loop, best of 3: this machine's speed varies from hour to hour (seen
    from 5.4 to 9.4 µs on the same code), so every figure is printed beside it."""
    import timeit

    best = min(timeit.repeat("sorted({i: str(i) for i in range(50)}.values())", number=20_000, repeat=3))
    return f"reference loop {best / 20_000 * 1e6:.2f} µs"


# --- CPU by process group -----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds so far) of a live process, None once it has gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm_end = raw.rindex(")")
    fields = raw[comm_end + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU seconds per process group over a phase, sampled from /proc every 0.2 s: the gunicorn
    master and workers, the pass (its process, and its PostgreSQL backend, told apart by its
    `application_name`), the web's PostgreSQL backends, autovacuum, PostgreSQL's background
    processes, and this generator (this meter included). New processes are looked for every
    second (one persistent connection to pg_stat_activity), known ones read every 0.2 s: one that
    ends between two samples loses at most 0.2 s of CPU from the count."""

    def __init__(self, url: str, gunicorn_pid: int) -> None:
        self.gunicorn_pid = gunicorn_pid
        self.engine = sa.create_engine(url, pool_size=1, connect_args={"application_name": "bench-meter"})
        self.groups: dict[int, str] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()

    def _backends(self) -> dict[int, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT pid, backend_type, application_name FROM pg_stat_activity"))
            return {pid: ("pg: pass" if app == "bench-pass" else "" if app == "bench-meter"
                          else "pg: autovacuum" if kind.startswith("autovacuum")
                          else "pg: web" if kind == "client backend" else "pg: background")
                    for pid, kind, app in rows}

    def sample(self, watched: subprocess.Popen[Any] | None, *, first: bool = False,
               known: bool = False) -> None:
        """Read the CPU of every process of a group; with `known`, only of those already
        grouped (cheaper: the meter runs on the cores it measures)."""
        if known:
            for pid in self.groups:
                stat = _stat(pid)
                if stat is not None:
                    self.last[pid] = stat[1]
            return
        backends = self._backends()
        pass_pids = {watched.pid, *_children(watched.pid)} if watched is not None else set()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _stat(pid)
            if stat is None:
                continue
            ppid, cpu = stat
            if pid not in self.groups:
                group = ("generator" if pid == os.getpid()
                         else "gunicorn" if self.gunicorn_pid in (pid, ppid)
                         else "pass" if pid in pass_pids else backends.get(pid, ""))
                if not group:
                    continue
                self.groups[pid] = group
                self.first[pid] = cpu if first else 0.0  # a process born in the phase counts whole
            self.last[pid] = cpu

    def start(self, watched: subprocess.Popen[Any] | None = None) -> threading.Thread:
        def loop() -> None:  # new processes looked for every second, known ones read every 0.2 s
            n = 0
            while not self._stop.wait(0.2):
                n += 1
                self.sample(watched, known=n % 5 != 0)

        self.sample(None, first=True)
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def stop(self, thread: threading.Thread) -> dict[str, float]:
        self._stop.set()
        thread.join()
        self.sample(None)
        self.engine.dispose()
        totals: dict[str, float] = {}
        for pid, group in self.groups.items():
            totals[group] = totals.get(group, 0.0) + self.last[pid] - self.first[pid]
        return totals


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class PassActivity:
    """What the pass's PostgreSQL backend is doing, sampled every 0.1 s (`--timeline`): its state
    and the start of its query, to tell which part of a pass a slow second of the web falls in."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_size=1, connect_args={"application_name": "bench-meter"})
        self.seen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.perf_counter()
        query = sa.text("SELECT state, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) "
                        "FROM pg_stat_activity WHERE application_name = 'bench-pass'")
        with self.engine.connect() as conn:
            while not self._stop.wait(0.1):
                row = conn.execute(query).first()
                conn.rollback()
                what = "no backend" if row is None else row[0] if row[0] != "active" else f"active: {row[1]}"
                self.seen.append((time.perf_counter() - started, what))

    def __enter__(self) -> PassActivity:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()

    def report(self, samples: list[Sample]) -> None:
        """Per second: the web's p99 and what the pass's backend did most (in tenths of it)."""
        print("  per second: p99 ms, what the pass's backend did (tenths of the second)")
        for second in range(int(max(s.due for s in samples)) + 1):
            latencies = [s.latency * 1000 for s in samples if second <= s.due < second + 1]
            doing = Counter(what for at, what in self.seen if second <= at < second + 1)
            print(f"  {second:4d} s {percentile(latencies, 99) if latencies else 0:7.1f}  "
                  + ", ".join(f"{what} ×{n}" for what, n in doing.most_common(2)))


def measured(meter: CpuMeter, work: Callable[[], list[Sample]],
             watched: subprocess.Popen[Any] | None = None) -> tuple[list[Sample], str]:
    """Run `work` (a phase of the load); its samples and the CPU each process group spent."""
    thread = meter.start(watched)
    started, stolen = time.perf_counter(), _steal()
    samples = work()
    wall, stolen = time.perf_counter() - started, _steal() - stolen
    totals = meter.stop(thread)
    web = (totals.get("gunicorn", 0) + totals.get("pg: web", 0)) / max(1, len(samples)) * 1000
    return samples, (f"  CPU in {wall:.1f} s: " + ", ".join(
        f"{group} {cpu:.1f} s" for group, cpu in sorted(totals.items()))
        + f"; {sum(totals.values()) / wall:.2f} cores; web {web:.2f} ms per request; "
        f"stolen by the hypervisor {stolen:.1f} s")


def _steal() -> float:
    """CPU seconds this virtual machine's cores were ready to run but the host ran something
    else (the `steal` column of /proc/stat, all cores)."""
    return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8]) / _TICK


# --- main -------------------------------------------------------------------------------------

def start_gunicorn(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TUMORBOARD_CONFIG": "production", "SECRET_KEY": "bench-only-secret",
           "DATABASE_URL": url, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers),
           "GUNICORN_LOGLEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                            cwd=ROOT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)  # waiting for the port
        finally:
            conn.close()
    proc.terminate()
    raise SystemExit("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--sessions", type=int, default=8, help="signed-in sessions the requests rotate over")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-pass", action="store_true", help="measure idle only")
    parser.add_argument("--pass-nice", type=int, default=10, help="niceness of the pass (the scheduler's)")
    parser.add_argument("--pass-idle", action="store_true",
                        help="the whole pass under SCHED_IDLE (not only its solver), instead of niced")
    parser.add_argument("--timeline", action="store_true",
                        help="during the pass, print each second's p99 beside what the pass's backend ran")
    parser.add_argument("--warmup", type=float, default=20,
                        help="seconds at a quarter of the rate first, not measured")
    args = parser.parse_args()

    with scratch_database(args.pg_url, SCRATCH) as url:
        server = None
        try:
            app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
            with app.app_context():
                db.create_all()
                started = time.perf_counter()
                counts = seed(args.cases)
                print(f"seeded {counts} in {time.perf_counter() - started:.1f} s")
                workload = Workload.of_seeded(args.cases)
                db.session.remove()
                db.engine.dispose()
            print(f"machine: nproc={os.cpu_count()}, {reference_speed()}, "
                  f"gunicorn sync workers={args.workers}, rate={args.rate:.0f} req/s, "
                  f"{args.sessions} sessions")
            server = start_gunicorn(url, args.port, args.workers)
            # a new worker spends its first requests compiling templates and SQL: warm every
            # worker up (not measured), as a server that has been running for a while is
            cookies = sign_in(args.port, args.sessions)
            drive(args.port, workload, args.rate / 4, args.warmup, cookies)
            samples, cpu = measured(CpuMeter(url, server.pid), lambda: drive(
                args.port, workload, args.rate, args.duration, cookies))
            report("idle", samples, len(samples) / args.rate, timeline=5)
            print(cpu)
            if args.skip_pass:
                return
            env = {**os.environ, "DATABASE_URL": f"{url}?application_name=bench-pass",
                   "TUMORBOARD_CONFIG": "production",
                   "SECRET_KEY": "bench-only-secret", "FLASK_APP": "wsgi"}
            pass_started = time.perf_counter()
            command = [*(["chrt", "--idle", "0"] if args.pass_idle else ["nice", "-n", str(args.pass_nice)]),
                       sys.executable, "-m", "flask", "tumorboard", "assign"]
            log = tempfile.TemporaryFile("w+")  # one line per change: far more than a pipe holds
            assign = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      text=True)
            timer: dict[str, float] = {}

            def wait_pass() -> None:
                assign.wait()
                timer["pass"] = time.perf_counter() - pass_started

            waiter = threading.Thread(target=wait_pass)
            waiter.start()
            with PassActivity(url) if args.timeline else contextlib.nullcontext() as activity:
                samples, cpu = measured(CpuMeter(url, server.pid), lambda: drive(
                    args.port, workload, args.rate, args.duration, cookies, until=assign),
                    watched=assign)
            waiter.join()
            log.seek(0)
            out = err = log.read()
            log.close()
            report("during an assignment pass over every case", samples, len(samples) / args.rate, timeline=5)
            print(cpu)
            if activity is not None:
                activity.report(samples)
            print(f"\nassignment pass: {timer['pass']:.1f} s wall (import + build + solve + apply + commit), "
                  f"exit {assign.returncode}; {out.strip().splitlines()[-1] if out.strip() else err[-500:]}")
            with app.app_context():
                placed = db.session.scalar(sa.text("SELECT count(*) FROM assignments WHERE active"))
                outbox = db.session.scalar(sa.text("SELECT count(*) FROM outbox_messages"))
                tables = db.session.execute(sa.text(
                    "SELECT relname, n_dead_tup, vacuum_count FROM pg_stat_user_tables "
                    "WHERE relname IN ('cases', 'assignments') ORDER BY relname")).all()
                print(f"  active assignments {placed}, outbox messages {outbox}; "
                      + ", ".join(f"{name}: {dead} dead rows, vacuumed {n}×" for name, dead, n in tables))
                db.session.remove()
                db.engine.dispose()
            # the steady state: every agenda full, every case page with its meeting
            samples, cpu = measured(CpuMeter(url, server.pid), lambda: drive(
                args.port, workload, args.rate, args.duration, cookies))
            report("after the pass (agendas full)", samples, len(samples) / args.rate, timeline=5)
            print(cpu)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
