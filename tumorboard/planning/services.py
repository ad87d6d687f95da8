"""The app side of scheduling: Problem from the database → engine → Plan applied in one transaction.

The engine (`tumorboard.scheduling`) is pure; this module is the only place that translates.
Meeting specialties are the board's declared core specialties plus its members' specialties.
A case's deadline (a date) is the end of that day in the hospital's time zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from time import perf_counter, sleep
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import record
from tumorboard.auth.models import User
from tumorboard.boards.models import Board, BoardMember, Meeting
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.tracking import sync_touched
from tumorboard.cases.models import Assignment, Case
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.db import now_utc, vacuum_analyze
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.jobs.idle import when_idle
from tumorboard.notifications.models import OutboxMessage
from tumorboard.planning.bulk import apply_changes, batches
from tumorboard.planning.models import PlanningRequest
from tumorboard.rows import id_in, update_rows
from tumorboard.scheduling import parse_problem, solve
from tumorboard.vocab import SCHEDULABLE_CASE_STATUSES

T = TypeVar("T")


@dataclass(frozen=True)
class CaseState:
    status: str
    meeting_id: int | None
    pinned: bool


@dataclass
class Snapshot:
    """What the Problem was built from, to apply the Plan only where nothing changed since."""

    problem: dict[str, Any]
    cases: dict[str, Case]
    meetings: dict[str, Meeting]
    states: dict[int, CaseState]
    assignments: dict[int, Assignment]


@dataclass(frozen=True)
class Change:
    case_id: int
    before: int | None  #: meeting id
    after: int | None


@dataclass
class PassResult:
    changes: list[Change] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    skipped_stale: list[int] = field(default_factory=list)
    #: case id → why the assignment rules refused the engine's move (left for the next pass)
    refused: dict[int, str] = field(default_factory=dict)
    #: seconds per phase (build, solve, apply), for the logs and the CLI
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def touched_meetings(self) -> set[int]:
        return {m for c in self.changes for m in (c.before, c.after) if m is not None}


def _iso(value: datetime) -> str:
    return value.isoformat()


def _deadline_at(case: Case) -> datetime:
    zone = ZoneInfo(current_app.config["HOSPITAL_TIMEZONE"])
    return datetime.combine(case.deadline, time(23, 59), zone)


def _settings() -> dict[str, float]:
    cfg = current_app.config
    return {
        "prep_lead_hours": cfg.get("PREP_LEAD_HOURS", 48),
        "urgent_prep_lead_hours": cfg.get("URGENT_PREP_LEAD_HOURS", 12),
        "urgent_within_hours": cfg.get("URGENT_WITHIN_HOURS", 72),
    }


def _member_specialties() -> dict[int, set[str]]:
    rows = db.session.execute(
        sa.select(BoardMember.board_id, User.specialty)
        .join(User, User.id == BoardMember.user_id)
        .where(User.active.is_(True), User.specialty.is_not(None))
    )
    found: dict[int, set[str]] = {}
    for board_id, specialty in rows:
        found.setdefault(board_id, set()).add(specialty)
    return found


def build_problem(now: datetime | None = None) -> Snapshot:
    """The engine's Problem for every open case and every upcoming scheduled meeting."""
    now = now or now_utc()
    meetings = db.session.scalars(
        sa.select(Meeting).join(Board)
        .where(Meeting.status == "scheduled", Meeting.start_at > now, Board.active.is_(True))
        .order_by(Meeting.start_at, Meeting.id)
    ).all()
    members = _member_specialties()
    meeting_keys = {m.id: f"m{m.id}" for m in meetings}
    active = {
        a.case_id: a
        for a in db.session.scalars(
            sa.select(Assignment).where(Assignment.active.is_(True)).options(selectinload(Assignment.meeting))
        )
    }
    cases = db.session.scalars(
        sa.select(Case).where(Case.status.in_(SCHEDULABLE_CASE_STATUSES), Case.ready_at.is_not(None))
        .order_by(Case.deadline, Case.id)
    ).all()
    problem_cases, by_key, states = [], {}, {}
    for case in cases:
        assignment = original = active.get(case.id)
        if assignment is not None and assignment.meeting_id not in meeting_keys:
            if case.status != "ready":
                continue  # on a past meeting: waiting for the board's record, not for us
            assignment = None  # deferred at a past meeting: it needs a new one
        key = f"c{case.id}"
        current = meeting_keys.get(assignment.meeting_id) if assignment else None
        problem_cases.append({
            "id": key, "site": case.site, "minutes": assignment.minutes if assignment else case.minutes,
            "ready_at": _iso(case.ready_at),
            "deadline": _iso(_deadline_at(case)), "urgent": case.urgency == "urgent",
            "required_specialties": case.specialty_names, "current_meeting": current,
            "pinned_meeting": current if assignment is not None and assignment.pinned else None,
        })
        by_key[key] = case
        states[case.id] = CaseState(case.status, original.meeting_id if original else None,
                                    bool(original and original.pinned))
    problem = {
        "now": _iso(now),
        "settings": _settings(),
        "meetings": [{
            "id": meeting_keys[m.id], "sites": m.board.site_names, "start": _iso(m.start_at),
            "capacity_minutes": m.capacity_minutes,
            "specialties": sorted(set(m.board.specialty_names) | members.get(m.board_id, set())),
            "frozen": m.agenda_frozen_at is not None,
        } for m in meetings],
        "cases": problem_cases,
    }
    return Snapshot(problem, by_key, {meeting_keys[m.id]: m for m in meetings}, states,
                    {cid: a for cid, a in active.items() if cid in states and a.meeting_id in meeting_keys})


