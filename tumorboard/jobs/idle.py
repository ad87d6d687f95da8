"""CPU-heavy work that must not delay a web request: the solver runs under SCHED_IDLE."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def when_idle(work: Callable[[], T]) -> T:
    """`work()`, in a thread of its own under Linux's SCHED_IDLE policy: it runs on CPU time no
    other process wants, and a web worker that wakes takes the core from it at once (a nice
    value only lowers its share of a contended core, and a waking worker may wait for the
    scheduler's granularity first). Threads it starts inherit the policy. The thread ends with
    the work, since an unprivileged thread cannot leave SCHED_IDLE. Where the policy is missing
    or refused, the work runs at the caller's priority."""

    def run() -> T:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError) as exc:  # not Linux, or a sandbox that refuses it
            log.warning("SCHED_IDLE unavailable (%s): the work runs at normal priority", exc)
        return work()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="idle-work") as pool:
        return pool.submit(run).result()
