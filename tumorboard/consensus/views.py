"""HTML views of the consensus feature (thin shells over services.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from tumorboard.auth.models import User
from tumorboard.boards.models import Meeting
from tumorboard.cases.models import Case
from tumorboard.consensus import services
from tumorboard.consensus.forms import AmendmentForm, ConsensusForm
from tumorboard.consensus.models import Consensus, ConsensusFollowup
from tumorboard.db import now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.forms import show_errors

bp = Blueprint("consensus", __name__)

#: roles that may write a draft (signing and amending: oncologists only)
DRAFT_WRITERS = ("coordinator", "oncologist")

#: how the content fields are named on pages and printouts
FIELD_LABELS = {
    "specialties_present": "Specialties present",
    "board_diagnosis": "Board's diagnosis",
    "concordance": "Concordance with the first opinion",
    "management_changed": "Management changed",
    "management_change": "How the management changed",
    "recommendation_kinds": "Recommendation",
    "recommendation": "Recommendation in words",
    "rationale": "Rationale",
    "trial_eligible": "Eligible for a clinical trial",
    "trial_notes": "Trial notes",
    "dissent": "Dissent",
    "followup_owner_id": "Follow-up owner",
    "followup_due": "Follow-up due",
}


def _user_name(user_id: int | None) -> str:
    user = db.session.get(User, user_id) if user_id is not None else None
    return user.name if user is not None else "—"


def _local(value: datetime | None, zone: str | None = None) -> str:
    """A UTC time shown in `zone` (default: the signed-in user's)."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(zone or current_user.timezone))
    return local.strftime("%d %b %Y %H:%M %Z")


def _check_readable(case_id: int) -> None:
    """403 unless the signed-in user may read this case's consensus (the agenda rule)."""
    if not services.can_read(current_user, case_id):
        abort(403, description=services.READ_REFUSED)


def _render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, user_name=_user_name, local=_local, field_labels=FIELD_LABELS,
                           now=now_utc(), **context), status


def _draft_form(case: Case, meeting: Meeting, consensus: Consensus | None, *,
                from_request: bool = True) -> ConsensusForm:
    form = ConsensusForm() if from_request else ConsensusForm(formdata=None)
    form.set_owner_choices(list(db.session.scalars(services.oncologists_query())))
    if not from_request or not form.is_submitted():
        if consensus is None:
            form.fill(services.default_values(case, meeting))
        else:
            form.fill(consensus.content())
            form.deferred.data = consensus.deferred
    return form


def _amendment_form(consensus: Consensus, *, fill: bool) -> AmendmentForm:
    form = AmendmentForm()
    form.set_owner_choices(list(db.session.scalars(services.oncologists_query())))
    if fill:
        form.fill(consensus.current())
    return form


def _signed_page(consensus: Consensus, form: AmendmentForm | None = None,
                 status: int = 200) -> tuple[str, int]:
    can_amend = current_user.has_role("oncologist")
    if form is None and can_amend:
        form = _amendment_form(consensus, fill=True)
    return _render("consensus/signed.html", status, consensus=consensus, case=consensus.case,
                   meeting=consensus.meeting, form=form if can_amend else None)


@bp.route("/cases/<int:case_id>/meetings/<int:meeting_id>/consensus", methods=["GET", "POST"])
def edit(case_id: int, meeting_id: int) -> tuple[str, int] | Response:
    """GET shows the consensus (the draft form, or the signed record); POST saves the draft."""
    case = db.get_or_404(Case, case_id)
    meeting = db.get_or_404(Meeting, meeting_id)
    _check_readable(case.id)
    consensus = services.get_for(case.id, meeting.id)
    if consensus is None and not services.on_agenda(case, meeting):
        abort(404, description="This case is not on that meeting's agenda.")
    form = _draft_form(case, meeting, consensus)
    if form.is_submitted():
        if consensus is not None:
            services.refuse_if_signed(consensus)
        if form.validate():
            try:
                values = {**form.content(), "deferred": bool(form.deferred.data)}
                services.save_draft(case, meeting, values, actor=current_user)
            except DomainError as error:
                if error.status != 422:
                    raise
                db.session.rollback()
                show_errors(form, error)
            else:
                db.session.commit()
                flash("Draft saved.", "info")
                return redirect(url_for(".edit", case_id=case.id, meeting_id=meeting.id))
        return _render("consensus/edit.html", case=case, meeting=meeting, consensus=consensus,
                       form=form, can_write=True)
    if consensus is not None:
        services.record_read(consensus, actor=current_user)
    else:
        services.record_case_read(case, meeting, actor=current_user)
    db.session.commit()
    if consensus is not None and consensus.signed:
        return _signed_page(consensus)
    return _render("consensus/edit.html", case=case, meeting=meeting, consensus=consensus, form=form,
                   can_write=current_user.has_role(*DRAFT_WRITERS))


