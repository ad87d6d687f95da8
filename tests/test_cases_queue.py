"""The case queue: order, filters, MRN search, pagination, and a constant number of queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from sqlalchemy import event

from tests.factories import make_board, make_calendar_meeting, make_case, make_user
from tests.helpers import login
from tumorboard.boards.models import Meeting
from tumorboard.cases import services
from tumorboard.cases.models import Assignment, Case, RecordItem
from tumorboard.cases.services import QueueFilters, queue_page
from tumorboard.extensions import db

TODAY = date(2026, 11, 20)


@pytest.fixture(autouse=True)
def frozen(app) -> Iterator[None]:
    with time_machine.travel(datetime(2026, 11, 20, 12, 0, tzinfo=UTC), tick=False):
        yield


@pytest.fixture
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        seen.append(statement)

    engine = db.session.get_bind().engine
    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def _ids(page: services.QueuePage) -> list[int]:
    return [row.case.id for row in page.rows]


def test_queue_is_ordered_by_deadline_then_urgent_first_then_id(app) -> None:
    onc = make_user("oncologist")
    late = make_case(oncologist=onc, deadline=TODAY + timedelta(days=30))
    routine_a = make_case(oncologist=onc, deadline=TODAY + timedelta(days=10))
    urgent = make_case(oncologist=onc, deadline=TODAY + timedelta(days=10), urgency="urgent")
    routine_b = make_case(oncologist=onc, deadline=TODAY + timedelta(days=10))
    early = make_case(oncologist=onc, deadline=TODAY - timedelta(days=2), status="ready")
    assert _ids(queue_page(QueueFilters())) == [early.id, urgent.id, routine_a.id, routine_b.id, late.id]


def test_default_status_filter_shows_open_cases_only(app) -> None:
    onc = make_user("oncologist")
    by_status = {s: make_case(oncologist=onc, status=s) for s in
                 ("intake", "ready", "scheduled", "discussed", "closed", "withdrawn")}
    open_ids = set(_ids(queue_page(QueueFilters())))
    assert open_ids == {by_status[s].id for s in ("intake", "ready", "scheduled")}
    assert set(_ids(queue_page(QueueFilters(status="all")))) == {c.id for c in by_status.values()}
    assert _ids(queue_page(QueueFilters(status="closed"))) == [by_status["closed"].id]


def test_filters_by_site_urgency_and_risk_combine(app) -> None:
    onc = make_user("oncologist")
    lung_urgent_soon = make_case(oncologist=onc, site="lung", urgency="urgent",
                                 deadline=TODAY + timedelta(days=3))
    make_case(oncologist=onc, site="lung", deadline=TODAY + timedelta(days=3))
    make_case(oncologist=onc, site="breast", urgency="urgent", deadline=TODAY + timedelta(days=3))
    make_case(oncologist=onc, site="lung", urgency="urgent", deadline=TODAY + timedelta(days=60))
    page = queue_page(QueueFilters(site="lung", urgency="urgent", risk="at_risk"))
    assert _ids(page) == [lung_urgent_soon.id] and page.total == 1
    assert page.rows[0].risk == "at_risk" and page.rows[0].days_left == 3


def test_mrn_search_is_exact_or_prefix_and_case_insensitive(app) -> None:
    onc = make_user("oncologist")
    a = make_case(oncologist=onc, mrn="AB-1001")
    b = make_case(oncologist=onc, mrn="ab-1002")
    make_case(oncologist=onc, mrn="XAB-1003")
    make_case(oncologist=onc, mrn="AB_X")  # "_" is not a wildcard
    assert set(_ids(queue_page(QueueFilters(mrn="ab-10")))) == {a.id, b.id}
    assert _ids(queue_page(QueueFilters(mrn="Ab-1001"))) == [a.id]
    assert _ids(queue_page(QueueFilters(mrn="AB-_"))) == []
    assert _ids(queue_page(QueueFilters(mrn="%"))) == []


def test_pagination_walks_every_case_once(app) -> None:
    onc = make_user("oncologist")
    made = [make_case(oncologist=onc, deadline=TODAY + timedelta(days=n % 7)) for n in range(23)]
    pages = [queue_page(QueueFilters(), page=n, per_page=10) for n in (1, 2, 3)]
    assert [len(p.rows) for p in pages] == [10, 10, 3]
    assert pages[0].total == 23 and pages[0].pages == 3
    walked = [i for p in pages for i in _ids(p)]
    assert sorted(walked) == sorted(c.id for c in made) and len(set(walked)) == 23
    past_the_end = queue_page(QueueFilters(), page=9, per_page=10)
    assert past_the_end.rows == [] and past_the_end.total == 23  # the pager still knows the count
    assert queue_page(QueueFilters(site="skin")).total == 0
    assert queue_page(QueueFilters(), per_page=10_000).per_page == services.MAX_PER_PAGE


def test_queue_rows_carry_records_progress_and_meeting_in_two_queries(app, statements) -> None:
    onc = make_user("oncologist")
    board = make_board(name="Breast MDT")
    meeting = Meeting(board_id=board.id, start_at=datetime(2026, 11, 24, 8, tzinfo=UTC),
                      end_at=datetime(2026, 11, 24, 9, tzinfo=UTC), ical_uid="m-queue@test")
    db.session.add(meeting)
    db.session.flush()
    cases = [make_case(oncologist=onc, status="scheduled") for _ in range(5)]
    for case in cases:
        case.records = [RecordItem(kind="imaging", label="CT", received_at=datetime(2026, 11, 1, tzinfo=UTC)),
                        RecordItem(kind="labs", label="Bloods"),
                        RecordItem(kind="other", label="Optional", required=False)]
        db.session.add(Assignment(case_id=case.id, meeting_id=meeting.id))
    db.session.add(Assignment(case_id=make_case(oncologist=onc).id, meeting_id=meeting.id, active=False))
    db.session.flush()
    db.session.expire_all()
    statements.clear()
    page = queue_page(QueueFilters())
    assert len(statements) == 2  # rows + count, however many cases are on the page
    assert page.total == 6
    scheduled = [r for r in page.rows if r.case.status == "scheduled"]
    assert all((r.records_received, r.records_required) == (1, 2) for r in scheduled)
    assert all(r.board_name == "Breast MDT" and r.meeting_id == meeting.id for r in scheduled)
    inactive_only = next(r for r in page.rows if r.case.status == "intake")
    assert inactive_only.meeting_id is None  # an ended assignment is not the case's meeting


def test_queue_stays_paged_at_ten_thousand_cases(app, statements) -> None:
    onc = make_user("oncologist")
    rows = [{"mrn": f"BULK-{n:05d}", "display_name": "Synthetic", "site": "breast",
             "diagnosis_date": date(2026, 10, 1), "question": "q", "referring_oncologist_id": onc.id,
             "urgency": "urgent" if n % 9 == 0 else "routine",
             "deadline": TODAY + timedelta(days=n % 120 - 10),
             "minutes": 10, "status": ("intake", "ready", "scheduled", "closed")[n % 4]}
            for n in range(10_000)]
    db.session.execute(sa.insert(Case), rows)
    statements.clear()
    page = queue_page(QueueFilters(), page=40, per_page=50)
    assert len(statements) == 2 and "LIMIT" in statements[0].upper()
    assert len(page.rows) == 50 and page.total == 7_500 and page.pages == 150
    deadlines = [r.case.deadline for r in page.rows]
    assert deadlines == sorted(deadlines)
    breached = queue_page(QueueFilters(risk="breached"), per_page=1)
    assert breached.total == db.session.scalar(sa.select(sa.func.count(Case.id)).where(
        Case.status.in_(("intake", "ready", "scheduled")), Case.deadline < TODAY))


def test_queue_page_shows_risk_colour_records_and_paging_links(app, client) -> None:
    coordinator = make_user("coordinator")
    onc = make_user("oncologist")
    for n in range(52):
        make_case(oncologist=onc, mrn=f"Q-{n:03d}", deadline=TODAY + timedelta(days=n - 1),
                  urgency="urgent" if n == 2 else "routine")
    login(client, coordinator.email)
    html = client.get("/cases").get_data(as_text=True)
    assert "52 cases" in html
    assert 'class="risk-breached"' in html and 'class="risk-at_risk"' in html
    assert 'class="risk-on_track"' in html and "badge urgent" in html
    assert "Page 1 of 2" in html and "page=2" in html
    second = client.get("/cases?page=2").get_data(as_text=True)
    assert "Q-050" in second and "Q-000" not in second
    found = client.get("/cases?mrn=q-01&risk=at_risk").get_data(as_text=True)
    assert "Q-010" in found and "Q-020" not in found
    bad = client.get("/cases?site=elbow")
    assert bad.status_code == 200 and "Correct the filters" in bad.get_data(as_text=True)


def test_reading_the_queue_is_audited_with_the_cases_shown(app, client) -> None:
    from tumorboard.audit.models import AuditEvent

    coordinator = make_user("coordinator")
    onc = make_user("oncologist")
    shown = [make_case(oncologist=onc, mrn=f"AUD-{n}", deadline=TODAY + timedelta(days=n)) for n in range(3)]
    login(client, coordinator.email)
    assert client.get("/cases?mrn=aud").status_code == 200
    read = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "queue.read")).all()
    assert len(read) == 1 and read[0].actor_id == coordinator.id
    assert read[0].details == {"case_ids": [c.id for c in shown], "page": 1}
    client.get("/cases?mrn=nobody")  # no names shown, nothing to record
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "queue.read")) == 1


def test_queue_page_links_each_case_and_its_meeting_in_the_users_zone(app, client) -> None:
    coordinator = make_user("coordinator", timezone="Europe/Paris")
    onc = make_user("oncologist")
    board = make_board(name="Breast MDT")
    meeting = make_calendar_meeting(board, start=datetime(2026, 11, 24, 8, tzinfo=UTC))
    placed = make_case(oncologist=onc, mrn="LINK-1", status="scheduled", site="upper_gi")
    make_case(oncologist=onc, mrn="LINK-2", deadline=TODAY + timedelta(days=40))
    db.session.add(Assignment(case_id=placed.id, meeting_id=meeting.id))
    db.session.flush()
    login(client, coordinator.email)
    html = client.get("/cases").get_data(as_text=True)
    assert f'<a href="/cases/{placed.id}">LINK-1</a>' in html and "<td>Upper gi</td>" in html
    assert f'<a href="/meetings/{meeting.id}">Breast MDT, Tue 24 Nov 09:00</a>' in html  # Paris time
    assert "<td>Scheduled</td>" in html and "<td>0/0</td>" in html and "<td>—</td>" in html


def test_the_total_is_counted_again_only_after_queue_total_seconds(app, statements, monkeypatch) -> None:
    clock = iter([100.0, 102.0, 106.0])
    monkeypatch.setattr(services, "monotonic", lambda: next(clock))
    monkeypatch.setattr(services, "_TOTALS", {})
    monkeypatch.setitem(app.config, "QUEUE_TOTAL_SECONDS", 5)
    onc = make_user("oncologist")
    make_case(oncologist=onc)
    assert queue_page(QueueFilters()).total == 1
    newer = make_case(oncologist=onc)
    statements.clear()
    two_seconds_later = queue_page(QueueFilters())
    assert len(statements) == 1  # the rows only: they are always fresh, the total may lag
    assert newer.id in [r.case.id for r in two_seconds_later.rows] and two_seconds_later.total == 1
    assert queue_page(QueueFilters()).total == 2  # six seconds on: counted again


def test_queue_rows_escape_what_people_typed(app, client) -> None:
    coordinator = make_user("coordinator")
    onc = make_user("oncologist")
    board = make_board(name='MDT <b onmouseover="x()">&')
    meeting = make_calendar_meeting(board, start=datetime(2026, 11, 24, 8, tzinfo=UTC))
    case = make_case(oncologist=onc, mrn="ESC-1", display_name='<script>alert("x")</script> & Co',
                     status="scheduled")
    db.session.add(Assignment(case_id=case.id, meeting_id=meeting.id))
    db.session.flush()
    login(client, coordinator.email)
    html = client.get("/cases").get_data(as_text=True)
    assert "<td>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co</td>" in html
    assert "MDT &lt;b onmouseover=&quot;x()&quot;&gt;&amp;, Tue 24 Nov" in html
    assert "<script>" not in html and "<b onmouseover" not in html


def test_the_filters_show_what_each_request_asked_for(app, client) -> None:
    login(client, make_user("coordinator").email)
    for _ in range(2):  # the second round is served from the filters kept per choice
        lung = client.get("/cases?site=lung&status=all").get_data(as_text=True)
        assert '<option selected value="lung">' in lung and '<option selected value="all">' in lung
        breast = client.get("/cases?site=breast").get_data(as_text=True)
        assert '<option selected value="breast">' in breast and '<option selected value="lung">' not in breast
        assert '<option selected value="open">' in breast
        typed = client.get("/cases?site=breast&mrn=Q-12").get_data(as_text=True)
        assert 'value="Q-12"' in typed and '<option selected value="breast">' in typed
        wrong = client.get("/cases?site=breast&risk=doomed").get_data(as_text=True)
        assert "Not a valid choice" in wrong and 'aria-invalid="true"' in wrong
        assert "Not a valid choice" not in client.get("/cases?site=breast").get_data(as_text=True)


def _many_cases(statuses_and_deadlines: list[tuple[str, date]]) -> None:
    """Breast cases in bulk (thousands, as a service holds), the planner's statistics taken."""
    onc = make_user("oncologist")
    db.session.execute(sa.insert(Case), [
        {"mrn": f"BULK-{n:05d}", "display_name": f"Synthetic {n}", "site": "breast",
         "diagnosis_date": TODAY, "question": "Synthetic.", "referring_oncologist_id": onc.id,
         "urgency": "routine", "status": status, "deadline": deadline}
        for n, (status, deadline) in enumerate(statuses_and_deadlines)])
    db.session.execute(sa.text("ANALYZE cases"))


