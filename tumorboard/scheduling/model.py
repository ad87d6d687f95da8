"""Problem and Plan value types, with strict JSON (de)serialisation.

Everything here is immutable. `parse_problem` validates a decoded JSON document and raises
`ProblemError` naming the offending field (``cases[3].minutes``) on the first problem found.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")


class ProblemError(ValueError):
    """A malformed Problem; `path` names the field (``cases[3].minutes``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Settings:
    """Lead times and urgency window, in hours."""

    prep_lead_hours: float = 48.0
    urgent_prep_lead_hours: float = 12.0
    urgent_within_hours: float = 72.0


@dataclass(frozen=True, slots=True)
class MeetingSpec:
    """One board meeting the engine may fill."""

    id: str
    sites: tuple[str, ...]
    start: datetime
    capacity_minutes: int
    specialties: tuple[str, ...] = ()
    frozen: bool = False


@dataclass(frozen=True, slots=True)
class CaseSpec:
    """One case awaiting a board."""

    id: str
    site: str
    minutes: int
    ready_at: datetime
    deadline: datetime
    urgent: bool = False
    required_specialties: tuple[str, ...] = ()
    current_meeting: str | None = None
    pinned_meeting: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """The engine's whole input."""

    now: datetime
    meetings: tuple[MeetingSpec, ...]
    cases: tuple[CaseSpec, ...]
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True, slots=True)
class Objective:
    """The four lexicographic tiers of a Plan (best: more, more, fewer, less)."""

    urgent_placed: int
    placed: int
    moved: int
    wait_hours: float


