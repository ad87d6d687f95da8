"""Cases on meeting agendas: assign, move, remove, reorder, pin.

Used by the agenda pages and API (source "coordinator") and by the scheduler (source "engine").
Services flush, the caller commits; every change is audited; refusals raise DomainError
(409 for conflicts with the meeting's state, 422 for a case that does not fit the board).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from tumorboard.audit.services import record
from tumorboard.boards.models import BoardSite, Meeting
from tumorboard.cases.models import Assignment, Case
from tumorboard.cases.services import change_status
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.db import inline_in, now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.vocab import ASSIGNMENT_SOURCES, SCHEDULABLE_CASE_STATUSES

Source = Literal["engine", "coordinator"]
Direction = Literal["up", "down"]


def _conflict(message: str, field: str) -> DomainError:
    return DomainError(message, fields={field: [message]}, status=409, code="conflict")


def agenda(meeting: Meeting) -> list[Assignment]:
    """The meeting's active assignments in agenda order."""
    return list(db.session.scalars(  # one round trip: the cases and their specialties joined
        sa.select(Assignment).where(Assignment.meeting_id == meeting.id, Assignment.active.is_(True))
        .options(joinedload(Assignment.case).joinedload(Case.specialties))
        .order_by(Assignment.position, Assignment.id)
    ).unique().all())


def minutes_used(meeting: Meeting) -> int:
    """Minutes taken by the meeting's active assignments."""
    return int(db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Assignment.minutes), 0))
        .where(Assignment.meeting_id == meeting.id, Assignment.active.is_(True))
    ) or 0)


def is_overbooked(meeting: Meeting) -> bool:
    """True when the agenda takes more minutes than the meeting's capacity."""
    return minutes_used(meeting) > meeting.capacity_minutes


def active_assignment(case: Case) -> Assignment | None:
    """The case's current (active) assignment, if any."""
    return db.session.scalar(
        sa.select(Assignment).where(Assignment.case_id == case.id, Assignment.active.is_(True)))


# The words of the refusals `assign` shares with the pass's bulk apply (planning/bulk.py), which
# must refuse the same changes in the same words.

def wrong_site(board_name: str, site: str) -> str:
    return f"{board_name} does not discuss {site} cases."


def not_schedulable(status: str) -> str:
    return f"Only a ready or scheduled case can be put on an agenda; this one is {status}."


TOO_SHORT = "A case takes at least one minute."
ON_FROZEN_AGENDA = "The case is on a frozen agenda: only a coordinator can move it."


def no_time_left(used: int, capacity: int, minutes: int) -> str:
    return (f"Not enough time left: {used} of {capacity} minutes are used and the case needs {minutes}. "
            "A coordinator can pin it to overbook.")


def serves_site(meeting: Meeting, site: str) -> bool:
    """Whether the meeting's board serves a tumor site."""
    return db.session.scalar(sa.select(BoardSite.board_id).where(
        BoardSite.board_id == meeting.board_id, BoardSite.site == site)) is not None


def lock_case(case_id: int) -> None:
    """Every agenda change starts here: lock the case's row (PostgreSQL) and re-read it and its
    assignments. Two writers of one case (two coordinators, a coordinator and the engine) take
    turns, and the second sees what the first committed instead of its own stale copy (which
    would insert a second active assignment: IntegrityError, or overwrite a pin)."""
    fresh = {"populate_existing": True}
    db.session.execute(sa.select(Case).where(Case.id == case_id).with_for_update().execution_options(**fresh))
    db.session.execute(sa.select(Assignment).where(Assignment.case_id == case_id).execution_options(**fresh))


def _renumber(meeting_id: int) -> None:
    rows = db.session.scalars(
        sa.select(Assignment).where(Assignment.meeting_id == meeting_id, Assignment.active.is_(True))
        .order_by(Assignment.position, Assignment.id)
    ).all()
    for index, row in enumerate(rows, start=1):
        row.position = index


def _check_open(meeting: Meeting, *, source: str, now: datetime, field: str = "meeting_id") -> None:
    """Refuse changes to an agenda that is closed for `source`."""
    if meeting.status != "scheduled":
        raise _conflict(f"The meeting is {meeting.status}: its agenda cannot change.", field)
    if meeting.start_at <= now:
        raise _conflict("The meeting has started or is over: its agenda cannot change.", field)
    if meeting.agenda_frozen_at is not None and source != "coordinator":
        raise _conflict("The agenda is frozen: only a coordinator can change it.", field)


