"""User administration under /admin (administrators only, see the permission table)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from tumorboard.audit.services import record
from tumorboard.auth.forms import ActionForm, UserCreateForm
from tumorboard.auth.models import User
from tumorboard.auth.services import UserError, create_user, set_user_active, users_query
from tumorboard.extensions import db

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/users")
def users() -> str:
    """Every user with their roles and state, and a deactivate / reactivate button."""
    rows = db.session.scalars(users_query()).all()
    return render_template("admin/users.html", users=rows, action_form=ActionForm())


@bp.route("/users/new", methods=["GET", "POST"])
def user_new() -> str | Response:
    """Create a user with an initial password (the password policy applies)."""
    form = UserCreateForm()
    if form.validate_on_submit():
        try:
            user = create_user(email=form.email.data, name=form.name.data.strip(),
                               password=form.password.data, roles=form.roles.data,
                               specialty=form.specialty.data or None)
        except UserError as exc:
            db.session.rollback()
            field = form.password if "password" in str(exc).lower() else form.email
            field.errors.append(str(exc))
        else:
            record("user.create", "user", user.id, details={"via": "web", "roles": sorted(user.role_names)})
            db.session.commit()
            flash(f"{user.email} is created.", "info")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_new.html", form=form)


def _set_active(user_id: int, active: bool) -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    try:
        set_user_active(user, active, by=current_user._get_current_object())
    except UserError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(f"{user.email} is {'reactivated' if active else 'deactivated: signed out everywhere'}.",
              "info")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/deactivate", methods=["POST"])
def user_deactivate(user_id: int) -> Response:
    """Deactivate: the user's sessions and API tokens stop working at once."""
    return _set_active(user_id, False)


@bp.route("/users/<int:user_id>/reactivate", methods=["POST"])
def user_reactivate(user_id: int) -> Response:
    """Reactivate (revoked API tokens stay revoked)."""
    return _set_active(user_id, True)
