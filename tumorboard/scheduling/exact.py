"""Exact solving of one connected component.

Three routes, cheapest first, each exact on all four tiers when it says so:

* every candidate meeting can hold all cases that may use it: each case independently takes its
  current meeting if it is a candidate, else its earliest candidate;
* a single meeting with a small knapsack: dynamic programming over minutes;
* otherwise CP-SAT (one worker, ``linearization_level=2``, hinted with greedy), tier by tier:
  maximise urgent placed, fix it (``>=`` its optimum), maximise placed, fix it, maximise stays on
  the current meeting (moves = cases with a current meeting − stays). A tier is skipped when the
  best plan so far already reaches its trivial bound (every case at its best coefficient). Only a
  tier solved to OPTIMAL is fixed, so "proved" means exact on tiers 1–3. Then, with at most as
  long as tiers 1–3 took, total wait in whole minutes is minimised under those constraints.
  (`LEXICOGRAPHIC = False` folds tiers 1–3 into ``A·urgent + B·placed + stays`` with
  ``B = n + 1``, ``A = B·(n + 1)`` instead; it proved less on the benchmark.)
"""

from __future__ import annotations

import time

from ortools.sat.python import cp_model

from .components import Assignment, Instance, score

#: Largest cases × minutes table the single-meeting dynamic programme may fill.
DP_LIMIT = 400_000
#: Solve tiers 1–3 one after the other (True) or as one weighted objective (False).
LEXICOGRAPHIC = True


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
    for (ci, mi), var in zip(keys, xs, strict=True):
        model.add_hint(var, hint.get(ci) == mi)

    started = time.monotonic()
    if LEXICOGRAPHIC:
        tiers = [
            [int(inst.urgent[ci]) for ci, _ in keys],
            [1] * len(keys),
            [int(inst.current[ci] == mi) for ci, mi in keys],
        ]
    else:
        tiers = [[a * inst.urgent[ci] + b + (inst.current[ci] == mi) for ci, mi in keys]]
    best, proved = hint, True
    for coefs in tiers:
        expr = cp_model.LinearExpr.weighted_sum(xs, coefs)
        # Each case adds at most its best coefficient: when the current best reaches that
        # bound, the tier is optimal without a solver call.
        bound, chosen = _tier_values(cases, keys, coefs, best)
        if chosen == bound:
            model.add(expr >= chosen)
            continue
        model.maximize(expr)
        solver = _solver(stop_at)
        status = solver.solve(model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return best, False
        found = _extract(solver, cases, keys, xs)
        if score(inst, cases, found) >= score(inst, cases, best):
            best = found
        if status != cp_model.OPTIMAL:
            return best, False
        # Keep this tier at its optimum while the next one is optimised.
        model.add(expr >= round(solver.objective_value))
        _rehint(model, keys, xs, best)
    # Phase 2 is a refinement: it gets at most as long as tiers 1–3 took (≥ 50 ms).
    phase2_stop = min(stop_at, time.monotonic() + max(0.05, time.monotonic() - started))
    if phase2_stop - time.monotonic() > 0.01:
        waits = [inst.wait_us(ci, mi) // 60_000_000 for ci, mi in keys]
        model.minimize(cp_model.LinearExpr.weighted_sum(xs, waits))
        solver = _solver(phase2_stop)
        if solver.solve(model) in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            second = _extract(solver, cases, keys, xs)
            if score(inst, cases, second) > score(inst, cases, best):
                best = second
    return best, proved


def _tier_values(
    cases: list[int], keys: list[tuple[int, int]], coefs: list[int], sol: Assignment
) -> tuple[int, int]:
    """(upper bound, value of `sol`) of one tier's objective."""
    top = dict.fromkeys(cases, 0)
    value = 0
    for (ci, mi), coef in zip(keys, coefs, strict=True):
        top[ci] = max(top[ci], coef)
        if sol.get(ci) == mi:
            value += coef
    return sum(top.values()), value


def _rehint(
    model: cp_model.CpModel, keys: list[tuple[int, int]], xs: list[cp_model.IntVar], sol: Assignment
) -> None:
    model.clear_hints()
    for (ci, mi), var in zip(keys, xs, strict=True):
        model.add_hint(var, sol.get(ci) == mi)


def shift_earlier(inst: Instance, cases: list[int], solution: Assignment) -> Assignment:
    """Cut wait without touching tiers 1–3: move placed cases to earlier candidates with room.

    A case sitting on its current meeting is left alone (moving it would count as a move).
    """
    solution = dict(solution)
    room: dict[int, int] = {}
    for ci in cases:
        mi = solution.get(ci)
        if mi is not None:
            room[mi] = room.get(mi, inst.room[mi]) - inst.minutes[ci]
    for ci in sorted(cases, key=lambda c: (inst.latest_us[c], c)):
        mi = solution.get(ci)
        if mi is None or mi == inst.current[ci]:
            continue
        for earlier in inst.candidates[ci]:  # by start
            if inst.start_us[earlier] >= inst.start_us[mi]:
                break
            if room.get(earlier, inst.room[earlier]) >= inst.minutes[ci]:
                room[earlier] = room.get(earlier, inst.room[earlier]) - inst.minutes[ci]
                room[mi] += inst.minutes[ci]
                solution[ci] = earlier
                break
    return solution


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
