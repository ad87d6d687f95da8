"""`python -m tests.pgcheck URL`: exit 0 when PostgreSQL answers, creating the database if missing."""

from __future__ import annotations

import sys

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config import database_url


def ensure_database(url: str) -> None:
    """Create the database named in `url` if the server answers and it is missing."""
    target = make_url(database_url(url))
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            query = sa.text("SELECT 1 FROM pg_database WHERE datname = :n")
            exists = conn.scalar(query, {"n": target.database})
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


if __name__ == "__main__":
    try:
        ensure_database(sys.argv[1])
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL unreachable: {exc.orig}", file=sys.stderr)
        sys.exit(1)
