"""User administration (/admin/users) and personal API tokens (/account/tokens)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import make_user
from tests.helpers import csrf_token, login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.models import ApiToken, User
from tumorboard.auth.services import issue_api_token
from tumorboard.extensions import db


def _me(app: Flask, secret: str) -> int:
    return app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code


def _events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


def _admin(app: Flask) -> tuple[User, FlaskClient]:
    admin = make_user("admin", email="root@example.org")
    c = app.test_client()
    login(c, admin.email)
    return admin, c


def test_admin_lists_users(app: Flask) -> None:
    _admin(app)
    make_user("specialist", email="listed@example.org", specialty="pathology")
    _, c = app, app.test_client()
    login(c, "root@example.org")
    page = c.get("/admin/users").get_data(as_text=True)
    assert "listed@example.org" in page and "Pathology" in page and "Deactivate" in page


def test_deactivation_stops_sessions_and_tokens_at_once(app: Flask) -> None:
    admin, admin_client = _admin(app)
    victim = make_user("coordinator", email="leaver@example.org")
    _token, secret = issue_api_token(victim, "script")
    bearer = {"Authorization": f"Bearer {secret}"}
    victim_client = app.test_client()
    login(victim_client, victim.email)
    assert victim_client.get("/").status_code == 200
    assert victim_client.get("/api/v1/me", headers=bearer).status_code == 200

    response = post_form(admin_client, f"/admin/users/{victim.id}/deactivate", {}, form_url="/admin/users")
    assert response.status_code == 302

    assert victim_client.get("/").status_code == 302  # the open session is gone
    assert app.test_client().get("/api/v1/me", headers=bearer).status_code == 401
    assert login(app.test_client(), victim.email).status_code == 200  # cannot sign in again
    event = _events("user.deactivate")[0]
    assert event.actor_id == admin.id and event.object_id == str(victim.id)
    assert event.details == {"tokens_revoked": 1}

    post_form(admin_client, f"/admin/users/{victim.id}/reactivate", {}, form_url="/admin/users")
    db.session.refresh(victim)
    assert victim.active and _events("user.reactivate")
    assert login(app.test_client(), victim.email).status_code == 302
    assert app.test_client().get("/api/v1/me", headers=bearer).status_code == 401  # tokens stay revoked


def test_inactive_user_loader_refuses_even_an_unrotated_session(app: Flask, client: FlaskClient) -> None:
    user = make_user(email="flag@example.org")
    login(client, user.email)
    user.active = False  # set directly (no session rotation): `load_user` checks `active` too
    db.session.flush()
    assert client.get("/").status_code == 302


def test_admin_cannot_deactivate_themselves(app: Flask) -> None:
    admin, c = _admin(app)
    response = post_form(c, f"/admin/users/{admin.id}/deactivate", {}, form_url="/admin/users",
                         follow_redirects=True)
    assert "cannot deactivate your own account" in response.get_data(as_text=True)
    db.session.refresh(admin)
    assert admin.active


def test_deactivate_without_csrf_is_refused(app: Flask) -> None:
    _, c = _admin(app)
    victim = make_user(email="kept@example.org")
    assert c.post(f"/admin/users/{victim.id}/deactivate").status_code == 400
    db.session.refresh(victim)
    assert victim.active and not _events("user.deactivate")


def test_deactivate_unknown_user_is_404(app: Flask) -> None:
    _, c = _admin(app)
    assert post_form(c, "/admin/users/999999/deactivate", {}, form_url="/admin/users").status_code == 404


def test_admin_creates_a_user_with_the_password_policy(app: Flask) -> None:
    _, c = _admin(app)
    data = {"email": "New.Person@example.org", "name": "New Person", "roles": ["coordinator", "oncologist"],
            "specialty": "medical_oncology", "password": "password1234", "confirm": "password1234"}
    weak = post_form(c, "/admin/users/new", data)
    assert weak.status_code == 200 and "too common" in weak.get_data(as_text=True)
    data.update(password="a strong initial secret", confirm="a strong initial secret")
    assert post_form(c, "/admin/users/new", data).status_code == 302
    user = db.session.scalar(sa.select(User).where(User.email == "new.person@example.org"))
    assert user.role_names == {"coordinator", "oncologist"}
    assert _events("user.create")[0].object_id == str(user.id)
    duplicate = post_form(c, "/admin/users/new", data)
    assert "exists already" in duplicate.get_data(as_text=True)


# --- personal API tokens --------------------------------------------------------------------

_SECRET = re.compile(r"tb_[A-Za-z0-9_-]{20,}")


def test_token_secret_is_shown_once_and_works(app: Flask, client: FlaskClient) -> None:
    user = make_user("oncologist", email="tok@example.org")
    login(client, user.email)
    response = post_form(client, "/account/tokens", {"name": "export script"})
    assert response.status_code == 200
    secret = _SECRET.search(response.get_data(as_text=True)).group(0)
    assert response.headers["Cache-Control"] == "no-store"
    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json["email"] == "tok@example.org"
    again = client.get("/account/tokens").get_data(as_text=True)
    assert "export script" in again and secret not in again and not _SECRET.search(again)
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == user.id))
    assert token.token_hash != secret
    assert _events("token.create")[0].object_id == str(token.id)


def test_revoking_a_token_stops_it(app: Flask, client: FlaskClient) -> None:
    user = make_user(email="rev@example.org")
    token, secret = issue_api_token(user, "old")
    login(client, user.email)
    response = post_form(client, f"/account/tokens/{token.id}/revoke", {}, form_url="/account/tokens")
    assert response.status_code == 302
    assert _me(app, secret) == 401
    assert [e.object_id for e in _events("token.revoke")] == [str(token.id)]


def test_cannot_revoke_someone_elses_token(app: Flask, client: FlaskClient) -> None:
    owner = make_user(email="owner@example.org")
    token, secret = issue_api_token(owner, "theirs")
    make_user(email="nosy@example.org")
    login(client, "nosy@example.org")
    response = post_form(client, f"/account/tokens/{token.id}/revoke", {}, form_url="/account/tokens")
    assert response.status_code == 404
    assert _me(app, secret) == 200
    assert "theirs" not in client.get("/account/tokens").get_data(as_text=True)


def test_token_creation_without_csrf_is_refused(client: FlaskClient) -> None:
    make_user(email="nocsrf@example.org")
    login(client, "nocsrf@example.org")
    csrf_token(client, "/account/tokens")
    response = client.post("/account/tokens", data={"name": "sneaky"})
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0