@pytest.mark.postgres
def test_the_queue_is_planned_once_not_at_every_page(dialect: str) -> None:
    """psycopg prepares a statement run often; PostgreSQL plans it once only when that plan costs
    about what one made for the values would. A LIMIT sent as a parameter made the queue's
    statement look 20 times dearer planned once, so it was planned again at every page."""
    if dialect != "postgresql":
        pytest.skip("a PostgreSQL plan")
    _many_cases([("ready", TODAY + timedelta(days=n % 90)) for n in range(3000)])  # as in service
    for _ in range(12):  # psycopg prepares at the 5th run, PostgreSQL decides after 5 plans
        assert len(queue_page(QueueFilters(site="breast")).rows) == 50
    plans = db.session.execute(sa.text("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                       "WHERE statement LIKE '%picked%'")).all()
    assert plans and plans[0].generic_plans > 0, plans


@pytest.mark.postgres
def test_the_queue_finds_its_page_among_the_open_cases_alone(dialect: str, statements: list[str]) -> None:
    """A service in use holds a year of closed cases, each with an earlier deadline than any open
    one. The queue's page is found in the index of open cases, not by walking past the closed; the
    statuses are in the SQL itself, so a plan made once (for any values) can use that index."""
    if dialect != "postgresql":
        pytest.skip("a PostgreSQL plan")
    _many_cases([("closed", TODAY - timedelta(days=400 - n // 10)) for n in range(3000)]
                + [("ready", TODAY + timedelta(days=n % 90)) for n in range(300)])
    statements.clear()
    page = queue_page(QueueFilters())
    assert len(page.rows) == 50 and {row.case.status for row in page.rows} == {"ready"}
    assert "IN ('intake', 'ready', 'scheduled')" in statements[0]
    query = services._queue_statements(*services._queue_shape(QueueFilters()))[0].params(limit=50, offset=0)
    plan = "\n".join(row[0] for row in db.session.connection().exec_driver_sql("EXPLAIN (ANALYZE) " + str(
        query.compile(db.session.get_bind(), compile_kwargs={"literal_binds": True}))))
    assert "ix_cases_open_deadline" in plan and "Rows Removed by Filter" not in plan, plan
