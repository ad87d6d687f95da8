"""Case rules: registration, deadline, risk, the records checklist, readiness and the life cycle.

Services validate, change the session and flush; the view or API handler commits once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from time import monotonic
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import abort, current_app
from sqlalchemy.orm import joinedload

from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import record as audit
from tumorboard.auth.models import User, UserRole
from tumorboard.boards.models import Board, Meeting
from tumorboard.cases.models import Assignment, Case, CaseSpecialty, RecordItem
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.db import MAX_INT, inline_in, inline_param, joined_list, now_utc, on_postgresql, split_joined
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.rows import expire_held, id_in, update_rows
from tumorboard.vocab import (
    CASE_STATUSES,
    OPEN_CASE_STATUSES,
    RECORD_KINDS,
    SCHEDULABLE_CASE_STATUSES,
    SITES,
    SPECIALTIES,
    URGENCIES,
)

# --------------------------------------------------------------------------- deadline


def window_days(site: str) -> int:
    """The pre-treatment window for a site (PRETREATMENT_WINDOW_DAYS_BY_SITE, else the default)."""
    per_site: dict[str, int] = current_app.config.get("PRETREATMENT_WINDOW_DAYS_BY_SITE", {})
    return per_site.get(site, current_app.config["PRETREATMENT_WINDOW_DAYS"])


def compute_deadline(diagnosis_date: date, planned_treatment_start: date | None, site: str) -> date:
    """Planned treatment start if given, else diagnosis date + the site's pre-treatment window."""
    if planned_treatment_start is not None:
        return planned_treatment_start
    return diagnosis_date + timedelta(days=window_days(site))


def local_today() -> date:
    """Today's date in the hospital's time zone (deadlines are hospital calendar dates)."""
    return now_utc().astimezone(ZoneInfo(current_app.config["HOSPITAL_TIMEZONE"])).date()


def at_risk_margin() -> int:
    """AT_RISK_MARGIN_DAYS from the configuration."""
    return int(current_app.config["AT_RISK_MARGIN_DAYS"])


# --------------------------------------------------------------------------- risk

RISKS = ("on_track", "at_risk", "breached")
#: not yet on a meeting: a near deadline puts the case at risk
UNSCHEDULED_STATUSES = ("intake", "ready")


class HasStatus(Protocol):
    status: str


class HasDeadline(HasStatus, Protocol):
    deadline: date


class HasId(Protocol):
    id: int


class HasRecords(Protocol):
    records: Any


def risk(case: HasDeadline, today: date, margin_days: int) -> str:
    """on_track / at_risk / breached. Mirrored in SQL by `risk_clause` (keep the two in step).

    breached: the deadline passed (today > deadline) and the case is still open;
    at_risk: not breached, not yet scheduled and the deadline is at most `margin_days` away.
    """
    if case.status in OPEN_CASE_STATUSES and today > case.deadline:
        return "breached"
    if case.status in UNSCHEDULED_STATUSES and (case.deadline - today).days <= margin_days:
        return "at_risk"
    return "on_track"


def risk_clause(risk_name: str, today: Any, margin_days: int | None = None, *,
                until: Any = None) -> sa.ColumnElement[bool]:
    """The SQL condition selecting cases whose `risk(case, today, margin_days)` is `risk_name`.
    `today` and `until` (today + margin_days) may be bound parameters instead of dates."""
    if until is None:
        until = today + timedelta(days=margin_days or 0)
    breached = sa.and_(Case.status.in_(OPEN_CASE_STATUSES), Case.deadline < today)
    at_risk = sa.and_(Case.status.in_(UNSCHEDULED_STATUSES), Case.deadline >= today, Case.deadline <= until)
    if risk_name == "breached":
        return breached
    if risk_name == "at_risk":
        return at_risk
    if risk_name == "on_track":
        return sa.not_(sa.or_(breached, at_risk))
    raise ValueError(f"unknown risk {risk_name!r}")


def days_left(case: HasDeadline, today: date) -> int:
    """Days from today to the deadline (negative once passed)."""
    return (case.deadline - today).days


# --------------------------------------------------------------------------- loading


