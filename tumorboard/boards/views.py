"""HTML views of the boards feature (thin shells over services.py and cases/assignments.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from werkzeug.wrappers import Response
from wtforms import SelectChoice

from tumorboard.audit.services import record
from tumorboard.auth.models import User, UserRole
from tumorboard.boards import services
from tumorboard.boards.forms import (
    ActionForm,
    AddCaseForm,
    BoardForm,
    MeetingFilterForm,
    MeetingMoveForm,
    MoveCaseForm,
    PinForm,
    ReorderForm,
    UrgentSlotForm,
    choices,
)
from tumorboard.boards.models import Board, BoardSite, Meeting
from tumorboard.calendar.services import board_feed_url, rotate_board_feed_token
from tumorboard.cases import assignments as agenda_service
from tumorboard.cases.models import Assignment, Case
from tumorboard.cases.services import read_case
from tumorboard.db import MAX_INT, now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.forms import show_errors
from tumorboard.templating import escape_vocab, url_slot

bp = Blueprint("boards", __name__)

#: the "add a case" list offers the eligible cases with the earliest deadlines, not thousands
ADD_CHOICES = 50

Page = str | Response | tuple[str, int]


def _fmt(meeting: Meeting, at: datetime | None = None) -> str:
    return _fmt_at(at or meeting.start_at, meeting.board.timezone)


def _fmt_at(at: datetime, timezone: str) -> str:
    return at.astimezone(ZoneInfo(timezone)).strftime("%a %d %b %Y %H:%M %Z")


# --- boards -----------------------------------------------------------------------------------

def _member_choices() -> list[SelectChoice]:
    users = db.session.scalars(
        sa.select(User).join(UserRole).where(UserRole.role == "specialist", User.active.is_(True))
        .order_by(User.name)).all()
    return choices((u.id, f"{u.name} ({(u.specialty or 'no specialty').replace('_', ' ')})") for u in users)


@bp.route("/boards")
def boards() -> str:
    rows = db.session.scalars(services.boards_query()).all()
    return render_template("boards/boards.html", boards=rows)


@bp.route("/boards/new", methods=["GET", "POST"])
def board_new() -> Page:
    form = BoardForm()
    form.member_ids.choices = _member_choices()
    if form.validate_on_submit():
        try:
            board = services.create_board(form.values())
        except DomainError as error:
            db.session.rollback()
            show_errors(form, error)
        else:
            db.session.commit()
            flash(f"Board {board.name} created.", "info")
            return redirect(url_for("boards.board", board_id=board.id))
    status = 422 if form.is_submitted() else 200
    return render_template("boards/board_form.html", form=form, board=None), status


@bp.route("/boards/<int:board_id>", methods=["GET", "POST"])
def board(board_id: int) -> Page:
    board = db.get_or_404(Board, board_id)
    form = BoardForm(data=services.board_values(board) if request.method == "GET" else None)
    form.member_ids.choices = _member_choices()
    if form.validate_on_submit():
        try:
            change = services.change_board(board, form.values())
        except DomainError as error:
            db.session.rollback()
            show_errors(form, error)
        else:
            db.session.commit()
            flash("Board saved.", "info")
            if change.taken_off:
                flash(f"{len(change.taken_off)} case(s) of sites the board no longer serves were taken "
                      "off its upcoming meetings; they are back in the queue.", "info")
            return redirect(url_for("boards.board", board_id=board.id))
    upcoming = db.session.scalars(
        services.meetings_query(board_id=board.id, start=now_utc() - timedelta(hours=12)).limit(20)).all()
    status = 422 if form.is_submitted() else 200
    return render_template("boards/board_form.html", form=form, board=board, meetings=upcoming,
                           action=ActionForm(), fmt=_fmt, feed_url=board_feed_url(board)), status


@bp.route("/boards/<int:board_id>/feed-token", methods=["POST"])
def board_feed_rotate(board_id: int) -> Response:
    """Replace the board's feed address: the old one stops working at once."""
    board = db.get_or_404(Board, board_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    rotate_board_feed_token(board)
    db.session.commit()
    flash("The board's calendar feed has a new address; the old one no longer works.", "info")
    return redirect(url_for("boards.board", board_id=board.id))


@bp.route("/boards/<int:board_id>/remove", methods=["POST"])
def board_remove(board_id: int) -> Response:
    board = db.get_or_404(Board, board_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    name = board.name
    outcome = services.remove_board(board)
    db.session.commit()
    if outcome == "deleted":
        flash(f"Board {name} deleted.", "info")
        return redirect(url_for("boards.boards"))
    flash(f"Board {name} has meetings, so it was deactivated; its future meetings are cancelled.", "info")
    return redirect(url_for("boards.board", board_id=board_id))


@bp.route("/boards/<int:board_id>/materialise", methods=["POST"])
def board_materialise(board_id: int) -> Response:
    board = db.get_or_404(Board, board_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    created = services.materialise_meetings(board)
    db.session.commit()
    flash(f"{created} new meeting(s) created.", "info")
    return redirect(url_for("boards.board", board_id=board.id))


@bp.route("/boards/<int:board_id>/urgent-slot", methods=["GET", "POST"])
def urgent_slot(board_id: int) -> Page:
    board = db.get_or_404(Board, board_id)
    form = UrgentSlotForm(data={"duration_minutes": board.duration_minutes,
                                "capacity_minutes": board.capacity_minutes,
                                "location": board.location} if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            start = services.local_to_utc(form.start.data, board.timezone)
            meeting = services.create_urgent_slot(board, start, form.duration_minutes.data,
                                                  form.capacity_minutes.data, form.location.data or "")
        except DomainError as error:
            db.session.rollback()
            show_errors(form, error)
        else:
            db.session.commit()
            flash("Urgent slot created.", "info")
            return redirect(url_for("boards.meeting", meeting_id=meeting.id))
    status = 422 if form.is_submitted() else 200
    return render_template("boards/urgent_slot.html", form=form, board=board), status


# --- meetings ---------------------------------------------------------------------------------

@bp.route("/meetings")
def meetings() -> str:
    form = MeetingFilterForm(request.args)
    visible = db.session.scalars(
        services.boards_query() if services.sees_all_boards(current_user)
        else services.boards_query().where(Board.members.any(user_id=current_user.id))).all()
    form.board_id.choices = choices([("", "All boards")] + [(str(b.id), b.name) for b in visible])
    board_id = int(form.board_id.data) if form.validate() and (form.board_id.data or "").isdigit() else None
    rows = db.session.scalars(services.meetings_query(
        user=current_user, board_id=board_id, start=now_utc() - timedelta(hours=12)).limit(500)).all()
    used = dict(db.session.execute(
        sa.select(Assignment.meeting_id, sa.func.sum(Assignment.minutes))
        .where(Assignment.active.is_(True), Assignment.meeting_id.in_([m.id for m in rows]))
        .group_by(Assignment.meeting_id)).all()) if rows else {}
    return render_template("boards/meetings.html", meetings=rows, used=used, form=form, fmt=_fmt)


def _readable_meeting(meeting_id: int) -> services.AgendaMeeting:
    meeting = _agenda_meeting(meeting_id)
    if not services.can_read_agenda(current_user, meeting):
        abort(403)
    return meeting


def _agenda_meeting(meeting_id: int) -> services.AgendaMeeting:
    return services.agenda_meeting(meeting_id) or abort(404)


#: one row of the agenda, made in Python with one format: in the template each row's dozen values
#: and five action forms went through Jinja one by one (most of the page's Python calls). The
#: page's own parts ({case_link}, {consensus}, {actions}: the links, forms and CSRF token) are put
#: in once per page (`_row_template`); the `{{...}}` fields are each row's.
_AGENDA_ROW = """    <tr>
      <td>{{number}}</td>
      <td>{case_link}</td>
      <td>{{display_name}}{consensus}</td>
      <td>{{site}}</td>
      <td>{{minutes}}</td>
      <td>{{deadline}}</td>
      <td>{{urgency}}</td>
      <td>{{specialties}}</td>
      <td class="{{quorum_class}}">{{quorum}}</td>
      <td>{{pinned}}</td>{actions}
    </tr>
"""
_AGENDA_ACTIONS = """
      <td class="no-print agenda-actions">
        <form class="inline" method="post" action="{reorder}">{csrf}<input type="hidden" name="direction" \
value="up"><button type="submit"{{up}}>Up<span class="skip"> {{mrn}}</span></button></form>
        <form class="inline" method="post" action="{reorder}">{csrf}<input type="hidden" name="direction" \
value="down"><button type="submit"{{down}}>Down<span class="skip"> {{mrn}}</span></button></form>
        <form class="inline" method="post" action="{pin}">{csrf}<input type="hidden" name="pinned" \
value="{{pin_value}}"><button type="submit">{{pin_label}}<span class="skip"> {{mrn}}</span></button></form>
        <form class="inline" method="post" action="{remove}">{csrf}\
<button type="submit">Remove<span class="skip"> {{mrn}}</span></button></form>
        <a class="button" href="{move}">Move<span class="skip"> {{mrn}}</span></a>
      </td>"""
_URGENT = '<span class="badge urgent">urgent</span>'

#: an option of the "add a case" list
_CANDIDATE = '<option{selected} value="{id}">{text}</option>'


def _literal(html: str) -> str:
    """`html` as a part of a format template: its braces doubled."""
    return html.replace("{", "{{").replace("}", "}}")


def _row_template(meeting: services.AgendaMeeting, csrf: str, *, clinician: bool, actions: bool) -> str:
    """`_AGENDA_ROW` with this page's parts: links for clinicians, forms for a coordinator
    (`csrf`: the hidden input of the token)."""
    case_link = "{mrn}"
    if clinician and "cases.detail" in current_app.view_functions:
        case_link = f'<a href="{url_slot("cases.detail", "case_id")}">{{mrn}}</a>'
    consensus = ""
    if clinician:
        url = url_slot("consensus.edit", "case_id", meeting_id=meeting.id)
        consensus = f'\n        <br><a class="no-print" href="{url}">Consensus</a>'
    buttons = ""
    if actions:
        urls = {action: url_slot(f"boards.assignment_{action}", "assignment_id")
                for action in ("reorder", "pin", "remove", "move")}
        buttons = _AGENDA_ACTIONS.format(csrf=_literal(csrf), **urls)
    return _AGENDA_ROW.format(case_link=case_link, consensus=consensus, actions=buttons)


def _agenda_rows(items: list[services.AgendaItem], template: str) -> Markup:
    """The agenda table's rows, one format each, every value a user typed escaped."""
    last = len(items)
    html = []
    for number, item in enumerate(items, 1):
        html.append(template.format(
            number=number, assignment_id=item.id, case_id=item.case_id, mrn=escape(item.mrn),
            display_name=escape(item.display_name), site=escape_vocab(item.site_label), minutes=item.minutes,
            deadline=item.deadline_text, urgency=_URGENT if item.urgent else "routine",
            specialties=escape_vocab(item.specialties_text),
            quorum_class="quorum-missing" if item.missing_text else "quorum-met",
            quorum=f"missing: {escape_vocab(item.missing_text)}" if item.missing_text else "met",
            pinned="pinned" if item.pinned else "—",
            up=" disabled" if number == 1 else "", down=" disabled" if number == last else "",
            pin_value="0" if item.pinned else "1", pin_label="Unpin" if item.pinned else "Pin",
        ))
    return Markup("".join(html))  # noqa: S704 - every value above is escaped or made here


def _candidate_options(meeting: services.AgendaMeeting, selected: int | None) -> Markup:
    """The "add a case" options: the first eligible cases by deadline, one format each, escaped."""
    return Markup("".join([  # noqa: S704 - the text is escaped, the rest made here
        _CANDIDATE.format(selected=" selected" if case_id == selected else "", id=case_id, text=escape(text))
        for case_id, text in services.agenda_candidates(meeting, ADD_CHOICES)]))


def _agenda_page(meeting: services.AgendaMeeting, status: int = 200, **forms: Any) -> tuple[str, int]:
    """Render the agenda and record the read (names and MRNs are PHI); the page goes out only
    once the read is committed."""
    items = services.agenda_items(meeting)
    record("meeting.agenda_read", "meeting", meeting.id,
           details={"case_ids": [a.case_id for a in items]})
    coordinator = current_user.has_role("coordinator")
    actions = coordinator and meeting.status == "scheduled"
    csrf = f'<input type="hidden" name="csrf_token" value="{escape(generate_csrf())}">'  # once a page
    template = _row_template(meeting, csrf, clinician=coordinator or current_user.has_role("oncologist"),
                             actions=actions)
    context: dict[str, Any] = {"meeting": meeting, "rows": _agenda_rows(items, template),
                               "csrf": Markup(csrf),  # noqa: S704 - the token is escaped
                               "used": sum([a.minutes for a in items]), "actions": actions,
                               "local": partial(_fmt_at, timezone=meeting.timezone),
                               "quorum": services.agenda_quorum(meeting, items)}
    if actions:
        add = forms.get("add_form") or AddCaseForm()
        context["add_form"] = add
        context["candidates"] = _candidate_options(meeting, add.case_id.data)
    page = render_template("boards/agenda.html", **context)
    db.session.commit()
    return page, status


def _move_targets(assignment: Assignment, site: str) -> list[SelectChoice]:
    """The other upcoming scheduled meetings (the first 30) of boards serving `site`."""
    serving = sa.select(BoardSite.board_id).where(BoardSite.site == site)
    rows = db.session.execute(
        services.meetings_query(start=now_utc(), status="scheduled")
        .where(Meeting.board_id.in_(serving), Meeting.id != assignment.meeting_id)
        .join(Board, Board.id == Meeting.board_id)
        .with_only_columns(Meeting.id, Meeting.start_at, Board.name, Board.timezone).limit(30))
    return choices((m.id, f"{m.name} · {_fmt_at(m.start_at, m.timezone)}") for m in rows)


@bp.route("/meetings/<int:meeting_id>")
def meeting(meeting_id: int) -> tuple[str, int]:
    return _agenda_page(_readable_meeting(meeting_id))


@bp.route("/meetings/<int:meeting_id>/edit", methods=["GET", "POST"])
def meeting_edit(meeting_id: int) -> Page:
    meeting = db.get_or_404(Meeting, meeting_id)
    local = services.local_time(meeting)
    form = MeetingMoveForm(data={
        "start": local.replace(tzinfo=None, second=0, microsecond=0),
        "duration_minutes": int((meeting.end_at - meeting.start_at).total_seconds() // 60),
        "location": meeting.location,
    } if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            start = services.local_to_utc(form.start.data, meeting.board.timezone)
            services.move_meeting(meeting, start=start, duration_minutes=form.duration_minutes.data,
                                  location=form.location.data or "")
        except DomainError as error:
            db.session.rollback()
            show_errors(form, error)
        else:
            db.session.commit()
            flash("Meeting updated.", "info")
            return redirect(url_for("boards.meeting", meeting_id=meeting.id))
    status = 422 if form.is_submitted() else 200
    return render_template("boards/meeting_edit.html", form=form, meeting=meeting, fmt=_fmt), status


def _meeting_action(meeting_id: int, action: Any, done: str) -> Page:
    meeting = db.get_or_404(Meeting, meeting_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        action(meeting)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return _agenda_page(_agenda_meeting(meeting_id), error.status)
    db.session.commit()
    flash(done, "info")
    return redirect(url_for("boards.meeting", meeting_id=meeting.id))


@bp.route("/meetings/<int:meeting_id>/cancel", methods=["POST"])
def meeting_cancel(meeting_id: int) -> Page:
    return _meeting_action(meeting_id, services.cancel_meeting,
                           "Meeting cancelled; its cases are back in the queue.")


@bp.route("/meetings/<int:meeting_id>/held", methods=["POST"])
def meeting_held(meeting_id: int) -> Page:
    return _meeting_action(meeting_id, services.mark_held, "Meeting marked as held.")


@bp.route("/meetings/<int:meeting_id>/freeze", methods=["POST"])
def meeting_freeze(meeting_id: int) -> Page:
    return _meeting_action(meeting_id, services.freeze_agenda, "Agenda frozen.")


@bp.route("/meetings/<int:meeting_id>/unfreeze", methods=["POST"])
def meeting_unfreeze(meeting_id: int) -> Page:
    return _meeting_action(meeting_id, services.unfreeze_agenda, "Agenda unfrozen.")


# --- agenda actions ---------------------------------------------------------------------------

def _after_change(meeting: Meeting, done: str) -> Response:
    if agenda_service.is_overbooked(meeting):
        flash(f"Overbooked: {agenda_service.minutes_used(meeting)} of {meeting.capacity_minutes} "
              "minutes are taken.", "error")
    db.session.commit()
    flash(done, "info")
    return redirect(url_for("boards.meeting", meeting_id=meeting.id))


@bp.route("/meetings/<int:meeting_id>/cases", methods=["POST"])
def agenda_add(meeting_id: int) -> Page:
    meeting = db.get_or_404(Meeting, meeting_id)
    form = AddCaseForm()
    chosen = request.form.get("case_id", type=int)
    if chosen is None or not 0 < chosen <= MAX_INT:
        chosen = 0
    form.case_id.choices = choices(  # the chosen case if it is eligible, not all the eligible ones
        (c.id, c.mrn) for c in db.session.execute(agenda_service.eligible_cases(meeting).where(
            Case.id == chosen).with_only_columns(Case.id, Case.mrn)))
    if not form.validate_on_submit():
        flash("Choose a ready or scheduled case of a site this board serves.", "error")
        return _agenda_page(_agenda_meeting(meeting_id), 422, add_form=form)
    case = db.session.get(Case, form.case_id.data)
    assert case is not None  # noqa: S101 - the choices come from the database
    try:
        agenda_service.assign(case, meeting, source="coordinator", pinned=form.pinned.data)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return _agenda_page(_agenda_meeting(meeting_id), error.status)
    return _after_change(meeting, f"{case.mrn} added to the agenda.")


def _assignment_action(assignment_id: int, form: Any, action: Any, done: str) -> Page:
    assignment = db.get_or_404(Assignment, assignment_id)
    meeting = db.get_or_404(Meeting, assignment.meeting_id)
    meeting_id = meeting.id
    if not form.validate_on_submit():
        flash("That request was not understood.", "error")
        return _agenda_page(_agenda_meeting(meeting_id), 422)
    try:
        action(assignment, meeting)
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
        return _agenda_page(_agenda_meeting(meeting_id), error.status)
    return _after_change(meeting, done)


@bp.route("/assignments/<int:assignment_id>/pin", methods=["POST"])
def assignment_pin(assignment_id: int) -> Page:
    form = PinForm()
    return _assignment_action(assignment_id, form,
                              lambda a, _m: agenda_service.set_pinned(a, form.pinned.data == "1"),
                              "Pin updated.")


@bp.route("/assignments/<int:assignment_id>/reorder", methods=["POST"])
def assignment_reorder(assignment_id: int) -> Page:
    form = ReorderForm()
    return _assignment_action(assignment_id, form,
                              lambda a, m: agenda_service.reorder(m, a, form.direction.data),
                              "Agenda order changed.")


@bp.route("/assignments/<int:assignment_id>/remove", methods=["POST"])
def assignment_remove(assignment_id: int) -> Page:
    return _assignment_action(assignment_id, ActionForm(), lambda a, _m: agenda_service.unassign(a),
                              "Case removed from the agenda; it is back in the queue.")


@bp.route("/assignments/<int:assignment_id>/move", methods=["GET", "POST"])
def assignment_move(assignment_id: int) -> Page:
    form = MoveCaseForm()
    if request.method == "GET":  # where to: a page of its own, so the agenda stays light
        assignment = db.get_or_404(Assignment, assignment_id)
        case = read_case(assignment.case_id, what="move form")
        form.meeting_id.choices = _move_targets(assignment, case.site)
        page = render_template("boards/assignment_move.html", form=form, assignment=assignment,
                               case=case, meeting=db.session.get(Meeting, assignment.meeting_id), fmt=_fmt)
        db.session.commit()
        return page

    def _move(assignment: Assignment, _meeting: Meeting) -> None:
        target = db.session.get(Meeting, form.meeting_id.data or 0)
        if target is None:
            raise DomainError("Choose a meeting to move the case to.",
                              fields={"meeting_id": ["unknown meeting"]})
        agenda_service.move(assignment, target)

    return _assignment_action(assignment_id, form, _move, "Case moved.")
