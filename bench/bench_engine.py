"""Benchmark the scheduling engine on seeded synthetic problems.

    .venv/bin/python bench/bench_engine.py                 # both sizes, each in its own process
    .venv/bin/python bench/bench_engine.py --size large    # 10,000 cases x ~1,000 meetings
    .venv/bin/python bench/bench_engine.py --size small --write /tmp/problem.json

Reports wall time (parse + solve), the process's peak RSS, the objective against the
earliest-deadline-first baseline, and how many components were proved optimal.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tumorboard.scheduling import parse_problem, solve_greedy, solve_with_stats  # noqa: E402

#: Tumor-site groups; a board serves sites of one group only (how MDTs are organised).
CLUSTERS = {
    "breast": ["breast"],
    "thoracic": ["lung", "mesothelioma", "thymus"],
    "upper_gi": ["esophagus", "stomach"],
    "hpb": ["liver", "pancreas", "biliary"],
    "colorectal": ["colon", "rectum", "anal"],
    "urology": ["prostate", "bladder", "kidney", "testis"],
    "gynecology": ["ovary", "uterus", "cervix"],
    "head_neck": ["head_neck", "thyroid"],
    "neuro": ["brain"],
    "skin": ["melanoma", "skin"],
    "hematology": ["lymphoma", "leukemia", "myeloma"],
    "sarcoma": ["sarcoma"],
}
VOLUME = {"breast": 18, "thoracic": 13, "colorectal": 12, "urology": 14, "hematology": 9,
          "gynecology": 7, "upper_gi": 5, "hpb": 6, "head_neck": 6, "skin": 5, "neuro": 3,
          "sarcoma": 2}
CORE = ["pathology", "radiology", "medical_oncology"]
EXTRA = ["surgery", "radiation_oncology", "genetics", "nursing", "palliative_care"]
SIZES = {"large": (10_000, 85, 12), "small": (1_000, 9, 12)}
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


def generate(n_cases: int, n_boards: int, weeks: int, seed: int = 1) -> dict[str, Any]:
    """A seeded Problem document: weekly boards over `weeks`, demand roughly 85 % of capacity."""
    rng = random.Random(seed)
    names = sorted(CLUSTERS, key=lambda k: -VOLUME[k])
    # Every cluster in turn gets a board, then extra boards go where the volume is.
    clusters = names[:n_boards] + rng.choices(
        names, weights=[VOLUME[k] for k in names], k=max(0, n_boards - len(names))
    )
    meetings, served = [], set()
    for b, cluster in enumerate(clusters):
        sites = CLUSTERS[cluster]
        sites = sites if rng.random() < 0.6 else rng.sample(sites, rng.randint(1, len(sites)))
        served.update(sites)
        specialties = CORE + rng.sample(EXTRA, rng.randint(1, 4))
        capacity = rng.choice([120, 150, 180, 210])
        first = NOW + timedelta(days=rng.randint(0, 6), hours=rng.randint(1, 10))
        for w in range(weeks):
            if rng.random() < 0.03:  # an occasional cancelled occurrence
                continue
            start = first + timedelta(weeks=w)
            meetings.append({
                "id": f"b{b}-w{w}", "sites": sites, "start": start.isoformat(),
                "capacity_minutes": capacity, "specialties": specialties,
                "frozen": start < NOW + timedelta(days=3),
            })
    by_site: dict[str, list[str]] = {}
    for m in meetings:
        for s in m["sites"]:
            by_site.setdefault(s, []).append(m["id"])
    site_list = sorted(served)
    site_weights = [next(VOLUME[k] for k, v in CLUSTERS.items() if s in v) for s in site_list]
    cases = []
    for i in range(n_cases):
        urgent = rng.random() < 0.10
        site = rng.choices(site_list, weights=site_weights)[0]
        if rng.random() < 0.005:
            site = "unserved_site"
        ready = NOW + timedelta(days=rng.uniform(-10, 70))
        window = timedelta(days=rng.uniform(5, 14) if urgent else rng.uniform(14, 60))
        required = [] if rng.random() < 0.75 else rng.sample(EXTRA, 1)
        current = pinned = None
        if site in by_site and rng.random() < 0.15:
            current = rng.choice(by_site[site][:8])
        if site in by_site and rng.random() < 0.02:
            pinned = rng.choice(by_site[site])
        cases.append({
            "id": f"c{i}", "site": site, "minutes": rng.choices([5, 10, 15, 20, 30],
                                                                 weights=[15, 35, 25, 15, 10])[0],
            "ready_at": ready.isoformat(), "deadline": (ready + window).isoformat(),
            "urgent": urgent, "required_specialties": required,
            "current_meeting": current, "pinned_meeting": pinned,
        })
    return {"now": NOW.isoformat(), "meetings": meetings, "cases": cases}


def run(size: str, time_limit: float, write: str | None) -> None:
    """Generate one size, solve it, print a report."""
    n_cases, n_boards, weeks = SIZES[size]
    doc = generate(n_cases, n_boards, weeks)
    if write:
        Path(write).write_text(json.dumps(doc))
    t0 = time.perf_counter()
    problem = parse_problem(doc)
    t1 = time.perf_counter()
    plan, stats = solve_with_stats(problem, time_limit=time_limit)
    t2 = time.perf_counter()
    greedy = solve_greedy(problem)
    t3 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    o, g = plan.objective, greedy.objective
    capacity = sum(m["capacity_minutes"] for m in doc["meetings"])
    demand = sum(c["minutes"] for c in doc["cases"])
    print(f"== {size}: {len(doc['cases'])} cases x {len(doc['meetings'])} meetings "
          f"(demand {demand} min / capacity {capacity} min), time_limit={time_limit}s")
    print(f"   wall: parse {t1 - t0:.2f} s + solve {t2 - t1:.2f} s = {t2 - t0:.2f} s; "
          f"greedy alone {t3 - t2:.2f} s; peak RSS {rss_mb:.0f} MB")
    print(f"   components {stats.components}, proved optimal {stats.solved_exactly}, "
          f"largest {stats.largest[0]} cases x {stats.largest[1]} meetings")
    print(f"   engine: urgent_placed {o.urgent_placed}, placed {o.placed}, moved {o.moved}, "
          f"wait_hours {o.wait_hours}")
    print(f"   greedy: urgent_placed {g.urgent_placed}, placed {g.placed}, moved {g.moved}, "
          f"wait_hours {g.wait_hours}")
    engine_key = (o.urgent_placed, o.placed, -o.moved, -o.wait_hours)
    greedy_key = (g.urgent_placed, g.placed, -g.moved, -g.wait_hours)
    print(f"   engine >= greedy (lexicographic): {engine_key >= greedy_key}")


def main() -> None:
    """Parse arguments; with no --size run each size in its own process (separate peak RSS)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES))
    parser.add_argument("--time-limit", type=float, default=5.0)
    parser.add_argument("--write", help="also write the Problem JSON here")
    args = parser.parse_args()
    if args.size:
        run(args.size, args.time_limit, args.write)
        return
    for size in ("small", "large"):
        cmd = [sys.executable, __file__, "--size", size, "--time-limit", str(args.time_limit)]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
