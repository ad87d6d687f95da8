"""Work a job asks to run once it has committed: the vacuum after a large assignment pass (on
PostgreSQL, where a pass leaves a dead version of every row it changed) and the rule that such
work never runs after a rollback and never undoes the job when it fails."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.factories import ready_cases_and_two_meetings
from tumorboard.audit.models import AuditEvent
from tumorboard.db import vacuum_analyze
from tumorboard.extensions import db
from tumorboard.jobs.tasks import JOBS, after_commit, run_job

PASS_TABLES = ("cases", "assignments", "meetings", "invitations", "outbox_messages", "audit_events")


def vacuumed(app: Flask) -> dict[str, bool]:
    """Per pass table: has a manual VACUUM and ANALYZE run on it?"""
    with app.app_context():
        rows = db.session.execute(sa.text(
            "SELECT relname, vacuum_count > 0 AND analyze_count > 0 FROM pg_stat_user_tables "
            "WHERE relname IN :names").bindparams(sa.bindparam("names", expanding=True)),
            {"names": list(PASS_TABLES)})
        result = {name: done for name, done in rows}
        db.session.remove()
    return result


@pytest.mark.postgres
@pytest.mark.parametrize(("threshold", "expected"), [(12, True), (13, False), (0, False)])
def test_a_pass_of_at_least_planner_vacuum_after_changes_vacuums_what_it_rewrote(
    pg_app: Flask, monkeypatch: pytest.MonkeyPatch, threshold: int, expected: bool
) -> None:
    monkeypatch.setitem(pg_app.config, "PLANNER_VACUUM_AFTER", threshold)  # 0: never
    with pg_app.app_context():
        ready_cases_and_two_meetings(12)
        db.session.remove()
    assert vacuumed(pg_app) == dict.fromkeys(PASS_TABLES, False)

    assert run_job(pg_app, "assign", JOBS["assign"]) == 12
    assert vacuumed(pg_app) == dict.fromkeys(PASS_TABLES, expected)


def test_work_after_commit_runs_after_the_commit_and_its_failure_keeps_the_job(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    def count_committed_events() -> None:
        with app.app_context():  # its own session: sees only what was committed
            seen.append(db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)))

    def broken() -> None:
        raise RuntimeError("maintenance failed")

    def job() -> str:
        db.session.add(AuditEvent(action="test.job", object_type="test"))
        after_commit(broken)
        after_commit(count_committed_events)
        return "done"

    with caplog.at_level(logging.ERROR, "tumorboard.jobs"):
        assert run_job(app, "materialise", job) == "done"
    assert seen == [1]  # ran after the commit, though the action before it failed
    assert "broken after its commit failed" in caplog.text


def test_work_after_commit_never_runs_when_the_job_rolls_back(app: Flask) -> None:
    ran: list[str] = []

    def job() -> None:
        after_commit(lambda: ran.append("after"))
        raise ValueError("the job failed")

    with pytest.raises(ValueError, match="the job failed"):
        run_job(app, "materialise", job)
    assert run_job(app, "materialise", lambda: "next") == "next"  # a later job in the process
    assert ran == []


@pytest.mark.postgres
def test_the_vacuum_after_a_pass_runs_at_autovacuums_pace_and_leaves_the_connection_as_it_was(
    pg_app: Flask,
) -> None:
    """At full speed the vacuum is one burst the web's requests wait out; autovacuum's cost delay
    (the server's setting, 2 ms by default) makes it naps between a few hundred pages each, and
    it runs in its one backend (no parallel workers for the indexes), as autovacuum does."""
    show = "SELECT current_setting('vacuum_cost_delay'), current_setting('vacuum_cost_limit')"
    engine = sa.create_engine(pg_app.config["SQLALCHEMY_DATABASE_URI"], pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            server = conn.execute(sa.text("SELECT current_setting('autovacuum_vacuum_cost_delay'), "
                                          "current_setting('vacuum_cost_limit')")).one()
            before = conn.execute(sa.text(show)).one()
        during: list[tuple[str, str]] = []

        def seen(conn, cursor, statement, *_args) -> None:
            if statement.startswith("VACUUM"):
                during.append(cursor.connection.execute(show).fetchone())
                vacuums.append(statement)

        vacuums: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", seen)
        assert vacuum_analyze(engine, PASS_TABLES)
        assert during == [tuple(server)] and server[0] != "0"  # throttled, as autovacuum is
        assert "PARALLEL 0" in vacuums[0]
        with engine.connect() as conn:  # the pool's one connection is back to the server's settings
            assert tuple(conn.execute(sa.text(show)).one()) == tuple(before) == ("0", server[1])
    finally:
        engine.dispose()