def assign(case: Case, meeting: Meeting, *, source: Source, pinned: bool = False,
           minutes: int | None = None, now: datetime | None = None) -> Assignment:
    """Put `case` at the end of `meeting`'s agenda and mark it scheduled.

    Any other active assignment of the case ends. Refuses a cancelled, held or past meeting, a
    board that does not serve the case's site, a case that is not ready or scheduled, a frozen
    agenda (unless a coordinator asks) and going over capacity (unless a coordinator pins it:
    then it is allowed, audited as overbooked, and `is_overbooked(meeting)` tells the caller).
    """
    if source not in ASSIGNMENT_SOURCES:
        raise ValueError(f"unknown source {source!r}")
    lock_case(case.id)
    now = now or now_utc()
    _check_open(meeting, source=source, now=now)
    if not serves_site(meeting, case.site):
        raise DomainError(wrong_site(meeting.board.name, case.site),
                          fields={"meeting_id": [f"the board does not serve the site {case.site}"]})
    if case.status not in SCHEDULABLE_CASE_STATUSES:
        raise _conflict(not_schedulable(case.status), "case_id")
    minutes = case.minutes if minutes is None else minutes
    if minutes < 1:
        raise DomainError(TOO_SHORT, fields={"minutes": ["at least 1"]})
    current = active_assignment(case)
    if current is not None and current.meeting_id == meeting.id:
        changed = current.pinned != pinned or current.minutes != minutes
        current.pinned, current.minutes = pinned, minutes
        current.source = source
        if changed:
            record("assignment.update", "assignment", current.id,
                   details={"case_id": case.id, "meeting_id": meeting.id, "pinned": pinned})
        return current
    if current is not None:
        old_meeting = db.session.get(Meeting, current.meeting_id)
        if old_meeting is not None and old_meeting.agenda_frozen_at is not None and source != "coordinator":
            raise _conflict(ON_FROZEN_AGENDA, "case_id")
    used = minutes_used(meeting)
    overbooked = used + minutes > meeting.capacity_minutes
    if overbooked and not (pinned and source == "coordinator"):
        raise _conflict(no_time_left(used, meeting.capacity_minutes, minutes), "meeting_id")
    previous_meeting_id = None
    if current is not None:
        previous_meeting_id = current.meeting_id
        current.active = False
        db.session.flush()  # one active assignment per case: end the old one first
        _renumber(current.meeting_id)
    position = int(db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.max(Assignment.position), 0))
        .where(Assignment.meeting_id == meeting.id, Assignment.active.is_(True))) or 0) + 1
    assignment = db.session.scalar(sa.select(Assignment).where(
        Assignment.case_id == case.id, Assignment.meeting_id == meeting.id))
    if assignment is None:  # a case once removed from this meeting gets its old row back
        assignment = Assignment(case=case, case_id=case.id, meeting_id=meeting.id)
        db.session.add(assignment)
    assignment.active, assignment.pinned, assignment.source = True, pinned, source
    assignment.minutes, assignment.position = minutes, position
    change_status(case, "scheduled")
    db.session.flush()
    record("assignment.create" if previous_meeting_id is None else "assignment.move", "assignment",
           assignment.id, details={
               "case_id": case.id, "meeting_id": meeting.id, "from_meeting_id": previous_meeting_id,
               "source": source, "pinned": pinned, "minutes": minutes, "overbooked": overbooked,
           })
    return assignment


def _check_active(assignment: Assignment) -> Meeting:
    if not assignment.active:
        raise _conflict("This assignment has ended already.", "assignment_id")
    meeting = db.session.get(Meeting, assignment.meeting_id)
    assert meeting is not None  # noqa: S101 - foreign key
    return meeting


def unassign(assignment: Assignment, *, source: Source = "coordinator",
             now: datetime | None = None) -> Case:
    """Take a case off its meeting: the assignment ends, the case goes back to ready and
    `case_needs_scheduling` is sent. Returns the case."""
    lock_case(assignment.case_id)
    meeting = _check_active(assignment)
    _check_open(meeting, source=source, now=now or now_utc(), field="assignment_id")
    case = assignment.case
    assignment.active = False
    change_status(case, "ready")
    db.session.flush()
    _renumber(meeting.id)
    record("assignment.remove", "assignment", assignment.id,
           details={"case_id": case.id, "meeting_id": meeting.id, "source": source})
    case_needs_scheduling.send(case)
    return case


