"""HTML views of the calendar feature (thin shells over services.py)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("calendar", __name__)
