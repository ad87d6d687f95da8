"""Sign-in and sign-out; the user's own account pages (password, personal API tokens)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from tumorboard.audit.services import record
from tumorboard.auth.forms import ActionForm, LoginForm, PasswordChangeForm, TokenForm
from tumorboard.auth.models import ApiToken
from tumorboard.auth.services import (
    LOGIN_FAILED_MESSAGE,
    UserError,
    attempt_login,
    change_password,
    end_sessions,
    issue_api_token,
    revoke_api_token,
    user_tokens,
)
from tumorboard.extensions import db
from tumorboard.security import start_session

bp = Blueprint("auth", __name__)

#: control characters and whitespace: browsers drop some of them ("/\t/evil" becomes "//evil")
_UNSAFE_IN_NEXT = re.compile(r"[\x00-\x20\x7f\\]")


def _safe_next(target: str | None) -> str:
    """Only a path on this site; anything else goes home.

    Refuses schemes (`javascript:`, `https:evil`), hosts (`//evil`), backslashes (`/\\evil`,
    which browsers read as `//evil`) and whitespace or control characters anywhere.
    """
    home = url_for("main.index")
    if not target or not target.startswith("/") or target.startswith("//"):
        return home
    if _UNSAFE_IN_NEXT.search(target):
        return home
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    """Sign in. A refused attempt always shows the same message; a throttled one answers 429."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        result = attempt_login(form.email.data, form.password.data)
        db.session.commit()
        if result.user is not None:
            session.clear()  # no pre-login session state survives into the signed-in one
            login_user(result.user)
            start_session(permanent=bool(form.remember.data))
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append(LOGIN_FAILED_MESSAGE)
        if result.throttled:
            return render_template("auth/login.html", form=form), 429
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    user = current_user._get_current_object()
    end_sessions(user)
    record("logout", "user", user.id, actor=user)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def password() -> str | Response:
    """Change one's own password; every other session of the user ends."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            change_password(user, form.current.data, form.new.data)
        except UserError as exc:
            db.session.rollback()
            form.new.errors.append(str(exc))
        else:
            db.session.commit()
            session.clear()
            login_user(user)  # this session continues under the new session id
            start_session()
            flash("Your password is changed; your other sessions are signed out.", "info")
            return redirect(url_for("auth.password"))
    return render_template("auth/password.html", form=form)


@bp.route("/account/tokens", methods=["GET", "POST"])
def tokens() -> str:
    """List and create one's personal API tokens; a new secret is shown once, on this answer."""
    form = TokenForm()
    secret = None
    if form.validate_on_submit():
        _token, secret = issue_api_token(current_user._get_current_object(), form.name.data.strip())
        db.session.commit()
        form = TokenForm(formdata=None)
    rows = db.session.scalars(user_tokens(current_user._get_current_object())).all()
    return render_template("auth/tokens.html", form=form, tokens=rows, secret=secret,
                           action_form=ActionForm())


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
def token_revoke(token_id: int) -> Response:
    """Revoke one of one's own tokens (someone else's is not found)."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    token = db.session.scalar(
        sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == current_user.id)
    )
    if token is None:
        abort(404)
    revoke_api_token(token)
    db.session.commit()
    flash(f"Token “{token.name}” is revoked.", "info")
    return redirect(url_for("auth.tokens"))
