"""Test fixtures: one schema per session, each test in a rolled-back transaction.

The database is `TEST_DATABASE_URL` (PostgreSQL in CI), else a SQLite file in a temp folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session as FlaskSession

from tumorboard import create_app
from tumorboard.extensions import db

SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL pass (TB_DATABASE_TESTS_ONLY=1) run only tests that use the database."""
    if os.environ.get("TB_DATABASE_TESTS_ONLY") != "1":
        return
    keep = [i for i in items if {"app", "database_url"} & set(getattr(i, "fixturenames", ()))]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        from tests.pgcheck import ensure_database

        if url.startswith("postgres"):
            ensure_database(url)
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


class BoundSession(FlaskSession):
    """Flask-SQLAlchemy's session, but honouring an explicit `bind` (the test's connection)."""

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        return self.bind if self.bind is not None else super().get_bind(*args, **kwargs)


class IsolatedClient(FlaskClient):
    """Each request runs in an app context of its own, as in production (its own `g`, its own
    session), even while the test holds one; the data is shared through the test's connection."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    os.environ["TEST_DATABASE_URL"] = database_url
    app = create_app("testing")
    app.test_client_class = IsolatedClient
    with app.app_context():
        db.drop_all()
        db.create_all()
    yield app
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _db_transaction(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run each test that uses the app inside a transaction rolled back at the end."""
    if "app" not in request.fixturenames:
        yield
        return
    app: Flask = request.getfixturevalue("app")
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        original = db.session
        db.session = db._make_scoped_session(
            {"bind": connection, "join_transaction_mode": "create_savepoint", "class_": BoundSession}
        )
        try:
            yield
        finally:
            db.session.remove()
            db.session = original
            outer.rollback()
            connection.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def dialect(app: Flask) -> str:
    return db.engine.dialect.name


@pytest.fixture
def scratch_postgres(database_url: str) -> Iterator[str]:
    """A new empty PostgreSQL database for tests that need committed data or several processes."""
    if not database_url.startswith("postgres"):
        pytest.skip("needs PostgreSQL (runs in the PostgreSQL pass of make test)")
    from sqlalchemy.engine import make_url

    from tests.pgcheck import scratch_database

    with scratch_database(database_url, f"{make_url(database_url).database}_scratch") as url:
        yield url


@pytest.fixture
def pg_app(scratch_postgres: str) -> Iterator[Flask]:
    """An app on the scratch PostgreSQL database with the schema created (committed)."""
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=scratch_postgres)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def consensus_clock() -> Iterator[None]:
    """Time frozen at CONSENSUS_NOW (the consensus tests' `pytestmark`)."""
    from tests.factories import CONSENSUS_NOW

    with time_machine.travel(CONSENSUS_NOW, tick=False):
        yield
