"""Home and health."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from tumorboard.extensions import db

bp = Blueprint("main", __name__)


@bp.route("/")
def index() -> str:
    return render_template("main/index.html")


@bp.route("/health")
def health() -> tuple[Response, int]:
    """200 when the database answers, 503 when it does not."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
