"""The eligibility rule: which meetings a case may be added to, and why none when none.

A case may go to meeting m only if m serves the case's site, m has every required specialty,
``max(now, ready_at + lead) <= m.start <= deadline`` (lead: urgent or routine preparation lead)
and, for an urgent case, ``m.start <= max(ready_at, now) + urgent_within``. The engine adds
nothing new to a frozen meeting, so `candidates` leaves frozen meetings out.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta

from .model import CaseSpec, MeetingSpec, Problem

FULL = "all eligible meetings are full"


def window(problem: Problem, case: CaseSpec) -> tuple[datetime, datetime]:
    """Earliest and latest allowed meeting start for `case` (the window may be empty)."""
    s = problem.settings
    lead = s.urgent_prep_lead_hours if case.urgent else s.prep_lead_hours
    earliest = max(problem.now, case.ready_at + timedelta(hours=lead))
    latest = case.deadline
    if case.urgent:
        latest = min(latest, urgent_latest_start(problem, case))
    return earliest, latest


def urgent_latest_start(problem: Problem, case: CaseSpec) -> datetime:
    """``min(deadline, max(ready_at, now) + urgent_within)``: the latest useful urgent slot."""
    within = timedelta(hours=problem.settings.urgent_within_hours)
    return min(case.deadline, max(case.ready_at, problem.now) + within)


def is_eligible(problem: Problem, case: CaseSpec, meeting: MeetingSpec) -> bool:
    """The rule alone (frozen-ness and capacity are not its concern)."""
    earliest, latest = window(problem, case)
    return (
        case.site in meeting.sites
        and set(case.required_specialties) <= set(meeting.specialties)
        and earliest <= meeting.start <= latest
    )


class Eligibility:
    """Meetings indexed by site and start, answering `candidates` fast."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        by_site: dict[str, list[int]] = {}
        for i, m in enumerate(problem.meetings):
            for site in dict.fromkeys(m.sites):
                by_site.setdefault(site, []).append(i)
        meetings = problem.meetings
        self._by_site = {
            site: sorted(idx, key=lambda i: (meetings[i].start, i)) for site, idx in by_site.items()
        }
        self._starts = {
            site: [meetings[i].start for i in idx] for site, idx in self._by_site.items()
        }
        self._specialties = [frozenset(m.specialties) for m in meetings]

    def candidates(self, case: CaseSpec) -> tuple[list[int], str | None]:
        """Indices of non-frozen eligible meetings, by start; else ``([], reason)``."""
        idx = self._by_site.get(case.site)
        if not idx:
            return [], f"no board serves site {case.site}"
        earliest, latest = window(self.problem, case)
        starts = self._starts[case.site]
        lo, hi = bisect_left(starts, earliest), bisect_right(starts, latest)
        need = frozenset(case.required_specialties)
        meetings = self.problem.meetings
        found = [
            i
            for i in idx[lo:hi]
            if need <= self._specialties[i] and not meetings[i].frozen
        ]
        return (found, None) if found else ([], self._reason(case, idx, need))

    def _reason(self, case: CaseSpec, idx: list[int], need: frozenset[str]) -> str:
        """The most specific reason why no meeting is eligible, checked filter by filter."""
        p, meetings = self.problem, self.problem.meetings
        pool = [i for i in idx if need <= self._specialties[i]]
        if not pool:
            return "no meeting has the required specialties: " + ", ".join(sorted(need))
        if case.deadline < p.now:
            return "the deadline has passed"
        pool = [i for i in pool if p.now <= meetings[i].start <= case.deadline]
        if not pool:
            return "no meeting before the deadline"
        earliest, latest = window(p, case)
        pool = [i for i in pool if meetings[i].start >= earliest]
        if not pool:
            return (
                "records ready too late: no meeting after the preparation lead time "
                "before the deadline"
            )
        pool = [i for i in pool if meetings[i].start <= latest]
        if not pool:
            hours = f"{p.settings.urgent_within_hours:g}"
            return f"urgent: no meeting within {hours} h"
        return "all eligible meetings are frozen (agenda published)"