def load_case(case_id: int, *, for_update: bool = False, details: bool = False) -> Case:
    """The case with this id, else 404; `for_update` locks the row for a change (PostgreSQL);
    `details` loads its specialties and records checklist with it (one round trip, for display)."""
    stmt = sa.select(Case).where(Case.id == case_id)
    if for_update:
        stmt = stmt.with_for_update()
    if details:
        stmt = stmt.options(joinedload(Case.specialties), joinedload(Case.records))
    case = db.session.execute(stmt).unique().scalar_one_or_none()
    if case is None:
        abort(404, description=f"There is no case {case_id}.")
    return case


def load_record(case: Case, record_id: int) -> RecordItem:
    """The checklist item `record_id` of `case`, else 404."""
    item = db.session.scalar(
        sa.select(RecordItem).where(RecordItem.id == record_id, RecordItem.case_id == case.id)
    )
    if item is None:
        abort(404, description=f"Case {case.id} has no record {record_id}.")
    return item


def read_case(case_id: int, *, what: str = "case") -> Case:
    """Load a case for display and audit the PHI access ("case.read"); the caller commits."""
    case = load_case(case_id, details=True)
    audit("case.read", "case", case.id, details={"what": what})
    return case


def oncologists() -> list[User]:
    """Active users holding the oncologist role, by name (the choices for a referring oncologist)."""
    return list(db.session.scalars(
        sa.select(User).join(UserRole).where(UserRole.role == "oncologist", User.active.is_(True))
        .order_by(User.name, User.id)
    ))


#: the assignments of a case (`:case_id`) with their meeting and board, latest meeting first
_ASSIGNMENT_HISTORY = (
    sa.select(Assignment.source, Assignment.pinned, Assignment.active, Meeting.id.label("meeting_id"),
              Meeting.status.label("meeting_status"), Meeting.start_at, Board.name.label("board_name"))
    .join(Meeting, Assignment.meeting_id == Meeting.id)
    .join(Board, Meeting.board_id == Board.id)
    .where(Assignment.case_id == sa.bindparam("case_id"))
    .order_by(Meeting.start_at.desc(), Assignment.id.desc())
)

#: the audited status changes, readiness overrides and registration of a case, oldest first
_STATUS_HISTORY = (
    sa.select(AuditEvent.at, AuditEvent.actor_email, AuditEvent.action, AuditEvent.details)
    .where(AuditEvent.object_type == "case", AuditEvent.object_id == sa.bindparam("object_id"),
           AuditEvent.action.in_(("case.status", "case.readiness_override", "case.create")))
    .order_by(AuditEvent.id)
)


def assignment_history(case: HasId) -> list[sa.Row[Any]]:
    """Every assignment of the case (source, pinned, active) with its meeting (meeting_id,
    meeting_status, start_at) and board_name, latest meeting first (one query)."""
    return list(db.session.execute(_ASSIGNMENT_HISTORY, {"case_id": case.id}))


def status_history(case: HasId) -> list[sa.Row[Any]]:
    """The audited status changes and readiness overrides of a case (at, actor_email, action,
    details), oldest first."""
    return list(db.session.execute(_STATUS_HISTORY, {"object_id": str(case.id)}))


# --------------------------------------------------------------------------- the case page

#: the case columns its page shows
_PAGE_COLUMNS = ("id", "mrn", "display_name", "site", "diagnosis_date", "question", "urgency",
                 "planned_treatment_start", "deadline", "minutes", "status", "ready_at",
                 "readiness_override", "schedule_note")
#: the columns of a records checklist item the page shows (as `record_<name>`)
_RECORD_COLUMNS = ("id", "kind", "label", "required", "requested_at", "received_at")
#: a case (`:case_id`) as its page shows it, with the referring oncologist's name, the specialties
#: (comma-separated) and its records checklist: one row per checklist item, by id (one row with
#: NULL `record_` columns for an empty checklist). One round trip: each costs the page ~250 calls
_CASE_FOR_PAGE = (
    sa.select(*(Case.__table__.c[name] for name in _PAGE_COLUMNS), User.name.label("oncologist_name"),
              joined_list(CaseSpecialty.specialty, CaseSpecialty.case_id == Case.id).label("specialty_list"),
              *(RecordItem.__table__.c[name].label(f"record_{name}") for name in _RECORD_COLUMNS))
    .join(User, User.id == Case.referring_oncologist_id)
    .outerjoin(RecordItem, RecordItem.case_id == Case.id)
    .where(Case.id == sa.bindparam("case_id"))
    .order_by(RecordItem.id)
)
_FIRST_RECORD_COLUMN = len(_PAGE_COLUMNS) + 2


