"""The JSON API under /api/v1: flask-smorest blueprints, schemas → OpenAPI 3.

Each feature defines its blueprint with `api_blueprint(...)` in `<feature>/api.py` and is listed
in `API_BLUEPRINTS`; `init_api` builds one `Api` per app and registers them all.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib import import_module
from typing import Any

from flask import Flask, request
from flask_login import current_user
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationMetadataSchema
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from tumorboard.api.schemas import ErrorSchema
from tumorboard.errors import handle_http_exception
from tumorboard.extensions import csrf

API_PREFIX = "/api/v1"

#: error statuses every operation documents (all with the `{"error": …}` body); an operation
#: documents others (413, 415 …) with `@blp.alt_response(status, HTTPStatus(status).name)`
STANDARD_ERRORS = (400, 401, 403, 404, 409, 422)

#: "module:attribute" of every API blueprint
API_BLUEPRINTS = [
    "tumorboard.api.meta:blp",
    "tumorboard.cases.api:blp",
    "tumorboard.boards.api:blp",
    "tumorboard.calendar.api:blp",
    "tumorboard.consensus.api:blp",
]


class Api(SmorestApi):
    """flask-smorest with the project's single error format, documented as such: the error
    responses in the OpenAPI document use `ErrorSchema`, and each operation lists its error
    statuses (no catch-all "default" response, so the document says which statuses to expect)."""

    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: HTTPException) -> Any:
        return handle_http_exception(error)

    def _register_pagination_header(self) -> None:
        # X-Pagination carries JSON text: OpenAPI says so with `content`, not with a `schema`
        # (which means the "simple" style, `total,3,page,1`), as flask-smorest documents it
        self.spec.components.header("PAGINATION", {
            "description": "Pagination metadata (JSON)",
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        }, lazy=True)


def _with_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_with_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_with_nul(v) for v in value)
    return False


class ApiParser(FlaskParser):
    """webargs' parser, refusing text with NUL characters (which PostgreSQL cannot store) as a
    validation error on the field, before any schema or service sees it."""

    def pre_load(self, location_data: Any, *, schema: Schema, req: Any, location: str) -> Any:
        if hasattr(location_data, "getlist"):  # query string, form: every value of every key
            bad = [k for k in location_data if _with_nul(location_data.getlist(k))]
        elif isinstance(location_data, dict):
            bad = [k for k, v in location_data.items() if _with_nul(v)]
        else:
            bad = ["_schema"] if _with_nul(location_data) else []
        if bad:
            raise ValidationError({str(k): ["Text must not contain NUL characters."] for k in bad})
        return location_data


class ApiBlueprint(Blueprint):
    """A smorest blueprint whose operations all document `STANDARD_ERRORS` and whose arguments
    are parsed by `ApiParser`."""

    ARGUMENTS_PARSER = ApiParser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(self._prepare_errors_doc)

    @staticmethod
    def _prepare_errors_doc(doc: dict[str, Any], doc_info: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        responses = doc.setdefault("responses", {})
        documented = {str(status) for status in responses}
        for status in STANDARD_ERRORS:
            if str(status) not in documented:
                responses[status] = HTTPStatus(status).name  # a components/responses reference
        return doc


def _csrf_for_cookie_sessions() -> None:
    # A bearer token is never sent by a browser on its own: no CSRF check needed. A browser
    # session (cookie) writing through the API must carry the CSRF token (X-CSRFToken header).
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return
    if current_user.is_authenticated:
        csrf.protect()


def api_blueprint(name: str, import_name: str, **kwargs: Any) -> ApiBlueprint:
    """A smorest blueprint for /api/v1 with the API's CSRF rule and error responses."""
    blp = ApiBlueprint(name, import_name, **kwargs)
    blp.before_request(_csrf_for_cookie_sessions)
    csrf.exempt(blp)
    return blp


def init_api(app: Flask) -> Api:
    app.config.setdefault("API_TITLE", "tumorboard")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", API_PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = Api(app, spec_kwargs={
        "info": {"description": "tumorboard: cases, records, boards, meetings and assignments."},
        "components": {"securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"},
            "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "session"},
        }},
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
    })
    for path in API_BLUEPRINTS:
        module, _, attr = path.partition(":")
        api.register_blueprint(getattr(import_module(module), attr))
    return api
