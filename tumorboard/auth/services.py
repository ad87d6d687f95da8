"""Passwords, sign-in (with throttling), users and API tokens.

Sign-in throttling is counted from the audit trail, so it holds across gunicorn workers and
hosts without Redis: `login_failed` events by attempted email (since that account's last
successful sign-in) and by client address, within `LOGIN_FAILURE_WINDOW_MINUTES`. At
`LOGIN_MAX_FAILURES` (per email) or `LOGIN_MAX_FAILURES_PER_IP` further attempts are refused
without checking the password, with the same generic message and HTTP 429, whether or not the
email belongs to anyone; they are audited as `login_throttled` and do not extend the window.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app, has_request_context, request
from sqlalchemy.orm import lazyload, with_expression

from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import record
from tumorboard.auth.models import ApiToken, User, UserRole, new_token
from tumorboard.db import joined_list, now_utc
from tumorboard.extensions import db, login_manager
from tumorboard.vocab import ROLES, SPECIALTIES

API_TOKEN_PREFIX = "tb_"  # noqa: S105 - a prefix, not a secret

#: the one message for a refused sign-in: wrong password, unknown email, inactive or throttled
LOGIN_FAILED_MESSAGE = "Email or password is incorrect."

#: refused whatever their length (compared case-insensitively); the length rule catches the rest
COMMON_PASSWORDS = frozenset({
    "123456789012", "1234567890123", "12345678901234", "1q2w3e4r5t6y", "aaaaaaaaaaaa",
    "abc123456789", "abcdefghijkl", "administrator", "changeme1234", "changemenow!",
    "hospital1234", "iloveyou1234", "letmein12345", "letmeinplease", "oncology1234",
    "passw0rd1234", "password1234", "password123!", "password12345", "passwordpassword",
    "p@ssw0rd1234", "qwerty123456", "qwertyuiop12", "qwertyuiopas", "superman1234",
    "trustno1trustno1", "tumorboard123", "tumorboard2026", "welcome12345", "welcome2026!",
    "winter2026!!", "summer2026!!", "zaq12wsxcde3", "1qaz2wsx3edc",
})


class UserError(ValueError):
    """A user cannot be created or changed as asked."""


def _hasher() -> PasswordHasher:
    return PasswordHasher(**current_app.config["PASSWORD_HASH_PARAMS"])


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher().hash(password)


def check_password(user: User, password: str) -> bool:
    """True when `password` matches; refreshes an outdated hash in place."""
    if not user.password_hash:
        return False
    hasher = _hasher()
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return True


def password_problems(password: str, email: str) -> list[str]:
    """What is wrong with `password` for the account `email` (empty when it is acceptable).

    At least PASSWORD_MIN_LENGTH characters, not the email or its local part, not a common one.
    """
    problems = []
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        problems.append(f"The password needs at least {minimum} characters.")
    folded = password.strip().casefold()
    email = email.strip().casefold()
    if folded and (folded == email or folded == email.partition("@")[0] or email in folded):
        problems.append("The password must not be your email address.")
    if folded in COMMON_PASSWORDS or len(set(folded)) <= 2:
        problems.append("This password is too common or too easy to guess: choose another.")
    return problems


def check_password_policy(password: str, email: str) -> None:
    """Raise UserError naming every rule `password` breaks."""
    problems = password_problems(password, email)
    if problems:
        raise UserError(" ".join(problems))


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, else None (same work either way)."""
    user = find_user_by_email(email)
    if user is None or not user.active:
        _hasher().hash(password)  # spend the same time as a real check
        return None
    return user if check_password(user, password) else None


def _client_ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def recent_login_failures(email: str, ip: str | None) -> tuple[int, int]:
    """(failures for this email, failures from this address) within the failure window.

    An account's count restarts at its last successful sign-in; an address's does not.
    """
    since = now_utc() - timedelta(minutes=current_app.config["LOGIN_FAILURE_WINDOW_MINUTES"])
    email = email.strip().lower()
    last_ok = db.session.scalar(
        sa.select(sa.func.max(AuditEvent.id)).where(
            AuditEvent.action == "login", AuditEvent.actor_email == email, AuditEvent.at >= since
        )
    )
    failed = sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "login_failed", AuditEvent.at >= since
    )
    by_email = db.session.scalar(
        failed.where(AuditEvent.details["email"].as_string() == email,
                     AuditEvent.id > (last_ok or 0))
    ) or 0
    by_ip = db.session.scalar(failed.where(AuditEvent.ip == ip)) or 0 if ip else 0
    return by_email, by_ip


def login_throttled(email: str, ip: str | None) -> bool:
    """True when this email or this address has reached its failure limit in the window."""
    by_email, by_ip = recent_login_failures(email, ip)
    config = current_app.config
    return by_email >= config["LOGIN_MAX_FAILURES"] or by_ip >= config["LOGIN_MAX_FAILURES_PER_IP"]


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    throttled: bool = False


