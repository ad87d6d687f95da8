"""Declarative base, constraint naming convention and the UTC datetime column type."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from time import monotonic
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import Pool
from sqlalchemy.sql.functions import FunctionElement

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: the largest INTEGER (PostgreSQL int4): every id and integer column fits, so input beyond it is refused
#: (a 404 in a URL, a validation error in a body) rather than reaching the database
MAX_INT = 2**31 - 1


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC that refuses naive datetimes and always returns aware ones.

    PostgreSQL keeps it as `timestamptz`; SQLite as a naive UTC string, re-tagged on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: a manual VACUUM at autovacuum's pace, as the server is tuned (-1: autovacuum's own fallback)
_AUTOVACUUM_PACE = sa.text(
    "SELECT set_config('vacuum_cost_delay', current_setting('autovacuum_vacuum_cost_delay'), false) "
    "WHERE current_setting('autovacuum_vacuum_cost_delay') NOT IN ('-1', '-1ms') "
    "UNION ALL "
    "SELECT set_config('vacuum_cost_limit', current_setting('autovacuum_vacuum_cost_limit'), false) "
    "WHERE current_setting('autovacuum_vacuum_cost_limit') <> '-1'")


def on_postgresql() -> bool:
    """Whether the current session's database is PostgreSQL (where a statement has a faster or a
    stronger form than the portable one)."""
    from tumorboard.extensions import db

    return db.session.get_bind().dialect.name == "postgresql"


def vacuum_analyze(engine: Engine, tables: Iterable[str]) -> bool:
    """`VACUUM (ANALYZE)` these tables on PostgreSQL (outside any transaction, as it must run);
    False, and nothing done, on other databases. After a large write every query over the
    tables checks the dead version of each changed row until a vacuum has run, and the planner's
    statistics no longer match: autovacuum may take minutes to come, or be off.

    It runs at autovacuum's pace (its cost delay: a nap every few hundred pages), not at full
    speed: the web's requests get the CPU between its bursts rather than waiting out one burst of
    a second or more; and in one process, as autovacuum does (PostgreSQL would otherwise vacuum a
    large table's indexes with parallel workers, paced together but each at the web's priority)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(_AUTOVACUUM_PACE)
        try:
            conn.execute(sa.text(f"VACUUM (ANALYZE, PARALLEL 0) {', '.join(tables)}"))
        finally:  # the connection goes back to the pool with the server's settings
            conn.execute(sa.text("RESET vacuum_cost_delay"))
            conn.execute(sa.text("RESET vacuum_cost_limit"))
    return True


def inline_param(name: str, value: Any = None, type_: Any = sa.Integer) -> sa.BindParameter[Any]:
    """A bound value written into the SQL text at each execution, for LIMIT and OFFSET.

    psycopg prepares a statement run often and PostgreSQL then plans it once (a generic plan)
    when that plan costs about what a plan made for the values would. Not knowing the LIMIT,
    the generic plan expects ~10 % of the rows and costs ~20 times more, so such a statement was
    planned again at every execution (~0.5 ms of the database each: the queue and the agenda's
    candidates; `bench_pages.py --plans`). Each value gives a statement of its own (a few: the
    page size is fixed, the first pages are the ones read)."""
    return sa.bindparam(name, value, type_=type_, literal_execute=True)


def sql_in(column: str, values: Iterable[str]) -> sa.TextClause:
    """`column IN ('a', 'b')` as SQL text, for vocabulary values (constants, no quotes in them)."""
    return sa.text(f"{column} IN ({', '.join(repr(v) for v in values)})")


def check_in(column: str, values: Any, name: str) -> sa.CheckConstraint:
    """A CHECK constraint limiting `column` to a fixed vocabulary."""
    return sa.CheckConstraint(sql_in(column, values), name=name)


def inline_in(column: Any, values: Iterable[str]) -> sa.ColumnElement[bool]:
    """`column IN (values)` with the values written into the SQL, not sent as parameters: a
    partial index (`sql_in`) serves a prepared statement's generic plan only when PostgreSQL can
    see that the query asks for the index's values, and a parameter could be anything."""
    return column.in_(sa.bindparam(None, list(values), expanding=True, literal_execute=True))


class _CommaJoined(FunctionElement[str]):
    """`aggregate_strings(column, ",")` with the comma written into the SQL once, when the
    statement is compiled (aggregate_strings passes it as a literal that SQLAlchemy renders again
    at every execution: ~1 % of a page's CPU, the signed-in user's roles being one of them)."""

    type = sa.String()
    inherit_cache = True


