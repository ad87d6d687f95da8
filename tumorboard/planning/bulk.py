"""Applying a Plan set-based: the rules of `assign` / `unassign` (source "engine") checked for every
change at once and written with a few Core statements, whatever the number of cases (through those
ORM services a change costs ~15 statements; a 10,000-case pass took minutes).

The order is that of applying change by change: every case the plan moves is taken off its meeting
first (so the minutes it frees are there for the cases placed after), then the cases are placed in
the plan's order (deadline, id), each at the end of its meeting's agenda. A change the rules refuse
is left for the next pass, with the message `assign` / `unassign` would have given.
The caller holds the rows (planning.services._lock_and_read_states) and has checked the cases
have not changed since the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tumorboard.audit.services import record_many
from tumorboard.boards.models import BoardSite, Meeting
from tumorboard.calendar.tracking import mark_meetings_touched
from tumorboard.cases.assignments import (  # the rules' own refusals
    ON_FROZEN_AGENDA,
    TOO_SHORT,
    _check_open,
    no_time_left,
    not_schedulable,
    wrong_site,
)
from tumorboard.cases.models import Assignment, Case
from tumorboard.cases.services import change_status_many
from tumorboard.db import now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.rows import expire_held, id_in, update_rows
from tumorboard.vocab import SCHEDULABLE_CASE_STATUSES

if TYPE_CHECKING:
    from tumorboard.planning.services import Change

_ASSIGNMENTS = Assignment.__table__
_CASES = Case.__table__
SOURCE = "engine"


@dataclass(frozen=True)
class _Active:
    """A case's active assignment row."""

    id: int
    case_id: int
    meeting_id: int


@dataclass(frozen=True)
class _Placement:
    case_id: int
    meeting_id: int
    minutes: int
    position: int
    previous: _Active | None  #: the case's assignment it ends (deferred at a past meeting)


@dataclass
class Applied:
    #: case id → why the rules refused its change
    refused: dict[int, str] = field(default_factory=dict)
    #: cases taken off a meeting (in plan order)
    removed: list[int] = field(default_factory=list)


def batches(changes: Sequence[Change], size: int) -> list[list[Change]]:
    """`changes` cut into batches of about `size` that can be applied one after the other with
    the result of applying them all at once: changes linked through a meeting (a case leaving it
    frees the minutes a case joining it may need) stay in one batch, in plan order."""
    parent: dict[int, int] = {}

    def root(meeting: int) -> int:
        while parent.setdefault(meeting, meeting) != meeting:
            parent[meeting] = parent[parent[meeting]]
            meeting = parent[meeting]
        return meeting

    for change in changes:
        linked = [root(m) for m in (change.before, change.after) if m is not None]
        for other in linked[1:]:
            parent[other] = linked[0]
    groups: dict[int | None, list[Change]] = {}
    for change in changes:  # in plan order, so each group is too
        meeting = change.before if change.before is not None else change.after
        groups.setdefault(None if meeting is None else root(meeting), []).append(change)
    cut: list[list[Change]] = [[]]
    for group in groups.values():
        if cut[-1] and len(cut[-1]) + len(group) > size:
            cut.append([])
        cut[-1].extend(group)
    order = {change.case_id: i for i, change in enumerate(changes)}
    return [sorted(batch, key=lambda change: order[change.case_id]) for batch in cut if batch]


def apply_changes(changes: Sequence[Change], meetings: Mapping[int, Meeting], now: datetime | None = None,
                  *, also: Mapping[int, Mapping[str, Any]] | None = None) -> Applied:
    """Apply the engine's `changes` (locked, fresh) on `meetings` (id → Meeting, re-read under lock);
    `also`: case id → column values written with the case's new status (`change_status_many`)."""
    now, also = now or now_utc(), also or {}
    db.session.flush()  # Core statements below: the session's own changes go first
    applied = Applied()
    touched: set[int] = set()
    leaving = [(c.case_id, c.before) for c in changes if c.before is not None]
    applied.removed = _take_off(leaving, meetings, applied.refused, touched, now, also)
    joining = [(c.case_id, c.after) for c in changes
               if c.after is not None and c.case_id not in applied.refused]
    _place(joining, meetings, applied.refused, touched, now, also)
    mark_meetings_touched(db.session, touched)  # their invitations follow at commit
    return applied


# --- taking cases off ---------------------------------------------------------------------