class PageRecord(NamedTuple):
    """A records checklist item as the case page shows it."""

    id: int
    kind: str
    label: str
    required: bool
    requested_at: datetime | None
    received_at: datetime | None


@dataclass
class CasePage:
    """What the case page shows, as plain rows (nothing here is tracked by the session)."""

    #: the case's `_PAGE_COLUMNS`, `oncologist_name` and `specialty_list` (and the first
    #: record's `record_` columns: use `records`)
    case: sa.Row[Any]
    specialties: list[str]
    records: list[PageRecord]
    assignments: list[sa.Row[Any]]
    history: list[sa.Row[Any]]


def read_case_page(case_id: int) -> CasePage:
    """Everything the case page shows of a case, else 404; audited as "case.read" (the caller
    commits). Three queries and the audit's insert, whatever the case holds, run on the session's
    connection: the page reads before any change of its request (none is pending to flush)."""
    conn = db.session.connection()
    rows = conn.execute(_CASE_FOR_PAGE, {"case_id": case_id}).all()
    if not rows:
        abort(404, description=f"There is no case {case_id}.")
    case = rows[0]
    audit("case.read", "case", case_id, details={"what": "case"})
    return CasePage(
        case=case, specialties=split_joined(case.specialty_list),
        records=[PageRecord._make(row[_FIRST_RECORD_COLUMN:]) for row in rows if row.record_id is not None],
        assignments=list(conn.execute(_ASSIGNMENT_HISTORY, {"case_id": case_id})),
        history=list(conn.execute(_STATUS_HISTORY, {"object_id": str(case_id)})),
    )


# --------------------------------------------------------------------------- registration

DEFAULT_RECORDS: tuple[tuple[str, str], ...] = (
    ("imaging", "Staging imaging"),
    ("pathology", "Pathology slides"),
    ("labs", "Laboratory results"),
    ("clinic_notes", "Clinic notes / referral letter"),
)

