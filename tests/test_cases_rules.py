"""Case rules: deadline, risk (function and SQL agree), readiness gate, life cycle, signal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_board, make_case, make_user, register_test_case
from tumorboard.audit.models import AuditEvent
from tumorboard.boards.models import Meeting
from tumorboard.cases import services
from tumorboard.cases.models import Assignment, Case
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.errors import DomainError
from tumorboard.extensions import db

TODAY = date(2026, 11, 20)


@pytest.fixture
def frozen(app) -> Iterator[None]:
    with time_machine.travel(datetime(2026, 11, 20, 12, 0, tzinfo=UTC), tick=False):
        yield


@pytest.fixture
def signalled() -> Iterator[list[Case]]:
    sent: list[Case] = []

    def receiver(case: Case) -> None:
        sent.append(case)

    case_needs_scheduling.connect(receiver)
    yield sent
    case_needs_scheduling.disconnect(receiver)


def _actions(case: Case) -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == "case", AuditEvent.object_id == str(case.id)).order_by(AuditEvent.id)))


# --------------------------------------------------------------------------- deadline


def test_deadline_is_planned_start_when_given_else_diagnosis_plus_window(app) -> None:
    assert services.compute_deadline(date(2026, 1, 10), date(2026, 2, 1), "breast") == date(2026, 2, 1)
    assert services.compute_deadline(date(2026, 1, 10), None, "breast") == date(2026, 4, 10)  # +90 days
    app.config["PRETREATMENT_WINDOW_DAYS_BY_SITE"] = {"lung": 60}
    try:
        assert services.compute_deadline(date(2026, 1, 10), None, "lung") == date(2026, 3, 11)
    finally:
        del app.config["PRETREATMENT_WINDOW_DAYS_BY_SITE"]


def test_registration_computes_the_deadline_and_the_default_checklist(frozen) -> None:
    case = register_test_case(site="lung", diagnosis_date=date(2026, 11, 1))
    assert case.status == "intake" and case.deadline == date(2027, 1, 30)
    assert case.specialty_names == sorted(services.SITES["lung"])
    assert case.minutes == 10 and case.urgency == "routine"
    assert [(r.kind, r.label, r.required) for r in case.records] == [
        ("imaging", "Staging imaging", True), ("pathology", "Pathology slides", True),
        ("labs", "Laboratory results", True), ("clinic_notes", "Clinic notes / referral letter", True)]
    assert _actions(case) == ["case.create"]


def test_editing_dates_or_site_recomputes_the_deadline(frozen) -> None:
    case = register_test_case(diagnosis_date=date(2026, 11, 1))
    services.update_case(case, {"planned_treatment_start": date(2026, 12, 15)})
    assert case.deadline == date(2026, 12, 15)
    services.update_case(case, {"planned_treatment_start": None, "diagnosis_date": date(2026, 10, 1)})
    assert case.deadline == date(2026, 12, 30)
    assert _actions(case)[-1] == "case.update"


@pytest.mark.parametrize(("changes", "field"), [
    ({"diagnosis_date": date(2026, 11, 21)}, "diagnosis_date"),  # tomorrow
    ({"planned_treatment_start": date(2026, 10, 31)}, "planned_treatment_start"),  # before diagnosis
    ({"site": "elbow"}, "site"),
    ({"specialties": ["pathology", "astrology"]}, "specialties"),
    ({"referring_oncologist_id": 999_999}, "referring_oncologist_id"),
    ({"urgency": "whenever"}, "urgency"),
    ({"minutes": 0}, "minutes"),
    ({"mrn": "  "}, "mrn"),
])
def test_bad_case_fields_are_refused_with_a_field_error(frozen, changes: dict, field: str) -> None:
    with pytest.raises(DomainError) as refused:
        register_test_case(**changes)
    assert refused.value.status == 422 and field in refused.value.fields
    assert db.session.scalar(sa.select(sa.func.count(Case.id))) == 0


def test_a_user_who_is_not_an_oncologist_cannot_be_the_referring_oncologist(frozen) -> None:
    specialist = make_user("specialist", specialty="pathology")
    with pytest.raises(DomainError) as refused:
        register_test_case(referring_oncologist_id=specialist.id)
    assert "referring_oncologist_id" in refused.value.fields


# --------------------------------------------------------------------------- risk

MARGIN = 14


@pytest.mark.parametrize(("status", "deadline", "expected"), [
    ("intake", TODAY + timedelta(days=MARGIN + 1), "on_track"),
    ("intake", TODAY + timedelta(days=MARGIN), "at_risk"),  # exactly the margin
    ("ready", TODAY + timedelta(days=1), "at_risk"),
    ("ready", TODAY, "at_risk"),  # deadline today: not yet breached
    ("ready", TODAY - timedelta(days=1), "breached"),
    ("scheduled", TODAY, "on_track"),  # on a meeting: not at risk
    ("scheduled", TODAY - timedelta(days=1), "breached"),
    ("discussed", TODAY - timedelta(days=30), "on_track"),
    ("closed", TODAY - timedelta(days=30), "on_track"),
    ("withdrawn", TODAY - timedelta(days=30), "on_track"),
])
def test_risk_boundaries(status: str, deadline: date, expected: str) -> None:
    case = Case(status=status, deadline=deadline)
    assert services.risk(case, TODAY, MARGIN) == expected


def test_risk_filter_in_sql_agrees_with_the_risk_function(app) -> None:
    oncologist = make_user("oncologist")
    for status in ("intake", "ready", "scheduled", "discussed", "closed", "withdrawn"):
        for offset in (-20, -1, 0, 1, 13, 14, 15, 60):
            make_case(oncologist=oncologist, status=status, deadline=TODAY + timedelta(days=offset))
    cases = db.session.scalars(sa.select(Case)).all()
    seen = set()
    for name in services.RISKS:
        selected = set(db.session.scalars(
            sa.select(Case.id).where(services.risk_clause(name, TODAY, MARGIN))))
        expected = {c.id for c in cases if services.risk(c, TODAY, MARGIN) == name}
        assert selected == expected, name
        assert expected  # every state is represented in the spread
        seen |= selected
    assert seen == {c.id for c in cases}  # each case in exactly one state
    page = services.queue_page(services.QueueFilters(status="all", risk="at_risk"), per_page=200,
                               today=TODAY, margin_days=MARGIN)
    assert {r.risk for r in page.rows} == {"at_risk"}


# --------------------------------------------------------------------------- readiness gate


def test_case_becomes_ready_when_the_last_required_record_arrives(frozen, signalled) -> None:
    case = register_test_case()
    optional = services.add_record(case, kind="other", label="Genetics report", required=False)
    *first, last = [r for r in case.records if r.required]
    for item in first:
        services.mark_received(item)
    assert case.status == "intake" and signalled == []
    services.mark_received(last)
    assert case.status == "ready"
    assert case.ready_at == datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert signalled == [case]
    assert optional.received_at is None  # an optional record does not block readiness


def test_undoing_a_required_record_sends_a_ready_case_back_to_intake(frozen, signalled) -> None:
    case = register_test_case()
    for item in case.records:
        services.mark_received(item)
    assert case.status == "ready"
    services.undo_received(case.records[0])
    assert case.status == "intake" and case.ready_at is None
    services.mark_received(case.records[0])
    assert case.status == "ready" and len(signalled) == 2


def test_a_scheduled_case_stays_scheduled_when_a_record_is_undone(frozen) -> None:
    case = register_test_case()
    for item in case.records:
        services.mark_received(item)
    services.change_status(case, "scheduled")
    services.undo_received(case.records[1])
    assert case.status == "scheduled"


def test_adding_a_missing_required_record_makes_a_ready_case_wait_again(frozen) -> None:
    case = register_test_case()
    for item in case.records:
        services.mark_received(item)
    services.add_record(case, kind="imaging", label="PET-CT", required=False)
    assert case.status == "ready"
    services.add_record(case, kind="imaging", label="MRI pelvis", required=True)
    assert case.status == "intake"


def test_readiness_override_needs_a_reason_and_is_audited(frozen, signalled) -> None:
    case = register_test_case()
    with pytest.raises(DomainError) as refused:
        services.override_readiness(case, "   ")
    assert "reason" in refused.value.fields and case.status == "intake"
    services.override_readiness(case, "Slides reviewed at the referring hospital.")
    assert case.status == "ready" and case.readiness_override.startswith("Slides")
    assert signalled == [case]
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "case.readiness_override"))
    assert event.object_id == str(case.id)
    assert event.details == {"reason": "Slides reviewed at the referring hospital."}
    services.mark_received(case.records[0])
    services.undo_received(case.records[0])
    assert case.status == "ready"  # the override holds while records come and go


def test_override_is_refused_unless_the_case_is_in_intake(frozen) -> None:
    case = register_test_case()
    for item in case.records:
        services.mark_received(item)
    with pytest.raises(DomainError) as refused:
        services.override_readiness(case, "because")
    assert refused.value.status == 409 and case.readiness_override is None


def test_urgent_change_of_a_ready_case_asks_for_scheduling(frozen, signalled) -> None:
    case = register_test_case()
    services.update_case(case, {"urgency": "urgent"})
    assert signalled == []  # still in intake: nothing to schedule
    services.update_case(case, {"urgency": "routine"})
    services.override_readiness(case, "clinical need")
    signalled.clear()
    services.update_case(case, {"urgency": "urgent"})
    assert signalled == [case]


def test_record_times_are_checked(frozen) -> None:
    case = register_test_case()
    item = case.records[0]
    services.update_record(item, requested_at=datetime(2026, 11, 10, 9, tzinfo=UTC))
    with pytest.raises(DomainError) as refused:
        services.update_record(item, received_at=datetime(2026, 11, 9, 9, tzinfo=UTC))
    assert "received_at" in refused.value.fields
    with pytest.raises(DomainError):
        services.update_record(item, received_at=datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert item.received_at is None
    with pytest.raises(DomainError) as duplicate:
        services.add_record(case, kind="imaging", label="staging IMAGING")
    assert "label" in duplicate.value.fields


# --------------------------------------------------------------------------- life cycle


@pytest.mark.parametrize(("start", "to"), [
    ("intake", "discussed"), ("intake", "closed"), ("ready", "closed"), ("closed", "intake"),
    ("closed", "withdrawn"), ("intake", "scheduled"), ("intake", "ready"), ("discussed", "withdrawn"),
])
def test_illegal_manual_transitions_are_refused_and_change_nothing(frozen, start: str, to: str) -> None:
    case = make_case(status=start)
    before = len(_actions(case))
    with pytest.raises(DomainError) as refused:
        services.set_status(case, to, reason="a reason")
    assert refused.value.status == 409
    assert "status" in refused.value.fields and refused.value.message
    assert case.status == start and len(_actions(case)) == before


def test_life_cycle_discussed_closed(frozen) -> None:
    case = make_case(status="scheduled")
    services.set_status(case, "discussed")
    services.set_status(case, "closed")
    assert case.status == "closed"
    with pytest.raises(DomainError):
        services.update_case(case, {"minutes": 20})


def test_withdraw_needs_a_reason_frees_the_meeting_and_reopen_rechecks_records(frozen, signalled) -> None:
    case = register_test_case()
    for item in case.records:
        services.mark_received(item)
    board = make_board()
    meeting = Meeting(board_id=board.id, start_at=datetime(2026, 12, 1, 8, tzinfo=UTC),
                      end_at=datetime(2026, 12, 1, 9, tzinfo=UTC), ical_uid="m-withdraw@test")
    db.session.add(meeting)
    db.session.flush()
    db.session.add(Assignment(case_id=case.id, meeting_id=meeting.id))
    services.change_status(case, "scheduled")
    with pytest.raises(DomainError) as refused:
        services.set_status(case, "withdrawn")
    assert "reason" in refused.value.fields and case.status == "scheduled"
    signalled.clear()
    services.set_status(case, "withdrawn", reason="Patient chose treatment elsewhere.")
    assert case.status == "withdrawn" and case.ready_at is None
    assert db.session.scalar(sa.select(Assignment.active).where(Assignment.case_id == case.id)) is False
    assert signalled == [case]
    services.set_status(case, "intake")  # reopen: the records are all there, so ready at once
    assert case.status == "ready"
    history = [e.details for e in services.status_history(case) if e.action == "case.status"]
    assert {"from": "scheduled", "to": "withdrawn", "reason": "Patient chose treatment elsewhere."} in history


@pytest.mark.postgres
def test_a_cases_status_history_does_not_visit_its_reads(dialect: str) -> None:
    """Every view of a case adds a read event to the trail: over a case's life thousands. Its
    status history finds its few events in the index, reading neither those rows nor the status
    changes of other cases."""
    if dialect != "postgresql":
        pytest.skip("a PostgreSQL plan")
    case = make_case()
    services.set_status(case, "withdrawn", reason="Treated elsewhere.")
    others = [str(10**6 + n) for n in range(1000)]
    db.session.execute(sa.insert(AuditEvent), [  # a trail of many cases, mostly reads, as they are
        {"action": action, "object_type": "case", "object_id": object_id, "details": {}}
        for object_id, action, times in [(str(case.id), "case.read", 300),
                                         *((other, "case.status", 1) for other in others),
                                         *((other, "case.read", 5) for other in others)]
        for _ in range(times)])
    db.session.execute(sa.text("ANALYZE audit_events"))
    db.session.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a small table: as it will be large
    query = services._STATUS_HISTORY.params(object_id=str(case.id)).compile(
        db.session.get_bind(), compile_kwargs={"literal_binds": True})
    plan = "\n".join(row[0] for row in db.session.connection().exec_driver_sql(
        f"EXPLAIN (ANALYZE, BUFFERS) {query}"))
    history = services.status_history(case)
    assert [e.details["to"] for e in history if e.action == "case.status"] == ["withdrawn"]
    assert "Rows Removed by Filter" not in plan, plan  # no read event fetched, then thrown away
    assert "action" in plan.split("Index Cond", 1)[1].split("\n", 1)[0], plan