def solve_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """Run the engine on the snapshot's Problem (on idle CPU time only: `when_idle`); the Plan as
    a dict."""
    limit = current_app.config.get("PLANNER_TIME_LIMIT_SECONDS", 5.0)
    problem = parse_problem(snapshot.problem)
    return when_idle(lambda: solve(problem, time_limit=limit)).to_dict()


def diff(snapshot: Snapshot, plan: dict[str, Any]) -> list[Change]:
    """Which cases the plan moves (placed, moved elsewhere or taken off a meeting)."""
    targets = {a["case"]: snapshot.meetings[a["meeting"]].id for a in plan["assignments"]}
    upcoming = {m.id for m in snapshot.meetings.values()}
    changes = []
    for key, case in snapshot.cases.items():
        before = snapshot.states[case.id].meeting_id
        before = before if before in upcoming else None  # a past meeting is history, not a place
        after = targets.get(key)
        if before != after:
            changes.append(Change(case.id, before, after))
    return changes


# --- locks: the pass never waits while it holds rows ----------------------------------------
#
# The pass takes the rows it will write with SKIP LOCKED and never waits: a row somebody is
# changing right now means "changed since the snapshot", left for the next pass (requested at
# once). The audit chain's lock is only taken to seal events just before commit, by which time
# every writer holds all its rows. So the pass is never part of a deadlock, and it never writes
# over a change committed after its snapshot.

_FRESH = {"populate_existing": True}  # re-read rows already in the session, not its cached copies


def _lock_free(model: Any, *where: Any) -> tuple[list[Any], set[int]]:
    """Lock the rows of `model` matching `where` that nobody else holds, re-read from the
    database; also the ids of the matching rows somebody else holds (skipped)."""
    wanted = set(db.session.scalars(sa.select(model.id).where(*where)))
    got = db.session.scalars(
        sa.select(model).where(*where).order_by(model.id).with_for_update(skip_locked=True, of=model)
        .execution_options(**_FRESH)
    ).all()
    return list(got), wanted - {row.id for row in got}


