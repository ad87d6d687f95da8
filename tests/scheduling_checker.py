"""Independent checker for scheduling Plans, written from the contract in DESIGN.md.

It works on the JSON documents only and shares no code with `tumorboard.scheduling`, so a bug in
the engine's rule cannot hide itself here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

DEFAULTS = {"prep_lead_hours": 48, "urgent_prep_lead_hours": 12, "urgent_within_hours": 72}
PLAN_KEYS = {"assignments", "unassigned", "urgent_slot_requests", "overbooked", "objective"}


def _t(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, f"naive time {text!r}"
    return value


def _setting(problem: dict[str, Any], key: str) -> float:
    return float(problem.get("settings", {}).get(key, DEFAULTS[key]))


def allowed(problem: dict[str, Any], case: dict[str, Any], meeting: dict[str, Any]) -> bool:
    """The contract's rule, verbatim (frozen-ness is checked separately)."""
    now, ready, deadline = _t(problem["now"]), _t(case["ready_at"]), _t(case["deadline"])
    urgent = case.get("urgent", False)
    lead = _setting(problem, "urgent_prep_lead_hours" if urgent else "prep_lead_hours")
    start = _t(meeting["start"])
    if case["site"] not in meeting["sites"]:
        return False
    if not set(case.get("required_specialties", [])) <= set(meeting.get("specialties", [])):
        return False
    if start < max(now, ready + timedelta(hours=lead)) or start > deadline:
        return False
    within = timedelta(hours=_setting(problem, "urgent_within_hours"))
    return not (urgent and start > max(ready, now) + within)


def fixed_meeting(problem: dict[str, Any], case: dict[str, Any]) -> str | None:
    """Where the case must stay: its pin, else its current meeting when that is frozen."""
    if case.get("pinned_meeting"):
        return case["pinned_meeting"]
    meetings = {m["id"]: m for m in problem["meetings"]}
    cur = case.get("current_meeting")
    if cur and meetings[cur].get("frozen", False):
        return cur
    return None


def objective(problem: dict[str, Any], placement: dict[str, str | None]) -> tuple[int, int, int, float]:
    """(urgent placed, placed, moved, wait hours) of a case id -> meeting id placement."""
    meetings = {m["id"]: m for m in problem["meetings"]}
    urgent = placed = moved = 0
    wait = 0.0
    for case in problem["cases"]:
        mid = placement.get(case["id"])
        if mid is not None:
            placed += 1
            urgent += bool(case.get("urgent", False))
            wait += (_t(meetings[mid]["start"]) - _t(case["ready_at"])).total_seconds() / 3600
        if case.get("current_meeting") and mid != case["current_meeting"]:
            moved += 1
    return urgent, placed, moved, wait


def feasible(problem: dict[str, Any], placement: dict[str, str | None]) -> list[str]:
    """Every way `placement` breaks the contract (empty when it is feasible)."""
    errors = []
    meetings = {m["id"]: m for m in problem["meetings"]}
    load = dict.fromkeys(meetings, 0)
    fixed_load = dict.fromkeys(meetings, 0)
    free_on = dict.fromkeys(meetings, 0)
    for case in problem["cases"]:
        cid, mid = case["id"], placement.get(case["id"])
        fixed = fixed_meeting(problem, case)
        if fixed is not None:
            fixed_load[fixed] += case["minutes"]
            if mid != fixed:
                errors.append(f"{cid}: must stay on {fixed}, got {mid}")
        elif mid is not None:
            free_on[mid] += 1
            if meetings[mid].get("frozen", False):
                errors.append(f"{cid}: added to frozen meeting {mid}")
            if not allowed(problem, case, meetings[mid]):
                errors.append(f"{cid}: not eligible for {mid}")
        if mid is not None:
            load[mid] += case["minutes"]
    for mid, meeting in meetings.items():
        cap = meeting["capacity_minutes"]
        if fixed_load[mid] > cap:
            if free_on[mid]:
                errors.append(f"{mid}: overbooked by fixed cases but {free_on[mid]} added")
        elif load[mid] > cap:
            errors.append(f"{mid}: {load[mid]} minutes > capacity {cap}")
    return errors