#: the case fields a coordinator enters (and may edit)
CASE_FIELDS = (
    "mrn", "display_name", "site", "diagnosis_date", "question", "referring_oncologist_id",
    "urgency", "planned_treatment_start", "specialties", "minutes",
)
MAX_MINUTES = 240


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def validate_case_data(data: Mapping[str, Any], today: date) -> dict[str, Any]:
    """Check and normalise a complete set of case fields; DomainError(422) lists every bad field."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}

    def need_text(name: str, label: str, max_len: int | None = None) -> None:
        value = _text(data.get(name))
        if not value:
            errors[name] = [f"{label} is required."]
        elif max_len and len(value) > max_len:
            errors[name] = [f"{label} must be at most {max_len} characters."]
        clean[name] = value

    need_text("mrn", "Patient reference (MRN)", 64)
    need_text("display_name", "Display name", 200)
    need_text("question", "Question for the board")

    site = data.get("site")
    if site not in SITES:
        errors["site"] = [f"Unknown tumor site {site!r}; choose one of {', '.join(SITES)}."]
    clean["site"] = site

    diagnosed = data.get("diagnosis_date")
    if not isinstance(diagnosed, date):
        errors["diagnosis_date"] = ["Diagnosis date is required."]
    elif diagnosed > today:
        errors["diagnosis_date"] = [f"Diagnosis date cannot be in the future (today is {today.isoformat()})."]
    clean["diagnosis_date"] = diagnosed

    planned = data.get("planned_treatment_start")
    if planned is not None and not isinstance(planned, date):
        errors["planned_treatment_start"] = ["Not a valid date."]
    elif planned is not None and isinstance(diagnosed, date) and planned < diagnosed:
        errors["planned_treatment_start"] = ["Planned treatment start cannot be before the diagnosis date."]
    clean["planned_treatment_start"] = planned

    urgency = data.get("urgency") or "routine"
    if urgency not in URGENCIES:
        errors["urgency"] = [f"Urgency must be one of {', '.join(URGENCIES)}."]
    clean["urgency"] = urgency

    minutes = data.get("minutes")
    minutes = 10 if minutes is None else minutes
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        errors["minutes"] = [f"Minutes needed must be a whole number from 1 to {MAX_MINUTES}."]
    clean["minutes"] = minutes

    specialties = data.get("specialties")
    if not specialties:  # none given: the site's defaults
        specialties = list(SITES.get(site, ())) if isinstance(site, str) else []
    unknown = sorted(str(s) for s in specialties if s not in SPECIALTIES)
    if unknown:
        errors["specialties"] = [f"Unknown specialty {', '.join(unknown)}."]
    clean["specialties"] = sorted(set(specialties))

    oncologist_id = data.get("referring_oncologist_id")
    oncologist = db.session.get(User, oncologist_id) if isinstance(oncologist_id, int) else None
    if oncologist is None or not oncologist.active or not oncologist.has_role("oncologist"):
        errors["referring_oncologist_id"] = ["Choose an active user with the oncologist role."]
    clean["referring_oncologist_id"] = oncologist_id

    if errors:
        raise DomainError("The case has invalid fields: " + ", ".join(sorted(errors)),
                          fields=errors, status=422)
    return clean


def register_case(data: Mapping[str, Any], *, by: User | None = None) -> Case:
    """Register a referral as a case in intake, with the default records checklist.

    `data` holds CASE_FIELDS (specialties default to the site's, minutes to 10, urgency to
    routine); the deadline is computed; audited as "case.create".
    """
    clean = validate_case_data(data, local_today())
    specialties = clean.pop("specialties")
    case = Case(
        **clean,
        deadline=compute_deadline(clean["diagnosis_date"], clean["planned_treatment_start"], clean["site"]),
        status="intake",
        created_by_id=getattr(by, "id", None),
        specialties=[CaseSpecialty(specialty=s) for s in specialties],
        records=[RecordItem(kind=kind, label=label, required=True) for kind, label in DEFAULT_RECORDS],
    )
    db.session.add(case)
    db.session.flush()
    audit("case.create", "case", case.id, details={"site": case.site, "urgency": case.urgency})
    return case


def update_case(case: Case, changes: Mapping[str, Any]) -> list[str]:
    """Change some of a case's CASE_FIELDS; returns the names of the fields that changed.

    The deadline is recomputed from diagnosis date / planned start / site. Turning a ready or
    scheduled case urgent sends `case_needs_scheduling`. Audited as "case.update".
    """
    if case.status == "closed":
        raise DomainError("A closed case cannot be edited.", status=409, code="case_closed")
    unknown = set(changes) - set(CASE_FIELDS)
    if unknown:
        raise DomainError("Unknown fields: " + ", ".join(sorted(unknown)),
                          fields={k: ["Unknown field."] for k in unknown}, status=422)
    current = {name: getattr(case, name) for name in CASE_FIELDS if name != "specialties"}
    current["specialties"] = case.specialty_names
    clean = validate_case_data({**current, **changes}, local_today())
    changed = [name for name in CASE_FIELDS if clean[name] != current[name]]
    was_urgent = case.urgency == "urgent"

    specialties = clean.pop("specialties")
    for name, value in clean.items():
        setattr(case, name, value)
    if "specialties" in changed:
        case.specialties = [s for s in case.specialties if s.specialty in specialties] + [
            CaseSpecialty(specialty=s) for s in specialties if s not in current["specialties"]]
    case.deadline = compute_deadline(case.diagnosis_date, case.planned_treatment_start, case.site)
    if changed:
        db.session.flush()
        audit("case.update", "case", case.id, details={"fields": changed})
    if not was_urgent and case.urgency == "urgent" and case.status in SCHEDULABLE_CASE_STATUSES:
        case_needs_scheduling.send(case)
    return changed


# --------------------------------------------------------------------------- records & readiness


def records_progress(case: HasRecords) -> tuple[int, int]:
    """(required records received, required records) of a case (or of a CasePage)."""
    required = [r for r in case.records if r.required]
    return sum(1 for r in required if r.received_at is not None), len(required)


def records_complete(case: Case) -> bool:
    """True when every required record has been received."""
    received, required = records_progress(case)
    return received == required


def sync_readiness(case: Case) -> None:
    """The readiness gate, run after every checklist change.

    An intake case with every required record received becomes ready (and the scheduler is told);
    a ready case (not yet scheduled) missing a required record goes back to intake, unless a
    coordinator's readiness override is in force.
    """
    if case.status == "intake" and records_complete(case):
        change_status(case, "ready")
        db.session.flush()
        audit("case.status", "case", case.id, details={"from": "intake", "to": "ready",
                                                      "reason": "all required records received"})
        case_needs_scheduling.send(case)
    elif case.status == "ready" and not records_complete(case) and not case.readiness_override:
        change_status(case, "intake")
        db.session.flush()
        audit("case.status", "case", case.id, details={"from": "ready", "to": "intake",
                                                      "reason": "a required record is missing"})


def add_record(case: Case, *, kind: str, label: str, required: bool = True) -> RecordItem:
    """Add an item to the case's records checklist (a missing required one may send it back to intake)."""
    errors: dict[str, list[str]] = {}
    label = _text(label)
    if kind not in RECORD_KINDS:
        errors["kind"] = [f"Kind must be one of {', '.join(RECORD_KINDS)}."]
    if not label:
        errors["label"] = ["A label is required."]
    elif len(label) > 200:
        errors["label"] = ["The label must be at most 200 characters."]
    elif any(r.label.lower() == label.lower() for r in case.records):
        errors["label"] = [f"The checklist already has “{label}”."]
    if errors:
        raise DomainError("The record has invalid fields: " + ", ".join(sorted(errors)),
                          fields=errors, status=422)
    item = RecordItem(kind=kind, label=label, required=bool(required))
    case.records.append(item)
    db.session.flush()
    audit("record.create", "case", case.id, details={"record_id": item.id, "kind": kind,
                                                    "required": item.required})
    sync_readiness(case)
    return item


