"""Sign-in throttling (per account and per address, counted from the audit trail) and the
password policy (create-user, password change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import PASSWORD, make_user
from tests.helpers import login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.models import User
from tumorboard.auth.services import UserError, create_user, password_problems
from tumorboard.extensions import db

MESSAGE = "Email or password is incorrect."


def _actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


def _error_text(body: str) -> str:
    return body.split('<ul class="errors"', 1)[1].split("</ul>", 1)[0]


def _fail(client: FlaskClient, email: str, n: int) -> None:
    for _ in range(n):
        response = login(client, email, "wrong password!!")
        assert response.status_code == 200 and MESSAGE in response.get_data(as_text=True)


def test_account_is_throttled_after_five_failures(client: FlaskClient) -> None:
    make_user(email="victim@example.org")
    _fail(client, "victim@example.org", 5)
    response = login(client, "victim@example.org")  # the right password, refused all the same
    assert response.status_code == 429
    assert MESSAGE in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert _actions() == ["login_failed"] * 5 + ["login_throttled"]


def test_unknown_email_is_throttled_the_same_way(app: Flask, client: FlaskClient) -> None:
    make_user(email="known@example.org")
    other = app.test_client()
    answers = {}
    for c, email in ((client, "known@example.org"), (other, "nobody@example.org")):
        _fail(c, email, 5)
        response = login(c, email, "wrong password!!")
        answers[email] = (response.status_code, _error_text(response.get_data(as_text=True)))
    assert answers["known@example.org"] == answers["nobody@example.org"]
    assert answers["known@example.org"][0] == 429 and MESSAGE in answers["known@example.org"][1]


def test_throttle_counts_across_addresses_for_one_account(app: Flask) -> None:
    make_user(email="spread@example.org")
    for i in range(5):
        c = app.test_client()
        c.environ_base["REMOTE_ADDR"] = f"10.0.0.{i + 1}"
        _fail(c, "spread@example.org", 1)
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = "10.0.0.99"
    assert login(c, "spread@example.org").status_code == 429


def test_throttle_ends_after_the_window(client: FlaskClient) -> None:
    make_user(email="patient@example.org")
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        _fail(client, "patient@example.org", 5)
        clock.shift(timedelta(minutes=14))
        assert login(client, "patient@example.org").status_code == 429
        clock.shift(timedelta(minutes=1, seconds=1))  # the first failures leave the 15-minute window
        response = login(client, "patient@example.org")
        assert response.status_code == 302
        assert client.get("/").status_code == 200


def test_a_successful_sign_in_resets_the_account_count(client: FlaskClient) -> None:
    make_user(email="typo@example.org")
    _fail(client, "typo@example.org", 4)
    assert login(client, "typo@example.org").status_code == 302
    post_form(client, "/logout", {}, form_url="/")
    _fail(client, "typo@example.org", 4)
    assert login(client, "typo@example.org").status_code == 302


def test_address_is_throttled_across_accounts(app: Flask, client: FlaskClient, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_IP", 3)
    make_user(email="sprayed@example.org")
    for i in range(3):  # password spraying: one try per account
        _fail(client, f"spray{i}@example.org", 1)
    assert login(client, "sprayed@example.org").status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert login(elsewhere, "sprayed@example.org").status_code == 302


def test_limits_follow_the_settings(app: Flask, client: FlaskClient, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 2)
    make_user(email="strict@example.org")
    _fail(client, "strict@example.org", 2)
    assert login(client, "strict@example.org").status_code == 429


# --- password policy ------------------------------------------------------------------------

@pytest.mark.parametrize(("password", "problem"), [
    ("short pass", "at least 12 characters"),
    ("alice@example.org", "not be your email"),
    ("ALICE@EXAMPLE.ORG", "not be your email"),
    ("my alice@example.org!", "not be your email"),
    ("Password1234", "too common"),
    ("qwerty123456", "too common"),
    ("abababababababab", "too common"),
])
def test_password_policy_refuses(app: Flask, password: str, problem: str) -> None:
    with app.test_request_context():
        assert problem in " ".join(password_problems(password, "alice@example.org"))
        with pytest.raises(UserError, match=problem):
            create_user(email="alice@example.org", name="A", password=password, roles=["coordinator"])


def test_password_policy_accepts_a_long_uncommon_one(app: Flask) -> None:
    with app.test_request_context():
        assert password_problems("violet tram at dawn", "alice@example.org") == []
        assert password_problems(PASSWORD, "alice@example.org") == []


def test_local_part_alone_is_refused(app: Flask) -> None:
    with app.test_request_context():
        assert password_problems("alexandra.smithers", "alexandra.smithers@example.org")


def test_cli_create_user_applies_the_policy(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["tumorboard", "create-user", "--email", "weak@example.org", "--name", "W", "--role", "admin"],
        input="password1234\npassword1234\n")
    assert result.exit_code == 1 and "too common" in result.output
    assert db.session.scalar(sa.select(User).where(User.email == "weak@example.org")) is None


def test_password_change(app: Flask, client: FlaskClient) -> None:
    user = make_user(email="change@example.org")
    login(client, "change@example.org")
    other = app.test_client()
    login(other, "change@example.org")
    assert other.get("/").status_code == 200

    wrong = post_form(client, "/account/password", {"current": "nope", "new": "a fresh long secret",
                                                    "confirm": "a fresh long secret"})
    assert wrong.status_code == 200 and "current password is incorrect" in wrong.get_data(as_text=True)
    weak = post_form(client, "/account/password", {"current": PASSWORD, "new": "password1234",
                                                   "confirm": "password1234"})
    assert "too common" in weak.get_data(as_text=True)
    differ = post_form(client, "/account/password", {"current": PASSWORD, "new": "a fresh long secret",
                                                     "confirm": "another long secret"})
    assert "differ" in differ.get_data(as_text=True)

    ok = post_form(client, "/account/password", {"current": PASSWORD, "new": "a fresh long secret",
                                                 "confirm": "a fresh long secret"})
    assert ok.status_code == 302
    assert client.get("/").status_code == 200  # this session continues
    assert other.get("/").status_code == 302  # every other session ended
    assert "user.password_change" in _actions()
    db.session.refresh(user)
    post_form(client, "/logout", {}, form_url="/")
    assert login(client, "change@example.org", "a fresh long secret").status_code == 302
