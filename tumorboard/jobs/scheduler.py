"""The APScheduler 3 process (`flask tumorboard scheduler`). Web workers never start it.

Each process keeps its own in-memory job store (a job store is never shared between
schedulers); the per-job locks make a second process on another host harmless.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from tumorboard.jobs.tasks import JOBS, run_job

#: job name → seconds between runs
INTERVALS = {
    "materialise": 3600,
    "assign": 900,
    "assign-requested": 5,
    "deliver-outbox": 5,
    "sync-invitations": 60,
    "quorum-alerts": 900,
}


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
    return scheduler


def run_scheduler(app: Flask) -> None:
    """Start the scheduler in this process, niced so the solver yields to the web workers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # our jobs log what they did
    os.nice(app.config.get("SCHEDULER_NICE", 10))
    build_scheduler(app).start()
