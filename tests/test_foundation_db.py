from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError

from tests.factories import make_board, make_case, make_user
from tumorboard.boards.models import Meeting
from tumorboard.cases.models import Assignment
from tumorboard.extensions import db


def _meeting(board_id: int, start: datetime, **kw: object) -> Meeting:
    m = Meeting(board_id=board_id, start_at=start, end_at=start + timedelta(hours=1),
                ical_uid=kw.pop("ical_uid", f"meeting-{start.timestamp()}@test"), **kw)
    db.session.add(m)
    db.session.flush()
    return m


def test_aware_datetimes_round_trip_as_utc(app) -> None:
    board = make_board()
    new_york = timezone(timedelta(hours=-5))
    start = datetime(2026, 3, 10, 8, 30, 15, 123456, tzinfo=new_york)
    meeting_id = _meeting(board.id, start).id
    db.session.expire_all()
    stored = db.session.get(Meeting, meeting_id).start_at
    assert stored == start
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 3, 10, 13, 30, 15, 123456, tzinfo=UTC)


def test_utc_comparisons_in_sql_use_the_instant(app) -> None:
    board = make_board()
    _meeting(board.id, datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))))  # 07:00 UTC
    found = db.session.scalar(sa.select(sa.func.count()).select_from(Meeting).where(
        Meeting.start_at < datetime(2026, 6, 1, 7, 30, tzinfo=UTC)))
    assert found == 1


def test_naive_datetime_is_refused(app) -> None:
    board = make_board()
    with pytest.raises(StatementError, match="naive datetime"):
        _meeting(board.id, datetime(2026, 3, 10, 8, 30))


def test_email_is_unique_whatever_the_case(app) -> None:
    make_user(email="Dr.Who@Example.org")
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text(
                "INSERT INTO users (email, name, timezone, active, session_token, feed_token, created_at) "
                "VALUES ('dr.who@example.org', 'x', 'UTC', true, 'a', 'b', CURRENT_TIMESTAMP)"))


def test_email_stored_in_capitals_is_refused_by_the_database(app) -> None:
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text(
                "INSERT INTO users (email, name, timezone, active, session_token, feed_token, created_at) "
                "VALUES ('Upper@Example.org', 'x', 'UTC', true, 'c', 'd', CURRENT_TIMESTAMP)"))


def test_one_assignment_per_case_and_meeting_and_one_active_per_case(app) -> None:
    board = make_board()
    case = make_case()
    m1 = _meeting(board.id, datetime(2026, 12, 1, 8, tzinfo=UTC), ical_uid="m1@test")
    m2 = _meeting(board.id, datetime(2026, 12, 8, 8, tzinfo=UTC), ical_uid="m2@test")
    db.session.add(Assignment(case_id=case.id, meeting_id=m1.id))
    db.session.flush()
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.add(Assignment(case_id=case.id, meeting_id=m2.id))  # a second active one
    with db.session.begin_nested():
        db.session.add(Assignment(case_id=case.id, meeting_id=m2.id, active=False))


def test_status_values_are_checked_by_the_database(app) -> None:
    case = make_case()
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text("UPDATE cases SET status = 'lost' WHERE id = :id"), {"id": case.id})


def test_a_board_with_meetings_cannot_be_deleted_but_a_case_takes_its_records_along(app) -> None:
    board = make_board()
    _meeting(board.id, datetime(2026, 12, 1, 8, tzinfo=UTC))
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            db.session.execute(sa.text("DELETE FROM boards WHERE id = :id"), {"id": board.id})
    case = make_case()
    db.session.execute(sa.text("INSERT INTO record_items (case_id, kind, label, required) "
                               "VALUES (:c, 'labs', 'Blood panel', true)"), {"c": case.id})
    db.session.execute(sa.text("DELETE FROM cases WHERE id = :id"), {"id": case.id})
    left = db.session.scalar(sa.text("SELECT count(*) FROM record_items WHERE case_id = :c"), {"c": case.id})
    assert left == 0


def _transaction_ends(app) -> list[str]:
    """'commit' / 'rollback' for every transaction the app's engine ends from now on."""
    ends: list[str] = []
    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "commit", lambda _conn: ends.append("commit"))
    sa.event.listen(engine, "rollback", lambda _conn: ends.append("rollback"))
    return ends


