"""Scheduling engine: contract checks, exhaustive optimality, hand-written cases, CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tumorboard.scheduling import ProblemError, parse_problem, solve, solve_greedy

try:
    from tests.scheduling_checker import best_tiers, check_plan
except ImportError:  # tests/ itself on sys.path
    from scheduling_checker import best_tiers, check_plan

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def iso(hours: float, offset_hours: int = 0) -> str:
    """NOW + hours, written with the given UTC offset."""
    return (NOW + timedelta(hours=hours)).astimezone(timezone(timedelta(hours=offset_hours))).isoformat()


def meeting(mid: str, at: float, cap: int = 60, **kw: Any) -> dict[str, Any]:
    base = {"id": mid, "sites": ["breast"], "start": iso(at), "capacity_minutes": cap,
            "specialties": ["pathology", "radiology"], "frozen": False}
    return base | kw


def case(cid: str, minutes: int = 10, ready: float = -72, deadline: float = 24 * 30,
         **kw: Any) -> dict[str, Any]:
    base = {"id": cid, "site": "breast", "minutes": minutes, "ready_at": iso(ready),
            "deadline": iso(deadline), "urgent": False, "required_specialties": [],
            "current_meeting": None, "pinned_meeting": None}
    return base | kw


def problem(
    meetings: list[dict[str, Any]], cases: list[dict[str, Any]], **settings_: float
) -> dict[str, Any]:
    doc: dict[str, Any] = {"now": NOW.isoformat(), "meetings": meetings, "cases": cases}
    if settings_:
        doc["settings"] = settings_
    return doc


def run(doc: dict[str, Any]) -> dict[str, Any]:
    """Solve, check the plan against the contract, and return it as JSON."""
    plan = solve(parse_problem(doc), time_limit=5.0).to_dict()
    check_plan(doc, plan)
    return plan


def placed(plan: dict[str, Any]) -> dict[str, str]:
    return {a["case"]: a["meeting"] for a in plan["assignments"]}


def reasons(plan: dict[str, Any]) -> dict[str, str]:
    return {u["case"]: u["reason"] for u in plan["unassigned"]}


# --- random problems -----------------------------------------------------------------------

SITES = ["breast", "lung"]
SPECIALTIES = ["pathology", "radiology"]


@st.composite
def problems(draw: st.DrawFn, max_cases: int = 8) -> dict[str, Any]:
    """Small but crowded problems: most cases compete for the same few meetings."""
    n_meetings = draw(st.integers(1, 4))
    meetings = []
    for i in range(n_meetings):
        meetings.append({
            "id": f"m{i}",
            "sites": draw(st.lists(st.sampled_from(SITES), min_size=1, max_size=2, unique=True)),
            "start": iso(6 * draw(st.integers(-1, 24)), draw(st.sampled_from([0, 1, -5]))),
            "capacity_minutes": draw(st.sampled_from([0, 10, 15, 20, 30, 45])),
            "specialties": draw(st.sampled_from([SPECIALTIES, SPECIALTIES, ["pathology"], []])),
            "frozen": draw(st.integers(0, 7)) == 0,
        })
    ids = [m["id"] for m in meetings]
    cases = []
    for i in range(draw(st.integers(1, max_cases))):
        ready = 6 * draw(st.integers(-16, 4))
        cases.append({
            "id": f"c{i}",
            "site": draw(st.sampled_from([*SITES, *SITES, *SITES, "skin"])),
            "minutes": draw(st.sampled_from([5, 10, 15, 20])),
            "ready_at": iso(ready, draw(st.sampled_from([0, 2]))),
            "deadline": iso(ready + 6 * draw(st.integers(6, 60))),
            "urgent": draw(st.integers(0, 2)) == 0,
            "required_specialties": draw(st.sampled_from([[], [], [], ["radiology"]])),
            "current_meeting": draw(st.sampled_from([None, None, *ids])),
            "pinned_meeting": draw(st.sampled_from([None] * 8 + ids)),
        })
    doc: dict[str, Any] = {"now": NOW.isoformat(), "meetings": meetings, "cases": cases}
    if draw(st.booleans()):
        doc["settings"] = {
            "prep_lead_hours": draw(st.sampled_from([0, 24, 48])),
            "urgent_prep_lead_hours": draw(st.sampled_from([0, 6, 12])),
            "urgent_within_hours": draw(st.sampled_from([24, 72, 96.5])),
        }
    return doc


FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(problems())
def test_random_plans_are_feasible_and_optimal_on_tiers_1_to_3(doc: dict[str, Any]) -> None:
    plan = run(doc)
    o = plan["objective"]
    assert (o["urgent_placed"], o["placed"], -o["moved"]) == best_tiers(doc)


@FAST
@given(problems(max_cases=12))
def test_never_worse_than_greedy(doc: dict[str, Any]) -> None:
    plan = run(doc)
    baseline = solve_greedy(parse_problem(doc)).to_dict()
    check_plan(doc, baseline)
    mine, base = plan["objective"], baseline["objective"]
    key = ("urgent_placed", "placed")
    mine_t = (*[mine[k] for k in key], -mine["moved"])
    base_t = (*[base[k] for k in key], -base["moved"])
    assert mine_t >= base_t
    if mine_t == base_t:
        assert mine["wait_hours"] <= base["wait_hours"] + 1e-9


def crowded(seed: int) -> dict[str, Any]:
    """A seeded problem where many cases fight over a few meetings (greedy often loses)."""
    rng = random.Random(seed)
    meetings = [meeting(f"m{i}", 24 * rng.randint(1, 6), cap=rng.choice([15, 20, 25, 30, 40]),
                        frozen=rng.random() < 0.1) for i in range(3)]
    cases = [
        case(f"c{i}", minutes=rng.choice([5, 10, 15, 20]), ready=-24 * rng.randint(0, 3),
             deadline=24 * rng.randint(1, 7), urgent=rng.random() < 0.4,
             current_meeting=rng.choice([None, None, "m0", "m1", "m2"]),
             pinned_meeting=rng.choice([None] * 12 + ["m0"]))
        for i in range(7)
    ]
    return problem(meetings, cases, prep_lead_hours=24, urgent_within_hours=rng.choice([48, 96]))


@pytest.mark.parametrize("seed", range(60))
def test_crowded_problems_match_the_exhaustive_optimum(seed: int) -> None:
    doc = crowded(seed)
    o = run(doc)["objective"]
    assert (o["urgent_placed"], o["placed"], -o["moved"]) == best_tiers(doc)


@settings(max_examples=40, deadline=None, database=None)
@given(problems(max_cases=6), problems(max_cases=6))
def test_components_are_independent(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two problems on disjoint sites and meetings solve together as they do apart."""
    def rename(doc: dict[str, Any], tag: str) -> dict[str, Any]:
        doc = json.loads(json.dumps(doc))
        for m in doc["meetings"]:
            m["id"] = tag + m["id"]
            m["sites"] = [tag + s for s in m["sites"]]
        for c in doc["cases"]:
            c["id"], c["site"] = tag + c["id"], tag + c["site"]
            for key in ("current_meeting", "pinned_meeting"):
                c[key] = c[key] and tag + c[key]
        doc.pop("settings", None)
        return doc

    a, b = rename(a, "a-"), rename(b, "b-")
    both = run(problem(a["meetings"] + b["meetings"], a["cases"] + b["cases"]))
    apart = [run(a), run(b)]
    for k in ("urgent_placed", "placed", "moved"):
        assert both["objective"][k] == apart[0]["objective"][k] + apart[1]["objective"][k]


