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
