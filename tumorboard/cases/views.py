"""HTML views of the cases feature (thin shells over services.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from tumorboard.cases import services
from tumorboard.cases.forms import (
    ActionForm,
    CaseForm,
    OverrideForm,
    QueueFilterForm,
    RecordForm,
    StatusForm,
    WithdrawForm,
)
from tumorboard.cases.models import Case
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.forms import rendered_fields, show_errors
from tumorboard.templating import escape_vocab, url_pattern
from tumorboard.vocab import label

bp = Blueprint("cases", __name__)

PER_PAGE = 50
#: the record actions a button may ask for
RECORD_ACTIONS = {
    "requested": services.mark_requested,
    "received": services.mark_received,
    "unreceived": services.undo_received,
}


def _user_zone() -> ZoneInfo:
    try:
        return ZoneInfo(current_user.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _oncologist_choices() -> list[SelectChoice]:
    people = [SelectChoice(str(u.id), u.name) for u in services.oncologists()]
    return [SelectChoice("", "— choose —"), *people]


#: one row of the queue table. The rows are made here, one format each with every value escaped:
#: in the template each of a row's 13 values went through Jinja's attribute lookup, escape and
#: Markup on its own, about half of the page's Python function calls
_QUEUE_ROW = """    <tr>
      <td><a href="{url}">{mrn}</a></td>
      <td>{display_name}</td>
      <td>{site}</td>
      <td>{deadline}</td>
      <td class="num">{days_left}</td>
      <td class="risk-{risk}">{risk_label}</td>
      <td>{status}</td>
      <td>{urgency}</td>
      <td>{received}/{required}</td>
      <td>{meeting}</td>
    </tr>
"""
_URGENT = '<span class="badge urgent">Urgent</span>'
_ROUTINE = '<span class="badge">Routine</span>'


def _queue_rows(rows: list[services.QueueRow], tz: ZoneInfo) -> Markup:
    """The queue table's rows: labels, local times and links made once per row, all values escaped."""
    case_url = url_pattern("cases.detail", "case_id")
    meeting_url = None  # a meeting is a link where the boards feature is installed
    if "boards.meeting" in current_app.view_functions:
        meeting_url = url_pattern("boards.meeting", "meeting_id")
    html = []
    meetings: dict[int | None, str] = {None: "—"}  # a meeting holds many of the page's cases: made once
    for row in rows:
        case, meeting = row.case, meetings.get(row.meeting_id)
        if meeting is None:
            meeting = escape(f"{row.board_name}, {row.meeting_start.astimezone(tz):%a %d %b %H:%M}")
            if meeting_url:
                meeting = f'<a href="{meeting_url(row.meeting_id)}">{meeting}</a>'
            meetings[row.meeting_id] = meeting
        html.append(_QUEUE_ROW.format(
            url=case_url(case.id), mrn=escape(case.mrn), display_name=escape(case.display_name),
            site=escape_vocab(label(case.site)), deadline=case.deadline.isoformat(), days_left=row.days_left,
            risk=escape_vocab(row.risk), risk_label=escape_vocab(label(row.risk)),
            status=escape_vocab(label(case.status)),
            urgency=_URGENT if case.urgency == "urgent" else _ROUTINE,
            received=row.records_received, required=row.records_required, meeting=meeting,
        ))
    return Markup("".join(html))  # noqa: S704 - every value above is escaped or made here


#: the queue's filter fields, in order (name, `field` macro keywords)
_QUEUE_FILTERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mrn", {"autocomplete": "off"}), ("status", {}), ("site", {}), ("urgency", {}), ("risk", {}),
)


@bp.route("/cases")
def queue() -> str:
    """The queue of cases by deadline, with filters, MRN search and pages."""
    form = QueueFilterForm(request.args)
    page = request.args.get("page", 1, type=int) or 1
    result = rows = None
    if form.validate():
        filters = services.QueueFilters(
            site=form.site.data or None, status=form.status.data or "open",
            urgency=form.urgency.data or None, risk=form.risk.data or None, mrn=form.mrn.data or None,
        )
        result = services.read_queue(filters, page, PER_PAGE)
        rows = _queue_rows(result.rows, _user_zone())
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    # the filters' HTML depends only on their values: kept per choice, but never for a typed MRN
    key = None if form.mrn.data else ("queue filters", *(form[name].data for name, _ in _QUEUE_FILTERS))
    filters = rendered_fields(form, _QUEUE_FILTERS, key=key)
    html = render_template("cases/queue.html", filters=filters, result=result, rows=rows, args=args)
    db.session.commit()  # the read is on record before the page leaves
    return html


@bp.route("/cases/new", methods=["GET", "POST"])
def new() -> str | Response:
    """Register a referral as a case."""
    form = CaseForm()
    form.referring_oncologist_id.choices = _oncologist_choices()
    if form.validate_on_submit():
        try:
            case = services.register_case(form.data_for_service(), by=current_user)
        except DomainError as error:
            db.session.rollback()
            show_errors(form, error)
        else:
            db.session.commit()
            flash(f"Case {case.mrn} registered.", "info")
            return redirect(url_for("cases.detail", case_id=case.id))
    return render_template("cases/form.html", form=form, case=None)


@bp.route("/cases/<int:case_id>")
def detail(case_id: int) -> str:
    """One case: fields, records checklist, status actions, assignments (audited PHI read)."""
    page = _detail_page(case_id)
    db.session.commit()
    return page


