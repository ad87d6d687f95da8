"""The scheduler on the database: Problem from rows, Plan applied, requests served, locks held."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_board, make_calendar_meeting, make_case, make_user, put_on_agenda
from tumorboard.cases.models import Assignment, Case
from tumorboard.cases.services import change_status
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.extensions import db
from tumorboard.jobs.locks import job_lock
from tumorboard.jobs.tasks import JOBS, run_job
from tumorboard.planning.models import PlanningRequest
from tumorboard.planning.services import build_problem, run_pass
from tumorboard.scheduling import parse_problem

NOW = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def ready_case(**kw) -> Case:
    kw.setdefault("diagnosis_date", date(2030, 12, 1))
    kw.setdefault("status", "ready")
    return make_case(ready_at=kw.pop("ready_at", NOW - timedelta(days=3)), **kw)


def week_of_meetings(board, weeks: int = 3, **kw):
    first = datetime(2031, 1, 7, 8, 0, tzinfo=UTC)  # Tuesday
    return [make_calendar_meeting(board, start=first + timedelta(weeks=w), **kw) for w in range(weeks)]


def active_meeting(case: Case) -> int | None:
    return db.session.scalar(sa.select(Assignment.meeting_id).where(
        Assignment.case_id == case.id, Assignment.active.is_(True)))


def test_problem_built_from_the_database_is_valid_and_complete(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=("pathology", "radiology"),
                       members=(make_user("specialist", specialty="genetics"),))
    meetings = week_of_meetings(board)
    case = ready_case(specialties=("pathology",))
    make_case(status="intake")  # not ready: not in the problem
    snapshot = build_problem()
    problem = parse_problem(snapshot.problem)  # the engine accepts it as it is
    assert [c.id for c in problem.cases] == [f"c{case.id}"]
    assert [m.id for m in problem.meetings] == [f"m{m.id}" for m in meetings]
    first = snapshot.problem["meetings"][0]
    assert first["sites"] == ["breast"]
    assert first["specialties"] == ["genetics", "pathology", "radiology"]  # core + members
    assert snapshot.problem["cases"][0]["deadline"].startswith(str(case.deadline))


def test_a_ready_case_lands_on_an_agenda_without_anyone_pressing_a_button(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=("pathology",))
    first, *_ = week_of_meetings(board)
    case = make_case(status="intake", specialties=("pathology",), diagnosis_date=date(2030, 12, 1))
    change_status(case, "ready")
    case.ready_at = NOW - timedelta(days=3)
    case_needs_scheduling.send(case)  # what the cases service does when the last record arrives
    db.session.flush()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PlanningRequest)) == 1

    assert run_job(app, "assign-requested", JOBS["assign-requested"]) == 1
    db.session.expire_all()  # the job ran in its own session
    assert active_meeting(case) == first.id
    assert case.status == "scheduled"
    assert "On " in case.schedule_note and board.name in case.schedule_note
    assert run_job(app, "assign-requested", JOBS["assign-requested"]) == 0  # request served


def test_dry_run_prints_changes_and_writes_nothing(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    week_of_meetings(board)
    case = ready_case(specialties=())
    result = app.test_cli_runner().invoke(args=["tumorboard", "assign", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"case {case.id}: unassigned → {board.name}" in result.output
    assert "dry run: nothing written" in result.output
    assert active_meeting(case) is None and case.status == "ready"


def test_a_case_whose_meeting_no_longer_fits_moves_and_a_pinned_one_stays(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    early, late, _ = week_of_meetings(board)
    # deadline before the late meeting: it must leave it for the early one
    moved = ready_case(specialties=(), planned_treatment_start=date(2031, 1, 10), status="scheduled")
    put_on_agenda(moved, late)
    pinned = ready_case(specialties=(), planned_treatment_start=date(2031, 1, 10), status="scheduled")
    put_on_agenda(pinned, late, pinned=True, source="coordinator")
    run_pass()
    assert active_meeting(moved) == early.id
    assert active_meeting(pinned) == late.id  # the coordinator's pin wins over the rule


def test_nothing_new_lands_on_a_frozen_agenda(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    frozen, open_one, _ = week_of_meetings(board)
    frozen.agenda_frozen_at = NOW
    case = ready_case(specialties=())
    run_pass()
    assert active_meeting(case) == open_one.id


def test_capacity_is_respected_and_the_rest_get_a_reason(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    (only,) = week_of_meetings(board, weeks=1)
    only.capacity_minutes = 20
    cases = [ready_case(specialties=(), minutes=10, planned_treatment_start=date(2031, 1, 8))
             for _ in range(3)]
    run_pass()
    placed = [c for c in cases if active_meeting(c) == only.id]
    left = [c for c in cases if active_meeting(c) is None]
    assert len(placed) == 2 and len(left) == 1
    assert left[0].schedule_note.startswith("Not placed:") and "full" in left[0].schedule_note


def test_an_urgent_case_with_no_meeting_in_time_asks_for_an_urgent_slot(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    make_calendar_meeting(board, start=NOW + timedelta(days=10))  # far beyond 72 h
    case = ready_case(specialties=(), urgency="urgent", ready_at=NOW - timedelta(hours=1))
    run_pass()
    assert active_meeting(case) is None
    assert case.urgent_slot_latest_start == NOW + timedelta(hours=72)  # max(ready_at, now) + 72 h
    assert "urgent" in case.schedule_note


def test_a_case_changed_by_a_coordinator_during_the_solve_is_left_alone(app, frozen_now) -> None:
    from tumorboard.planning.services import apply_plan, solve_snapshot

    board = make_board(sites=("breast",), specialties=())
    first, second, _ = week_of_meetings(board)
    case = ready_case(specialties=())
    snapshot = build_problem()
    plan = solve_snapshot(snapshot)
    put_on_agenda(case, second, pinned=True, source="coordinator")  # meanwhile, by hand
    case.status = "scheduled"
    result = apply_plan(snapshot, plan)
    assert result.skipped_stale == [case.id]
    assert active_meeting(case) == second.id


def test_a_job_skips_while_another_process_holds_its_lock(app, dialect) -> None:
    if dialect == "postgresql":
        other = db.engine.connect()
        other.begin()
        from tumorboard.jobs.locks import _key

        assert other.scalar(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _key("assign")})
        try:
            with job_lock("assign") as held:
                assert held is False
        finally:
            other.rollback()
            other.close()
    else:
        from filelock import FileLock

        path = f"{app.config['SCHEDULER_LOCK_DIR']}/job-assign.lock"
        with FileLock(path):
            with job_lock("assign") as held:
                assert held is False
    with job_lock("assign") as held:
        assert held is True


def test_the_scheduler_has_every_job_with_minutes_of_misfire_grace(app) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from tumorboard.jobs.scheduler import build_scheduler

    scheduler = build_scheduler(app, BackgroundScheduler)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)
    assert set(jobs) >= {"materialise", "assign", "assign-requested", "deliver-outbox", "sync-invitations",
                         "quorum-alerts"}
    assert all(job.misfire_grace_time >= 60 and job.coalesce and job.max_instances == 1
               for job in jobs.values())


def test_coordinator_creates_an_urgent_slot_in_one_step_and_the_case_is_placed(
    app, client, frozen_now
) -> None:
    from tests.helpers import login, post_form
    from tumorboard.boards.models import Meeting

    coordinator = make_user("coordinator")
    board = make_board(sites=("breast",), specialties=(), timezone="Europe/London")
    make_calendar_meeting(board, start=NOW + timedelta(days=10))
    case = ready_case(specialties=(), urgency="urgent", ready_at=NOW)
    run_pass()
    assert case.urgent_slot_latest_start is not None
    login(client, coordinator.email)
    listing = client.get("/urgent-requests").get_data(as_text=True)
    assert case.mrn in listing

    bad = post_form(client, f"/urgent-requests/{case.id}",
                    {"board_id": board.id, "start": "2030-12-31T08:00", "duration_minutes": 30})
    assert bad.status_code == 422 and "must be in the future" in bad.get_data(as_text=True)
    urgent_slots = sa.select(sa.func.count()).select_from(Meeting).where(Meeting.kind == "urgent")
    assert db.session.scalar(urgent_slots) == 0

    done = post_form(client, f"/urgent-requests/{case.id}",
                     {"board_id": board.id, "start": "2031-01-02T14:00", "duration_minutes": 30})
    assert done.status_code == 302
    db.session.expire_all()
    slot = db.session.scalar(sa.select(Meeting).where(Meeting.kind == "urgent"))
    assert slot.start_at == datetime(2031, 1, 2, 14, 0, tzinfo=UTC)  # London is on UTC in January
    assert active_meeting(case) == slot.id and case.status == "scheduled"
    assert case.urgent_slot_latest_start is None
    assert case.mrn not in client.get("/urgent-requests").get_data(as_text=True)


def test_urgent_requests_are_for_coordinators_only(app, client) -> None:
    from tests.helpers import login

    login(client, make_user("specialist", specialty="pathology").email)
    assert client.get("/urgent-requests").status_code == 403


def test_a_case_deferred_at_a_held_meeting_is_placed_again(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    past = make_calendar_meeting(board, start=NOW - timedelta(days=6), status="held")
    upcoming, *_ = week_of_meetings(board)
    case = ready_case(specialties=())  # deferred: back to ready, its old agenda entry is history
    put_on_agenda(case, past)
    run_pass()
    assert active_meeting(case) == upcoming.id
    history = db.session.scalars(sa.select(Assignment).where(Assignment.case_id == case.id)).all()
    assert {(a.meeting_id, a.active) for a in history} == {(past.id, False), (upcoming.id, True)}
