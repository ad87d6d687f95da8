"""JSON API of the calendar feature under /api/v1."""

from __future__ import annotations

from tumorboard.api import api_blueprint

blp = api_blueprint("api_calendar", __name__, url_prefix="/api/v1", description="calendar")