def _take_off(moves: list[tuple[int, int]], meetings: Mapping[int, Meeting], refused: dict[int, str],
              touched: set[int], now: datetime, also: Mapping[int, Mapping[str, Any]]) -> list[int]:
    """`unassign` for each (case, meeting it leaves): the assignment ends, the case is ready again."""
    active = _active_rows(case_id for case_id, _ in moves)
    rows: list[_Active] = []
    for case_id, meeting_id in moves:
        row = active.get(case_id)
        if row is None or row.meeting_id != meeting_id:
            refused[case_id] = "This assignment has ended already."
        elif (message := _removal_refusal(meetings[meeting_id], now)) is not None:
            refused[case_id] = message
        else:
            rows.append(row)
    if not rows:
        return []
    _end(rows)
    change_status_many(_statuses(row.case_id for row in rows), "ready", now=now, also=also)
    touched.update(row.meeting_id for row in rows)
    record_many(("assignment.remove", "assignment", row.id,
                 {"case_id": row.case_id, "meeting_id": row.meeting_id, "source": SOURCE}) for row in rows)
    return [row.case_id for row in rows]


def _removal_refusal(meeting: Meeting, now: datetime) -> str | None:
    """What `unassign(…, source="engine")` refuses on an active assignment, in its words."""
    try:
        _check_open(meeting, source=SOURCE, now=now, field="assignment_id")
    except DomainError as exc:
        return exc.message
    return None


# --- placing cases ------------------------------------------------------------------------

def _place(moves: list[tuple[int, int]], meetings: Mapping[int, Meeting], refused: dict[int, str],
           touched: set[int], now: datetime, also: Mapping[int, Mapping[str, Any]]) -> None:
    """`assign` for each (case, meeting), in order: at the end of the agenda, the case scheduled."""
    if not moves:
        return
    ids = [case_id for case_id, _ in moves]
    cases = {row.id: row for row in db.session.execute(
        sa.select(_CASES.c.id, _CASES.c.status, _CASES.c.site, _CASES.c.minutes)
        .where(id_in(_CASES.c.id, ids)))}
    previous = _active_rows(ids)  # left after the removals: on a past meeting (deferred there)
    frozen = _frozen({row.meeting_id for row in previous.values()})
    targets = {meeting_id for _, meeting_id in moves}
    served = _served({meetings[m].board_id for m in targets})
    used, last = _agenda_totals(targets)
    placements: list[_Placement] = []
    for case_id, meeting_id in moves:
        meeting, case, current = meetings[meeting_id], cases[case_id], previous.get(case_id)
        message = _placement_refusal(meeting, case, current, served, frozen, used[meeting.id], now)
        if message is not None:
            refused[case_id] = message
            continue
        used[meeting.id] += case.minutes
        last[meeting.id] += 1
        placements.append(_Placement(case.id, meeting.id, case.minutes, last[meeting.id], current))
    if not placements:
        return
    ended = [p.previous for p in placements if p.previous is not None]
    if ended:  # one active assignment per case: end the old ones first
        _end(ended)
    assignment_ids = _write_assignments(placements, now)
    change_status_many({p.case_id: cases[p.case_id].status for p in placements}, "scheduled", now=now,
                       also=also)
    touched.update(p.meeting_id for p in placements)
    touched.update(row.meeting_id for row in ended)
    record_many((
        "assignment.create" if p.previous is None else "assignment.move", "assignment",
        assignment_ids[p.case_id], {
            "case_id": p.case_id, "meeting_id": p.meeting_id,
            "from_meeting_id": p.previous.meeting_id if p.previous else None, "source": SOURCE,
            "pinned": False, "minutes": p.minutes, "overbooked": False,
        }) for p in placements)


def _placement_refusal(meeting: Meeting, case: Any, current: _Active | None, served: set[tuple[int, str]],
                       frozen: set[int], used: int, now: datetime) -> str | None:
    """What `assign(case, meeting, source="engine")` refuses, in its order and words. (The engine
    never places a case where it already is: `diff` only lists cases that move.)"""
    try:
        _check_open(meeting, source=SOURCE, now=now)
    except DomainError as exc:
        return exc.message
    if (meeting.board_id, case.site) not in served:
        return wrong_site(meeting.board.name, case.site)
    if case.status not in SCHEDULABLE_CASE_STATUSES:
        return not_schedulable(case.status)
    if case.minutes < 1:
        return TOO_SHORT
    if current is not None and current.meeting_id in frozen:
        return ON_FROZEN_AGENDA
    if used + case.minutes > meeting.capacity_minutes:
        return no_time_left(used, meeting.capacity_minutes, case.minutes)
    return None


