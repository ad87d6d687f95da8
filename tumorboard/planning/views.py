"""Urgent slot requests: the engine asks, the coordinator creates the slot in one step."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from tumorboard.boards.models import Board
from tumorboard.boards.services import boards_serving, local_to_utc
from tumorboard.cases.models import Case
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.forms import show_errors
from tumorboard.planning.forms import UrgentPlacementForm
from tumorboard.planning.services import place_in_urgent_slot, urgent_requests

bp = Blueprint("planning", __name__)


@bp.route("/urgent-requests")
def urgent_list() -> str:
    return render_template("planning/urgent_list.html", cases=db.session.scalars(urgent_requests()).all())


@bp.route("/urgent-requests/<int:case_id>", methods=["GET", "POST"])
def urgent_place(case_id: int) -> str | Response | tuple[str, int]:
    case = db.get_or_404(Case, case_id)
    boards = db.session.scalars(boards_serving(case.site)).all()
    form = UrgentPlacementForm()
    form.board_id.choices = [(b.id, b.name) for b in boards]
    if not form.is_submitted() and boards and case.urgent_slot_latest_start:
        # suggest two hours before the latest useful start, on the first board's wall clock
        suggested = case.urgent_slot_latest_start - timedelta(hours=2)
        form.start.data = suggested.astimezone(ZoneInfo(boards[0].timezone)).replace(tzinfo=None, second=0,
                                                                                      microsecond=0)
    if form.validate_on_submit():
        board = db.session.get(Board, form.board_id.data)
        try:
            start = local_to_utc(form.start.data, board.timezone)
            meeting = place_in_urgent_slot(case, board, start, form.duration_minutes.data,
                                           form.location.data or None)
        except DomainError as error:
            db.session.rollback()
            show_errors(form, error)
        else:
            db.session.commit()
            flash("Urgent slot created and the case placed on it.", "info")
            return redirect(url_for("boards.meeting", meeting_id=meeting.id))
    status = 422 if form.is_submitted() else 200
    return render_template("planning/urgent_place.html", case=case, form=form, boards=boards), status
