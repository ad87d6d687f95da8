"""The scheduler's jobs: thin, idempotent, locked, each in an app context and one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

from tumorboard.extensions import db
from tumorboard.jobs.locks import job_lock

log = logging.getLogger("tumorboard.jobs")


def run_job(app: Flask, name: str, work: Callable[[], Any]) -> Any:
    """Run `work` under the job's lock and commit; another holder means skip, an error rollback."""
    with app.app_context():
        try:
            with job_lock(name) as held:
                if not held:
                    log.info("job %s: another process holds the lock, skipped", name)
                    db.session.rollback()
                    return None
                result = work()
                db.session.commit()
                return result
        except Exception:
            db.session.rollback()
            log.exception("job %s failed; it will run again at its next time", name)
            raise
        finally:
            db.session.remove()


def materialise() -> int:
    from tumorboard.boards.services import materialise_meetings

    return materialise_meetings()


def assign(*, only_if_requested: bool = False, describe: bool = False) -> Any:
    """An assignment pass, then invitations for the meetings it changed; with only_if_requested,
    only when something asked for one. Returns the number of changes (or, with describe, the
    result and its human lines)."""
    from tumorboard.planning.services import describe_changes, has_pending_requests, run_pass

    if only_if_requested and not has_pending_requests():
        return 0
    result = run_pass()
    _sync_invitations(result.touched_meetings)
    return (result, describe_changes(result.changes)) if describe else len(result.changes)


def _sync_invitations(meeting_ids: set[int]) -> None:
    try:
        from tumorboard.calendar.services import sync_meeting_invitations
    except ImportError:  # calendar invites not installed in this build
        return
    from tumorboard.boards.models import Meeting

    for meeting_id in sorted(meeting_ids):
        sync_meeting_invitations(db.session.get(Meeting, meeting_id))


JOBS: dict[str, Callable[[], Any]] = {
    "materialise": materialise,
    "assign": assign,
    "assign-requested": lambda: assign(only_if_requested=True),
}