def _lock_and_read_states(changes: list[Change]) -> tuple[dict[int, CaseState], set[int]]:
    """Lock what applying `changes` writes (the cases, their assignments, the agendas, meetings
    and invitations of the meetings they touch) and read the cases' state afresh.

    Returns the current state of every case we hold (a case held by somebody else is absent)
    and the meetings with a row held by somebody else (changes touching them wait a pass)."""
    if not changes:
        return {}, set()
    ids = [c.case_id for c in changes]
    meetings = {m for c in changes for m in (c.before, c.after) if m is not None}
    cases, _ = _lock_free(Case, id_in(Case.id, ids))
    on_agendas = sa.and_(Assignment.meeting_id.in_(meetings), Assignment.active.is_(True))
    _, busy_rows = _lock_free(Assignment, sa.or_(id_in(Assignment.case_id, ids), on_agendas))
    busy = db.session.execute(
        sa.select(Assignment.case_id, Assignment.meeting_id).where(id_in(Assignment.id, busy_rows))).all()
    busy_cases = {case_id for case_id, _ in busy}
    busy_meetings = {meeting_id for _, meeting_id in busy}
    busy_meetings |= _lock_free(Meeting, Meeting.id.in_(meetings))[1]
    busy_invites = _lock_free(Invitation, Invitation.meeting_id.in_(meetings))[1]
    busy_meetings |= set(db.session.scalars(
        sa.select(Invitation.meeting_id).where(Invitation.id.in_(busy_invites))))
    active = {a.case_id: a for a in db.session.scalars(
        sa.select(Assignment).where(id_in(Assignment.case_id, ids), Assignment.active.is_(True))
        .execution_options(**_FRESH))}
    states = {case.id: CaseState(case.status, active[case.id].meeting_id if case.id in active else None,
                                 bool(case.id in active and active[case.id].pinned))
              for case in cases if case.id not in busy_cases}
    return states, busy_meetings


def apply_plan(snapshot: Snapshot, plan: dict[str, Any]) -> PassResult:
    """Apply `plan` in the current transaction, skipping cases changed since the snapshot.

    Set-based whatever its size (`planning.bulk`): the rules, status changes and audit events of
    `assign` / `unassign` for each change, in a few statements; a change the rules refuse is left
    for the next pass."""
    result = PassResult(plan=plan)
    changes = diff(snapshot, plan)
    current, busy_meetings = _lock_and_read_states(changes)
    fresh = []
    for change in changes:
        if (current.get(change.case_id) != snapshot.states[change.case_id]
                or {change.before, change.after} & busy_meetings):
            result.skipped_stale.append(change.case_id)
        else:
            fresh.append(change)
    notes = planned_notes(snapshot, plan)
    removed = _apply_in_batches(fresh, {m.id: m for m in snapshot.meetings.values()}, result.refused, notes)
    result.changes = [c for c in fresh if c.case_id not in result.refused]
    if removed:  # what `case_needs_scheduling` asks for each case taken off: another pass
        request_pass(f"case {removed[0]} needs scheduling")
    _write_notes(snapshot, notes)
    db.session.flush()
    return result


def _apply_in_batches(changes: list[Change], meetings: dict[int, Meeting], refused: dict[int, str],
                      notes: dict[int, dict[str, Any]]) -> list[int]:
    """`apply_changes` batch by batch (`PLANNER_APPLY_BATCH` changes, `_paced`), the invitations
    of a batch's meetings synced with it, not all at the commit, and each case's `notes` written
    with its new status. Fills `refused`; returns the cases taken off meetings."""
    removed: list[int] = []

    def apply(batch: list[Change]) -> None:
        applied = apply_changes(batch, meetings, also=notes)
        refused.update(applied.refused)
        removed.extend(applied.removed)
        # a batch holds every change of its meetings (`batches`): their invitations are final
        sync_touched(db.session())

    _paced(batches(changes, current_app.config.get("PLANNER_APPLY_BATCH", 500)), apply)
    return removed


