"""Earliest-deadline-first baseline: the plan the engine must never be worse than."""

from __future__ import annotations

from .components import Assignment, Instance


def greedy(inst: Instance, cases: list[int]) -> Assignment:
    """Place `cases` by latest allowed start (urgent first on ties, then input order).

    Each case stays on its current meeting when that is a candidate with room, else takes the
    earliest candidate meeting with room, else stays unassigned.
    """
    room: dict[int, int] = {}
    solution: Assignment = {}
    order = sorted(cases, key=lambda ci: (inst.latest_us[ci], not inst.urgent[ci], ci))
    for ci in order:
        need, cands = inst.minutes[ci], inst.candidates[ci]
        cur = inst.current[ci]
        choice = None
        if cur in cands and room.get(cur, inst.room[cur]) >= need:
            choice = cur
        else:
            choice = next((mi for mi in cands if room.get(mi, inst.room[mi]) >= need), None)
        if choice is not None:
            room[choice] = room.get(choice, inst.room[choice]) - need
        solution[ci] = choice
    return solution
