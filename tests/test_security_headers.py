"""Security headers on every response; no-store wherever PHI may show; no inline script/style."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient

from tests.factories import make_board, make_case, make_user
from tests.helpers import login
from tumorboard.auth.services import issue_api_token
from tumorboard.security import CONTENT_SECURITY_POLICY, set_security_headers

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


def _assert_protective_headers(response) -> None:
    h = response.headers
    assert h["Content-Security-Policy"] == EXPECTED_CSP
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert h["Referrer-Policy"] in {"same-origin", "no-referrer"}
    assert "camera=()" in h["Permissions-Policy"] and "geolocation=()" in h["Permissions-Policy"]


def test_policy_constant_is_the_agreed_one() -> None:
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP


@pytest.mark.parametrize("path", ["/login", "/health", "/no-such-page", "/api/v1/me", "/api/v1/openapi.json"])
def test_headers_on_anonymous_answers(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    _assert_protective_headers(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_signed_in_pages_are_not_stored(client: FlaskClient) -> None:
    make_user("coordinator", email="page@example.org")
    login(client, "page@example.org")
    for path in ("/", "/account/tokens", "/no-such-page"):
        response = client.get(path)
        _assert_protective_headers(response)
        assert response.headers["Cache-Control"] == "no-store", path


def test_case_page_and_case_api_carry_no_store(client: FlaskClient) -> None:
    user = make_user("coordinator", email="phi@example.org")
    case = make_case()
    login(client, user.email)
    page = client.get(f"/cases/{case.id}")
    assert page.status_code == 200 and case.display_name in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    _assert_protective_headers(page)
    _token, secret = issue_api_token(user, "phi")
    api = client.application.test_client().get(f"/api/v1/cases/{case.id}",
                                                headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200 and api.headers["Cache-Control"] == "no-store"
    _assert_protective_headers(api)


def test_static_files_keep_their_caching(client: FlaskClient) -> None:
    response = client.get("/static/app.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response.close()


def test_hsts_when_configured(app: Flask, client: FlaskClient, monkeypatch) -> None:
    assert "Strict-Transport-Security" not in client.get("/login").headers
    monkeypatch.setitem(app.config, "HSTS_SECONDS", 31536000)
    assert client.get("/login").headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_a_header_the_view_set_is_kept_and_defaults_fill_the_rest(app: Flask, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "HSTS_SECONDS", 60)
    with app.test_request_context("/login"):
        response = Response("x", headers={"X-Frame-Options": "SAMEORIGIN", "Cache-Control": "max-age=5"})
        set_security_headers(response)
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers["Cache-Control"] == "max-age=5"  # anonymous: the view's own caching
    assert response.headers["Strict-Transport-Security"] == "max-age=60; includeSubDomains"
    assert response.headers.getlist("Content-Security-Policy") == [EXPECTED_CSP]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_public_feed_keeps_its_caching_unless_someone_is_signed_in(client: FlaskClient) -> None:
    board = make_board()
    url = f"/feeds/boards/{board.feed_token}.ics"
    anonymous = client.get(url)
    assert anonymous.status_code == 200 and anonymous.headers["Cache-Control"] == "private, no-cache"
    assert "ETag" in anonymous.headers
    make_user("coordinator", email="feed@example.org")
    login(client, "feed@example.org")
    signed_in = client.get(url)
    assert signed_in.status_code == 200 and signed_in.headers["Cache-Control"] == "no-store"
    assert "ETag" not in signed_in.headers and "Expires" not in signed_in.headers
    _assert_protective_headers(signed_in)


_INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "on…= event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_has_inline_script_or_style() -> None:
    """The CSP forbids them: they would silently stop working in the browser."""
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text()
        for pattern, what in _INLINE:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(TEMPLATES)}:{line}: {what}")
    assert not found, "blocked by the Content-Security-Policy:\n" + "\n".join(found)


def test_a_form_with_a_nul_character_is_refused_before_any_view_runs(app, client) -> None:
    import sqlalchemy as sa

    from tests.factories import make_user
    from tests.helpers import login, post_form
    from tumorboard.cases.models import Case
    from tumorboard.extensions import db

    login(client, make_user("coordinator").email)
    response = post_form(client, "/cases/new", {"mrn": "NUL-1", "display_name": "A\x00B", "site": "breast"})
    assert response.status_code == 400 and "cannot be stored" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Case)) == 0
