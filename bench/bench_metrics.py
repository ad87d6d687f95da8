"""Benchmark the metrics (and the home page's sections) on 10,000 synthetic cases.

    .venv/bin/python bench/bench_metrics.py                     # SQLite, and PostgreSQL if reachable
    .venv/bin/python bench/bench_metrics.py --cases 10000 --repeat 5 --pg-url postgresql://postgres@127.0.0.1/postgres

Generates a seeded history (one year of weekly meetings of 6 boards, ~10k cases referred over the
year, each discussed once, signed consensus records with a spread of concordance values, answered
invitations) with bulk inserts into a temporary SQLite file, and into a scratch PostgreSQL database
(`tb_bench_metrics`, dropped afterwards) when one answers; then times `metrics.services.compute`
(every section), each plot (`/metrics/plots/<name>.svg` work: compute its part + render the SVG)
and `main.services.home_for` for a user with every clinical role. Prints the median and the worst
of `--repeat` runs (after one warm-up) and the number of SQL statements of one `compute`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from config import database_url  # noqa: E402
from tests.pgcheck import scratch_database  # noqa: E402
from tumorboard import create_app  # noqa: E402
from tumorboard.extensions import db  # noqa: E402

NOW = datetime(2031, 7, 1, 12, 0, tzinfo=UTC)
SITES = ["breast", "lung", "colorectal", "upper_gi", "prostate", "gynae"]
CORE = {
    "breast": ["pathology", "radiology", "surgical_oncology"],
    "lung": ["pathology", "radiology"],
    "colorectal": ["pathology", "radiology"],
    "upper_gi": ["pathology", "surgical_oncology"],
    "prostate": ["pathology", "radiation_oncology"],
    "gynae": ["pathology", "radiology"],
}
SPECIALTIES = [
    "pathology",
    "radiology",
    "surgical_oncology",
    "radiation_oncology",
    "medical_oncology",
    "nursing",
]
CONCORDANCE = (
    ["concordant"] * 70 + ["minor_discrepancy"] * 18 + ["major_discrepancy"] * 8 + ["new_diagnosis"] * 4
)
PARTSTATS = ["ACCEPTED"] * 65 + ["DECLINED"] * 10 + ["TENTATIVE"] * 10 + ["NEEDS-ACTION"] * 15


def generate(n_cases: int, seed: int = 8) -> dict[str, int]:
    """Bulk-insert the synthetic history (in the current app context); row counts per table."""
    from tumorboard.auth.models import User, UserRole
    from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty, Meeting
    from tumorboard.calendar.models import Invitation
    from tumorboard.cases.models import Assignment, Case, CaseSpecialty
    from tumorboard.consensus.models import Consensus

    rng = random.Random(seed)
    users = [
        {
            "id": i,
            "email": f"user{i}@example.org",
            "name": f"Synthetic User {i}",
            "specialty": SPECIALTIES[i % len(SPECIALTIES)],
            "session_token": f"s{i}",
            "feed_token": f"f{i}",
            "timezone": "Europe/London",
            "active": True,
            "created_at": NOW,
        }
        for i in range(1, 61)
    ]
    roles = [
        {"user_id": u["id"], "role": "oncologist" if u["specialty"] == "medical_oncology" else "specialist"}
        for u in users
    ] + [{"user_id": 1, "role": "coordinator"}]
    oncologists = [u["id"] for u in users if u["specialty"] == "medical_oncology"]
    db.session.execute(sa.insert(User), users)
    db.session.execute(sa.insert(UserRole), roles)
    boards, sites, specs, members, meetings = [], [], [], [], []
    weeks = 52
    for b, site in enumerate(SITES, start=1):
        boards.append(
            {
                "id": b,
                "name": f"{site} MDT",
                "rrule": "FREQ=WEEKLY",
                "timezone": "Europe/London",
                "first_date": date(2030, 1, 1),
                "start_time": datetime(2030, 1, 1, 8).time(),
                "duration_minutes": 90,
                "capacity_minutes": 120,
                "default_case_minutes": 10,
                "active": True,
                "feed_token": f"b{b}",
                "location": "",
                "video_url": "",
                "created_at": NOW,
            }
        )
        sites.append({"board_id": b, "site": site})
        specs += [{"board_id": b, "specialty": s} for s in CORE[site]]
        members += [{"board_id": b, "user_id": u["id"]} for u in users if u["specialty"] in CORE[site]]
        for w in range(weeks):
            start = NOW - timedelta(weeks=weeks - w, hours=b)
            meetings.append(
                {
                    "id": len(meetings) + 1,
                    "board_id": b,
                    "kind": "regular",
                    "recurrence_id": start,
                    "start_at": start,
                    "end_at": start + timedelta(minutes=90),
                    "status": "held",
                    "location": "",
                    "capacity_minutes": 120,
                    "ical_uid": f"m{len(meetings) + 1}@bench",
                    "sequence": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
    db.session.execute(sa.insert(Board), boards)
    db.session.execute(sa.insert(BoardSite), sites)
    db.session.execute(sa.insert(BoardSpecialty), specs)
    db.session.execute(sa.insert(BoardMember), members)
    db.session.execute(sa.insert(Meeting), meetings)
    by_board = {b: [m for m in meetings if m["board_id"] == b] for b in range(1, len(SITES) + 1)}
    invitations = []
    for m in meetings:
        for member in (x for x in members if x["board_id"] == m["board_id"]):
            invitations.append(
                {
                    "meeting_id": m["id"],
                    "user_id": member["user_id"],
                    "role": "REQ-PARTICIPANT",
                    "partstat": rng.choice(PARTSTATS),
                    "active": True,
                    "created_at": NOW,
                }
            )
    db.session.execute(sa.insert(Invitation), invitations)
    cases, case_specs, assignments, consensus = [], [], [], []
    for c in range(1, n_cases + 1):
        b = rng.randint(1, len(SITES))
        site = SITES[b - 1]
        created = NOW - timedelta(days=rng.uniform(5, 360))
        ready = created + timedelta(days=rng.expovariate(1 / 5))
        later = [m for m in by_board[b] if m["start_at"] >= ready + timedelta(days=2)]
        meeting = later[0] if later and rng.random() < 0.9 else None
        deadline = (created + timedelta(days=rng.randint(10, 90))).date()
        status = "closed" if meeting else rng.choice(["intake", "ready", "withdrawn"])
        cases.append(
            {
                "id": c,
                "mrn": f"BENCH-{c:06d}",
                "display_name": f"Synthetic {c}",
                "site": site,
                "diagnosis_date": created.date(),
                "question": "Synthetic.",
                "referring_oncologist_id": rng.choice(oncologists),
                "urgency": "routine",
                "deadline": deadline,
                "minutes": 10,
                "status": status,
                "ready_at": None if status in ("intake", "withdrawn") else ready,
                "created_at": created,
                "updated_at": created,
            }
        )
        case_specs += [{"case_id": c, "specialty": s} for s in CORE[site][:2]]
        if meeting:
            assignments.append(
                {
                    "case_id": c,
                    "meeting_id": meeting["id"],
                    "minutes": 10,
                    "position": 1,
                    "source": "engine",
                    "pinned": False,
                    "active": True,
                    "created_at": ready,
                }
            )
            signed = meeting["start_at"] + timedelta(hours=rng.randint(1, 120))
            consensus.append(
                {
                    "case_id": c,
                    "meeting_id": meeting["id"],
                    "status": "signed",
                    "concordance": rng.choice(CONCORDANCE),
                    "management_changed": rng.random() < 0.3,
                    "specialties_present": [],
                    "recommendation_kinds": ["surgery"],
                    "deferred": False,
                    "board_diagnosis": "",
                    "management_change": "",
                    "recommendation": "x",
                    "rationale": "",
                    "trial_notes": "",
                    "dissent": "",
                    "signed_by_id": oncologists[0],
                    "signed_at": signed,
                    "created_at": signed,
                    "updated_at": signed,
                }
            )
    db.session.execute(sa.insert(Case), cases)
    db.session.execute(sa.insert(CaseSpecialty), case_specs)
    db.session.execute(sa.insert(Assignment), assignments)
    db.session.execute(sa.insert(Consensus), consensus)
    db.session.commit()
    if db.engine.dialect.name == "postgresql":  # fresh tables have no statistics yet
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
    return {
        "cases": len(cases),
        "meetings": len(meetings),
        "assignments": len(assignments),
        "consensus": len(consensus),
        "invitations": len(invitations),
    }


def _time(work: Any, repeat: int) -> tuple[float, float]:
    work()  # warm-up (statement caches, SQLite page cache)
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        runs.append(time.perf_counter() - start)
        db.session.rollback()
    return statistics.median(runs) * 1000, max(runs) * 1000


def run(url: str, n_cases: int, repeat: int) -> None:
    from tumorboard.auth.models import User
    from tumorboard.main.services import home_for
    from tumorboard.metrics import services
    from tumorboard.metrics.plots import PLOTS
    from tumorboard.metrics.services import MetricsFilter
    from tumorboard.metrics.views import PLOT_PARTS

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url(url))
    with app.app_context():
        db.drop_all()
        db.create_all()
        start = time.perf_counter()
        counts = generate(n_cases)
        print(f"\n{db.engine.dialect.name}: generated {counts} in {time.perf_counter() - start:.1f} s")
        year = MetricsFilter(None, (NOW - timedelta(days=365)).date(), NOW.date())
        statements: list[int] = []
        listener = lambda *a, **k: statements.append(1)  # noqa: E731
        sa.event.listen(db.engine, "before_cursor_execute", listener)
        services.compute(year, now=NOW)
        sa.event.remove(db.engine, "before_cursor_execute", listener)
        median, worst = _time(lambda: services.compute(year, now=NOW), repeat)
        print(
            f"  compute (all sections, 1 year, all sites): median {median:.0f} ms, worst {worst:.0f} ms, "
            f"{len(statements)} SQL statements"
        )
        breast = MetricsFilter("breast", (NOW - timedelta(days=90)).date(), NOW.date())
        median, worst = _time(lambda: services.compute(breast, now=NOW), repeat)
        print(f"  compute (breast, 90 days):                  median {median:.0f} ms, worst {worst:.0f} ms")
        for label, scope in (("1 year", year), ("breast, 90 days", breast)):
            for part in services.PARTS:
                median, worst = _time(
                    lambda p=part, f=scope: services.compute(f, now=NOW, parts=(p,)), repeat
                )
                print(f"    {label:<16} {part:<12} median {median:6.1f} ms, worst {worst:6.1f} ms")
        for name, (_, render) in PLOTS.items():

            def plot(name: str = name, render: Any = render) -> bytes:
                return render(services.compute(year, now=NOW, parts=(PLOT_PARTS[name],)))

            median, worst = _time(plot, repeat)
            print(
                f"  plot {name:<12} (compute + SVG): median {median:5.0f} ms, worst {worst:5.0f} ms, "
                f"{len(plot()) // 1024} KiB"
            )
        user = db.session.get(User, 1)
        from tumorboard.auth.models import UserRole

        for role in {"oncologist", "specialist"} - user.role_names:
            db.session.add(UserRole(user_id=1, role=role))
        db.session.commit()
        user = db.session.get(User, 1)
        median, worst = _time(lambda: home_for(user, now=NOW), repeat)
        print(f"  home page sections (every role):           median {median:.0f} ms, worst {worst:.0f} ms")
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="an existing PostgreSQL database to create the scratch database from",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{folder}/bench.db", args.cases, args.repeat)
    try:
        with scratch_database(args.pg_url, "tb_bench_metrics") as url:
            run(url, args.cases, args.repeat)
    except sa.exc.OperationalError as exc:
        print(f"\nPostgreSQL not reachable at {args.pg_url}: skipped ({exc.__class__.__name__})")

if __name__ == "__main__":
    main()