@compiles(_CommaJoined)
def _group_concat(element: _CommaJoined, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(_CommaJoined, "postgresql")
def _string_agg(element: _CommaJoined, compiler: Any, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"


def comma_joined(column: Any) -> sa.FunctionElement[str]:
    """The values of `column` joined by commas, as one string (an aggregate; NULL for no rows):
    a list read along with its parent row instead of in a query of its own."""
    return _CommaJoined(column)


def joined_list(column: Any, *where: Any) -> sa.ScalarSelect[str | None]:
    """`comma_joined(column)` of the rows `where` selects, as a (correlated) scalar subquery."""
    return sa.select(comma_joined(column)).where(*where).scalar_subquery()


def split_joined(joined: str | None) -> list[str]:
    """The values `comma_joined` joined, sorted (vocabulary values hold no commas)."""
    return sorted(joined.split(",")) if joined else []


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys on, and let SQLAlchemy drive transactions (pysqlite's own handling breaks
    # SAVEPOINT); WAL so the web and scheduler processes can read while the other writes.
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_on_begin(conn: sa.Connection) -> None:
    # IMMEDIATE: take SQLite's single write lock up front (waiting up to busy_timeout) instead of
    # failing with "database is locked" when a reading transaction later tries to write while the
    # other process (web or scheduler) has written; most of our transactions write (audit rows).
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# --- read-only transactions end with COMMIT ---------------------------------------------------
#
# psycopg forgets its prepared statements at every ROLLBACK (an object they use may have gone),
# and closing a session rolls back whatever is open: in a web app whose pages mostly only read,
# no query plan would ever be reused. A transaction that wrote nothing ends the same either way,
# so the request's teardown commits it instead (`end_read_only_transaction`).

_WROTE = "tumorboard.transaction_wrote"


@event.listens_for(Engine, "before_cursor_execute")
def _note_writes(conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
    if statement.lstrip()[:6].upper() != "SELECT":  # INSERT, UPDATE, DELETE, WITH …, DDL: a write
        conn.info[_WROTE] = True


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _transaction_ended(conn: sa.Connection) -> None:
    if not conn.invalidated:  # a lost connection is discarded, flag and all
        conn.info.pop(_WROTE, None)


def end_read_only_transaction(error: BaseException | None) -> None:
    """teardown_request: COMMIT the request's transaction when it wrote nothing and nothing is
    waiting to be written; anything else is left to the session's usual rollback."""
    from tumorboard.extensions import db

    session = db.session()  # the request's session itself, not the scoped proxy
    if error is not None or not session.in_transaction() or session.new or session.dirty or session.deleted:
        return
    if not session.connection().info.get(_WROTE):
        session.commit()


# --- connections taken from the pool (PostgreSQL) --------------------------------------------
#
# Tested only after an idle while. SQLAlchemy's pool_pre_ping tests every connection at every
# checkout: a round trip per request (~0.4 ms of worker and backend CPU of ~6). A connection
# that served a request a moment ago needs no test; one that sat idle may have been cut (a
# restarted server, an idle timeout, a firewall), so a connection idle for longer than
# DATABASE_PING_AFTER_SECONDS is tested, and replaced if dead. One that dies while busy fails the
# request that meets it, and SQLAlchemy then replaces every connection of the pool.
#
# A request that only reads runs without a transaction. Under READ COMMITTED every statement
# takes a snapshot of its own, so a transaction around a page's SELECTs keeps nothing
# consistent that autocommit would not; it only costs two round trips (BEGIN, COMMIT) and the
# backend's work for them (~10 % of what a page costs in all, bench/README.md). A connection
# taken during a GET, HEAD or OPTIONS request (safe by HTTP: it reads, and at most appends audit
# rows of its reading) is therefore switched to autocommit, and back when it returns: each audit
# row is committed as it is inserted, before the page is sent, and every other request, every
# job and every command keeps its transactions. The switch is psycopg's own (client side: no
# round trip); SQLAlchemy's isolation-level option would do the same at a higher price per
# statement (event dispatch through an option engine). (A connection taken outside a request,
# as the tests' own, is left alone.)
#
# Those audit rows commit with READS_SYNCHRONOUS_COMMIT ("off": not waiting for the disk).
# While a pass writes its plan, a commit that waits for the disk waits for the pass's WAL too:
# the reads' p99 went from ~40 ms to 200–400 ms. The setting is the connection's, changed (one
# round trip) only when a connection goes from reads to a change or back.
#
# SQLite has no round trips to save and no connection to lose: its connections are left as
# they are (and its requests keep their transaction).

_AUTOCOMMIT = "tumorboard.autocommit"
_READ_COMMIT = "tumorboard.read_synchronous_commit"
_RETURNED_AT = "tumorboard.returned_at"


@event.listens_for(Pool, "checkout")
def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    from flask import current_app, has_app_context, has_request_context, request

    from tumorboard.auth.permissions import SAFE_METHODS

    if not isinstance(dbapi_connection, psycopg.Connection):
        return
    config = current_app.config if has_app_context() else {}
    reading = has_request_context() and request.method in SAFE_METHODS
    wanted = config.get("READS_SYNCHRONOUS_COMMIT", "") if reading else ""
    returned_at = record.info.get(_RETURNED_AT)  # None: a connection new from the server
    ping_after = config.get("DATABASE_PING_AFTER_SECONDS", 1)
    ping = returned_at is not None and monotonic() - returned_at >= ping_after
    if ping or record.info.get(_READ_COMMIT, "") != wanted:
        autocommit, dbapi_connection.autocommit = dbapi_connection.autocommit, True  # outside a transaction
        try:
            if wanted:
                dbapi_connection.execute("SELECT set_config('synchronous_commit', %s, false)", (wanted,))
            else:  # the server's (or role's) own; also the test of an idle connection
                dbapi_connection.execute("RESET synchronous_commit")
        except psycopg.OperationalError as exc:  # cut: the pool replaces them all, tries again
            raise sa.exc.InvalidatePoolError(str(exc)) from exc
        dbapi_connection.autocommit = autocommit
        record.info[_READ_COMMIT] = wanted
    if reading and not dbapi_connection.autocommit:
        dbapi_connection.autocommit = True
        record.info[_AUTOCOMMIT] = True


@event.listens_for(Pool, "checkin")
def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    if dbapi_connection is None:  # invalidated
        return
    if record.info.pop(_AUTOCOMMIT, False):
        dbapi_connection.autocommit = False  # rolled back (a no-op outside a transaction) first
    record.info[_RETURNED_AT] = monotonic()