# --- hand-written cases --------------------------------------------------------------------


def test_basic_assignment_prefers_earliest_meeting() -> None:
    plan = run(problem([meeting("late", 24 * 10), meeting("early", 24 * 3)], [case("c1")]))
    assert placed(plan) == {"c1": "early"}
    assert plan["objective"] == {"urgent_placed": 0, "placed": 1, "moved": 0, "wait_hours": 144.0}


def test_pin_wins_over_rules_and_capacity() -> None:
    # Pinned to a past meeting for another site with zero capacity: it stays anyway.
    m = meeting("m1", -24, cap=0, sites=["lung"])
    plan = run(problem([m], [case("c1", pinned_meeting="m1", current_meeting="m1")]))
    assert placed(plan) == {"c1": "m1"}
    assert plan["overbooked"] == ["m1"]
    assert plan["objective"]["moved"] == 0


def test_frozen_meeting_keeps_its_cases_and_takes_nothing_new() -> None:
    frozen = meeting("f", 24, cap=20, frozen=True)
    doc = problem(
        [frozen, meeting("open", 24 * 5, cap=10)],
        [
            case("stays", minutes=15, ready=0, current_meeting="f"),  # too late by the rule
            case("new", minutes=5),  # would fit on f but f is frozen
            case("also", minutes=10),
        ],
    )
    plan = run(doc)
    assert placed(plan)["stays"] == "f"
    assert "f" not in [placed(plan).get("new"), placed(plan).get("also")]
    assert plan["objective"]["placed"] == 2
    assert reasons(plan) in ({"new": "all eligible meetings are full"},
                             {"also": "all eligible meetings are full"})


