"""Sign-in and sign-out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from tumorboard.audit.services import record
from tumorboard.auth.forms import LoginForm
from tumorboard.auth.services import authenticate, end_sessions
from tumorboard.extensions import db

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Only a path on this site; anything else goes home."""
    if not target:
        return url_for("main.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("main.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            session.clear()  # no pre-login session state survives into the signed-in one
            login_user(user, remember=form.remember.data)
            record("login", "user", user.id, actor=user)
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")))
        record("login_failed", "user", None, details={"email": form.email.data.strip().lower()})
        db.session.commit()
        form.password.errors.append("Email or password is incorrect.")
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
