"""The set-based apply (planning/bulk.py) against its specification: `assign` / `unassign` applied
change by change, as the pass did before. Same rows, statuses, audit events, refusals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_board, make_calendar_meeting, make_case, make_user, put_on_agenda
from tests.helpers import commit_and_seal
from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import find_tampering, record, record_many
from tumorboard.boards.models import BoardSite
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.tracking import sync_touched
from tumorboard.cases.models import Assignment, Case
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage
from tumorboard.planning.models import PlanningRequest
from tumorboard.planning.services import (
    PassResult,
    Snapshot,
    _lock_and_read_states,
    _write_notes,
    apply_plan,
    build_problem,
    diff,
    planned_notes,
    run_pass,
    solve_snapshot,
)

NOW = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)  # a Wednesday
TUESDAY = datetime(2031, 1, 7, 8, 0, tzinfo=UTC)


@pytest.fixture
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def ready(**kw: Any) -> Case:
    kw.setdefault("diagnosis_date", date(2030, 12, 1))
    kw.setdefault("status", "ready")
    kw.setdefault("specialties", ())
    return make_case(ready_at=kw.pop("ready_at", NOW - timedelta(days=3)), **kw)


def scheduled_on(meeting: Any, **kw: Any) -> tuple[Case, Assignment]:
    case = ready(status="scheduled", **kw)
    return case, put_on_agenda(case, meeting, source="engine")


def apply_one_by_one(snapshot: Snapshot, plan: dict[str, Any]) -> PassResult:
    """The specification: how the pass applied a Plan before, through the ORM services."""
    from tumorboard.cases.assignments import assign, unassign

    result = PassResult(plan=plan)
    changes = diff(snapshot, plan)
    current, busy = _lock_and_read_states(changes)
    fresh = [c for c in changes
             if current.get(c.case_id) == snapshot.states[c.case_id] and not {c.before, c.after} & busy]
    result.skipped_stale = [c.case_id for c in changes if c not in fresh]
    meetings = {m.id: m for m in snapshot.meetings.values()}

    def attempt(case_id: int, step: Any) -> None:
        if case_id in result.refused:
            return
        try:
            with db.session.begin_nested():
                step()
        except DomainError as exc:
            result.refused[case_id] = exc.message

    for c in fresh:
        if c.before is not None:
            attempt(c.case_id, lambda c=c: unassign(snapshot.assignments[c.case_id], source="engine"))
    for c in fresh:
        if c.after is not None:
            attempt(c.case_id, lambda c=c: assign(db.session.get(Case, c.case_id), meetings[c.after],
                                                  source="engine"))
    result.changes = [c for c in fresh if c.case_id not in result.refused]
    _write_notes(snapshot, planned_notes(snapshot, plan))
    db.session.flush()
    return result


def observed(since: int) -> dict[str, Any]:
    """Everything a pass writes, with assignment rows named by (case, meeting), not by id."""
    db.session.expire_all()
    rows = db.session.scalars(sa.select(Assignment)).all()
    names = {str(a.id): (a.case_id, a.meeting_id) for a in rows}
    events = [(e.action, e.object_type, names.get(e.object_id or "", e.object_id), e.details, e.at)
              for e in db.session.scalars(sa.select(AuditEvent).where(AuditEvent.id > since)
                                          .order_by(AuditEvent.id))]
    return {
        "assignments": sorted((a.case_id, a.meeting_id, a.active, a.position, a.pinned, a.source, a.minutes)
                              for a in rows),
        "cases": sorted((c.id, c.status, c.ready_at, c.updated_at, c.schedule_note,
                         c.urgent_slot_latest_start) for c in db.session.scalars(sa.select(Case))),
        # in the order written; the invitations' own events (a batch syncs its meetings when it is
        # written, the specification all of them at the commit) by meeting
        "events": [event for event in events if not event[0].startswith("invitation.")],
        "invitation events": sorted((e for e in events if e[0].startswith("invitation.")), key=repr),
        "invitations": sorted((i.meeting_id, i.user_id, i.active, i.partstat, i.last_sequence_sent)
                              for i in db.session.scalars(sa.select(Invitation))),
        "outbox": sorted((m.kind, m.to_addr, m.subject, m.dedupe_key)
                         for m in db.session.scalars(sa.select(OutboxMessage))),
        "requests": db.session.scalar(sa.select(sa.func.count()).select_from(PlanningRequest)
                                      .where(PlanningRequest.done_at.is_(None))),
    }


def last_event_id() -> int:
    return db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.id), 0)))


def test_bulk_apply_writes_exactly_what_assign_and_unassign_wrote(app, frozen_now) -> None:
    breast = make_board(sites=("breast",), specialties=())
    m1, m2, m3 = (make_calendar_meeting(breast, start=TUESDAY + timedelta(weeks=w), capacity_minutes=60)
                  for w in range(3))
    lung = make_board(sites=("lung",), specialties=())
    make_calendar_meeting(lung, start=TUESDAY)
    held = make_calendar_meeting(breast, start=NOW - timedelta(days=6), status="held")
    frozen_held = make_calendar_meeting(breast, start=NOW - timedelta(days=6, hours=2), status="held",
                                        agenda_frozen_at=NOW - timedelta(days=7))
    # on m1 by a coordinator (pinned, stays): new cases go after it
    pinned, pin = scheduled_on(m1)
    pin.pinned = True
    # must leave m3 (deadline before it) for an earlier meeting: removed then created
    moved, _ = scheduled_on(m3, planned_treatment_start=date(2031, 1, 10))
    # on m3 with a deadline no meeting meets: taken off (left unplaced)
    dropped, _ = scheduled_on(m3, planned_treatment_start=date(2031, 1, 3))
    # once removed from m1: placed there again, its old row comes back
    back = ready(planned_treatment_start=date(2031, 1, 8))
    put_on_agenda(back, m1, active=False, position=0)
    # deferred at held meetings: a move from there (refused from a frozen one)
    deferred = ready(planned_treatment_start=date(2031, 1, 9))
    put_on_agenda(deferred, held)
    stuck = ready(planned_treatment_start=date(2031, 1, 12))
    put_on_agenda(stuck, frozen_held)
    fresh = [ready(planned_treatment_start=date(2031, 1, 20) + timedelta(days=i)) for i in range(6)]
    late = ready(planned_treatment_start=date(2031, 1, 11))  # m1 only: no room once it shrinks
    lung_case = ready(site="lung")
    # will be on m2 after the snapshot froze it: its removal is refused
    on_frozen, _ = scheduled_on(m2, planned_treatment_start=date(2031, 1, 4))
    snapshot = build_problem()
    plan = solve_snapshot(snapshot)
    # after the snapshot: less room on m1, m2 frozen, the lung board stops serving lung
    m1.capacity_minutes = 40
    m2.agenda_frozen_at = NOW
    db.session.execute(sa.delete(BoardSite).where(BoardSite.board_id == lung.id))
    db.session.flush()
    since = last_event_id()

    with db.session.begin_nested() as reference:
        expected = apply_one_by_one(snapshot, plan)
        sync_touched(db.session())  # what its commit would do
        wanted = observed(since)
        reference.rollback()
    db.session.expire_all()  # a savepoint's rollback only expires what the ORM itself changed
    result = apply_plan(snapshot, plan)  # each batch synced its meetings: the commit has nothing left
    got = observed(since)

    for key, value in wanted.items():
        differing = [pair for pair in zip(got[key], value, strict=True) if pair[0] != pair[1]] \
            if isinstance(value, list) and len(value) == len(got[key]) else [(got[key], value)]
        assert got[key] == value, (key, differing)
    assert result.refused == expected.refused and result.changes == expected.changes
    assert result.skipped_stale == expected.skipped_stale == []
    # the scenario covers every path
    messages = set(result.refused.values())
    assert result.refused[late.id] == ("Not enough time left: 40 of 40 minutes are used and the case "
                                       "needs 10. A coordinator can pin it to overbook.")
    assert "The agenda is frozen: only a coordinator can change it." in messages
    assert f"{lung.name} does not discuss lung cases." in messages
    assert result.refused[stuck.id] == "The case is on a frozen agenda: only a coordinator can move it."
    assert result.refused[on_frozen.id] == "The agenda is frozen: only a coordinator can change it."
    actions = {e[0] for e in got["events"]}
    assert actions == {"assignment.create", "assignment.move", "assignment.remove"}
    changed = {c.case_id for c in result.changes}
    assert {moved.id, dropped.id, back.id, deferred.id} <= changed and lung_case.id in result.refused
    assert pinned.id not in changed and {c.id for c in fresh} <= set(result.refused)  # m2 frozen


def test_positions_follow_the_agenda_and_a_returning_case_gets_its_old_row(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    first = make_calendar_meeting(board, start=TUESDAY, capacity_minutes=10)  # room for `leaving` only
    second = make_calendar_meeting(board, start=TUESDAY + timedelta(weeks=1), capacity_minutes=120)
    top = ready(status="scheduled")
    put_on_agenda(top, second, position=1, pinned=True, source="coordinator")
    leaving = ready(status="scheduled", planned_treatment_start=date(2031, 1, 9))  # must go to `first`
    put_on_agenda(leaving, second, position=2, source="engine")
    bottom = ready(status="scheduled")
    put_on_agenda(bottom, second, position=3, pinned=True, source="coordinator")
    returning = ready(planned_treatment_start=date(2031, 1, 16))
    old_row = put_on_agenda(returning, second, active=False, position=0)
    newcomers = [ready(planned_treatment_start=date(2031, 1, 16) + timedelta(days=d)) for d in (2, 1)]

    result = run_pass()

    agenda = db.session.execute(
        sa.select(Assignment.case_id, Assignment.position, Assignment.id)
        .where(Assignment.meeting_id == second.id, Assignment.active.is_(True)).order_by(Assignment.position)
    ).all()
    # renumbered after `leaving` went, then the new ones appended by deadline
    assert [(case_id, position) for case_id, position, _ in agenda] == [
        (top.id, 1), (bottom.id, 2), (returning.id, 3), (newcomers[1].id, 4), (newcomers[0].id, 5)]
    assert agenda[2].id == old_row.id  # (case, meeting) is unique: the row came back
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Assignment)
                             .where(Assignment.case_id == returning.id)) == 1
    placed = db.session.get(Assignment, old_row.id)
    assert (placed.active, placed.pinned, placed.source, placed.minutes) == (True, False, "engine", 10)
    assert [(c.before, c.after) for c in result.changes if c.case_id == leaving.id] == [(second.id, first.id)]
    for case in (leaving, returning, *newcomers):
        assert case.status == "scheduled" and case.updated_at == NOW  # read afresh, not stale
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action.like("assignment.%"))
                                .order_by(AuditEvent.id)).all()
    assert [(e.action, e.details["case_id"]) for e in events] == [
        ("assignment.remove", leaving.id), ("assignment.create", leaving.id),
        ("assignment.create", returning.id), ("assignment.create", newcomers[1].id),
        ("assignment.create", newcomers[0].id)]
    assert events[2].object_id == str(old_row.id)
    assert events[0].details == {"case_id": leaving.id, "meeting_id": second.id, "source": "engine"}
    assert events[2].details == {"case_id": returning.id, "meeting_id": second.id, "from_meeting_id": None,
                                 "source": "engine", "pinned": False, "minutes": 10, "overbooked": False}


def test_a_case_taken_off_is_ready_again_and_one_pass_is_requested(app, frozen_now) -> None:
    board = make_board(sites=("breast",), specialties=())
    meeting = make_calendar_meeting(board, start=TUESDAY)
    cases = [scheduled_on(meeting, planned_treatment_start=date(2031, 1, 3))[0] for _ in range(3)]
    ready_at = [c.ready_at for c in cases]
    snapshot = build_problem()
    plan = solve_snapshot(snapshot)
    result = apply_plan(snapshot, plan)  # no mark_requests_done: the request is still open
    assert {(c.before, c.after) for c in result.changes} == {(meeting.id, None)}
    assert [c.status for c in cases] == ["ready"] * 3 and [c.ready_at for c in cases] == ready_at
    pending = db.session.scalars(sa.select(PlanningRequest).where(PlanningRequest.done_at.is_(None))).all()
    assert [r.reason for r in pending] == [f"case {cases[0].id} needs scheduling"]
    assert all(c.schedule_note.startswith("Not placed:") for c in cases)


def test_a_case_changed_after_the_snapshot_is_skipped_and_untouched(app, frozen_now) -> None:
    from tumorboard.cases.services import set_status

    board = make_board(sites=("breast",), specialties=())
    make_calendar_meeting(board, start=TUESDAY)
    withdrawn, placed = ready(), ready()
    snapshot = build_problem()
    plan = solve_snapshot(snapshot)
    set_status(withdrawn, "withdrawn", reason="moved away")  # meanwhile, by a coordinator
    db.session.flush()
    since = last_event_id()
    result = apply_plan(snapshot, plan)
    assert result.skipped_stale == [withdrawn.id] and [c.case_id for c in result.changes] == [placed.id]
    assert withdrawn.status == "withdrawn" and placed.status == "scheduled"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Assignment)
                             .where(Assignment.case_id == withdrawn.id)) == 0
    touched = {e.details["case_id"] for e in db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.id > since, AuditEvent.action.like("assignment.%")))}
    assert touched == {placed.id}


def test_after_a_pass_the_chain_verifies_and_touched_meetings_have_invitations(app, frozen_now) -> None:
    pathologist = make_user("specialist", specialty="pathology")
    board = make_board(sites=("breast",), specialties=("pathology",), members=(pathologist,))
    meetings = [make_calendar_meeting(board, start=TUESDAY + timedelta(weeks=w), capacity_minutes=20)
                for w in range(3)]
    for _ in range(5):
        ready()
    record("test.before")  # ORM events and bulk ones share the chain, in id order
    result = run_pass()
    commit_and_seal()  # invitations synced at commit, then the sealer

    assert find_tampering() is None
    events = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    assert all(e.hash and e.prev_hash for e in events)
    touched = result.touched_meetings
    assert touched == {m.id for m in meetings}
    invited = db.session.scalars(sa.select(Invitation.meeting_id).where(Invitation.user_id == pathologist.id))
    assert set(invited) == touched
    mails = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.to_addr == pathologist.email))
    assert sorted(m.kind for m in mails) == ["invite"] * len(touched)


def test_bulk_events_rolled_back_with_a_savepoint_are_not_sealed(app) -> None:
    first = record_many([("test.kept", "thing", 1, {"n": 1}), ("test.kept", "thing", 2, None)])
    assert first == sorted(first) and len(first) == 2
    with db.session.begin_nested() as savepoint:
        record_many([("test.gone", "thing", 3, {"n": 3})])
        savepoint.rollback()
    record("test.after", "thing", 4)
    record_many([])
    commit_and_seal()
    assert find_tampering() is None
    rows = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [(e.action, e.object_id, e.details) for e in rows][-3:] == [
        ("test.kept", "1", {"n": 1}), ("test.kept", "2", {}), ("test.after", "4", {})]


def test_batches_keep_changes_linked_through_a_meeting_together_in_plan_order() -> None:
    from tumorboard.planning.bulk import batches
    from tumorboard.planning.services import Change

    plan = [Change(1, None, 10), Change(2, None, 11), Change(3, 12, 10),  # 3 frees 12, joins 10
            Change(4, None, 12), Change(5, None, 13), Change(6, 14, None), Change(7, None, 11)]
    cut = batches(plan, 2)
    assert sorted(c.case_id for batch in cut for c in batch) == list(range(1, 8))  # each change once
    assert [c.case_id for c in next(b for b in cut if plan[0] in b)] == [1, 3, 4]  # 10 ~ 12, in order
    assert [[c.case_id for c in b] for b in cut] == [[1, 3, 4], [2, 7], [5, 6]]
    assert batches(plan, 100) == [plan] and batches([], 5) == []


def test_a_large_plan_is_written_in_batches_with_a_pause_after_each(app, frozen_now, monkeypatch) -> None:
    from tumorboard.planning import services

    boards = [make_board(sites=("breast",), specialties=()) for _ in range(3)]
    meetings = [make_calendar_meeting(b, start=TUESDAY + timedelta(hours=i), capacity_minutes=2 * 15)
                for i, b in enumerate(boards)]
    cases = [ready(minutes=15) for _ in range(6)]
    nowhere = [ready(site="lung") for _ in range(3)]  # no board discusses lung: only a note to write
    pauses: list[float] = []
    monkeypatch.setattr(services, "sleep", pauses.append)
    monkeypatch.setattr(services, "perf_counter", iter(range(0, 100, 2)).__next__)  # each batch "takes" 2 s
    monkeypatch.setitem(app.config, "PLANNER_APPLY_BATCH", 1)
    monkeypatch.setitem(app.config, "PLANNER_APPLY_PAUSE", 0.5)
    snapshot = build_problem()
    plan = solve_snapshot(snapshot)
    result = apply_plan(snapshot, plan)
    assert {c.case_id for c in result.changes} == {c.id for c in cases}
    assert all(c.status == "scheduled" and c.schedule_note.startswith("On ") for c in cases)
    assert all(c.status == "ready" and c.schedule_note.startswith("Not placed") for c in nowhere)
    used = {c.after for c in result.changes}
    assert len(used) == 3
    # one batch per meeting (its cases' notes written with their status), each followed by half
    # its time (but the last); then the notes left, one case per batch, likewise
    assert pauses == [1.0] * (len(used) - 1) + [1.0] * (len(nowhere) - 1)
    assert used <= {m.id for m in meetings}
