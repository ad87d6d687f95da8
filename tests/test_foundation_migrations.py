"""The migrations, run from an empty database, build exactly the schema the models describe."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy.engine import make_url

from config import database_url as normalise
from tumorboard import create_app
from tumorboard.extensions import db


@pytest.fixture
def empty_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    if not database_url.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'migrated.db'}"
        return
    url = make_url(normalise(database_url))
    scratch = url.set(database=f"{url.database}_migrations")
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{scratch.database}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{scratch.database}"'))
    yield scratch.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))
    admin.dispose()


def test_migrations_from_empty_equal_the_models(empty_database: str) -> None:
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=empty_database)
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        tables = set(sa.inspect(db.engine).get_table_names())
        db.engine.dispose()
    assert diff == []
    assert set(db.metadata.tables) <= tables
