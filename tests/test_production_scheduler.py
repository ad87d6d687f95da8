"""The scheduler process as production runs it: how fast a ready urgent case's invite leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from tumorboard.jobs.scheduler import INTERVALS, _deliver_right_after, build_scheduler


def test_a_pass_that_changed_agendas_runs_the_delivery_at_once(app) -> None:
    scheduler = build_scheduler(app, BackgroundScheduler)
    scheduler.start(paused=True)
    try:
        later = datetime.now(UTC) + timedelta(hours=1)
        scheduler.get_job("deliver-outbox").modify(next_run_time=later)
        wake = _deliver_right_after(scheduler)

        def ran(job_id: str, retval: object) -> None:
            wake(JobExecutionEvent(EVENT_JOB_EXECUTED, job_id, "default", datetime.now(UTC), retval))

        ran("assign-requested", 0)  # nothing changed: delivery keeps its time
        ran("sync-invitations", 4)  # not a pass
        assert scheduler.get_job("deliver-outbox").next_run_time == later
        ran("assign-requested", 3)
        assert scheduler.get_job("deliver-outbox").next_run_time <= datetime.now(UTC)
    finally:
        scheduler.shutdown(wait=False)


def test_a_requested_pass_is_looked_for_every_second() -> None:
    assert INTERVALS["assign-requested"] <= 1  # the ready → invite target is 5 s end to end


def test_idle_work_runs_under_sched_idle_and_leaves_the_caller_as_it_was() -> None:
    import os

    import pytest

    from tumorboard.jobs.idle import when_idle

    before = os.sched_getscheduler(0)
    assert when_idle(lambda: os.sched_getscheduler(0)) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) == before  # the caller keeps its policy
    with pytest.raises(ZeroDivisionError):  # an error of the work reaches the caller
        when_idle(lambda: 1 / 0)


def test_the_pass_solves_on_idle_cpu_time_only(app, monkeypatch) -> None:
    import os

    from tests.factories import ready_cases_and_two_meetings
    from tumorboard.planning import services

    real_solve = services.solve
    policies = []

    def solve(*args, **kwargs):
        policies.append(os.sched_getscheduler(0))
        return real_solve(*args, **kwargs)

    monkeypatch.setattr(services, "solve", solve)
    ready_cases_and_two_meetings(3)
    assert len(services.run_pass().changes) == 3  # placed as ever
    assert policies == [os.SCHED_IDLE]


def test_a_poll_still_at_work_is_skipped_quietly_a_long_job_still_warns(app, caplog) -> None:
    """APScheduler's own processing, with a run of each job still going: the second-by-second
    seal of the audit trail is skipped without a word, the quarter-hourly pass with a warning."""
    import logging
    import threading

    from apscheduler.events import EVENT_JOB_MAX_INSTANCES

    scheduler = build_scheduler(app, BackgroundScheduler)
    for job in scheduler.get_jobs():
        if job.id not in ("seal-audit", "assign"):
            scheduler.remove_job(job.id)  # nothing else runs against the test's database
    skipped: list[str] = []
    both = threading.Event()

    def on_skip(event) -> None:
        skipped.append(event.job_id)
        if len(skipped) == 2:
            both.set()

    scheduler.add_listener(on_skip, EVENT_JOB_MAX_INSTANCES)
    caplog.set_level(logging.WARNING, logger="apscheduler.scheduler")
    scheduler.start(paused=True)
    try:
        executor = scheduler._lookup_executor("default")
        for job_id in ("seal-audit", "assign"):
            executor._instances[job_id] = 1  # a run of each is still at work
        scheduler.resume()  # both are due now
        assert both.wait(timeout=30)
    finally:
        scheduler.shutdown(wait=False)
    assert sorted(skipped) == ["assign", "seal-audit"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "apscheduler.scheduler"]
    assert len(warnings) == 1 and '"assign (trigger' in warnings[0] and "maximum number" in warnings[0]
