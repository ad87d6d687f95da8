"""The scheduler's jobs: thin, idempotent, locked, each in an app context and one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app

from tumorboard.extensions import db
from tumorboard.jobs.locks import job_lock

log = logging.getLogger("tumorboard.jobs")

#: key in the session's info: what to run once the job's transaction has committed
_AFTER_COMMIT = "tumorboard.after_commit"


def after_commit(action: Callable[[], Any]) -> None:
    """Run `action` once the current job has committed (never after a rollback): maintenance
    that cannot run inside a transaction. Its failure is logged; the job's work stands."""
    db.session.info.setdefault(_AFTER_COMMIT, []).append(action)


def run_job(app: Flask, name: str, work: Callable[[], Any]) -> Any:
    """Run `work` under the job's lock and commit; another holder means skip, an error rollback.
    Then whatever the job asked to run `after_commit`."""
    with app.app_context():
        try:
            with job_lock(name) as held:
                if not held:
                    log.info("job %s: another process holds the lock, skipped", name)
                    db.session.rollback()
                    return None
                result = work()
                db.session.commit()
                if result:
                    log.info("job %s: %s", name, result)
        except Exception:
            db.session.rollback()
            log.exception("job %s failed; it will run again at its next time", name)
            raise
        else:
            _run_after_commit(name)
            return result
        finally:
            db.session.remove()


def _run_after_commit(name: str) -> None:
    for action in db.session.info.pop(_AFTER_COMMIT, []):
        try:
            action()
        except Exception:
            log.exception("job %s: %s after its commit failed (its work is committed)", name,
                          getattr(action, "__name__", action))


def materialise() -> int:
    from tumorboard.boards.services import materialise_meetings

    return materialise_meetings()


def assign(*, only_if_requested: bool = False, describe: bool = False) -> Any:
    """An assignment pass (invitations follow at commit); with only_if_requested, only when
    something asked for one. Returns the number of changes (or, with describe, the result and
    its human lines)."""
    from tumorboard.planning.services import (
        describe_changes,
        has_pending_requests,
        run_pass,
        vacuum_after_pass,
    )

    if only_if_requested and not has_pending_requests():
        return 0
    result = run_pass()
    if 0 < current_app.config["PLANNER_VACUUM_AFTER"] <= len(result.changes):
        after_commit(vacuum_after_pass)
    return (result, describe_changes(result.changes)) if describe else len(result.changes)


def deliver_outbox() -> int:
    """Send due outbox mail (each message commits on its own; rows are locked while sent)."""
    from tumorboard.notifications.services import deliver_due

    return len(deliver_due(batch=500).sent)  # a backlog (e.g. after an outage) drains in one run


def sync_invitations() -> int:
    """Catch-all: invitations of every upcoming meeting in line with who is needed."""
    from tumorboard.calendar.services import sync_upcoming_invitations

    return sync_upcoming_invitations()


def quorum_alerts() -> int:
    from tumorboard.calendar.quorum import send_quorum_alerts

    return send_quorum_alerts()


def seal_audit() -> int:
    """Chain the audit events committed since the last run (see audit/services.py)."""
    from tumorboard.audit.services import seal_pending

    return seal_pending()


JOBS: dict[str, Callable[[], Any]] = {
    "materialise": materialise,
    "assign": assign,
    "assign-requested": lambda: assign(only_if_requested=True),
    "deliver-outbox": deliver_outbox,
    "sync-invitations": sync_invitations,
    "quorum-alerts": quorum_alerts,
    "seal-audit": seal_audit,
}