@bp.route("/consensus/<int:consensus_id>/sign", methods=["POST"])
def sign(consensus_id: int) -> tuple[str, int] | Response:
    """Sign the draft; an incomplete one comes back with its field messages."""
    consensus = db.get_or_404(Consensus, consensus_id)
    try:
        services.sign(consensus, actor=current_user)
    except DomainError as error:
        if error.status != 422:
            raise
        db.session.rollback()
        consensus = db.get_or_404(Consensus, consensus_id)
        form = _draft_form(consensus.case, consensus.meeting, consensus, from_request=False)
        show_errors(form, error)
        return _render("consensus/edit.html", 422, case=consensus.case, meeting=consensus.meeting,
                       consensus=consensus, form=form, can_write=True)
    db.session.commit()
    flash("Consensus signed. The follow-up owner is notified.", "info")
    return redirect(url_for(".edit", case_id=consensus.case_id, meeting_id=consensus.meeting_id))


@bp.route("/consensus/<int:consensus_id>/amendments", methods=["POST"])
def amend(consensus_id: int) -> tuple[str, int] | Response:
    """Append an amendment to a signed consensus."""
    consensus = db.get_or_404(Consensus, consensus_id)
    form = _amendment_form(consensus, fill=False)
    if form.validate():
        try:
            services.amend(consensus, reason=form.reason.data, changes=form.content(),
                           actor=current_user)
        except DomainError as error:
            if error.status != 422:
                raise
            db.session.rollback()
            consensus = db.get_or_404(Consensus, consensus_id)
            show_errors(form, error)
        else:
            db.session.commit()
            flash("Amendment added.", "info")
            return redirect(url_for(".edit", case_id=consensus.case_id, meeting_id=consensus.meeting_id))
    return _signed_page(consensus, form)


@bp.route("/consensus/<int:consensus_id>/print")
def print_view(consensus_id: int) -> tuple[str, int]:
    """The signed consensus with its amendments, laid out for the chart."""
    consensus = db.get_or_404(Consensus, consensus_id)
    _check_readable(consensus.case_id)
    if not consensus.signed:
        raise DomainError("Only a signed consensus can be printed for the chart.", status=409)
    services.record_read(consensus, actor=current_user, via="print")
    db.session.commit()
    return _render("consensus/print.html", consensus=consensus, case=consensus.case,
                   meeting=consensus.meeting)


@bp.route("/cases/<int:case_id>/consensus")
def for_case(case_id: int) -> tuple[str, int]:
    """Every consensus recorded for a case (a deferral and the later discussion both show)."""
    case = db.get_or_404(Case, case_id)
    _check_readable(case.id)
    items = list(db.session.scalars(services.consensus_query(case_id=case.id)))
    services.record_case_read(case, None, actor=current_user)
    db.session.commit()
    return _render("consensus/case_list.html", case=case, items=items)


def _followups_page(title: str, followups: list[ConsensusFollowup], *, overdue_view: bool) -> tuple[str, int]:
    services.record_followups_read(followups, actor=current_user)
    db.session.commit()
    return _render("consensus/followups.html", title=title, followups=followups,
                   today=services.today_in(current_user.timezone), is_overdue=services.is_overdue,
                   overdue_view=overdue_view)


@bp.route("/followups")
def followups() -> tuple[str, int]:
    """The follow-ups I own, earliest due first, open ones before confirmed ones."""
    items = list(db.session.scalars(services.followups_query(owner_id=current_user.id)))
    return _followups_page("My follow-ups", items, overdue_view=False)


@bp.route("/followups/overdue")
def overdue() -> tuple[str, int]:
    """Every unconfirmed follow-up past its due date (for the coordinator)."""
    today = services.today_in(current_user.timezone)
    items = list(db.session.scalars(services.followups_query(overdue_on=today)))
    return _followups_page("Overdue follow-ups", items, overdue_view=True)


@bp.route("/followups/<int:followup_id>/confirm", methods=["POST"])
def confirm_followup(followup_id: int) -> Response:
    """The owner confirms the follow-up is done; the case closes."""
    followup = db.get_or_404(ConsensusFollowup, followup_id)
    services.confirm_followup(followup, actor=current_user)
    db.session.commit()
    flash("Follow-up confirmed; the case is closed.", "info")
    return redirect(url_for(".followups"))