def move(assignment: Assignment, meeting: Meeting, *, source: Source = "coordinator",
         pinned: bool | None = None, now: datetime | None = None) -> Assignment:
    """Move an assigned case to another meeting (end of its agenda), keeping its minutes and, unless
    `pinned` is given, its pin. Same refusals as `assign`; the old meeting must still be open."""
    lock_case(assignment.case_id)
    old = _check_active(assignment)
    now = now or now_utc()
    _check_open(old, source=source, now=now, field="assignment_id")
    if old.id == meeting.id:
        raise DomainError("The case is on this meeting already.",
                          fields={"meeting_id": ["choose another meeting"]})
    return assign(assignment.case, meeting, source=source,
                  pinned=assignment.pinned if pinned is None else pinned,
                  minutes=assignment.minutes, now=now)


def reorder(meeting: Meeting, assignment: Assignment, direction: Direction) -> None:
    """Swap a case with its neighbour above ("up") or below ("down"); nothing at either end."""
    if direction not in ("up", "down"):
        raise DomainError("Direction must be up or down.", fields={"direction": ["up or down"]})
    if assignment.meeting_id != meeting.id:
        raise DomainError("The case is not on this meeting.",
                          fields={"assignment_id": ["not on this meeting"]})
    items = agenda(meeting)
    index = items.index(assignment) if assignment in items else -1
    target = index - 1 if direction == "up" else index + 1
    if index < 0 or not 0 <= target < len(items):
        return
    set_position(assignment, target + 1)


def set_position(assignment: Assignment, position: int) -> None:
    """Put an assigned case at `position` (1 = first) of its meeting's agenda."""
    lock_case(assignment.case_id)
    meeting = _check_active(assignment)
    if meeting.status != "scheduled":
        raise _conflict(f"The meeting is {meeting.status}: its agenda cannot change.", "position")
    items = [a for a in agenda(meeting) if a.id != assignment.id]
    position = max(1, min(position, len(items) + 1))
    items.insert(position - 1, assignment)
    old = assignment.position
    for index, row in enumerate(items, start=1):
        row.position = index
    db.session.flush()
    if old != position:
        record("assignment.reorder", "assignment", assignment.id,
               details={"meeting_id": meeting.id, "from": old, "to": position})


def set_pinned(assignment: Assignment, pinned: bool) -> Assignment:
    """Pin (the engine never moves it) or unpin an assigned case."""
    lock_case(assignment.case_id)
    meeting = _check_active(assignment)
    if meeting.status != "scheduled":
        raise _conflict(f"The meeting is {meeting.status}: its agenda cannot change.", "pinned")
    if assignment.pinned != pinned:
        assignment.pinned = pinned
        if pinned:
            assignment.source = "coordinator"
        db.session.flush()
        record("assignment.pin" if pinned else "assignment.unpin", "assignment", assignment.id,
               details={"case_id": assignment.case_id, "meeting_id": meeting.id})
    return assignment


def release_meeting(meeting: Meeting) -> list[Case]:
    """End every active assignment of a (cancelled) meeting: cases back to ready, then
    `case_needs_scheduling` for each. Returns the released cases."""
    released: list[Case] = []
    for assignment in agenda(meeting):
        assignment.active = False
        if assignment.case.status == "scheduled":
            change_status(assignment.case, "ready")
        released.append(assignment.case)
        record("assignment.remove", "assignment", assignment.id,
               details={"case_id": assignment.case_id, "meeting_id": meeting.id,
                        "reason": "meeting cancelled"})
    db.session.flush()
    for case in released:
        case_needs_scheduling.send(case)
    return released


def eligible_cases(meeting: Meeting) -> sa.Select[tuple[Case]]:
    """Ready or scheduled cases of the sites the meeting's board serves, not on this meeting."""
    on_meeting = sa.select(Assignment.case_id).where(
        Assignment.meeting_id == meeting.id, Assignment.active.is_(True))
    return (
        sa.select(Case)
        .where(inline_in(Case.status, SCHEDULABLE_CASE_STATUSES),  # the index of open cases
               Case.site.in_(sa.select(BoardSite.site).where(BoardSite.board_id == meeting.board_id)),
               Case.id.not_in(on_meeting))
        .order_by(Case.deadline, Case.id)
    )
