"""The audit trail for administrators: /admin/audit, filtered and paginated; reading is audited."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, render_template, request
from flask_login import current_user

from tumorboard.audit.forms import TrailFilterForm
from tumorboard.audit.services import TrailFilter, read_trail
from tumorboard.extensions import db

bp = Blueprint("audit", __name__, url_prefix="/admin/audit")


@bp.route("")
def events() -> tuple[str, int] | str:
    """Search the trail: who did what to which object, when (e.g. who opened case 12)."""
    form = TrailFilterForm(formdata=request.args)
    if not form.validate():
        return render_template("audit/events.html", form=form, page=None, args={}), 422
    try:
        zone = ZoneInfo(current_user.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    tz = zone.key
    trail_filter = TrailFilter(
        actor=form.actor.data or "", action=form.action.data or "",
        object_type=form.object_type.data or "", object_id=form.object_id.data or "",
        date_from=form.date_from.data, date_to=form.date_to.data, tz=tz,
    )
    before = request.args.get("before", type=int)
    page = read_trail(trail_filter, before=before)
    db.session.commit()  # the audit.read event
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    return render_template("audit/events.html", form=form, page=page, args=args, zone=zone,
                           before=before)