def _detail_page(case_id: int, **forms: FlaskForm) -> str:
    """The case page (an audited read); `forms` replace the empty action forms, e.g. one with a
    refused submission's messages. Only coordinators see the action forms."""
    page = services.read_case_page(case_id)
    today = services.local_today()
    received, required = services.records_progress(page)
    coordinator = current_user.has_role("coordinator")
    fields = {name: _form_fields(name, forms.get(name)) for name in _ACTION_FORMS} if coordinator else {}
    return render_template(
        "cases/detail.html", case=page.case, specialties=page.specialties, records=page.records,
        assignments=page.assignments, history=page.history, when=_local_time(_user_zone()),
        coordinator=coordinator, risk=services.risk(page.case, today, services.at_risk_margin()),
        days_left=services.days_left(page.case, today), received=received, required=required,
        actions=services.manual_actions(page.case), fields=fields,
    )


def _local_time(tz: ZoneInfo) -> Callable[[datetime | None], str]:
    """The page's `when(dt)`: a time in the zone `tz`, or a dash (a function, not a Jinja macro:
    a macro call costs ~30 Python calls, and the page shows a dozen times)."""
    def when(dt: datetime | None) -> str:
        return dt.astimezone(tz).strftime("%d %b %Y %H:%M") if dt else "—"
    return when


#: the action forms of the case page with the fields each shows (name, `field` macro keywords)
_ACTION_FORMS: dict[str, tuple[type[FlaskForm], tuple[tuple[str, dict[str, Any]], ...]]] = {
    "record_form": (RecordForm, (("kind", {}), ("label", {}), ("required", {}))),
    "override_form": (OverrideForm, (("override_reason", {"rows": 2}),)),
    "withdraw_form": (WithdrawForm, (("withdraw_reason", {"rows": 2}),)),
}


def _form_fields(name: str, form: FlaskForm | None = None) -> Markup:
    """The fields of the action form `name`: of `form` (a refused submission, with its
    messages), else of a blank form, the same on every case page (rendered once per process)."""
    form_class, shown = _ACTION_FORMS[name]
    if form is not None:
        return rendered_fields(form, shown)
    # the template writes the CSRF token
    return rendered_fields(lambda: form_class(formdata=None, meta={"csrf": False}), shown,
                           key=("case action", name))


@bp.route("/cases/<int:case_id>/edit", methods=["GET", "POST"])
def edit(case_id: int) -> str | Response:
    """Edit the case fields (the deadline follows)."""
    case = services.load_case(case_id, for_update=request.method == "POST")
    form = CaseForm(obj=case)
    form.referring_oncologist_id.choices = _oncologist_choices()
    if request.method == "GET":
        form.specialties.data = case.specialty_names
        services.read_case(case_id, what="edit form")
        db.session.commit()
    elif form.validate_on_submit():
        try:
            changed = services.update_case(case, form.data_for_service())
        except DomainError as error:
            db.session.rollback()
            show_errors(form, error)
        else:
            db.session.commit()
            flash("Case updated." if changed else "Nothing changed.", "info")
            return redirect(url_for("cases.detail", case_id=case_id))
    return render_template("cases/form.html", form=form, case=case)


def _act(case_id: int, form: FlaskForm, action: Any, form_key: str | None = None) -> str | Response:
    """Run a detail-page action: commit and go back, or show why not (nothing changed)."""
    case = services.load_case(case_id, for_update=True)
    if form.validate_on_submit():
        try:
            message = action(case)
        except DomainError as error:
            db.session.rollback()
            if form_key is None:
                flash(error.message, "error")
                return redirect(url_for("cases.detail", case_id=case_id))
            show_errors(form, error)
        else:
            db.session.commit()
            flash(message, "info")
            return redirect(url_for("cases.detail", case_id=case_id))
    else:
        db.session.rollback()
        if form_key is None:
            flash("The action could not be carried out: reload the page and try again.", "error")
            return redirect(url_for("cases.detail", case_id=case_id))
    # show the page again with the form's messages; nothing was changed
    page = _detail_page(case_id, **{form_key: form})
    db.session.commit()
    return page


@bp.route("/cases/<int:case_id>/records", methods=["POST"])
def add_record(case_id: int) -> str | Response:
    form = RecordForm()

    def action(case: Case) -> str:
        item = services.add_record(case, kind=form.kind.data, label=form.label.data,
                                   required=form.required.data)
        return f"“{item.label}” added to the checklist."
    return _act(case_id, form, action, "record_form")


@bp.route("/cases/<int:case_id>/records/<int:record_id>/<any(requested, received, unreceived):what>",
          methods=["POST"])
def record_action(case_id: int, record_id: int, what: str) -> str | Response:
    def action(case: Case) -> str:
        item = services.load_record(case, record_id)
        before = case.status
        RECORD_ACTIONS[what](item)
        message = {"requested": "marked requested", "received": "marked received",
                   "unreceived": "no longer marked received"}[what]
        after = "" if case.status == before else f" The case is now {case.status}."
        return f"“{item.label}” {message}.{after}"
    return _act(case_id, ActionForm(), action)


@bp.route("/cases/<int:case_id>/status", methods=["POST"])
def status(case_id: int) -> str | Response:
    form = StatusForm()

    def action(case: Case) -> str:
        services.set_status(case, form.status.data)
        return f"The case is now {case.status}."
    return _act(case_id, form, action)


@bp.route("/cases/<int:case_id>/withdraw", methods=["POST"])
def withdraw(case_id: int) -> str | Response:
    form = WithdrawForm()

    def action(case: Case) -> str:
        services.set_status(case, "withdrawn", form.withdraw_reason.data)
        return "The case is withdrawn."
    return _act(case_id, form, action, "withdraw_form")


@bp.route("/cases/<int:case_id>/readiness-override", methods=["POST"])
def override(case_id: int) -> str | Response:
    form = OverrideForm()

    def action(case: Case) -> str:
        services.override_readiness(case, form.override_reason.data)
        return "The case is marked ready with records missing."
    return _act(case_id, form, action, "override_form")
