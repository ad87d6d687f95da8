"""Case rules: deadline and risk."""

from __future__ import annotations

from datetime import date, timedelta

from flask import current_app


def window_days(site: str) -> int:
    """The pre-treatment window for a site (PRETREATMENT_WINDOW_DAYS_BY_SITE, else the default)."""
    per_site: dict[str, int] = current_app.config.get("PRETREATMENT_WINDOW_DAYS_BY_SITE", {})
    return per_site.get(site, current_app.config["PRETREATMENT_WINDOW_DAYS"])


def compute_deadline(diagnosis_date: date, planned_treatment_start: date | None, site: str) -> date:
    """Planned treatment start if given, else diagnosis date + the site's pre-treatment window."""
    if planned_treatment_start is not None:
        return planned_treatment_start
    return diagnosis_date + timedelta(days=window_days(site))