def check_plan(problem: dict[str, Any], plan: dict[str, Any]) -> tuple[int, int, int, float]:
    """Assert `plan` honours the contract for `problem`; return its objective."""
    assert set(plan) == PLAN_KEYS, set(plan) ^ PLAN_KEYS
    ids = [c["id"] for c in problem["cases"]]
    listed = [a["case"] for a in plan["assignments"]] + [u["case"] for u in plan["unassigned"]]
    assert sorted(listed) == sorted(ids), "every case exactly once"
    assert all(set(a) == {"case", "meeting"} for a in plan["assignments"])
    assert all(set(u) == {"case", "reason"} and u["reason"] for u in plan["unassigned"])
    placement: dict[str, str | None] = {a["case"]: a["meeting"] for a in plan["assignments"]}
    errors = feasible(problem, placement)
    assert not errors, errors

    meetings = {m["id"]: m for m in problem["meetings"]}
    fixed_load = dict.fromkeys(meetings, 0)
    for case in problem["cases"]:
        fixed = fixed_meeting(problem, case)
        if fixed is not None:
            fixed_load[fixed] += case["minutes"]
    expected_over = [m["id"] for m in problem["meetings"] if fixed_load[m["id"]] > m["capacity_minutes"]]
    assert sorted(plan["overbooked"]) == sorted(expected_over)

    cases = {c["id"]: c for c in problem["cases"]}
    unassigned_urgent = [u["case"] for u in plan["unassigned"] if cases[u["case"]].get("urgent")]
    requests = {r["case"]: r for r in plan["urgent_slot_requests"]}
    assert sorted(requests) == sorted(unassigned_urgent)
    within = timedelta(hours=_setting(problem, "urgent_within_hours"))
    for cid, request in requests.items():
        case = cases[cid]
        latest = min(_t(case["deadline"]), max(_t(case["ready_at"]), _t(problem["now"])) + within)
        assert request["site"] == case["site"]
        assert _t(request["latest_start"]) == latest, (cid, request["latest_start"], latest)

    urgent, placed, moved, wait = objective(problem, placement)
    got = plan["objective"]
    tiers = (urgent, placed, moved)
    assert (got["urgent_placed"], got["placed"], got["moved"]) == tiers, (got, tiers)
    assert abs(got["wait_hours"] - wait) <= 0.006, (got["wait_hours"], wait)
    return urgent, placed, moved, wait


def best_tiers(problem: dict[str, Any]) -> tuple[int, int, int]:
    """Exhaustive optimum of (urgent placed, placed, -moved) over all feasible placements."""
    meetings = {m["id"]: m for m in problem["meetings"]}
    base: dict[str, str | None] = {}
    free: list[tuple[dict[str, Any], list[str]]] = []
    for case in problem["cases"]:
        fixed = fixed_meeting(problem, case)
        if fixed is not None:
            base[case["id"]] = fixed
        else:
            options = [
                mid
                for mid, m in meetings.items()
                if not m.get("frozen", False) and allowed(problem, case, m)
            ]
            free.append((case, options))
    load = dict.fromkeys(meetings, 0)
    for cid, mid in base.items():
        load[mid] += next(c["minutes"] for c in problem["cases"] if c["id"] == cid)
    best = [(-1, -1, -(10**9))]

    def walk(k: int, placement: dict[str, str | None]) -> None:
        if k == len(free):
            u, p, mv, _ = objective(problem, placement)
            best[0] = max(best[0], (u, p, -mv))
            return
        case, options = free[k]
        for option in [None, *options]:
            if option is not None:
                if load[option] + case["minutes"] > meetings[option]["capacity_minutes"]:
                    continue
                load[option] += case["minutes"]
            placement[case["id"]] = option
            walk(k + 1, placement)
            if option is not None:
                load[option] -= case["minutes"]
        del placement[case["id"]]

    walk(0, dict(base))
    return best[0]