@pytest.mark.postgres
def test_a_read_only_request_commits_and_psycopg_keeps_its_prepared_statements(pg_app) -> None:
    from tests.helpers import login

    with pg_app.app_context():
        make_user("coordinator", email="reader@example.org")
        db.session.commit()
    client = pg_app.test_client()
    login(client, "reader@example.org")
    ends = _transaction_ends(pg_app)
    for _ in range(12):
        assert client.get("/api/v1/me").status_code == 200
    assert ends and set(ends) == {"commit"}  # never a ROLLBACK, which drops prepared statements
    with pg_app.app_context():
        prepared = db.session.scalar(sa.text("SELECT count(*) FROM pg_prepared_statements"))
    assert prepared >= 1  # the user query, planned once for this connection


@pytest.mark.postgres
def test_a_transaction_that_wrote_is_left_to_roll_back(pg_app) -> None:
    from tumorboard.db import end_read_only_transaction

    with pg_app.app_context():
        user = make_user("coordinator", email="writer@example.org")
        db.session.commit()
        ends = _transaction_ends(pg_app)
        db.session.execute(sa.update(type(user)).where(type(user).id == user.id).values(name="Changed"))
        end_read_only_transaction(None)  # a Core write, not committed by the view: not ours to commit
        db.session.remove()
        assert ends == ["rollback"]
        assert db.session.get(type(user), user.id).name != "Changed"
        db.session.get(type(user), user.id).name = "Pending"  # an ORM change not even flushed
        end_read_only_transaction(None)
        db.session.remove()
        assert ends[-1] == "rollback" and db.session.get(type(user), user.id).name != "Pending"


def _direct(app, **kwargs) -> psycopg.Connection:
    """A psycopg connection of its own to the app's database (outside its pool)."""
    return psycopg.connect(app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", ""), **kwargs)


def _statement_states(app) -> list[tuple[str, str, int, str]]:
    """(HTTP method, psycopg's transaction status, backend pid, synchronous_commit) after every
    statement a request of the app runs from now on: 'IDLE' after a statement in autocommit,
    'INTRANS' in a transaction."""
    from flask import has_request_context, request

    seen: list[tuple[str, str, int, str]] = []

    def note(conn, *_):
        if has_request_context():
            raw = conn.connection.dbapi_connection
            commit = raw.execute("SELECT current_setting('synchronous_commit')").fetchone()[0]
            seen.append((request.method, raw.info.transaction_status.name, raw.info.backend_pid, commit))

    with app.app_context():
        sa.event.listen(db.engine, "after_cursor_execute", note)
    return seen


def _signed_in_with_a_case(app):
    """A coordinator's signed-in test client and the id of a committed case."""
    from tests.helpers import login

    with app.app_context():
        make_user("coordinator", email="reader@example.org")
        case_id = make_case().id
        db.session.commit()
    client = app.test_client()
    login(client, "reader@example.org")
    return client, case_id


@pytest.mark.postgres
def test_a_page_read_runs_in_autocommit_and_its_audit_row_is_committed_before_the_answer(pg_app) -> None:
    from tumorboard.audit.models import AuditEvent

    client, case_id = _signed_in_with_a_case(pg_app)
    states = _statement_states(pg_app)
    seen_during: list[int] = []

    def audit_visible_elsewhere(conn, _cursor, statement, *_):  # read from another connection
        if statement.startswith("INSERT INTO audit_events"):
            with _direct(pg_app) as other:
                seen_during.append(other.execute(
                    "SELECT count(*) FROM audit_events WHERE object_type = 'case' AND object_id = %s",
                    (str(case_id),)).fetchone()[0])

    with pg_app.app_context():
        sa.event.listen(db.engine, "after_cursor_execute", audit_visible_elsewhere)
    assert client.get(f"/cases/{case_id}").status_code == 200
    assert states and {state for _, state, _, _ in states} == {"IDLE"}  # no BEGIN, no COMMIT
    assert {commit for *_, commit in states} == {"off"}  # READS_SYNCHRONOUS_COMMIT
    assert seen_during == [1]  # committed as it was written, while the page was still being made
    with pg_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
            AuditEvent.object_type == "case", AuditEvent.object_id == str(case_id))) == 1