_UNSET: Any = object()


def update_record(record: RecordItem, *, requested_at: datetime | None = _UNSET,
                  received_at: datetime | None = _UNSET) -> None:
    """Set or clear the requested / received times of a checklist item, then run the readiness gate.

    Times must be aware and not in the future; received cannot precede requested.
    """
    now = now_utc()
    new_requested = record.requested_at if requested_at is _UNSET else requested_at
    new_received = record.received_at if received_at is _UNSET else received_at
    errors: dict[str, list[str]] = {}
    for name, value in (("requested_at", new_requested), ("received_at", new_received)):
        if value is None:
            continue
        if value.tzinfo is None or value.utcoffset() is None:
            errors[name] = ["Give the time with a time zone offset."]
        elif value > now + timedelta(minutes=5):
            errors[name] = ["Cannot be in the future."]
    if not errors and new_requested and new_received and new_received < new_requested:
        errors["received_at"] = ["Cannot be before the time the record was requested."]
    if errors:
        raise DomainError("The record has invalid fields: " + ", ".join(sorted(errors)),
                          fields=errors, status=422)
    changed = []
    if new_requested != record.requested_at:
        record.requested_at = new_requested
        changed.append("requested_at")
    if new_received != record.received_at:
        record.received_at = new_received
        changed.append("received_at")
    if changed:
        db.session.flush()
        audit("record.update", "case", record.case_id,
              details={"record_id": record.id, "fields": changed,
                       "received": record.received_at is not None})
        sync_readiness(record.case)


def mark_requested(record: RecordItem) -> None:
    """Note that the record was requested now."""
    update_record(record, requested_at=now_utc())


def mark_received(record: RecordItem) -> None:
    """Note that the record arrived now (may make the case ready)."""
    update_record(record, received_at=now_utc())


def undo_received(record: RecordItem) -> None:
    """The record was marked received by mistake (may send a ready case back to intake)."""
    update_record(record, received_at=None)


def override_readiness(case: Case, reason: str) -> None:
    """A coordinator marks an intake case ready with records missing; the reason is kept and audited."""
    reason = _text(reason)
    if not reason:
        raise DomainError("Give the reason for marking the case ready with records missing.",
                          fields={"reason": ["A reason is required."]}, status=422)
    if case.status != "intake":
        raise DomainError(f"Only a case in intake can be marked ready; this one is {case.status}.",
                          fields={"status": [f"case is {case.status}"]}, status=409,
                          code="illegal_transition")
    change_status(case, "ready")
    case.readiness_override = reason
    db.session.flush()
    audit("case.readiness_override", "case", case.id, details={"reason": reason})
    case_needs_scheduling.send(case)


# --------------------------------------------------------------------------- life cycle

#: the case life cycle: status → statuses it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    "intake": frozenset({"ready", "withdrawn"}),
    "ready": frozenset({"scheduled", "intake", "withdrawn"}),
    "scheduled": frozenset({"ready", "discussed", "withdrawn"}),
    # deferred at the board (e.g. records missing): back to ready for another meeting
    "discussed": frozenset({"closed", "ready"}),
    "closed": frozenset(),
    "withdrawn": frozenset({"intake"}),
}

