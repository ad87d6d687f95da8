"""The one permission table: which roles may reach each endpoint.

`enforce_permissions` runs before every request. An endpoint missing from the table is refused
(fail closed); `tests/test_security_permissions.py` walks the URL map to keep the table complete.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, request
from flask_login import current_user

from tumorboard.vocab import ROLES

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Allow:
    """Roles allowed to read (GET/HEAD/OPTIONS) and to write (other methods)."""

    read: frozenset[str]
    write: frozenset[str]
    public: bool = False

    def roles_for(self, method: str) -> frozenset[str]:
        return self.read if method in SAFE_METHODS else self.write


def roles(*names: str) -> frozenset[str]:
    assert set(names) <= set(ROLES), names  # noqa: S101 - a typo in the table is a bug
    return frozenset(names)


def allow(read: frozenset[str], write: frozenset[str] | None = None) -> Allow:
    return Allow(read=read, write=read if write is None else write)


PUBLIC = Allow(frozenset(), frozenset(), public=True)
ANY_ROLE = roles(*ROLES)
COORDINATOR = roles("coordinator")
CLINICAL = roles("coordinator", "oncologist", "specialist")
ADMIN = roles("admin")

PERMISSIONS: dict[str, Allow] = {
    # --- main, auth, API meta
    "static": PUBLIC,
    "main.health": PUBLIC,
    "auth.login": PUBLIC,
    "auth.logout": allow(ANY_ROLE),
    "main.index": allow(ANY_ROLE),
    "api_meta.me": allow(ANY_ROLE),
    "api-docs.openapi_json": PUBLIC,
    # --- cases (HTML "cases.*", API "api_cases.*")
    # --- boards, meetings, agendas (HTML "boards.*", API "api_boards.*")
    # --- calendar: RSVP, feeds, iTIP (HTML "calendar.*", API "api_calendar.*")
}


def enforce_permissions() -> None:
    """Refuse the request unless the current user holds a role the table allows."""
    endpoint = request.endpoint
    if endpoint is None:
        return  # 404 / 405: Werkzeug answers
    rule = PERMISSIONS.get(endpoint)
    if rule is not None and rule.public:
        return
    if not current_user.is_authenticated:
        abort(401)
    if rule is None or not current_user.has_role(*rule.roles_for(request.method)):
        abort(403)
