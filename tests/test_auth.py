import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.factories import make_user
from tests.helpers import commit_and_seal, csrf_token, login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.models import User, UserRole
from tumorboard.auth.services import issue_api_token, revoke_api_token
from tumorboard.extensions import db


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_starts_from_a_clean_database(app, attempt: int) -> None:
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
    make_user(email="same@example.org")  # would collide on the second run without the rollback


def test_health_answers_with_the_database_reachable(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_sign_in_and_out(client: FlaskClient) -> None:
    user = make_user("coordinator", email="Coord@Example.org")
    assert client.get("/").status_code == 302
    response = login(client, "coord@example.org")  # email is case-insensitive
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200 and user.name in home.get_data(as_text=True)
    response = post_form(client, "/logout", {}, form_url="/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_sign_out_ends_the_session_on_the_server(client: FlaskClient, app) -> None:
    make_user(email="a@example.org")
    login(client, "a@example.org")
    stolen = client.get_cookie("session").value
    post_form(client, "/logout", {}, form_url="/")
    other = app.test_client()
    other.set_cookie("session", stolen)
    assert other.get("/").status_code == 302  # the copied cookie no longer signs anyone in


def test_wrong_password_gives_a_clear_message_and_no_session(client: FlaskClient) -> None:
    make_user(email="b@example.org")
    response = login(client, "b@example.org", "not the password")
    assert response.status_code == 200
    assert "Email or password is incorrect." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    unknown = login(client, "nobody@example.org", "whatever")
    assert "Email or password is incorrect." in unknown.get_data(as_text=True)
    actions = db.session.scalars(sa.select(AuditEvent.action)).all()
    assert actions.count("login_failed") == 2


def test_inactive_user_cannot_sign_in(client: FlaskClient) -> None:
    user = make_user(email="c@example.org")
    user.active = False
    db.session.flush()
    login(client, "c@example.org")
    assert client.get("/").status_code == 302


def test_post_without_csrf_token_is_refused(client: FlaskClient) -> None:
    make_user(email="d@example.org")
    response = client.post("/login", data={"email": "d@example.org", "password": "x"})
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)


def test_remember_me_is_off_by_default(client: FlaskClient) -> None:
    make_user(email="e@example.org")
    page = client.get("/login").get_data(as_text=True)
    assert 'name="remember"' in page and "checked" not in page.split('name="remember"')[1].split(">")[0]
    login(client, "e@example.org")
    assert client.get_cookie("remember_token") is None


def test_next_only_redirects_within_the_site(client: FlaskClient) -> None:
    make_user(email="f@example.org")
    token = csrf_token(client, "/login")
    response = client.post("/login?next=https://evil.example/x",
                           data={"email": "f@example.org", "password": "correct horse battery staple",
                                 "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_api_needs_a_token_or_session(client: FlaskClient) -> None:
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


def test_api_token_signs_in_and_revocation_stops_it(client: FlaskClient) -> None:
    user = make_user("coordinator", email="g@example.org")
    token, secret = issue_api_token(user, "script")
    headers = {"Authorization": f"Bearer {secret}"}
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 200 and response.json["email"] == "g@example.org"
    assert token.token_hash != secret and secret not in token.token_hash
    revoke_api_token(token)
    db.session.flush()
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_sign_in_is_audited_in_a_hash_chain(app, client: FlaskClient) -> None:
    from tumorboard.audit.services import verify_chain

    make_user(email="h@example.org")
    login(client, "h@example.org")
    login(app.test_client(), "h@example.org", "wrong")
    commit_and_seal()
    events = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == ["login", "login_failed"]
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert verify_chain() is None
    db.session.execute(sa.update(AuditEvent).where(AuditEvent.id == events[0].id).values(ip="10.9.9.9"))
    db.session.expire_all()
    assert verify_chain().id == events[0].id


def _set_roles(user: User, *roles: str) -> None:
    """Change a user's roles in the database, as an administrator's session would."""
    db.session.execute(sa.delete(UserRole).where(UserRole.user_id == user.id))
    db.session.add_all(UserRole(user_id=user.id, role=r) for r in roles)
    db.session.flush()
    db.session.expire(user)


def test_a_role_removed_or_added_takes_effect_on_the_very_next_request(client: FlaskClient) -> None:
    user = make_user("coordinator", "oncologist", email="roles@example.org")
    login(client, user.email)
    assert client.get("/cases/new").status_code == 200
    assert client.get("/cases").status_code == 200
    _set_roles(user, "oncologist")
    assert client.get("/cases/new").status_code == 403  # no cache of roles across requests
    assert client.get("/cases").status_code == 200
    _set_roles(user, "specialist")
    assert client.get("/cases").status_code == 403
    assert client.get("/api/v1/me").json["roles"] == ["specialist"]
    _set_roles(user, "coordinator")
    assert client.get("/cases/new").status_code == 200


def test_the_signed_in_users_roles_come_with_the_row_and_stay_live(app, client: FlaskClient) -> None:
    user = make_user("coordinator", "admin", email="row@example.org")
    token = user.session_token
    db.session.expunge_all()
    loader = app.login_manager._user_callback
    with app.test_request_context("/"):
        loaded = loader(token)
        assert loaded.roles_joined is not None and "roles" not in loaded.__dict__
        assert loaded.role_names == {"coordinator", "admin"} and loaded.has_role("admin")
        # once the row expires (a commit), the roles are read again, not kept
        db.session.execute(sa.delete(UserRole).where(UserRole.user_id == loaded.id,
                                                     UserRole.role == "admin"))
        db.session.expire(loaded)
        assert loaded.role_names == {"coordinator"} and not loaded.has_role("admin")
        # a user changed in this session answers from its collection, as before
        loaded.roles.append(UserRole(role="oncologist"))
        assert loaded.role_names == {"coordinator", "oncologist"}
        assert loader("no-such-token") is None
        loaded.active = False
        db.session.flush()
        assert loader(token) is None  # a deactivated user's session loads no one


def test_a_user_without_roles_has_none(app) -> None:
    user = make_user("coordinator", email="none@example.org")
    token = user.session_token
    _set_roles(user)
    db.session.expunge_all()
    with app.test_request_context("/"):
        loaded = app.login_manager._user_callback(token)
        assert loaded.roles_joined == "" and loaded.role_names == frozenset()
