"""Passwords, sign-in, users and API tokens."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app, request

from tumorboard.auth.models import ApiToken, User, UserRole, new_token
from tumorboard.db import now_utc
from tumorboard.extensions import db, login_manager
from tumorboard.vocab import ROLES, SPECIALTIES

API_TOKEN_PREFIX = "tb_"  # noqa: S105 - a prefix, not a secret


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


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, else None (same work either way)."""
    user = find_user_by_email(email)
    if user is None or not user.active:
        _hasher().hash(password)  # spend the same time as a real check
        return None
    return user if check_password(user, password) else None


def create_user(
    *, email: str, name: str, password: str | None, roles: list[str] | tuple[str, ...],
    specialty: str | None = None, timezone: str = "Europe/London",
) -> User:
    """Create a user; refuses unknown roles or specialties and a taken email."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise UserError(f"roles must be some of {', '.join(ROLES)}")
    if specialty is not None and specialty not in SPECIALTIES:
        raise UserError(f"unknown specialty {specialty!r}")
    if find_user_by_email(email) is not None:
        raise UserError(f"a user with email {email.strip().lower()} exists already")
    user = User(
        email=email, name=name, specialty=specialty, timezone=timezone,
        password_hash=hash_password(password) if password else None,
        roles=[UserRole(role=r) for r in sorted(set(roles))],
    )
    db.session.add(user)
    db.session.flush()
    return user


def end_sessions(user: User) -> None:
    """Sign the user out everywhere: the old session id no longer loads anyone."""
    user.session_token = new_token()


def issue_api_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A new personal API token; the secret is returned once and only its hash is kept."""
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=_token_hash(secret))
    db.session.add(token)
    db.session.flush()
    return token, secret


def revoke_api_token(token: ApiToken) -> None:
    token.revoked_at = token.revoked_at or now_utc()


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


def init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(session_token: str) -> User | None:
        return db.session.scalar(
            sa.select(User).where(User.session_token == session_token, User.active.is_(True))
        )

    @login_manager.request_loader
    def load_user_from_token(_request: object) -> User | None:
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.startswith(API_TOKEN_PREFIX):
            return None
        return user_for_api_token(secret.strip())
