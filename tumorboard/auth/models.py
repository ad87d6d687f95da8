"""Users, their roles and personal API tokens."""

from __future__ import annotations

import functools
import secrets
from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship, validates

from tumorboard.db import UTCDateTime, check_in, now_utc
from tumorboard.extensions import db
from tumorboard.vocab import ROLES, SPECIALTIES


def new_token() -> str:
    return secrets.token_urlsafe(32)


@functools.lru_cache(maxsize=64)
def _role_set(joined: str) -> frozenset[str]:
    """The roles of `roles_joined` ("" for none); a few distinct values, so kept."""
    return frozenset(joined.split(",")) if joined else frozenset()


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        # emails are stored lower-cased, so a plain unique constraint is case-insensitive
        sa.CheckConstraint("email = lower(email)", name="email_lower"),
        check_in("specialty", SPECIALTIES, "specialty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    specialty: Mapped[str | None] = mapped_column(sa.String(40))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Europe/London")
    active: Mapped[bool] = mapped_column(default=True)
    #: the id Flask-Login keeps in the session; rotating it signs the user out everywhere
    session_token: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_token)
    #: secret part of the personal calendar feed URL; rotate to revoke
    feed_token: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_token)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )
    #: the role names joined by commas, when a query reads them along with the row instead of
    #: loading `roles` (`with_expression`: the signed-in user's load); gone once the row expires
    roles_joined: Mapped[str | None] = query_expression()

    @validates("email")
    def _normalise_email(self, _key: str, value: str) -> str:
        return value.strip().lower()

    @property
    def role_names(self) -> frozenset[str]:
        loaded = self.__dict__  # what the row holds now (expiry removes both)
        if "roles" not in loaded and loaded.get("roles_joined") is not None:
            return _role_set(loaded["roles_joined"])
        return frozenset(r.role for r in self.roles)

    def has_role(self, *roles: str) -> bool:
        return not self.role_names.isdisjoint(roles)

    # Flask-Login
    @property
    def is_active(self) -> bool:  # type: ignore[override]
        return self.active

    def get_id(self) -> str:
        return self.session_token

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class UserRole(db.Model):
    __tablename__ = "user_roles"
    __table_args__ = (check_in("role", ROLES, "role"),)

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(sa.String(20), primary_key=True)

    user: Mapped[User] = relationship(back_populates="roles")


class ApiToken(db.Model):
    """A personal API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