@dataclass(frozen=True, slots=True)
class Plan:
    """The engine's answer; every case is in `assignments` or `unassigned`, once."""

    assignments: tuple[tuple[str, str], ...]  #: (case id, meeting id), in case input order
    unassigned: tuple[tuple[str, str], ...]  #: (case id, reason), in case input order
    urgent_slot_requests: tuple[tuple[str, str, datetime], ...]  #: (case, site, latest start)
    overbooked: tuple[str, ...]  #: meeting ids, in meeting input order
    objective: Objective

    def to_dict(self) -> dict[str, Any]:
        """The Plan as a JSON-ready dict (times in UTC, ``+00:00``)."""
        return {
            "assignments": [{"case": c, "meeting": m} for c, m in self.assignments],
            "unassigned": [{"case": c, "reason": r} for c, r in self.unassigned],
            "urgent_slot_requests": [
                {"case": c, "site": s, "latest_start": format_time(t)}
                for c, s, t in self.urgent_slot_requests
            ],
            "overbooked": list(self.overbooked),
            "objective": {
                "urgent_placed": self.objective.urgent_placed,
                "placed": self.objective.placed,
                "moved": self.objective.moved,
                "wait_hours": self.objective.wait_hours,
            },
        }


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with an explicit ``+00:00`` offset."""
    return value.astimezone(UTC).isoformat()


# --- parsing -------------------------------------------------------------------------------


def _fields(
    obj: Any, path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ProblemError(path, "must be a JSON object")
    for key in obj:
        if key not in required and key not in optional:
            raise ProblemError(_join(path, str(key)), "unknown key")
    for key in required:
        if key not in obj:
            raise ProblemError(_join(path, key), "is required")
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ProblemError(path, "must be a non-empty string")
    return value


def _optional_string(value: Any, path: str) -> str | None:
    return None if value is None else _string(value, path)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ProblemError(path, "must be true or false")
    return value


def _int(value: Any, path: str, *, positive: bool) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < (1 if positive else 0):
        kind = "a positive integer" if positive else "a non-negative integer"
        raise ProblemError(path, f"must be {kind}")
    return value


def _hours(value: Any, path: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ProblemError(path, "must be a non-negative number of hours")
    return float(value)


def _time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise ProblemError(path, "must be an ISO 8601 time string with an offset")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ProblemError(path, f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ProblemError(path, "time has no UTC offset (naive times are not accepted)")
    return parsed


def _list(value: Any, path: str, item: Callable[[Any, str], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise ProblemError(path, "must be a JSON array")
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))


def _settings(obj: Any, path: str) -> Settings:
    names = ("prep_lead_hours", "urgent_prep_lead_hours", "urgent_within_hours")
    data = _fields(obj, path, (), names)
    return Settings(**{k: _hours(data[k], _join(path, k)) for k in names if k in data})


def _meeting(obj: Any, path: str) -> MeetingSpec:
    required = ("id", "sites", "start", "capacity_minutes")
    data = _fields(obj, path, required, ("specialties", "frozen"))
    return MeetingSpec(
        id=_string(data["id"], f"{path}.id"),
        sites=_list(data["sites"], f"{path}.sites", _string),
        start=_time(data["start"], f"{path}.start"),
        capacity_minutes=_int(data["capacity_minutes"], f"{path}.capacity_minutes", positive=False),
        specialties=_list(data.get("specialties", []), f"{path}.specialties", _string),
        frozen=_bool(data.get("frozen", False), f"{path}.frozen"),
    )


def _case(obj: Any, path: str) -> CaseSpec:
    required = ("id", "site", "minutes", "ready_at", "deadline")
    optional = ("urgent", "required_specialties", "current_meeting", "pinned_meeting")
    data = _fields(obj, path, required, optional)
    return CaseSpec(
        id=_string(data["id"], f"{path}.id"),
        site=_string(data["site"], f"{path}.site"),
        minutes=_int(data["minutes"], f"{path}.minutes", positive=True),
        ready_at=_time(data["ready_at"], f"{path}.ready_at"),
        deadline=_time(data["deadline"], f"{path}.deadline"),
        urgent=_bool(data.get("urgent", False), f"{path}.urgent"),
        required_specialties=_list(
            data.get("required_specialties", []), f"{path}.required_specialties", _string
        ),
        current_meeting=_optional_string(data.get("current_meeting"), f"{path}.current_meeting"),
        pinned_meeting=_optional_string(data.get("pinned_meeting"), f"{path}.pinned_meeting"),
    )


def parse_problem(obj: Any) -> Problem:
    """Validate a decoded Problem JSON document; raise `ProblemError` on the first fault."""
    data = _fields(obj, "", ("now", "meetings", "cases"), ("settings",))
    now = _time(data["now"], "now")
    settings = _settings(data["settings"], "settings") if "settings" in data else Settings()
    meetings = _list(data["meetings"], "meetings", _meeting)
    cases = _list(data["cases"], "cases", _case)
    seen: set[str] = set()
    for i, m in enumerate(meetings):
        if m.id in seen:
            raise ProblemError(f"meetings[{i}].id", f"duplicate meeting id {m.id!r}")
        seen.add(m.id)
    seen_cases: set[str] = set()
    for i, c in enumerate(cases):
        if c.id in seen_cases:
            raise ProblemError(f"cases[{i}].id", f"duplicate case id {c.id!r}")
        seen_cases.add(c.id)
        for key in ("current_meeting", "pinned_meeting"):
            ref = getattr(c, key)
            if ref is not None and ref not in seen:
                raise ProblemError(f"cases[{i}].{key}", f"unknown meeting id {ref!r}")
    return Problem(now=now, meetings=meetings, cases=cases, settings=settings)


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """The Problem as a JSON-ready dict (inverse of `parse_problem`)."""
    s = problem.settings
    return {
        "now": problem.now.isoformat(),
        "settings": {
            "prep_lead_hours": s.prep_lead_hours,
            "urgent_prep_lead_hours": s.urgent_prep_lead_hours,
            "urgent_within_hours": s.urgent_within_hours,
        },
        "meetings": [
            {
                "id": m.id,
                "sites": list(m.sites),
                "start": m.start.isoformat(),
                "capacity_minutes": m.capacity_minutes,
                "specialties": list(m.specialties),
                "frozen": m.frozen,
            }
            for m in problem.meetings
        ],
        "cases": [
            {
                "id": c.id,
                "site": c.site,
                "minutes": c.minutes,
                "ready_at": c.ready_at.isoformat(),
                "deadline": c.deadline.isoformat(),
                "urgent": c.urgent,
                "required_specialties": list(c.required_specialties),
                "current_meeting": c.current_meeting,
                "pinned_meeting": c.pinned_meeting,
            }
            for c in problem.cases
        ],
    }