#: the moves a coordinator makes by hand (ready comes from the records gate or an override,
#: scheduled from the scheduler / assignments); target → statuses it may be reached from
MANUAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "discussed": frozenset({"scheduled"}),
    "closed": frozenset({"discussed"}),
    "withdrawn": frozenset({"intake", "ready", "scheduled"}),
    "intake": frozenset({"withdrawn"}),  # reopen
}


def change_status(case: Case, to: str) -> None:
    """Move a case along its life cycle; an illegal move raises DomainError and changes nothing."""
    if to == case.status:
        return
    if to not in TRANSITIONS.get(case.status, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS[case.status])) or "nothing (final)"
        raise DomainError(
            f"This case is {case.status}: it cannot become {to}; from {case.status} it can go to {allowed}.",
            fields={"status": [f"cannot change from {case.status} to {to}"]}, status=409,
            code="illegal_transition",
        )
    case.status = to
    if to == "ready" and case.ready_at is None:
        case.ready_at = now_utc()
    if to in {"intake", "withdrawn"}:
        case.ready_at = None


def set_status(case: Case, to: str, reason: str | None = None) -> None:
    """A coordinator's status action: mark discussed, close, withdraw (reason required), reopen.

    Withdrawing a scheduled case takes it off its meeting; reopening a withdrawn case puts it back
    in intake (ready at once when its records are complete). Audited as "case.status".
    """
    reason = _text(reason) or None
    if to not in CASE_STATUSES:
        raise DomainError(f"Unknown status {to!r}.", fields={"status": [f"Must be one of "
                          f"{', '.join(CASE_STATUSES)}."]}, status=422)
    if to == "ready":
        raise DomainError("A case becomes ready when its required records are received, or by a "
                          "readiness override with a reason.", fields={"status": ["not a manual action"]},
                          status=409, code="illegal_transition")
    if to == "scheduled":
        raise DomainError("A case is scheduled by assigning it to a meeting, not by hand.",
                          fields={"status": ["not a manual action"]}, status=409, code="illegal_transition")
    if to == case.status:
        raise DomainError(f"The case is {to} already.", fields={"status": [f"already {to}"]},
                          status=409, code="illegal_transition")
    if case.status not in MANUAL_TRANSITIONS[to]:
        allowed = ", ".join(manual_actions(case)) or "nothing"
        raise DomainError(f"This case is {case.status}: it cannot become {to}; "
                          f"by hand it can go to {allowed}.",
                          fields={"status": [f"cannot change from {case.status} to {to}"]},
                          status=409, code="illegal_transition")
    if to == "withdrawn" and not reason:
        raise DomainError("Give the reason for withdrawing the case.",
                          fields={"reason": ["A reason is required."]}, status=422)
    before = case.status
    lost_meeting = False
    if to == "withdrawn":
        for assignment in db.session.scalars(
            sa.select(Assignment).where(Assignment.case_id == case.id, Assignment.active.is_(True))
        ):
            assignment.active = False
            lost_meeting = True
            audit("assignment.remove", "assignment", assignment.id,
                  details={"case_id": case.id, "meeting_id": assignment.meeting_id,
                           "reason": "case withdrawn"})
    change_status(case, to)
    if to == "intake":
        case.readiness_override = None  # a reopened case is judged afresh
    db.session.flush()
    audit("case.status", "case", case.id, details={"from": before, "to": to, "reason": reason})
    if lost_meeting:
        case_needs_scheduling.send(case)  # its place on the meeting is free again
    if to == "intake":
        sync_readiness(case)


def manual_actions(case: HasStatus) -> list[str]:
    """The statuses a coordinator can move this case to by hand now."""
    return [to for to, sources in MANUAL_TRANSITIONS.items() if case.status in sources]


# --------------------------------------------------------------------------- the queue

#: the status filter: "open" (default), "all" or one status
STATUS_FILTERS = ("open", "all", *CASE_STATUSES)
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class QueueFilters:
    """What the coordinator asked to see (the UI form and the API query use the same)."""

    site: str | None = None
    status: str = "open"
    urgency: str | None = None
    risk: str | None = None
    #: MRN, exact or prefix, case-insensitive
    mrn: str | None = None


#: the case columns a queue row shows (plain columns: no ORM objects for a page of 50)
QUEUE_COLUMNS = (Case.id, Case.mrn, Case.display_name, Case.site, Case.urgency, Case.status, Case.deadline)