def attempt_login(email: str, password: str) -> LoginResult:
    """Check a sign-in attempt, throttled, and audit it (login / login_failed / login_throttled).

    The caller signs the user in on success and commits in every case.
    """
    email = email.strip().lower()
    ip = _client_ip()
    if login_throttled(email, ip):
        record("login_throttled", "user", None, details={"email": email})
        return LoginResult(None, throttled=True)
    user = authenticate(email, password)
    if user is None:
        record("login_failed", "user", None, details={"email": email})
        return LoginResult(None)
    record("login", "user", user.id, actor=user)
    return LoginResult(user)


def create_user(
    *, email: str, name: str, password: str | None, roles: list[str] | tuple[str, ...],
    specialty: str | None = None, timezone: str = "Europe/London",
) -> User:
    """Create a user; refuses unknown roles or specialties, a taken email and a weak password."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise UserError(f"roles must be some of {', '.join(ROLES)}")
    if specialty is not None and specialty not in SPECIALTIES:
        raise UserError(f"unknown specialty {specialty!r}")
    if find_user_by_email(email) is not None:
        raise UserError(f"a user with email {email.strip().lower()} exists already")
    if password is not None:
        check_password_policy(password, email)
    user = User(
        email=email, name=name, specialty=specialty, timezone=timezone,
        password_hash=hash_password(password) if password else None,
        roles=[UserRole(role=r) for r in sorted(set(roles))],
    )
    db.session.add(user)
    db.session.flush()
    return user


def change_password(user: User, current: str, new: str) -> None:
    """Set a new password after checking the current one; ends the user's other sessions."""
    if not check_password(user, current):
        raise UserError("The current password is incorrect.")
    if new == current:
        raise UserError("The new password must differ from the current one.")
    check_password_policy(new, user.email)
    user.password_hash = hash_password(new)
    end_sessions(user)
    record("user.password_change", "user", user.id, actor=user)


def end_sessions(user: User) -> None:
    """Sign the user out everywhere: the old session id no longer loads anyone."""
    user.session_token = new_token()


def users_query() -> sa.Select[tuple[User]]:
    """Every user, by email."""
    return sa.select(User).order_by(User.email)


def set_user_active(user: User, active: bool, *, by: User) -> None:
    """Deactivate (sessions end and API tokens are revoked at once) or reactivate a user.

    An administrator cannot deactivate themselves (someone must be left to undo it).
    """
    if user.active == active:
        return
    if not active and user.id == by.id:
        raise UserError("You cannot deactivate your own account.")
    user.active = active
    details: dict[str, Any] = {}
    if not active:
        end_sessions(user)
        tokens = db.session.scalars(
            sa.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        ).all()
        for token in tokens:
            token.revoked_at = now_utc()
        details["tokens_revoked"] = len(tokens)
    db.session.flush()
    record("user.deactivate" if not active else "user.reactivate", "user", user.id, actor=by,
           details=details)


def user_tokens(user: User) -> sa.Select[tuple[ApiToken]]:
    """The user's API tokens, newest first (revoked ones included)."""
    return sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())


def issue_api_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A new personal API token; the secret is returned once and only its hash is kept."""
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=_token_hash(secret))
    db.session.add(token)
    db.session.flush()
    record("token.create", "api_token", token.id, details={"user_id": user.id, "name": name})
    return token, secret


def revoke_api_token(token: ApiToken) -> None:
    """Revoke a token at once (idempotent)."""
    if token.revoked_at is not None:
        return
    token.revoked_at = now_utc()
    db.session.flush()
    record("token.revoke", "api_token", token.id, details={"user_id": token.user_id, "name": token.name})


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_for_api_token(secret: str) -> User | None:
    token = db.session.scalar(
        sa.select(ApiToken).where(
            ApiToken.token_hash == _token_hash(secret), ApiToken.revoked_at.is_(None)
        )
    )
    if token is None or not token.user.active:
        return None
    token.last_used_at = now_utc()
    return token.user


#: the user of a session cookie, with their role names, in one round trip and one row (built
#: once: every request asks for it). The roles come as one joined string (`User.roles_joined`,
#: which `role_names` reads) rather than as a collection of UserRole objects: no joined rows to
#: make unique, no objects to build. Read afresh on every request, never kept across requests.
_SIGNED_IN_USER = (
    sa.select(User)
    .options(lazyload(User.roles),  # loaded only if something asks for the objects themselves
             with_expression(User.roles_joined,
                             sa.func.coalesce(joined_list(UserRole.role, UserRole.user_id == User.id), "")))
    .where(User.session_token == sa.bindparam("token"), User.active.is_(True))
)


def init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(session_token: str) -> User | None:
        return db.session.execute(_SIGNED_IN_USER, {"token": session_token}).scalar_one_or_none()

    @login_manager.request_loader
    def load_user_from_token(_request: object) -> User | None:
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.startswith(API_TOKEN_PREFIX):
            return None
        return user_for_api_token(secret.strip())
