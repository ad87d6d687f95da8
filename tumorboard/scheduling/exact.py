"""Exact solving of one connected component.

Three routes, cheapest first, each exact on all four tiers when it says so:

* every candidate meeting can hold all cases that may use it: each case independently takes its
  current meeting if it is a candidate, else its earliest candidate;
* a single meeting with a small knapsack: dynamic programming over minutes;
* otherwise CP-SAT. Phase 1 maximises tiers 1–3 folded into one integer objective
  ``A·urgent + B·placed + stays`` with ``B = n + 1`` and ``A = B·(n + 1)``, so a higher tier always
  outweighs the largest possible total of the lower ones (n = cases in the component; minimising
  moves is maximising stays, since moves = cases with a current meeting − stays). When phase 1 is
  proved optimal, phase 2 keeps that objective value as a constraint and minimises total wait in
  whole minutes with the time left. Both phases are hinted (greedy, then phase 1).
"""

from __future__ import annotations

import time

from ortools.sat.python import cp_model

from .components import Assignment, Instance, score

#: Largest cases × minutes table the single-meeting dynamic programme may fill.
DP_LIMIT = 400_000


def solve_component(
    inst: Instance, cases: list[int], meetings: list[int], hint: Assignment, time_limit: float
) -> tuple[Assignment, bool]:
    """Best assignment found for one component, and whether it is proved optimal (tiers 1–3)."""
    if _all_fit(inst, cases, meetings):
        return _each_alone(inst, cases), True
    if len(meetings) == 1 and len(cases) * (inst.room[meetings[0]] + 1) <= DP_LIMIT:
        return _knapsack(inst, cases, meetings[0]), True
    return _cp_sat(inst, cases, meetings, hint, time_limit)


def _all_fit(inst: Instance, cases: list[int], meetings: list[int]) -> bool:
    demand = dict.fromkeys(meetings, 0)
    for ci in cases:
        for mi in inst.candidates[ci]:
            demand[mi] += inst.minutes[ci]
    return all(demand[mi] <= inst.room[mi] for mi in meetings)


def _each_alone(inst: Instance, cases: list[int]) -> Assignment:
    # Candidates are sorted by start, so the first has the least wait.
    return {
        ci: inst.current[ci] if inst.current[ci] in inst.candidates[ci] else inst.candidates[ci][0]
        for ci in cases
    }


def _knapsack(inst: Instance, cases: list[int], meeting: int) -> Assignment:
    """0/1 knapsack over minutes with the four tiers folded into one exact Python integer."""
    n, cap = len(cases), inst.room[meeting]
    waits = [inst.wait_us(ci, meeting) for ci in cases]
    w_scale = sum(abs(w) for w in waits) + 1
    values = [
        ((inst.urgent[ci] * (n + 1) + 1) * (n + 1) + (inst.current[ci] == meeting)) * w_scale
        - wait
        for ci, wait in zip(cases, waits, strict=True)
    ]
    best = [0] * (cap + 1)
    taken: list[bytearray] = []
    for k, ci in enumerate(cases):
        size, value = inst.minutes[ci], values[k]
        row = bytearray(cap + 1)
        for w in range(cap, size - 1, -1):
            candidate = best[w - size] + value
            if candidate > best[w]:
                best[w] = candidate
                row[w] = 1
        taken.append(row)
    solution: Assignment = dict.fromkeys(cases)
    w = cap
    for k in range(n - 1, -1, -1):
        if taken[k][w]:
            solution[cases[k]] = meeting
            w -= inst.minutes[cases[k]]
    return solution


def _cp_sat(
    inst: Instance, cases: list[int], meetings: list[int], hint: Assignment, time_limit: float
) -> tuple[Assignment, bool]:
    stop_at = time.monotonic() + time_limit
    n = len(cases)
    b = n + 1
    a = b * (n + 1)
    model = cp_model.CpModel()
    keys: list[tuple[int, int]] = []
    xs: list[cp_model.IntVar] = []
    by_meeting: dict[int, list[int]] = {mi: [] for mi in meetings}
    for ci in cases:
        lits = []
        for mi in inst.candidates[ci]:
            by_meeting[mi].append(len(xs))
            keys.append((ci, mi))
            var = model.new_bool_var("")
            xs.append(var)
            lits.append(var)
        if len(lits) > 1:
            model.add_at_most_one(lits)
    for mi, idx in by_meeting.items():
        sizes = [inst.minutes[keys[k][0]] for k in idx]
        if sum(sizes) > inst.room[mi]:
            model.add(cp_model.LinearExpr.weighted_sum([xs[k] for k in idx], sizes) <= inst.room[mi])
    coefs = [a * inst.urgent[ci] + b + (inst.current[ci] == mi) for ci, mi in keys]
    tiers = cp_model.LinearExpr.weighted_sum(xs, coefs)
    model.maximize(tiers)
    for (ci, mi), var in zip(keys, xs, strict=True):
        model.add_hint(var, hint.get(ci) == mi)

    solver = _solver(stop_at)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return hint, False
    best = _extract(solver, cases, keys, xs)
    proved = status == cp_model.OPTIMAL
    if proved and stop_at - time.monotonic() > 0.01:
        # Phase 2: keep tiers 1–3 at their optimum, minimise wait (whole minutes).
        model.add(tiers >= round(solver.objective_value))
        waits = [inst.wait_us(ci, mi) // 60_000_000 for ci, mi in keys]
        model.minimize(cp_model.LinearExpr.weighted_sum(xs, waits))
        model.clear_hints()
        for (ci, mi), var in zip(keys, xs, strict=True):
            model.add_hint(var, best.get(ci) == mi)
        solver = _solver(stop_at)
        if solver.solve(model) in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            second = _extract(solver, cases, keys, xs)
            if score(inst, cases, second) > score(inst, cases, best):
                best = second
    return best, proved


def _solver(stop_at: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.linearization_level = 2
    solver.parameters.random_seed = 0
    solver.parameters.max_time_in_seconds = max(0.01, stop_at - time.monotonic())
    return solver


def _extract(
    solver: cp_model.CpSolver,
    cases: list[int],
    keys: list[tuple[int, int]],
    xs: list[cp_model.IntVar],
) -> Assignment:
    solution: Assignment = dict.fromkeys(cases)
    values = list(solver.response_proto.solution)
    for (ci, mi), var in zip(keys, xs, strict=True):
        if values[var.index]:
            solution[ci] = mi
    return solution
