"""Home and health."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from tumorboard.audit.services import record
from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.main import services

bp = Blueprint("main", __name__)


@bp.route("/")
def index() -> str:
    """The home page: one section per task of each of the user's roles."""
    user = current_user._get_current_object()
    home = services.home_for(user)
    if home.case_ids:  # names and MRNs on the page: a PHI read
        record("home.read", "user", user.id, details={"case_ids": sorted(home.case_ids)})
    db.session.commit()
    rsvp_token = None
    if home.invitations:
        from tumorboard.calendar.tokens import make_rsvp_token as rsvp_token
    return render_template("main/index.html", home=home, rsvp_token=rsvp_token,
                           tz=ZoneInfo(user.timezone), now=now_utc())


@bp.route("/health")
def health() -> tuple[Response, int]:
    """200 when the database answers, 503 when it does not."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
