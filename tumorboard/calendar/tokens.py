"""Signed, expiring RSVP tokens: the credential of the public RSVP page."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

RSVP_SALT = "tumorboard.rsvp.v1"
#: a token never lives longer than this (seconds), even for a meeting far ahead
DEFAULT_RSVP_MAX_AGE = 180 * 24 * 3600


class RsvpTokenError(Exception):
    """The token is not usable; `status` is 400 (expired) or 404 (tampered, unknown)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=RSVP_SALT)


def make_rsvp_token(invitation_id: int) -> str:
    """A URL-safe token naming one invitation, signed with SECRET_KEY."""
    return _serializer().dumps({"i": invitation_id})


def read_rsvp_token(token: str) -> int:
    """The invitation id in `token`; raises RsvpTokenError when expired or not ours."""
    max_age = int(current_app.config.get("RSVP_TOKEN_MAX_AGE", DEFAULT_RSVP_MAX_AGE))
    try:
        payload = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise RsvpTokenError("This answer link has expired.", 400) from exc
    except BadSignature as exc:
        raise RsvpTokenError("This answer link is not valid: check that it was copied whole.", 404) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("i"), int):
        raise RsvpTokenError("This answer link is not valid.", 404)
    return payload["i"]
