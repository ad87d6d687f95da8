"""The APScheduler 3 process (`flask tumorboard scheduler`). Web workers never start it.

Each process keeps its own in-memory job store (a job store is never shared between
schedulers); the per-job locks make a second process on another host harmless.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from tumorboard.jobs.tasks import JOBS, run_job

#: job name → seconds between runs
INTERVALS = {
    "materialise": 3600,
    "assign": 900,
    "assign-requested": 1,  #: one indexed one-row SELECT when nothing is asked: an urgent case waits ≤ 1 s
    "deliver-outbox": 5,
    "sync-invitations": 60,
    "quorum-alerts": 900,
    "seal-audit": 1,  #: an event waits ~1 s for its place in the chain
}
#: a job run this often or more is a poll: its next tick finding it still at work is expected
POLL_SECONDS = 10


def _not_a_busy_poll(record: logging.LogRecord) -> bool:
    """Filter of APScheduler's log: drop its "skipped: maximum number of running instances"
    warning for a poll, which finds its previous run still at work whenever that run takes longer
    than the interval (an urgent pass, a backlog to seal): one warning a second that says nothing
    is wrong. A job with a long interval that overruns it still warns."""
    job = record.args[0] if isinstance(record.args, tuple) and record.args else None
    interval = getattr(getattr(job, "trigger", None), "interval", None)
    return not ("maximum number of running instances" in str(record.msg)
                and interval is not None and interval.total_seconds() <= POLL_SECONDS)


logging.getLogger("apscheduler.scheduler").addFilter(_not_a_busy_poll)


def build_scheduler(app: Flask, scheduler_class: type[BaseScheduler] = BlockingScheduler) -> BaseScheduler:
    """Every job, run once at start then on its interval; coalesced, one instance each, and a
    misfire grace in minutes (APScheduler's 1 s default drops runs after any pause)."""
    scheduler = scheduler_class(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": app.config.get("JOB_MISFIRE_GRACE_SECONDS", 600)},
    )
    intervals = {**INTERVALS, **app.config.get("JOB_INTERVALS", {})}
    for name, work in JOBS.items():
        scheduler.add_job(run_job, "interval", seconds=intervals[name], args=(app, name, work),
                          id=name, name=name, next_run_time=datetime.now(UTC))
    scheduler.add_listener(_deliver_right_after(scheduler), EVENT_JOB_EXECUTED)
    return scheduler


#: jobs whose committed changes put invitations in the outbox
WAKES_DELIVERY = frozenset({"assign", "assign-requested"})


def _deliver_right_after(scheduler: BaseScheduler) -> Callable[[JobExecutionEvent], None]:
    """After a pass that changed agendas, run the delivery now instead of at its next tick (the
    invites of an urgent case would wait up to one more interval)."""

    def listener(event: JobExecutionEvent) -> None:
        if event.job_id in WAKES_DELIVERY and event.retval:
            job = scheduler.get_job("deliver-outbox")
            if job is not None:
                job.modify(next_run_time=datetime.now(UTC))

    return listener


def run_scheduler(app: Flask) -> None:
    """Start the scheduler in this process, niced so the solver yields to the web workers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # our jobs log what they did
    os.nice(app.config.get("SCHEDULER_NICE", 10))
    build_scheduler(app).start()
