"""The permission table is complete and enforced before any view code runs.

Walks `app.url_map`: every endpoint must be in PERMISSIONS; then, for every endpoint and method
(URL parameters filled with dummy values), an anonymous user is sent to sign in (HTML) or gets
401 (API), and every role the table does not allow gets 403. A 404 for the dummy id would mean a
view ran before the permission check: that fails too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import make_user
from tests.helpers import dummy_url, login
from tumorboard.auth.permissions import PERMISSIONS, SAFE_METHODS, enforce_permissions
from tumorboard.vocab import ROLES

_TOKEN = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


def _cases(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every non-public rule and method but HEAD/OPTIONS."""
    cases = []
    for rule in app.url_map.iter_rules():
        allow = PERMISSIONS.get(rule.endpoint)
        if allow is not None and allow.public:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            cases.append((rule.endpoint, method, dummy_url(rule)))
    return cases


def _csrf(client: FlaskClient, page: str) -> str:
    match = _TOKEN.search(client.get(page).get_data(as_text=True))
    assert match, f"no CSRF token on {page}"
    return match.group(1)


def _send(client: FlaskClient, method: str, url: str, token: str) -> Any:
    # a valid CSRF token, so that only the permission check can refuse the request
    return client.open(url, method=method, headers={"X-CSRFToken": token}, json={} if
                       url.startswith("/api/") and method not in SAFE_METHODS else None)


def test_every_endpoint_is_in_the_permission_table(app: Flask) -> None:
    missing = sorted({r.endpoint for r in app.url_map.iter_rules()} - set(PERMISSIONS))
    assert not missing, (
        f"{len(missing)} endpoint(s) missing from PERMISSIONS in tumorboard/auth/permissions.py "
        f"(they answer 403 to everyone until added): {', '.join(missing)}"
    )


def test_every_table_entry_names_a_real_endpoint(app: Flask) -> None:
    stale = sorted(set(PERMISSIONS) - {r.endpoint for r in app.url_map.iter_rules()})
    assert not stale, f"PERMISSIONS entries for no endpoint (a typo?): {', '.join(stale)}"


def test_permission_check_runs_before_any_view_code(app: Flask) -> None:
    funcs = app.before_request_funcs[None]
    before = [f.__name__ for f in funcs[:funcs.index(enforce_permissions)]]
    # only the CSRF check and the session timeouts run before it (blueprint hooks run after
    # every app-wide one); a hook that loads data must come after the permission check
    assert set(before) <= {"csrf_protect", "check_session_timeouts"}, before


def test_anonymous_users_are_sent_to_sign_in_or_get_401(app: Flask, client: FlaskClient) -> None:
    token = _csrf(client, "/login")
    wrong = []
    for endpoint, method, url in _cases(app):
        response = _send(client, method, url, token)
        if url.startswith("/api/"):
            ok = response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
        else:
            ok = response.status_code == 302 and response.headers["Location"].startswith("/login")
        if not ok:
            wrong.append(f"{method} {url} ({endpoint}) -> {response.status_code}")
    assert not wrong, "anonymous requests not refused:\n" + "\n".join(wrong)


@pytest.fixture
def role_clients(app: Flask) -> dict[str, FlaskClient]:
    clients = {}
    for role in ROLES:
        user = make_user(role, email=f"{role}-perm@example.org")
        c = app.test_client()
        assert login(c, user.email).status_code == 302
        clients[role] = c
    return clients


def test_each_role_not_allowed_gets_403(app: Flask, role_clients: dict[str, FlaskClient]) -> None:
    tokens = {role: _csrf(c, "/") for role, c in role_clients.items()}
    wrong, checked = [], 0
    for endpoint, method, url in _cases(app):
        allow = PERMISSIONS.get(endpoint)
        allowed = allow.roles_for(method) if allow is not None else frozenset()
        for role in sorted(set(ROLES) - allowed):
            response = _send(role_clients[role], method, url, tokens[role])
            checked += 1
            if response.status_code != 403:
                wrong.append(f"{role}: {method} {url} ({endpoint}) -> {response.status_code}")
    assert not wrong, "requests by roles the table does not allow, not refused with 403:\n" + "\n".join(wrong)
    assert checked > 0


def test_an_allowed_role_passes_the_check(app: Flask, role_clients: dict[str, FlaskClient]) -> None:
    assert role_clients["admin"].get("/admin/users").status_code == 200
    assert role_clients["coordinator"].get("/admin/users").status_code == 403
    assert role_clients["coordinator"].get("/account/tokens").status_code == 200