@pytest.mark.postgres
def test_after_a_read_the_same_pooled_connection_writes_in_a_transaction_again(scratch_postgres) -> None:
    from tests.helpers import post_form
    from tumorboard import create_app

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=scratch_postgres,  # one connection, reused
                     SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})
    with app.app_context():
        db.create_all()
    client, case_id = _signed_in_with_a_case(app)
    states = _statement_states(app)
    record = {"kind": "labs", "label": "Synthetic panel", "required": "y"}
    response = post_form(client, f"/cases/{case_id}/records", record, form_url=f"/cases/{case_id}")
    assert response.status_code == 302
    reads = {(state, pid, commit) for method, state, pid, commit in states if method == "GET"}
    writes = {(state, pid, commit) for method, state, pid, commit in states if method == "POST"}
    assert {(state, commit) for state, _, commit in reads} == {("IDLE", "off")}
    # not left in autocommit, and a change waits for the disk (the server's setting)
    assert writes and {(state, commit) for state, _, commit in writes} == {("INTRANS", "on")}
    assert {pid for _, pid, _ in reads} == {pid for _, pid, _ in writes}  # the same connection
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.postgres
def test_every_page_reads_in_autocommit_without_a_server_error(pg_app) -> None:
    """Every GET route, with the ids of a demo database, as a user holding every role: the
    tests' other requests run inside a test transaction, so this is where autocommit meets them all."""
    from tests.helpers import dummy_url, login
    from tumorboard.demo import seed_demo
    from tumorboard.vocab import ROLES

    with pg_app.app_context():
        seed_demo(cases=12)
        make_user(*ROLES, specialty="medical_oncology", email="everything@example.org")
        db.session.commit()
    client = pg_app.test_client()
    login(client, "everything@example.org")
    states = _statement_states(pg_app)
    answered = {}
    for rule in pg_app.url_map.iter_rules():
        if "GET" in (rule.methods or ()) and rule.endpoint not in {"static", "auth.logout"}:
            url = dummy_url(rule)
            answered[url] = client.get(url).status_code  # a 500 would raise here (TESTING)
    assert len(answered) > 40 and all(status < 500 for status in answered.values()), answered
    assert sum(status == 200 for status in answered.values()) > 30
    assert {state for method, state, *_ in states if method == "GET"} == {"IDLE"}


@pytest.mark.postgres
def test_reads_can_keep_the_servers_synchronous_commit(pg_app, monkeypatch) -> None:
    monkeypatch.setitem(pg_app.config, "READS_SYNCHRONOUS_COMMIT", "")
    client, case_id = _signed_in_with_a_case(pg_app)
    states = _statement_states(pg_app)
    assert client.get(f"/cases/{case_id}").status_code == 200
    assert states and {(state, commit) for _, state, _, commit in states} == {("IDLE", "on")}


def _terminate_pooled_backends(app) -> int:
    """Kill the backends of the app's idle pooled connections, as a restarted server would."""
    with _direct(app, autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchall())


@pytest.mark.postgres
def test_a_connection_idle_for_a_while_is_tested_and_replaced_when_cut(pg_app, monkeypatch) -> None:
    client, case_id = _signed_in_with_a_case(pg_app)
    assert client.get(f"/cases/{case_id}").status_code == 200
    monkeypatch.setitem(pg_app.config, "DATABASE_PING_AFTER_SECONDS", 0)  # "idle long enough"
    assert _terminate_pooled_backends(pg_app) >= 1
    assert client.get(f"/cases/{case_id}").status_code == 200  # tested, replaced, served


@pytest.mark.postgres
def test_a_connection_used_a_moment_ago_is_not_tested(pg_app, monkeypatch) -> None:
    """The price of not testing a busy connection: one request fails if its connection was cut
    meanwhile; the pool is then replaced and the next request is served."""
    from sqlalchemy.exc import OperationalError

    client, case_id = _signed_in_with_a_case(pg_app)
    monkeypatch.setitem(pg_app.config, "DATABASE_PING_AFTER_SECONDS", 3600)
    assert client.get(f"/cases/{case_id}").status_code == 200
    assert _terminate_pooled_backends(pg_app) >= 1
    with pytest.raises(OperationalError):
        client.get(f"/cases/{case_id}")
    assert client.get(f"/cases/{case_id}").status_code == 200
