"""HTML views of the calendar feature (thin shells over services.py): RSVP pages, feeds and
the personal "my calendar" page."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from tumorboard.auth.models import User
from tumorboard.calendar import services
from tumorboard.calendar.forms import ConfirmForm, RsvpForm
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.tokens import RsvpTokenError, make_rsvp_token, read_rsvp_token
from tumorboard.db import now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db

bp = Blueprint("calendar", __name__)

ANSWER_LABELS = {"ACCEPTED": "Accept", "TENTATIVE": "Tentative", "DECLINED": "Decline"}


def _invitation_for(token: str) -> Invitation:
    """The invitation a token names; a clear 400/404 page otherwise (also once the meeting ended)."""
    try:
        invitation_id = read_rsvp_token(token)
    except RsvpTokenError as exc:
        abort(exc.status, description=exc.message)
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None:
        abort(404, description="This answer link is not valid.")
    if invitation.meeting.end_at <= now_utc():
        abort(400, description="This answer link has expired: the meeting is over.")
    return invitation


@bp.route("/rsvp/<token>", methods=["GET", "POST"])
def rsvp(token: str) -> str | Response | tuple[str, int]:
    """Show the meeting (no PHI) and answer it; a GET never changes anything."""
    invitation = _invitation_for(token)
    form = RsvpForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                services.answer_rsvp(invitation, form.answer.data)
            except DomainError as exc:
                db.session.rollback()
                form.answer.errors.append(exc.message)
                status = exc.status
            else:
                db.session.commit()
                flash(f"Thank you: your answer ({ANSWER_LABELS[invitation.partstat]}) is recorded.", "info")
                return redirect(url_for("calendar.rsvp", token=token), code=303)
        else:
            status = 422
    meeting = invitation.meeting
    return render_template(
        "calendar/rsvp.html", form=form, invitation=invitation, meeting=meeting,
        when=services.when_text(meeting), title=services.meeting_title(meeting),
        location=services.meeting_location(meeting), answers=ANSWER_LABELS,
    ), status


def _ics_response(feed: services.Feed) -> Response:
    response = Response(feed.body, mimetype="text/calendar")
    response.headers["Content-Type"] = "text/calendar; charset=utf-8"
    response.headers["Content-Disposition"] = 'inline; filename="tumorboard.ics"'
    response.headers["Cache-Control"] = "private, no-cache"
    response.set_etag(feed.etag)
    if feed.last_modified is not None:
        response.last_modified = feed.last_modified
    return response.make_conditional(request)


@bp.route("/feeds/<token>.ics")
def user_feed(token: str) -> Response:
    """A user's personal feed; the secret URL is the credential."""
    user = db.session.scalar(sa.select(User).where(User.feed_token == token, User.active.is_(True)))
    if user is None:
        abort(404, description="No calendar feed has this address (it may have been replaced).")
    return _ics_response(services.user_feed(user))


@bp.route("/feeds/boards/<token>.ics")
def board_feed(token: str) -> Response:
    """A board's feed; the secret URL is the credential."""
    feed = services.board_feed_by_token(token)
    if feed is None:
        abort(404, description="No calendar feed has this address (it may have been replaced).")
    return _ics_response(feed)


@bp.route("/calendar")
def my_calendar() -> str:
    """The user's feed address, a way to replace it, and their upcoming invitations."""
    user = current_user._get_current_object()
    invitations = services.upcoming_invitations(user)
    return render_template(
        "calendar/my_calendar.html", form=ConfirmForm(), feed_url=services.user_feed_url(user),
        items=[(i, services.meeting_title(i.meeting), services.when_text(i.meeting),
                url_for("calendar.rsvp", token=make_rsvp_token(i.id))) for i in invitations],
    )


@bp.route("/calendar/feed-token", methods=["POST"])
def rotate_feed_token() -> Response:
    """Replace the personal feed URL: the old one stops working."""
    form = ConfirmForm()
    if form.validate_on_submit():
        services.rotate_user_feed_token(current_user._get_current_object())
        db.session.commit()
        flash("Your calendar feed has a new address: the old one no longer works. "
              "Subscribe again with the new one.", "info")
    return redirect(url_for("calendar.my_calendar"), code=303)
