"""HTML views of the cases feature (thin shells over services.py)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("cases", __name__)