def _paced(chunks: Sequence[T], work: Callable[[T], object]) -> None:
    """`work(chunk)` for each chunk, pausing after each but the last for `PLANNER_APPLY_PAUSE`
    times as long as it took: the database's share of a large pass comes in short bursts the
    web requests can get between (PostgreSQL does not run the pass's queries at the scheduler's
    lower priority)."""
    pause = current_app.config.get("PLANNER_APPLY_PAUSE", 0.0)
    for i, chunk in enumerate(chunks):
        started = perf_counter()
        work(chunk)
        if pause and i < len(chunks) - 1:
            sleep((perf_counter() - started) * pause)


def _note_of(case: Any) -> dict[str, Any]:
    """A case's (or a row's) schedule note and urgent slot request."""
    return {"schedule_note": case.schedule_note, "urgent_slot_latest_start": case.urgent_slot_latest_start}


def planned_notes(snapshot: Snapshot, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """case id → its schedule note and urgent slot request as `plan` has them, for each case where
    they differ from what it has (after a first pass: every case)."""
    urgent = {r["case"]: datetime.fromisoformat(r["latest_start"]) for r in plan["urgent_slot_requests"]}
    notes = {a["case"]: f"On {_describe(snapshot.meetings[a['meeting']])}." for a in plan["assignments"]}
    notes.update({u["case"]: f"Not placed: {u['reason']}." for u in plan["unassigned"]})
    wanted = {case.id: {"schedule_note": notes[key], "urgent_slot_latest_start": urgent.get(key)}
              for key, case in snapshot.cases.items()}
    return {case.id: wanted[case.id] for case in snapshot.cases.values() if _note_of(case) != wanted[case.id]}


def _write_notes(snapshot: Snapshot, notes: dict[int, dict[str, Any]]) -> None:
    """The `notes` not written yet with a case's new status (`apply_changes`), `PLANNER_APPLY_BATCH`
    cases per UPDATE, `_paced`; a case somebody is changing right now gets its note on the next
    pass."""
    due = [case.id for case in snapshot.cases.values()
           if case.id in notes and _note_of(case) != notes[case.id]]
    table = Case.__table__
    now = now_utc()

    def write(ids: list[int]) -> None:
        held = db.session.execute(
            sa.select(table.c.id, table.c.schedule_note, table.c.urgent_slot_latest_start)
            .where(id_in(table.c.id, ids)).with_for_update(skip_locked=True))
        update_rows(Case, [{"id": row.id, **notes[row.id]} for row in held if _note_of(row) != notes[row.id]],
                    updated_at=now)

    size = current_app.config.get("PLANNER_APPLY_BATCH", 500)
    _paced([due[i:i + size] for i in range(0, len(due), size)], write)


def _describe(meeting: Meeting) -> str:
    local = meeting.start_at.astimezone(ZoneInfo(meeting.board.timezone))
    return f"{meeting.board.name}, {local:%a %d %b %Y %H:%M} ({meeting.board.timezone})"


def run_pass(now: datetime | None = None, *, dry_run: bool = False) -> PassResult:
    """One assignment pass over everything open. With dry_run nothing is written."""
    started = perf_counter()
    snapshot = build_problem(now)
    built = perf_counter()
    plan = solve_snapshot(snapshot)
    solved = perf_counter()
    seconds = {"build": built - started, "solve": solved - built}
    if dry_run:
        return PassResult(changes=diff(snapshot, plan), plan=plan, seconds=seconds)
    result = apply_plan(snapshot, plan)
    result.seconds = {**seconds, "apply": perf_counter() - solved}
    mark_requests_done()
    if result.skipped_stale:  # changed (or being changed) meanwhile: look again soon
        db.session.add(PlanningRequest(reason="cases changed during the last pass"))
    record("planning.pass", details={
        "changed": len(result.changes), "skipped_stale": len(result.skipped_stale),
        "objective": plan["objective"], "urgent_slot_requests": len(plan["urgent_slot_requests"]),
    })
    return result


#: the tables a pass rewrites rows of (invitations and outbox mail follow its commit), and the
#: audit trail it adds an event per change to
_PASS_TABLES = (Case, Assignment, Meeting, Invitation, OutboxMessage, AuditEvent)


def vacuum_after_pass() -> bool:
    """Vacuum and analyse what a large pass rewrote (run after its commit, by the job): the
    queue, the agendas and the case pages read these rows on every request. The statistics
    matter as much as the dead rows: a prepared statement's cached plan, made when a table was
    small (a sequential scan of the audit trail, say), is only made again once the table is
    analysed, and autovacuum may be minutes away, or off."""
    return vacuum_analyze(db.engine, (model.__tablename__ for model in _PASS_TABLES))


# --- "run a pass now" requests -------------------------------------------------------------

def request_pass(reason: str) -> None:
    """Ask the scheduler process for a pass soon (written with the caller's transaction)."""
    if not has_pending_requests():
        db.session.add(PlanningRequest(reason=reason[:200]))


def has_pending_requests() -> bool:
    pending = sa.select(PlanningRequest.id).where(PlanningRequest.done_at.is_(None)).limit(1)
    return db.session.scalar(pending) is not None


def mark_requests_done() -> None:
    db.session.execute(
        sa.update(PlanningRequest).where(PlanningRequest.done_at.is_(None)).values(done_at=now_utc())
    )


def _on_case_needs_scheduling(case: Case, **_: Any) -> None:
    request_pass(f"case {case.id} needs scheduling")


def connect_signals() -> None:
    """Subscribe to the case signals (idempotent)."""
    case_needs_scheduling.connect(_on_case_needs_scheduling)


def describe_changes(changes: Iterable[Change]) -> list[str]:
    """Human lines for `flask tumorboard assign` (e.g. "case 12: Breast MDT … → Lung MDT …"),
    each meeting loaded and described once however many cases it takes."""
    changes = list(changes)
    ids = {m for c in changes for m in (c.before, c.after) if m is not None}
    meetings = db.session.scalars(sa.select(Meeting).where(Meeting.id.in_(ids))).all() if ids else []
    text = {m.id: _describe(m) for m in meetings}
    return [f"case {c.case_id}: {text.get(c.before, 'unassigned')} → {text.get(c.after, 'unassigned')}"
            for c in changes]


# --- urgent slot requests ------------------------------------------------------------------

def urgent_requests() -> sa.Select[tuple[Case]]:
    """Ready cases the engine could not place in time: an urgent slot is needed, soonest first."""
    return (sa.select(Case).where(Case.urgent_slot_latest_start.is_not(None), Case.status == "ready")
            .order_by(Case.urgent_slot_latest_start, Case.id))


def place_in_urgent_slot(case: Case, board: Board, start: datetime, duration_minutes: int,
                         location: str | None = None) -> Meeting:
    """The coordinator's one step: create an urgent slot of `board` and pin `case` on it."""
    from tumorboard.boards.services import create_urgent_slot
    from tumorboard.cases.assignments import assign, serves_site, wrong_site

    if case.urgent_slot_latest_start is None or case.status != "ready":
        raise DomainError("This case has no open urgent slot request.", status=409, code="conflict",
                          fields={"case_id": ["no open urgent slot request"]})
    meeting = create_urgent_slot(board, start, duration_minutes,
                                 capacity_minutes=max(duration_minutes, case.minutes), location=location)
    if not serves_site(meeting, case.site):
        raise DomainError(wrong_site(board.name, case.site),
                          fields={"board_id": [f"choose a board serving {case.site}"]})
    assign(case, meeting, source="coordinator", pinned=True)
    case.urgent_slot_latest_start = None
    case.schedule_note = f"On the urgent slot {_describe(meeting)}."
    db.session.flush()
    return meeting
