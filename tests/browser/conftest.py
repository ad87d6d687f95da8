"""Browser tests: Debian's Chromium (headless, driven by Playwright for Python) against a live
server in a thread (werkzeug `make_server` on 127.0.0.1, a free port), the app on a SQLite file
with committed data.

Never `playwright install`: the browser is /usr/bin/chromium, installed by .ci/ensure-services
(locally: `apt-get update && apt-get install -y chromium`). Without it the tests are skipped with
the reason, except under CI=true, where a missing browser is a failure.
A failing test leaves a screenshot in test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

CHROMIUM = os.environ.get("TB_CHROMIUM", "/usr/bin/chromium")
#: the flags this machine needs (no sandbox as root, no background traffic on a closed network)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _browser_missing() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM} (apt-get install -y chromium; .ci/ensure-services does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


class LiveServer:
    """The app served on 127.0.0.1 in a thread; `url(path)` builds an absolute address."""

    def __init__(self, app: Flask, base: str) -> None:
        self.app = app
        self.base = base

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server (threaded) with its own SQLite file; data a test commits is what it serves."""
    from werkzeug.serving import make_server

    from tumorboard import create_app
    from tumorboard.extensions import db

    folder = tmp_path_factory.mktemp("browser")
    app = create_app(
        "testing",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder / 'browser.db'}",
        SCHEDULER_LOCK_DIR=str(folder),
    )
    with app.app_context():
        db.create_all()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.config["SERVER_NAME_FOR_LINKS"] = base  # RSVP and agenda links point at this server
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app, base)
    finally:
        server.shutdown()
        thread.join()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (own cookies) per test; a screenshot of every open page on failure."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            for n, page in enumerate(ctx.pages):
                page.screenshot(path=str(ARTIFACTS / f"{name}-{n}.png"), full_page=True)
        ctx.close()


# --- accessibility checks --------------------------------------------------------------------


class _Controls(HTMLParser):
    """Form controls of a page and what labels them (label[for], a wrapping label, aria-*)."""

    IGNORED_TYPES = {"hidden", "submit", "button", "reset", "image"}

    def __init__(self) -> None:
        super().__init__()
        self.label_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.label_for.add(a["for"] or "")
        elif tag in ("input", "select", "textarea"):
            if tag == "input" and (a.get("type") or "text") in self.IGNORED_TYPES:
                return
            self.controls.append({**a, "_tag": tag, "_wrapped": "1" if self._in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._in_label:
            self._in_label -= 1


def unlabelled_controls(html: str) -> list[str]:
    """Every input/select/textarea with no accessible label (an axe 'label' rule, simplified)."""
    parser = _Controls()
    parser.feed(html)
    missing = []
    for c in parser.controls:
        labelled = (
            (c.get("id") and c["id"] in parser.label_for)
            or c["_wrapped"]
            or c.get("aria-label")
            or c.get("aria-labelledby")
            or c.get("title")
        )
        if not labelled:
            missing.append(f"<{c['_tag']} name={c.get('name')!r} id={c.get('id')!r}>")
    return missing


def tab_reaches(page: Any, selector: str, max_presses: int = 60) -> bool:
    """Press Tab from the top of the page until the element matching `selector` has the focus."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    target = page.locator(selector)
    for _ in range(max_presses):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return True
    return False
