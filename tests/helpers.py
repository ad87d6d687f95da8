"""Helpers for driving the app like a browser would (CSRF tokens included)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask.testing import FlaskClient
from werkzeug.routing import Rule
from werkzeug.routing.converters import AnyConverter, IntegerConverter, UUIDConverter
from werkzeug.test import TestResponse

from tests.factories import PASSWORD

_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, url: str) -> str:
    """The CSRF token of the form on the page at `url`."""
    page = client.get(url).get_data(as_text=True)
    match = _TOKEN.search(page)
    assert match, f"no CSRF token on {url}"
    return match.group(1) or match.group(2)


def post_form(client: FlaskClient, url: str, data: dict[str, Any], form_url: str | None = None,
              **kw: Any) -> TestResponse:
    """POST a form the way the browser would, with the token from the page that shows it."""
    return client.post(url, data={**data, "csrf_token": csrf_token(client, form_url or url)}, **kw)


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> TestResponse:
    return post_form(client, "/login", {"email": email, "password": password})


def commit_and_seal() -> None:
    """Commit, then run the sealer as the scheduler would (the test's outer transaction still
    rolls everything back)."""
    from tumorboard.audit.services import seal_all
    from tumorboard.extensions import db

    db.session.commit()
    seal_all()


def recorded(action: str, *args: Any, **kwargs: Any) -> Any:
    """`audit.services.record`, returning the event itself (an AuditEvent) rather than its id."""
    from tumorboard.audit.models import AuditEvent
    from tumorboard.audit.services import record
    from tumorboard.extensions import db

    return db.session.get(AuditEvent, record(action, *args, **kwargs))


def dummy_url(rule: Rule) -> str:
    """`rule`'s URL with a dummy value for each parameter: 1 for ids (the first row of a fresh
    database), a fixed UUID, the first choice of an `any(...)`, else "x"."""
    values: dict[str, Any] = {}
    for name, converter in rule._converters.items():
        if isinstance(converter, IntegerConverter):
            values[name] = 1
        elif isinstance(converter, UUIDConverter):
            values[name] = uuid.UUID(int=1)
        elif isinstance(converter, AnyConverter):
            values[name] = sorted(converter.items)[0]
        else:
            values[name] = "x"
    built = rule.build(values, append_unknown=False)
    assert built is not None, rule.rule
    return built[1]
