"""One runner per job across processes and hosts.

PostgreSQL: `pg_try_advisory_xact_lock` in the job's transaction (released at commit/rollback).
SQLite (one machine): an exclusive file lock next to the database.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock, Timeout
from flask import current_app

from tumorboard.db import on_postgresql
from tumorboard.extensions import db


def _key(name: str) -> int:
    # a stable signed 64-bit key (hashtext() is not guaranteed stable across PostgreSQL versions)
    return zlib.crc32(f"tumorboard:{name}".encode())


@contextmanager
def job_lock(name: str) -> Iterator[bool]:
    """Yield True when this process holds the job's lock, False when another one does."""
    if on_postgresql():
        got = db.session.scalar(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _key(name)})
        yield bool(got)
        return
    folder = Path(current_app.config["SCHEDULER_LOCK_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"job-{name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
