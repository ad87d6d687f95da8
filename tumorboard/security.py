"""HTTP hardening: response headers, session timeouts (idle and absolute) and the proxy fix.

`init_security(app)` is called by `create_app` before the blueprints are registered, so the
session check runs before `enforce_permissions`:

* Idle automatic logoff (HIPAA 164.312(a)(2)(iii)): a browser session unused for
  `IDLE_TIMEOUT_MINUTES` is signed out on its next request, with a flash message, and sent to the
  sign-in page (an API call with that cookie gets 401). Bearer tokens carry no session: unaffected.
* Absolute lifetime: a browser session older than `SESSION_ABSOLUTE_HOURS` is signed out the same
  way, however active it was.
* Both times live in the signed session cookie (`_signed_in_at`, `_last_seen`, epoch seconds),
  checked on the server: an old cookie replayed later is refused.
* Headers on every response: a strict Content-Security-Policy (no inline script or style), no
  framing, no sniffing, same-origin referrers; `Cache-Control: no-store` on every API answer and
  every answer to a signed-in user (they may show PHI); static files keep their caching.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask, abort, current_app, flash, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user, logout_user
from itsdangerous import URLSafeTimedSerializer
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from tumorboard.db import now_utc

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), "
    "display-capture=()"
)
STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
}

SIGNED_IN_AT = "_signed_in_at"
LAST_SEEN = "_last_seen"
#: activity is stamped at most this often (seconds): idle logoff is exact to within it
LAST_SEEN_STEP = 10


def _now() -> int:
    return int(now_utc().timestamp())


def start_session(*, permanent: bool = False) -> None:
    """Stamp a fresh sign-in: both clocks start now. Call right after `login_user`.

    `permanent` keeps the cookie across browser restarts, up to the absolute lifetime; idle
    logoff applies all the same.
    """
    now = _now()
    session[SIGNED_IN_AT] = now
    session[LAST_SEEN] = now
    session.permanent = permanent


def _session_expired() -> tuple[str, str] | None:
    """Why the browser session must end now (a code and a message), else None; stamps activity."""
    if "_user_id" not in session:
        return None  # anonymous, or a bearer token (no session at all)
    now = _now()
    idle_minutes = current_app.config["IDLE_TIMEOUT_MINUTES"]
    absolute_hours = current_app.config["SESSION_ABSOLUTE_HOURS"]
    signed_in_at = session.setdefault(SIGNED_IN_AT, now)
    last_seen = session.get(LAST_SEEN, now)
    if now - last_seen > idle_minutes * 60:
        return "idle", f"You were signed out after {idle_minutes} minutes of inactivity."
    if now - signed_in_at > absolute_hours * 3600:
        return "lifetime", f"You were signed out: a session lasts at most {absolute_hours} hours."
    if now - last_seen >= LAST_SEEN_STEP:  # not on every request: no new cookie each time
        session[LAST_SEEN] = now
    return None


def check_session_timeouts() -> Response | None:
    """before_request: end an idle or too-old browser session (audited) before anything else."""
    if request.endpoint == "static":
        return None
    expired = _session_expired()
    if expired is None:
        return None
    reason, message = expired
    from tumorboard.audit.services import record
    from tumorboard.extensions import db

    user = current_user._get_current_object() if current_user.is_authenticated else None
    if user is not None:
        record("logout", "user", user.id, actor=user, details={"reason": reason})
        db.session.commit()
    logout_user()
    permanent = session.permanent
    session.clear()
    session.permanent = permanent
    flash(message, "info")
    if request.path.startswith("/api/"):
        abort(401)
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.login", next=target))


@functools.lru_cache(maxsize=8)
def _default_headers(hsts_seconds: int) -> tuple[tuple[str, str, str], ...]:
    """The headers every answer carries unless it set them itself: (name, lower-case name,
    value); built once per HSTS setting, not per response."""
    headers = [*STATIC_HEADERS.items(), ("Content-Security-Policy", CONTENT_SECURITY_POLICY)]
    if hsts_seconds:
        headers.append(("Strict-Transport-Security", f"max-age={hsts_seconds}; includeSubDomains"))
    return tuple((name, name.lower(), value) for name, value in headers)


def set_security_headers(response: Response) -> Response:
    """after_request: the same protective headers on every answer; no-store where PHI may be."""
    headers = response.headers
    present = {name.lower() for name, _ in headers}  # one pass instead of a search per header
    for name, lower, value in _default_headers(current_app.config.get("HSTS_SECONDS") or 0):
        if lower not in present:
            headers.add(name, value)
    if request.endpoint == "static":
        return response
    # whether a user may be signed in, read from the request itself: loading the user only to
    # ask cost a public answer (a calendar feed opened from a browser) a query
    if request.path.startswith("/api/") or "_user_id" in session or "Authorization" in request.headers:
        headers["Cache-Control"] = "no-store"
        if "expires" in present:
            del headers["Expires"]
        if "etag" in present:
            del headers["ETag"]
    elif "cache-control" not in present:
        headers.add("Cache-Control", "no-store")
    return response


def refuse_nul_in_forms() -> None:
    """A NUL character cannot be stored (PostgreSQL text refuses it): refuse such a form with a
    400 before any view runs, instead of failing at the database. (The JSON API does the same
    per field in its argument parser.)"""
    if request.method in {"POST", "PUT", "PATCH"} and request.form and any(
        "\x00" in value for value in request.form.values()
    ):
        abort(400, description="The form contains a character that cannot be stored (NUL).")


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, unchanged, except that the signing serializer is built once
    per set of keys rather than on every request (Flask builds a new one to read and another to
    write the cookie). The keys are read on every request: a key rotated in the config applies."""

    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            if len(self._serializers) >= 8:  # keys are rotated rarely: a bound, not a target
                self._serializers.clear()
            self._serializers[keys] = serializer  # type: ignore[assignment]
        return serializer


def init_security(app: Flask) -> None:
    """Install the session checks and response headers (call before registering blueprints)."""
    app.session_interface = SessionInterface()
    forwarded = app.config.get("PROXY_FIX_X_FOR") or 0
    if forwarded:
        # behind a reverse proxy: take the client address (login throttling, audit) from it
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=forwarded, x_proto=forwarded, x_host=0
        )
    app.before_request(check_session_timeouts)
    app.after_request(set_security_headers)