def test_overbooked_when_fixed_cases_alone_exceed_capacity() -> None:
    m1 = meeting("m1", 24 * 3, cap=20, frozen=True)
    m2 = meeting("m2", 24 * 4, cap=20)
    doc = problem([m1, m2], [
        case("a", minutes=15, current_meeting="m1"),
        case("b", minutes=15, pinned_meeting="m2"),
        case("c", minutes=15, pinned_meeting="m2"),
        case("d", minutes=5),
    ])
    plan = run(doc)
    assert plan["overbooked"] == ["m2"]
    assert placed(plan) == {"a": "m1", "b": "m2", "c": "m2"}
    assert reasons(plan) == {"d": "all eligible meetings are full"}


def test_pinned_meeting_wins_over_current_and_counts_as_moved() -> None:
    doc = problem([meeting("m1", 48), meeting("m2", 96, frozen=True)],
                  [case("a", current_meeting="m1", pinned_meeting="m2")])
    plan = run(doc)
    assert placed(plan) == {"a": "m2"}
    assert plan["objective"]["moved"] == 1


def test_current_meeting_no_longer_eligible_must_move() -> None:
    doc = problem(
        [meeting("m1", 24 * 3, specialties=["pathology"]), meeting("m2", 24 * 5)],
        [case("a", required_specialties=["radiology"], current_meeting="m1")],
    )
    plan = run(doc)
    assert placed(plan) == {"a": "m2"}
    assert plan["objective"]["moved"] == 1


def test_moves_are_minimised_before_wait() -> None:
    # b sits on the later meeting; moving it earlier would cut wait but costs a move.
    doc = problem([meeting("early", 48, cap=10), meeting("late", 24 * 7, cap=10)],
                  [case("a"), case("b", current_meeting="late")])
    plan = run(doc)
    assert placed(plan) == {"a": "early", "b": "late"}
    assert plan["objective"]["moved"] == 0


def test_urgent_beats_routine_and_unplaced_urgent_requests_a_slot() -> None:
    doc = problem([meeting("m1", 24, cap=10)], [
        case("routine", deadline=30),
        case("u1", urgent=True, ready=-24),
        case("u2", urgent=True, ready=-48, deadline=60),
    ])
    plan = run(doc)
    assert plan["objective"]["urgent_placed"] == 1
    assert "routine" not in placed(plan)
    [request] = plan["urgent_slot_requests"]
    loser = request["case"]
    expected = {"u1": iso(72), "u2": iso(60)}[loser]  # min(deadline, max(ready, now) + 72 h)
    assert request["latest_start"] == expected
    assert request["latest_start"].endswith("+00:00")
    assert reasons(plan)[loser] == "all eligible meetings are full"


def test_exact_beats_greedy_on_a_knapsack() -> None:
    # EDF puts the 20-minute case first and blocks two 15-minute ones.
    doc = problem([meeting("m1", 48, cap=30), meeting("m2", 72, cap=30)], [
        case("big", minutes=20, deadline=80),
        case("s1", minutes=15, deadline=100),
        case("s2", minutes=15, deadline=100),
        case("s3", minutes=15, deadline=100),
        case("s4", minutes=15, deadline=100),
    ])
    plan = run(doc)
    baseline = solve_greedy(parse_problem(doc)).to_dict()
    assert plan["objective"]["placed"] == 4 > baseline["objective"]["placed"] == 3


@pytest.mark.parametrize(
    ("meetings", "case_", "settings_", "reason"),
    [
        ([meeting("m", 48)], case("c", site="skin"), {}, "no board serves site skin"),
        ([meeting("m", 48, specialties=["pathology"])],
         case("c", required_specialties=["radiology", "genetics"]), {},
         "no meeting has the required specialties: genetics, radiology"),
        ([meeting("m", 48)], case("c", deadline=-1), {}, "the deadline has passed"),
        ([meeting("m", 24 * 10)], case("c", deadline=24 * 5), {}, "no meeting before the deadline"),
        ([meeting("m", 48)], case("c", ready=24, deadline=24 * 5), {},
         "records ready too late: no meeting after the preparation lead time before the deadline"),
        ([meeting("m", 24 * 4)], case("c", urgent=True), {"urgent_within_hours": 48},
         "urgent: no meeting within 48 h"),
        ([meeting("m", 48, frozen=True)], case("c"), {},
         "all eligible meetings are frozen (agenda published)"),
        ([meeting("m", 48, cap=5)], case("c", minutes=10), {}, "all eligible meetings are full"),
    ],
)
def test_reasons(meetings: list[dict[str, Any]], case_: dict[str, Any],
                 settings_: dict[str, float], reason: str) -> None:
    plan = run(problem(meetings, [case_], **settings_))
    assert reasons(plan) == {"c": reason}


def test_rule_boundaries_are_inclusive() -> None:
    # Meeting exactly at ready + lead, exactly at the deadline, exactly at the urgent limit.
    doc = problem([meeting("m", 48, cap=100)], [
        case("lead", ready=0),
        case("deadline", deadline=48),
        case("urgent", urgent=True, ready=36, deadline=1000),
    ], prep_lead_hours=48, urgent_prep_lead_hours=12, urgent_within_hours=12)
    assert placed(run(doc)) == {"lead": "m", "deadline": "m", "urgent": "m"}


