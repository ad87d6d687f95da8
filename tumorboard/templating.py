"""What every template may use besides Flask's own: vocabulary labels, the set of endpoints (a
link shows only where its feature is installed), `url_pattern` for links repeated per row, and
the page chrome (`chrome_urls`, `main_nav`), built once per process rather than on every page."""

from __future__ import annotations

import functools
from collections.abc import Callable
from html import escape
from typing import Any

from flask import Flask, request, url_for
from flask_login import current_user
from markupsafe import Markup

from tumorboard.vocab import label

_MARKER = 1234567890  # any id a route accepts; where it lands in the URL is where each value goes

#: the main navigation: (endpoint, text, roles that see the link), each link shown only to the
#: roles that may open it (the permission table still decides on the request itself)
NAV: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("cases.queue", "Cases", frozenset({"coordinator", "oncologist"})),
    ("boards.meetings", "Meetings", frozenset({"coordinator", "oncologist", "specialist"})),
    ("boards.boards", "Boards", frozenset({"coordinator"})),
    ("planning.urgent_list", "Urgent", frozenset({"coordinator"})),
    ("consensus.followups", "My follow-ups", frozenset({"oncologist"})),
    ("consensus.overdue", "Follow-ups", frozenset({"coordinator"})),
    ("metrics.index", "Metrics", frozenset({"coordinator", "oncologist"})),
    ("admin.users", "Users", frozenset({"admin"})),
    ("audit.events", "Audit trail", frozenset({"admin"})),
)

#: the links of the page chrome (base.html), by name: endpoint and arguments
CHROME_LINKS: dict[str, tuple[str, dict[str, str]]] = {
    "stylesheet": ("static", {"filename": "app.css"}),
    "home": ("main.index", {}),
    "logout": ("auth.logout", {}),
    "my_calendar": ("calendar.my_calendar", {}),
    "tokens": ("auth.tokens", {}),
    "password": ("auth.password", {}),
}

#: at most this many cached navigation bars (role sets × current pages): a bound, not a target
_NAV_CACHE_SIZE = 2048


#: `escape` for texts of the vocabulary (labels of sites, statuses, specialties, and lists of
#: them): the same few on every row of a table, escaped once per process. Never for names or
#: MRNs, which are PHI and differ on every row.
escape_vocab = functools.lru_cache(maxsize=1024)(escape)


def url_pattern(endpoint: str, name: str, **fixed: Any) -> Callable[[int], str]:
    """`url_for(endpoint, **fixed, **{name: value})` for many int values: the URL is built once and
    each value spliced in (url_for costs ~10 µs; a page of 50 rows asks for it per row and link)."""
    head, _, tail = url_for(endpoint, **fixed, **{name: _MARKER}).partition(str(_MARKER))
    return lambda value: f"{head}{int(value)}{tail}"


def url_slot(endpoint: str, name: str, **fixed: Any) -> str:
    """`url_for(endpoint, **fixed, **{name: …})`, escaped for HTML, as a part of a `str.format`
    template of rows: `{name}` where each row's value goes, any other brace doubled."""
    url = escape(url_for(endpoint, **fixed, **{name: _MARKER})).replace("{", "{{").replace("}", "}}")
    return url.replace(str(_MARKER), f"{{{name}}}")


def _nav_html(endpoints: frozenset[str], role_names: frozenset[str], current: str | None) -> Markup:
    link, here = Markup('<a href="{}"{}>{}</a>'), Markup(' aria-current="page"')
    return Markup("\n").join(
        link.format(url_for(endpoint), here if endpoint == current else "", text)
        for endpoint, text, roles in NAV
        if endpoint in endpoints and not roles.isdisjoint(role_names)
    )


def init_templating(app: Flask) -> None:
    """Register the template globals (once the blueprints are registered)."""
    endpoints = frozenset(app.view_functions)
    # Links that depend only on where the app is mounted (and, for the navigation, on the role
    # set and the current page) are built once per process: a relative URL does not depend on
    # the host or scheme. Roles are read from the user loaded for this request, never cached.
    chrome: dict[str, dict[str, str]] = {}
    navs: dict[tuple[frozenset[str], str, str | None], Markup] = {}

    def chrome_urls() -> dict[str, str]:
        """The URLs of the page chrome (stylesheet, home, sign-out, account links)."""
        urls = chrome.get(request.script_root)
        if urls is None:
            urls = chrome[request.script_root] = {
                name: url_for(endpoint, **values) for name, (endpoint, values) in CHROME_LINKS.items()
            }
        return urls

    def main_nav() -> Markup:
        """The main navigation for the signed-in user's roles, the current page marked."""
        key = (current_user.role_names, request.script_root, request.endpoint)
        html = navs.get(key)
        if html is None:
            if len(navs) >= _NAV_CACHE_SIZE:
                navs.clear()
            html = navs[key] = _nav_html(endpoints, key[0], key[2])
        return html

    app.jinja_env.globals.update(url_endpoints=endpoints, label=label, url_pattern=url_pattern,
                                 chrome_urls=chrome_urls, main_nav=main_nav)
