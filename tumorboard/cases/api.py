"""JSON API of the cases feature under /api/v1."""

from __future__ import annotations

from tumorboard.api import api_blueprint

blp = api_blueprint("api_cases", __name__, url_prefix="/api/v1", description="cases")