@dataclass(slots=True)
class QueueRow:
    #: the QUEUE_COLUMNS of the case, by name (case.id, case.mrn, …)
    case: sa.Row[Any]
    risk: str
    days_left: int
    records_received: int
    records_required: int
    meeting_id: int | None
    meeting_start: datetime | None
    board_name: str | None


@dataclass
class QueuePage:
    rows: list[QueueRow]
    total: int
    page: int
    per_page: int
    filters: QueueFilters = field(default_factory=QueueFilters)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def read_queue(filters: QueueFilters, page: int = 1, per_page: int = 50) -> QueuePage:
    """`queue_page`, audited as a PHI read (names and MRNs): "queue.read" with the case ids
    shown; the caller commits."""
    result = queue_page(filters, page, per_page)
    if result.rows:
        audit("queue.read", None, None, details={"case_ids": [row.case.id for row in result.rows],
                                                 "page": result.page})
    return result


@functools.cache
def _queue_statements(status: str, site: bool, urgency: bool, risk_name: str | None,
                      mrn: bool, lateral: bool) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The queue's page and count statements for one shape of filters (`status` "open", "all"
    or "one") and database (`lateral`: it has LATERAL), built once: `queue_page` gives the
    values."""
    conditions: list[sa.ColumnElement[bool]] = []
    if status == "open":  # the partial index of open cases by deadline (the closed never read)
        conditions.append(inline_in(Case.status, OPEN_CASE_STATUSES))
    elif status == "one":
        conditions.append(Case.status == sa.bindparam("status"))
    if site:
        conditions.append(Case.site == sa.bindparam("site"))
    if urgency:
        conditions.append(Case.urgency == sa.bindparam("urgency"))
    if risk_name:
        conditions.append(risk_clause(risk_name, sa.bindparam("today", type_=sa.Date),
                                      until=sa.bindparam("until", type_=sa.Date)))
    if mrn:
        conditions.append(sa.func.lower(Case.mrn).like(sa.bindparam("mrn"), escape="\\"))
    # count(*), not count(id): PostgreSQL answers it from the (status, deadline) index alone
    count = sa.select(sa.func.count()).select_from(Case).where(*conditions)
    # The page's cases are picked (sorted, limited) first, from the cases alone; only those then
    # get their records' progress and meeting, by index lookups per row. In one plain SELECT,
    # PostgreSQL counted records and joined meetings for every case it sorted, the whole first
    # deadlines (~175 cases for 50 shown; bench/README.md).
    urgent_first = sa.case((Case.urgency == "urgent", 0), else_=1)
    picked = (
        sa.select(*QUEUE_COLUMNS, urgent_first.label("urgent_first"))
        .where(*conditions)
        .order_by(Case.deadline, urgent_first, Case.id)
        .limit(inline_param("limit")).offset(inline_param("offset", type_=sa.BigInteger))
        .subquery("picked")
    )
    records = (
        sa.select(sa.func.count(RecordItem.received_at).label("records_received"),
                  sa.func.count().label("records_required"))
        .where(RecordItem.case_id == picked.c.id, RecordItem.required.is_(True))
    )
    meeting = (  # at most one active assignment per case
        sa.select(Meeting.id.label("meeting_id"), Meeting.start_at.label("meeting_start"),
                  Board.name.label("board_name"))
        .select_from(Assignment).join(Meeting, Meeting.id == Assignment.meeting_id)
        .join(Board, Board.id == Meeting.board_id)
        .where(Assignment.case_id == picked.c.id, Assignment.active)
        .limit(inline_param("one", 1))
    )
    page = sa.select(*(picked.c[column.key] for column in QUEUE_COLUMNS)).select_from(picked)
    if lateral:  # PostgreSQL: two lookups per row (the LIMIT keeps the planner from making the
        # meeting's a hash join over every active assignment)
        records, meeting = records.lateral("records"), meeting.lateral("meeting")
        page = page.add_columns(records, meeting).join(records, sa.true()).outerjoin(meeting, sa.true())
    else:  # SQLite has no LATERAL: the same lookups, one correlated subquery per value
        page = page.add_columns(*(
            select.with_only_columns(column).scalar_subquery().label(column.name)
            for select in (records, meeting) for column in select.selected_columns))
    page = page.order_by(picked.c.deadline, picked.c.urgent_first, picked.c.id)
    return page, count


def _queue_shape(filters: QueueFilters) -> tuple[str, bool, bool, str | None, bool, bool]:
    status = filters.status if filters.status in ("open", "all") else "one"
    return (status, bool(filters.site), bool(filters.urgency), filters.risk or None, bool(_mrn(filters)),
            on_postgresql())


def _mrn(filters: QueueFilters) -> str:
    return (filters.mrn or "").strip()


#: totals counted lately in this process: (filters, today, margin) → (monotonic time, total)
_TOTALS: dict[tuple[Any, ...], tuple[float, int]] = {}


def _queue_total(key: tuple[Any, ...], count: sa.Select[Any], params: dict[str, Any]) -> int:
    """The number of cases matching the queue's filters, counted at most every
    QUEUE_TOTAL_SECONDS per process: counting scans every matching case (10,000 open ones:
    ~0.6 ms of the database, ~3 ms while a pass is writing them), so the total shown may lag
    the rows, which are always read afresh, by that long."""
    now = monotonic()
    seen = _TOTALS.get(key)
    if seen is not None and now - seen[0] < current_app.config.get("QUEUE_TOTAL_SECONDS", 0):
        return seen[1]
    if len(_TOTALS) >= 256:  # every MRN search is a key of its own: stay small
        _TOTALS.clear()
    total = db.session.scalar(count, params) or 0
    _TOTALS[key] = (now, total)
    return total


def queue_page(filters: QueueFilters, page: int = 1, per_page: int = 50,
               today: date | None = None, margin_days: int | None = None) -> QueuePage:
    """One page of the case queue: by deadline, then urgent first, then id.

    One query for the rows (records progress and the active meeting joined in), and the count
    of all matching cases when this process has not counted them lately (`_queue_total`). Used
    by the HTML queue, the home page and GET /api/v1/cases.
    """
    today = today or local_today()
    margin_days = at_risk_margin() if margin_days is None else margin_days
    page = min(max(1, page), MAX_INT)  # beyond: an OFFSET the database cannot hold (and no rows anyway)
    per_page = min(max(1, per_page), MAX_PER_PAGE)
    stmt, count = _queue_statements(*_queue_shape(filters))
    params = {"status": filters.status, "site": filters.site, "urgency": filters.urgency,
              "today": today, "until": today + timedelta(days=margin_days),
              "mrn": _like_prefix(_mrn(filters)), "limit": per_page, "offset": (page - 1) * per_page}
    rows = [
        QueueRow(case=row, risk=risk(row, today, margin_days), days_left=days_left(row, today),
                 records_received=row.records_received, records_required=row.records_required,
                 meeting_id=row.meeting_id, meeting_start=row.meeting_start, board_name=row.board_name)
        for row in db.session.execute(stmt, params)
    ]
    total = _queue_total((filters, today, margin_days), count, params)
    return QueuePage(rows=rows, total=total, page=page, per_page=per_page, filters=filters)


# --------------------------------------------------------------------------- bulk (the scheduler)

def change_status_many(statuses: Mapping[int, str], to: str, *, now: datetime | None = None,
                       also: Mapping[int, Mapping[str, Any]] | None = None) -> list[int]:
    """`change_status` for many cases in one UPDATE: `statuses` maps each case id to its current
    status (read under its row lock). Writes what change_status writes (status, ready_at,
    updated_at) to the cases not already `to`, with the values `also` gives for any of them (the
    same columns for each; one row version per case rather than two); returns their ids. An
    illegal move raises DomainError and changes nothing."""
    moving = [case_id for case_id, status in statuses.items() if status != to]
    for case_id in moving:
        if to not in TRANSITIONS.get(statuses[case_id], frozenset()):
            raise DomainError(f"Case {case_id} is {statuses[case_id]}: it cannot become {to}.",
                              fields={"status": [f"cannot change from {statuses[case_id]} to {to}"]},
                              status=409, code="illegal_transition")
    if not moving:
        return []
    now = now or now_utc()
    table = Case.__table__
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if to == "ready":
        values["ready_at"] = sa.func.coalesce(table.c.ready_at, sa.literal(now, table.c.ready_at.type))
    if to in {"intake", "withdrawn"}:
        values["ready_at"] = None
    also = also or {}
    plain = [case_id for case_id in moving if case_id not in also]
    if plain:
        db.session.execute(sa.update(table).where(id_in(table.c.id, plain)).values(**values))
        expire_held(Case, plain, list(values))
    update_rows(Case, [{"id": case_id, **also[case_id]} for case_id in moving if case_id in also], **values)
    return moving
