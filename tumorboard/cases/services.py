"""Case rules: deadline, risk and the status life cycle."""

from __future__ import annotations

from datetime import date, timedelta

from flask import current_app

from tumorboard.cases.models import Case
from tumorboard.db import now_utc
from tumorboard.errors import DomainError


def window_days(site: str) -> int:
    """The pre-treatment window for a site (PRETREATMENT_WINDOW_DAYS_BY_SITE, else the default)."""
    per_site: dict[str, int] = current_app.config.get("PRETREATMENT_WINDOW_DAYS_BY_SITE", {})
    return per_site.get(site, current_app.config["PRETREATMENT_WINDOW_DAYS"])


def compute_deadline(diagnosis_date: date, planned_treatment_start: date | None, site: str) -> date:
    """Planned treatment start if given, else diagnosis date + the site's pre-treatment window."""
    if planned_treatment_start is not None:
        return planned_treatment_start
    return diagnosis_date + timedelta(days=window_days(site))


#: the case life cycle: status → statuses it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    "intake": frozenset({"ready", "withdrawn"}),
    "ready": frozenset({"scheduled", "intake", "withdrawn"}),
    "scheduled": frozenset({"ready", "discussed", "withdrawn"}),
    # deferred at the board (e.g. records missing): back to ready for another meeting
    "discussed": frozenset({"closed", "ready"}),
    "closed": frozenset(),
    "withdrawn": frozenset({"intake"}),
}


def change_status(case: Case, to: str) -> None:
    """Move a case along its life cycle; an illegal move raises DomainError and changes nothing."""
    if to == case.status:
        return
    if to not in TRANSITIONS.get(case.status, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS[case.status])) or "nothing (final)"
        raise DomainError(
            f"A {case.status} case cannot become {to}; from {case.status} it can go to {allowed}.",
            fields={"status": [f"cannot change from {case.status} to {to}"]}, status=409,
            code="illegal_transition",
        )
    case.status = to
    if to == "ready" and case.ready_at is None:
        case.ready_at = now_utc()
    if to in {"intake", "withdrawn"}:
        case.ready_at = None
