"""`solve`: fixed cases first, then each connected component exactly, never worse than EDF."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .components import Assignment, Instance, components, prepare, score
from .exact import shift_earlier, solve_component
from .greedy import greedy
from .model import Objective, Plan, Problem
from .rules import FULL, urgent_latest_start

#: Default total solver budget in seconds, shared among components by size.
DEFAULT_TIME_LIMIT = 5.0
#: Smallest budget a component that needs CP-SAT gets, even when the total is spent.
MIN_COMPONENT_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class SolveStats:
    """How a plan was found (for benchmarks and logs)."""

    components: int  #: components with at least one free case that has a candidate
    solved_exactly: int  #: components proved optimal on tiers 1–3
    largest: tuple[int, int]  #: (cases, meetings) of the largest component
    greedy_objective: Objective  #: the EDF baseline's objective on the same problem
    seconds: float


def solve(problem: Problem, time_limit: float = DEFAULT_TIME_LIMIT) -> Plan:
    """Best Plan for `problem`: exact on tiers 1–3 when proved within `time_limit` seconds."""
    return solve_with_stats(problem, time_limit)[0]


def solve_greedy(problem: Problem) -> Plan:
    """The earliest-deadline-first baseline Plan (no solver)."""
    inst = prepare(problem)
    solution: Assignment = dict(inst.fixed)
    for cases, _ in components(inst):
        solution.update(greedy(inst, cases))
    return build_plan(inst, solution)


def solve_with_stats(
    problem: Problem, time_limit: float = DEFAULT_TIME_LIMIT
) -> tuple[Plan, SolveStats]:
    """`solve`, also returning `SolveStats`."""
    started = time.monotonic()
    stop_at = started + time_limit
    inst = prepare(problem)
    comps = components(inst)
    solution: Assignment = dict(inst.fixed)
    baseline: Assignment = dict(inst.fixed)
    weights = [sum(len(inst.candidates[ci]) for ci in cases) for cases, _ in comps]
    left = sum(weights)
    proved_count = 0
    for (cases, meetings), weight in zip(comps, weights, strict=True):
        hint = greedy(inst, cases)
        baseline.update(hint)
        share = max(MIN_COMPONENT_SECONDS, (stop_at - time.monotonic()) * weight / left)
        left -= weight
        found, proved = solve_component(inst, cases, meetings, hint, share)
        proved_count += proved
        best = max(found, shift_earlier(inst, cases, found), hint, key=lambda s: score(inst, cases, s))
        solution.update(best)
    largest = max(((len(c), len(m)) for c, m in comps), default=(0, 0))
    stats = SolveStats(
        components=len(comps),
        solved_exactly=proved_count,
        largest=largest,
        greedy_objective=build_plan(inst, baseline).objective,
        seconds=time.monotonic() - started,
    )
    return build_plan(inst, solution), stats


def build_plan(inst: Instance, solution: Assignment) -> Plan:
    """Turn an index-level solution (fixed cases included) into a Plan."""
    problem = inst.problem
    meetings, cases = problem.meetings, problem.cases
    assignments, unassigned, requests = [], [], []
    for ci, case in enumerate(cases):
        mi = solution.get(ci)
        if mi is not None:
            assignments.append((case.id, meetings[mi].id))
            continue
        unassigned.append((case.id, inst.reasons.get(ci, FULL)))
        if case.urgent:
            requests.append((case.id, case.site, urgent_latest_start(problem, case)))
    urgent, placed, moved, wait = score(inst, list(range(len(cases))), solution)
    return Plan(
        assignments=tuple(assignments),
        unassigned=tuple(unassigned),
        urgent_slot_requests=tuple(requests),
        overbooked=tuple(meetings[mi].id for mi in inst.overbooked),
        objective=Objective(
            urgent_placed=urgent, placed=placed, moved=-moved, wait_hours=round(-wait / 3.6e9, 2)
        ),
    )