def _write_assignments(placements: list[_Placement], now: datetime) -> dict[int, int]:
    """Activate each case's old row on the meeting (case and meeting are unique together) or
    insert one; case id → assignment id."""
    ids = [p.case_id for p in placements]
    existing = {(case_id, meeting_id): row_id for row_id, case_id, meeting_id in db.session.execute(
        sa.select(_ASSIGNMENTS.c.id, _ASSIGNMENTS.c.case_id, _ASSIGNMENTS.c.meeting_id)
        .where(id_in(_ASSIGNMENTS.c.case_id, ids),
               id_in(_ASSIGNMENTS.c.meeting_id, {p.meeting_id for p in placements})))}
    values = {"active": True, "pinned": False, "source": SOURCE}
    update_rows(Assignment, [
        {"id": existing[p.case_id, p.meeting_id], "minutes": p.minutes, "position": p.position}
        for p in placements if (p.case_id, p.meeting_id) in existing], **values)
    new = [{**values, "case_id": p.case_id, "meeting_id": p.meeting_id, "minutes": p.minutes,
            "position": p.position, "created_at": now}
           for p in placements if (p.case_id, p.meeting_id) not in existing]
    if new:
        db.session.execute(sa.insert(_ASSIGNMENTS), new)
    return {row.case_id: row.id for row in _active_rows(ids).values()}


# --- reading and writing rows -------------------------------------------------------------

def _active_rows(case_ids: Iterable[int]) -> dict[int, _Active]:
    """case id → its active assignment."""
    rows = db.session.execute(
        sa.select(_ASSIGNMENTS.c.id, _ASSIGNMENTS.c.case_id, _ASSIGNMENTS.c.meeting_id)
        .where(id_in(_ASSIGNMENTS.c.case_id, list(case_ids)), _ASSIGNMENTS.c.active.is_(True)))
    return {case_id: _Active(row_id, case_id, meeting_id) for row_id, case_id, meeting_id in rows}


def _statuses(case_ids: Iterable[int]) -> dict[int, str]:
    return dict(db.session.execute(
        sa.select(_CASES.c.id, _CASES.c.status).where(id_in(_CASES.c.id, list(case_ids)))).all())


def _frozen(meeting_ids: set[int]) -> set[int]:
    """Of these meetings, those with a frozen agenda."""
    if not meeting_ids:
        return set()
    return set(db.session.scalars(sa.select(Meeting.id).where(
        Meeting.id.in_(meeting_ids), Meeting.agenda_frozen_at.is_not(None))))


def _served(board_ids: set[int]) -> set[tuple[int, str]]:
    """(board id, tumor site) for every site these boards serve."""
    return set(db.session.execute(
        sa.select(BoardSite.board_id, BoardSite.site).where(BoardSite.board_id.in_(board_ids))).all())


def _agenda_totals(meeting_ids: set[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Minutes used and the last position on each meeting's agenda (active assignments)."""
    used, last = dict.fromkeys(meeting_ids, 0), dict.fromkeys(meeting_ids, 0)
    columns = _ASSIGNMENTS.c
    for meeting_id, minutes, position in db.session.execute(
        sa.select(columns.meeting_id, sa.func.sum(columns.minutes), sa.func.max(columns.position))
        .where(columns.meeting_id.in_(meeting_ids), columns.active.is_(True)).group_by(columns.meeting_id)
    ):
        used[meeting_id], last[meeting_id] = int(minutes or 0), int(position or 0)
    return used, last


def _end(rows: Sequence[_Active]) -> None:
    """End these assignments as ending them one by one in this order did: each end renumbers the
    rest of its agenda 1..n, so a row ended after another of the same meeting keeps the position
    that renumbering gave it. One UPDATE for the ends, one executemany UPDATE for the positions."""
    columns = _ASSIGNMENTS.c
    agendas: dict[int, list[int]] = {}
    before: dict[int, int] = {}
    for row_id, meeting_id, position in db.session.execute(
        sa.select(columns.id, columns.meeting_id, columns.position)
        .where(id_in(columns.meeting_id, {row.meeting_id for row in rows}), columns.active.is_(True))
        .order_by(columns.meeting_id, columns.position, columns.id)
    ):
        agendas.setdefault(meeting_id, []).append(row_id)
        before[row_id] = position
    after = dict(before)
    for row in rows:
        agenda = agendas[row.meeting_id]
        agenda.remove(row.id)
        after.update((other, index) for index, other in enumerate(agenda, start=1))
    ended = [row.id for row in rows]
    db.session.execute(sa.update(_ASSIGNMENTS).where(id_in(columns.id, ended)).values(active=False))
    expire_held(Assignment, ended, ["active"])
    update_rows(Assignment, [{"id": row_id, "position": position} for row_id, position in after.items()
                             if position != before[row_id]])