def test_offsets_are_compared_as_instants() -> None:
    doc = problem([meeting("m", 0)], [case("c", ready=-48, deadline=0)])
    doc["meetings"][0]["start"] = iso(0, -5)
    doc["cases"][0]["deadline"] = iso(0, 9)
    assert placed(run(doc)) == {"c": "m"}


def test_settings_default_and_empty_problem() -> None:
    plan = run({"now": NOW.isoformat(), "meetings": [], "cases": []})
    assert plan["objective"] == {"urgent_placed": 0, "placed": 0, "moved": 0, "wait_hours": 0.0}


def test_output_follows_input_order() -> None:
    doc = problem([meeting("m", 48, cap=100)], [case(f"c{i}") for i in (3, 1, 2)])
    assert [a["case"] for a in run(doc)["assignments"]] == ["c3", "c1", "c2"]


def test_a_larger_component_is_solved_exactly_and_checked() -> None:
    meetings = [meeting(f"m{i}", 48 + 24 * i, cap=45) for i in range(12)]
    cases = [case(f"c{i}", minutes=[5, 10, 15, 20, 30][i % 5], ready=-24 * (i % 7),
                  deadline=24 * (4 + i % 9), urgent=i % 10 == 0,
                  current_meeting=f"m{i % 12}" if i % 4 == 0 else None) for i in range(80)]
    run(problem(meetings, cases))


# --- parsing and CLI -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["cases"][0].__setitem__("minutes", -5), "cases[0].minutes"),
        (lambda d: d["cases"][0].__setitem__("minutes", True), "cases[0].minutes"),
        (lambda d: d["cases"][0].__setitem__("colour", "red"), "cases[0].colour"),
        (lambda d: d["cases"][0].pop("deadline"), "cases[0].deadline"),
        (lambda d: d["cases"][0].__setitem__("ready_at", "2026-03-01T08:00:00"), "cases[0].ready_at"),
        (lambda d: d["cases"][0].__setitem__("pinned_meeting", "nope"), "cases[0].pinned_meeting"),
        (lambda d: d["cases"][0].__setitem__("current_meeting", "nope"), "cases[0].current_meeting"),
        (lambda d: d["meetings"][0].__setitem__("capacity_minutes", -1), "meetings[0].capacity_minutes"),
        (lambda d: d["meetings"][0].__setitem__("capacity_minutes", 1.5), "meetings[0].capacity_minutes"),
        (lambda d: d["meetings"][0].__setitem__("sites", "breast"), "meetings[0].sites"),
        (lambda d: d["meetings"].append(dict(d["meetings"][0])), "meetings[1].id"),
        (lambda d: d.__setitem__("settings", {"prep_lead_hours": -1}), "settings.prep_lead_hours"),
        (lambda d: d.__setitem__("settings", {"lead": 1}), "settings.lead"),
        (lambda d: d.__setitem__("now", "yesterday"), "now"),
    ],
)
def test_parse_errors_name_the_field(mutate: Any, path: str) -> None:
    doc = problem([meeting("m1", 48)], [case("c1")])
    mutate(doc)
    with pytest.raises(ProblemError) as err:
        parse_problem(doc)
    assert err.value.path == path


def cli(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tumorboard.scheduling", "solve", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


def test_cli_solves_a_good_problem_from_stdin_and_file(tmp_path: Path) -> None:
    doc = problem([meeting("m1", 48)], [case("c1"), case("c2", site="lung", urgent=True)])
    done = cli(json.dumps(doc))
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    check_plan(doc, plan)
    assert placed(plan) == {"c1": "m1"}
    file = tmp_path / "problem.json"
    file.write_text(json.dumps(doc))
    again = cli("", str(file))
    assert again.returncode == 0 and json.loads(again.stdout) == plan


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "invalid JSON"),
        ("[]", "must be a JSON object"),
        (json.dumps({"now": NOW.isoformat(), "meetings": [], "cases": [case("c1", minutes=0)]}),
         "cases[0].minutes: must be a positive integer"),
        (json.dumps({"now": "2026-03-02T08:00:00", "meetings": [], "cases": []}), "now:"),
        (json.dumps({"now": NOW.isoformat(), "meetings": [], "cases": [], "extra": 1}), "extra: unknown key"),
        (json.dumps({"now": NOW.isoformat(), "meetings": [],
                     "cases": [case("c1", current_meeting="ghost")]}), "cases[0].current_meeting"),
    ],
)
def test_cli_rejects_bad_problems_with_one_line(text: str, needle: str) -> None:
    done = cli(text)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], done.stderr


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    done = cli("", str(tmp_path / "absent.json"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
