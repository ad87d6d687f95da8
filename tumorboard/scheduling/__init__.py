"""Scheduling engine: assigns cases to tumor board meetings. Pure: no Flask, no database.

Public API: `parse_problem` (dict → `Problem`, raising `ProblemError`), `solve` (`Problem` →
`Plan`), `solve_greedy` (the earliest-deadline-first baseline), `Plan.to_dict` for JSON, and the
CLI ``python -m tumorboard.scheduling solve [problem.json]``. The contract is the section
"Scheduling engine contract" of DESIGN.md; the decisions it leaves open are:

* Problem fields: ``now``, ``meetings`` and ``cases`` are required, ``settings`` and each of its
  keys default (48 / 12 / 72 h). Meetings require ``id``, ``sites``, ``start``,
  ``capacity_minutes``; ``specialties`` defaults to ``[]`` and ``frozen`` to false. Cases require
  ``id``, ``site``, ``minutes``, ``ready_at``, ``deadline``; ``urgent`` defaults to false,
  ``required_specialties`` to ``[]``, ``current_meeting`` / ``pinned_meeting`` to null.
  Unknown keys, naive times, duplicate ids, a ``current_meeting`` / ``pinned_meeting`` naming an
  unknown meeting, ``minutes`` not a positive integer, ``capacity_minutes`` not a non-negative
  integer, settings not non-negative finite numbers: `ProblemError` naming the field.
* Fixed cases: a pinned case goes to its pinned meeting (``pinned_meeting`` wins over
  ``current_meeting``; a frozen pinned meeting is fine); an unpinned case whose current meeting is
  frozen stays on it. Fixed cases ignore the eligibility rule, count as placed, and as moved only
  when pinned somewhere other than their current meeting. They consume capacity first; a meeting
  whose fixed cases alone exceed it is listed in ``overbooked`` and gets nothing else. Nothing
  new is ever added to a frozen meeting.
* Every other case is free: it may stay on its current meeting only if that meeting still passes
  the rule (else it moves), and it may use only meetings that pass the rule and are not frozen.
* Objective (best first): urgent placed ↑, placed ↑, moved ↓, wait ↓, where wait is the sum over
  placed cases (fixed ones included) of meeting start − ready_at; ``wait_hours`` is rounded to 2
  decimals. The engine is exact on tiers 1–3 whenever each component is proved optimal within the
  time limit (see `exact`), and never worse than EDF on all four tiers (the better is kept).
* Output is in input order: assignments and unassigned by case order, overbooked by meeting
  order; urgent slot requests follow case order. Plan times are UTC with ``+00:00``.
* Unassigned reasons, most specific first: no board serves the site; no meeting has the required
  specialties; the deadline has passed; no meeting before the deadline; records ready too late
  (the preparation lead pushes past the deadline); urgent: no meeting within N h; all eligible
  meetings frozen; all eligible meetings are full. An unassigned urgent case also gets an urgent
  slot request with ``latest_start = min(deadline, max(ready_at, now) + urgent_within)``.
"""

from .model import (
    CaseSpec,
    MeetingSpec,
    Objective,
    Plan,
    Problem,
    ProblemError,
    Settings,
    parse_problem,
    problem_to_dict,
)
from .solver import DEFAULT_TIME_LIMIT, SolveStats, solve, solve_greedy, solve_with_stats

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "CaseSpec",
    "MeetingSpec",
    "Objective",
    "Plan",
    "Problem",
    "ProblemError",
    "Settings",
    "SolveStats",
    "parse_problem",
    "problem_to_dict",
    "solve",
    "solve_greedy",
    "solve_with_stats",
]
