"""Browser sessions: idle logoff, absolute lifetime, cookie flags, fixation, safe `next`."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from config import ProductionConfig
from tests.factories import PASSWORD, make_user
from tests.helpers import csrf_token, login
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.services import issue_api_token
from tumorboard.auth.views import _safe_next
from tumorboard.extensions import db


@pytest.fixture
def clock() -> time_machine.Traveller:
    # frozen at the real "now" (cookies are signed with the clock: never travel backwards)
    with time_machine.travel(datetime.now(UTC), tick=False) as traveller:
        yield traveller


def test_idle_session_is_signed_out_after_the_timeout(client: FlaskClient, clock) -> None:
    user = make_user(email="idle@example.org")
    login(client, "idle@example.org")
    assert "Signs out after 15 min without activity" in client.get("/").get_data(as_text=True)
    for _ in range(3):  # activity keeps the session alive well past 15 minutes in total
        clock.shift(timedelta(minutes=14))
        assert client.get("/").status_code == 200
    clock.shift(timedelta(minutes=15, seconds=1))
    response = client.get("/cases?x=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "signed out after 15 minutes of inactivity" in page
    assert client.get("/").status_code == 302  # really signed out
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "logout")).one()
    assert event.actor_id == user.id and event.details == {"reason": "idle"}


def test_idle_timeout_follows_the_setting(app: Flask, client: FlaskClient, clock, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "IDLE_TIMEOUT_MINUTES", 5)
    make_user(email="idle5@example.org")
    login(client, "idle5@example.org")
    clock.shift(timedelta(minutes=5, seconds=30))
    response = client.get("/", follow_redirects=True)
    assert "signed out after 5 minutes of inactivity" in response.get_data(as_text=True)


def test_idle_api_call_with_the_session_cookie_gets_401(client: FlaskClient, clock) -> None:
    make_user(email="idleapi@example.org")
    login(client, "idleapi@example.org")
    assert client.get("/api/v1/me").status_code == 200
    clock.shift(timedelta(minutes=20))
    response = client.get("/api/v1/me")
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"


def test_bearer_tokens_are_not_subject_to_idle_logoff(client: FlaskClient, clock) -> None:
    user = make_user(email="bot@example.org")
    _token, secret = issue_api_token(user, "script")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    clock.shift(timedelta(hours=3))
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.get_cookie("session") is None  # a token request never gets a session


def test_absolute_session_lifetime(app: Flask, client: FlaskClient, clock, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "SESSION_ABSOLUTE_HOURS", 1)
    make_user(email="long@example.org")
    login(client, "long@example.org")
    for _ in range(5):  # active every 12 minutes: never idle
        clock.shift(timedelta(minutes=12))
        assert client.get("/").status_code == 200
    clock.shift(timedelta(minutes=12))  # 72 minutes after signing in
    response = client.get("/", follow_redirects=True)
    assert "a session lasts at most 1 hours" in response.get_data(as_text=True)
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "logout")).one()
    assert event.details == {"reason": "lifetime"}
    assert client.get("/").status_code == 302


def test_session_cookie_flags(client: FlaskClient) -> None:
    make_user(email="flags@example.org")
    response = login(client, "flags@example.org")
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Expires" not in cookie  # a browser-session cookie unless asked to keep it


def test_production_cookies_are_secure(monkeypatch) -> None:
    monkeypatch.setitem(os.environ, "SECRET_KEY", "x" * 40)
    monkeypatch.setitem(os.environ, "DATABASE_URL", "postgresql://db.example/tb")
    config = ProductionConfig()
    assert config.SESSION_COOKIE_SECURE and config.SESSION_COOKIE_HTTPONLY
    assert config.SESSION_COOKIE_SAMESITE == "Lax"
    assert config.SESSION_COOKIE_NAME.startswith("__Host-")
    assert config.REMEMBER_COOKIE_SECURE and config.REMEMBER_COOKIE_HTTPONLY
    assert config.HSTS_SECONDS >= 31536000
    assert config.IDLE_TIMEOUT_MINUTES == 15 and config.PERMANENT_SESSION_LIFETIME == timedelta(hours=12)


def test_keep_me_signed_in_is_a_bounded_session_cookie_not_a_remember_token(client: FlaskClient) -> None:
    make_user(email="keep@example.org")
    token = csrf_token(client, "/login")
    response = client.post("/login", data={"email": "keep@example.org", "password": PASSWORD,
                                           "remember": "y", "csrf_token": token})
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("session="))
    assert "Expires" in cookie  # survives a browser restart, up to the absolute lifetime
    assert client.get_cookie("remember_token") is None  # nothing that outlives idle logoff


def test_sign_in_starts_a_new_session(client: FlaskClient) -> None:
    make_user(email="fix@example.org")
    csrf_token(client, "/login")
    with client.session_transaction() as s:
        s["planted"] = "by an attacker"
        before = dict(s)
    login(client, "fix@example.org")
    with client.session_transaction() as s:
        assert "planted" not in s
        assert s.get("csrf_token") != before.get("csrf_token")  # a new CSRF token too


def test_post_without_csrf_token_is_refused_when_signed_in(client: FlaskClient) -> None:
    make_user(email="csrf@example.org")
    login(client, "csrf@example.org")
    response = client.post("/logout")
    assert response.status_code == 400
    assert client.get("/").status_code == 200  # still signed in: the POST changed nothing


@pytest.mark.parametrize("target", [
    "//evil.example", "/\\evil.example", "\\\\evil.example", "/\\/evil.example", "https:evil.example",
    "https://evil.example/x", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "/\t/evil.example",
    "/\n/evil.example", " //evil.example", "data:text/html,x", "http:/evil.example", "evil.example",
])
def test_next_never_leaves_the_site(app: Flask, client: FlaskClient, target: str) -> None:
    make_user(email="next@example.org")
    token = csrf_token(client, "/login")
    response = client.post("/login", query_string={"next": target},
                           data={"email": "next@example.org", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    with app.test_request_context():
        assert _safe_next(target) == "/"


def test_next_keeps_a_path_on_this_site(client: FlaskClient) -> None:
    make_user(email="next2@example.org")
    token = csrf_token(client, "/login")
    response = client.post("/login", query_string={"next": "/cases?site=breast"},
                           data={"email": "next2@example.org", "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/cases?site=breast"


def test_api_write_with_the_session_cookie_needs_the_csrf_header(client: FlaskClient) -> None:
    make_user("coordinator", email="apicsrf@example.org")
    login(client, "apicsrf@example.org")
    refused = client.post("/api/v1/cases", json={})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "bad_request"
    token = csrf_token(client, "/")
    checked = client.post("/api/v1/cases", json={}, headers={"X-CSRFToken": token})
    assert checked.status_code == 422  # past the CSRF check: now the (empty) body is refused


def test_a_rotated_secret_key_applies_at_once(app: Flask, client: FlaskClient, monkeypatch) -> None:
    make_user("coordinator", email="rotate@example.org")
    login(client, "rotate@example.org")
    assert client.get("/").status_code == 200
    old = app.config["SECRET_KEY"]
    monkeypatch.setitem(app.config, "SECRET_KEY", "another-secret-key-for-this-test")
    assert client.get("/").status_code == 302  # the cookie signed with the old key is refused
    login(client, "rotate@example.org")
    monkeypatch.setitem(app.config, "SECRET_KEY_FALLBACKS", ["another-secret-key-for-this-test"])
    monkeypatch.setitem(app.config, "SECRET_KEY", old)
    assert client.get("/").status_code == 200  # signed with a fallback key: still accepted
