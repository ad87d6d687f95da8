"""PostgreSQL helpers for the tests and benchmarks.

`python -m tests.pgcheck URL`: exit 0 when PostgreSQL answers, creating the database if missing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config import database_url


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(make_url(database_url(url)).set(database="postgres"),
                            isolation_level="AUTOCOMMIT")


def ensure_database(url: str) -> None:
    """Create the database named in `url` if the server answers and it is missing."""
    target = make_url(database_url(url))
    admin = _admin(url)
    try:
        with admin.connect() as conn:
            query = sa.text("SELECT 1 FROM pg_database WHERE datname = :n")
            if not conn.scalar(query, {"n": target.database}):
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


@contextmanager
def scratch_database(url: str, name: str) -> Iterator[str]:
    """A new, empty database `name` on the server of `url`, dropped (connections and all)
    afterwards; yields its URL. Raises OperationalError when the server does not answer."""
    admin = _admin(url)
    drop = sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        with admin.connect() as conn:
            conn.execute(drop)
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield make_url(database_url(url)).set(database=name).render_as_string(hide_password=False)
    finally:
        with suppress(sa.exc.OperationalError), admin.connect() as conn:
            conn.execute(drop)
        admin.dispose()


if __name__ == "__main__":
    try:
        ensure_database(sys.argv[1])
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL unreachable: {exc.orig}", file=sys.stderr)
        sys.exit(1)
