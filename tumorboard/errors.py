"""One error format: HTML pages for the browser, `{"error": {...}}` for the API."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from tumorboard.extensions import db

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class DomainError(Exception):
    """A request the domain refuses (illegal transition, conflict, invalid value).

    Services raise it before changing anything; the API answers `{"error": …}` with `status`,
    HTML views show `message` (and `fields`) on the form.
    """

    def __init__(self, message: str, *, fields: dict[str, Any] | None = None, status: int = 422,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.status = status
        self.code = code


def wants_json() -> bool:
    return request.path.startswith("/api/")


def json_error(
    status: int, message: str, fields: dict[str, Any] | None = None, code: str | None = None
) -> Response:
    """The API's error body, `{"error": {"code", "message", "fields"}}`."""
    body = {"error": {"code": code or CODES.get(status, "error"), "message": message, "fields": fields or {}}}
    response = jsonify(body)
    response.status_code = status
    return response


def _fields(error: HTTPException) -> dict[str, Any]:
    # webargs puts marshmallow messages under data["messages"][location]
    messages = (getattr(error, "data", None) or {}).get("messages") or {}
    fields: dict[str, Any] = {}
    for per_location in messages.values():
        if isinstance(per_location, dict):
            fields.update(per_location)
    return fields


def _protocol_headers(error: HTTPException) -> list[tuple[str, str]]:
    """What the exception adds for HTTP's sake (Allow on a 405, WWW-Authenticate …), not its body type."""
    return [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]


def handle_http_exception(error: HTTPException) -> Response | tuple[str, int, list[tuple[str, str]]]:
    db.session.rollback()  # nothing half-done survives an error
    status = error.code or 500
    if wants_json():
        fields = _fields(error)
        message = error.description or ""
        if fields and status == 422:
            message = "The request has invalid fields: " + ", ".join(sorted(fields))
        response = json_error(status, message, fields)
        response.headers.extend(_protocol_headers(error))
        return response
    if status == 401:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return render_template("errors/error.html", error=error, status=status), status, _protocol_headers(error)


def handle_csrf_error(error: CSRFError) -> Response | tuple[str, int, list[tuple[str, str]]]:
    error.description = "The form expired or was not sent from this site: reload and try again."
    return handle_http_exception(error)


def handle_domain_error(error: DomainError) -> Response | tuple[str, int]:
    db.session.rollback()
    if wants_json():
        return json_error(error.status, error.message, error.fields, error.code)
    return render_template("errors/error.html", error=error, status=error.status,
                           title="Not possible"), error.status


def handle_unexpected(error: Exception) -> Response | tuple[str, int, list[tuple[str, str]]]:
    from flask import current_app

    current_app.logger.exception("unhandled error", exc_info=error)
    return handle_http_exception(InternalServerError())


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    if not app.testing:
        app.register_error_handler(Exception, handle_unexpected)
