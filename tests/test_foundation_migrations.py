"""The migrations, run from an empty database, build exactly the schema the models describe."""

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from tumorboard import create_app
from tumorboard.audit.models import STATISTICS_TARGET
from tumorboard.extensions import db


@pytest.fixture
def empty_database(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    if not database_url.startswith("postgres"):
        return f"sqlite:///{tmp_path / 'migrated.db'}"
    return request.getfixturevalue("scratch_postgres")


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


def test_migrations_install_the_consensus_immutability_triggers_on_postgresql(scratch_postgres: str) -> None:
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=scratch_postgres)
    with app.app_context():
        upgrade()
        names = set(db.session.scalars(sa.text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")))
        db.session.remove()
        db.engine.dispose()
    assert {"consensus_signed_immutable", "consensus_amendments_append_only"} <= names


def test_the_audit_trail_is_analysed_from_a_small_sample_however_it_was_built(scratch_postgres: str,
                                                                               app) -> None:
    """Migrated or made from the models, every column of the trail has the small statistics
    target (ANALYZE of a long trail after a pass took 180 ms at full priority; 27 ms so)."""
    targets = ("SELECT attname, attstattarget FROM pg_attribute "
               "WHERE attrelid = 'audit_events'::regclass AND attnum > 0")
    migrated = create_app("testing", SQLALCHEMY_DATABASE_URI=scratch_postgres)
    with migrated.app_context():
        upgrade()
        built = dict(db.session.execute(sa.text(targets)).all())
        db.session.remove()
        db.engine.dispose()
    with app.app_context():
        made = dict(db.session.execute(sa.text(targets)).all())
    assert built == made == dict.fromkeys(made, STATISTICS_TARGET) and "details" in made
