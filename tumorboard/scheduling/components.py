"""Index-level view of a Problem: fixed cases, room left, candidates, connected components.

Cases and meetings are referred to by their index in the Problem. A *fixed* case (pinned, or
currently on a frozen meeting) is placed before anything else and consumes capacity; every other
case is *free* and may use its candidate meetings (eligible, not frozen, with room for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .model import Problem
from .rules import FULL, Eligibility, window

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

#: A solution for some free cases: case index -> meeting index (absent or None: unassigned).
Assignment = dict[int, int | None]
#: Lexicographic objective, larger is better: (urgent placed, placed, -moved, -wait in µs).
Score = tuple[int, int, int, int]


def micros(value: datetime) -> int:
    """Microseconds since the epoch (exact integer arithmetic for waits)."""
    return (value - _EPOCH) // _US


@dataclass(slots=True)
class Instance:
    """A Problem prepared for solving."""

    problem: Problem
    fixed: dict[int, int]  #: fixed case -> its meeting
    room: list[int]  #: minutes still free per meeting (0 for frozen or overbooked)
    overbooked: list[int]  #: meetings whose fixed cases alone exceed capacity
    candidates: dict[int, list[int]]  #: free case -> usable meetings, by start
    reasons: dict[int, str]  #: free case with no usable meeting -> why
    minutes: list[int]
    urgent: list[bool]
    current: list[int]  #: current meeting index, -1 when none
    ready_us: list[int]
    start_us: list[int]
    latest_us: list[int]  #: latest allowed start per case (EDF key)

    def wait_us(self, case: int, meeting: int) -> int:
        """Wait of `case` on `meeting` (start − ready_at), in microseconds."""
        return self.start_us[meeting] - self.ready_us[case]


def prepare(problem: Problem) -> Instance:
    """Place fixed cases, compute room left and each free case's candidates or reason."""
    ids = {m.id: i for i, m in enumerate(problem.meetings)}
    meetings, cases = problem.meetings, problem.cases
    current = [ids[c.current_meeting] if c.current_meeting else -1 for c in cases]
    fixed: dict[int, int] = {}
    for ci, c in enumerate(cases):
        if c.pinned_meeting is not None:
            fixed[ci] = ids[c.pinned_meeting]
        elif current[ci] >= 0 and meetings[current[ci]].frozen:
            fixed[ci] = current[ci]
    used = [0] * len(meetings)
    for ci, mi in fixed.items():
        used[mi] += cases[ci].minutes
    overbooked = [mi for mi, m in enumerate(meetings) if used[mi] > m.capacity_minutes]
    room = [
        0 if m.frozen else max(0, m.capacity_minutes - used[mi]) for mi, m in enumerate(meetings)
    ]
    rule = Eligibility(problem)
    candidates: dict[int, list[int]] = {}
    reasons: dict[int, str] = {}
    for ci, c in enumerate(cases):
        if ci in fixed:
            continue
        found, reason = rule.candidates(c)
        usable = [mi for mi in found if room[mi] >= c.minutes]
        if usable:
            candidates[ci] = usable
        else:
            reasons[ci] = reason if reason is not None else FULL
    return Instance(
        problem=problem,
        fixed=fixed,
        room=room,
        overbooked=overbooked,
        candidates=candidates,
        reasons=reasons,
        minutes=[c.minutes for c in cases],
        urgent=[c.urgent for c in cases],
        current=current,
        ready_us=[micros(c.ready_at) for c in cases],
        start_us=[micros(m.start) for m in meetings],
        latest_us=[micros(window(problem, c)[1]) for c in cases],
    )


def components(inst: Instance) -> list[tuple[list[int], list[int]]]:
    """Connected components of free cases ↔ candidate meetings, as (cases, meetings)."""
    parent = list(range(len(inst.room)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for cands in inst.candidates.values():
        root = find(cands[0])
        for mi in cands[1:]:
            other = find(mi)
            if other != root:
                parent[other] = root
    groups: dict[int, tuple[list[int], set[int]]] = {}
    for ci in sorted(inst.candidates):
        cases, meetings = groups.setdefault(find(inst.candidates[ci][0]), ([], set()))
        cases.append(ci)
        meetings.update(inst.candidates[ci])
    return [(cases, sorted(meetings)) for cases, meetings in groups.values()]


def score(inst: Instance, cases: list[int], solution: Assignment) -> Score:
    """Objective of `solution` restricted to `cases` (larger tuple is better)."""
    urgent = placed = moved = wait = 0
    for ci in cases:
        mi = solution.get(ci)
        if mi is not None:
            placed += 1
            urgent += inst.urgent[ci]
            wait += inst.wait_us(ci, mi)
        if inst.current[ci] >= 0 and mi != inst.current[ci]:
            moved += 1
    return urgent, placed, -moved, -wait
