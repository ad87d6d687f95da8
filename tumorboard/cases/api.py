"""JSON API of the cases feature under /api/v1 (thin handlers over services.py)."""

from __future__ import annotations

from typing import Any

from flask_login import current_user

from tumorboard.api import api_blueprint
from tumorboard.cases import services
from tumorboard.cases.models import Case, RecordItem
from tumorboard.cases.schemas import (
    CaseCreateSchema,
    CasePageSchema,
    CaseSchema,
    CaseUpdateSchema,
    QueueArgsSchema,
    ReadinessOverrideSchema,
    RecordCreateSchema,
    RecordSchema,
    RecordUpdateSchema,
    StatusChangeSchema,
)
from tumorboard.extensions import db

blp = api_blueprint("api_cases", __name__, url_prefix="/api/v1", description="cases")


def _summary(row: services.QueueRow) -> dict[str, Any]:
    case = row.case
    meeting = None
    if row.meeting_id is not None:
        meeting = {"id": row.meeting_id, "start_at": row.meeting_start, "board": row.board_name}
    return {
        "id": case.id, "mrn": case.mrn, "display_name": case.display_name, "site": case.site,
        "urgency": case.urgency, "status": case.status, "deadline": case.deadline,
        "days_left": row.days_left, "risk": row.risk, "records_received": row.records_received,
        "records_required": row.records_required, "meeting": meeting,
    }


def case_payload(case: Case) -> dict[str, Any]:
    """Everything the API shows of one case, risk and progress included."""
    today = services.local_today()
    received, required = services.records_progress(case)
    active = next((a for a in services.assignment_history(case) if a.active), None)
    meeting = None if active is None else {"id": active.meeting_id, "start_at": active.start_at,
                                           "board": active.board_name}
    return {
        **{name: getattr(case, name) for name in (
            "id", "mrn", "display_name", "site", "urgency", "status", "deadline", "diagnosis_date",
            "question", "referring_oncologist", "planned_treatment_start", "minutes", "ready_at",
            "readiness_override", "schedule_note", "records", "created_at", "updated_at")},
        "specialties": case.specialty_names,
        "days_left": services.days_left(case, today),
        "risk": services.risk(case, today, services.at_risk_margin()),
        "records_received": received,
        "records_required": required,
        "meeting": meeting,
    }


@blp.route("/cases", methods=["GET"])
@blp.arguments(QueueArgsSchema, location="query")
@blp.response(200, CasePageSchema)
def list_cases(args: dict[str, Any]) -> dict[str, Any]:
    """The case queue: by deadline, urgent first; the same filters as the web queue."""
    page, per_page = args.pop("page"), args.pop("per_page")
    result = services.read_queue(services.QueueFilters(**args), page, per_page)
    db.session.commit()
    return {
        "items": [_summary(row) for row in result.rows],
        "pagination": {"page": result.page, "per_page": result.per_page, "total": result.total,
                       "pages": result.pages},
    }


@blp.route("/cases", methods=["POST"])
@blp.arguments(CaseCreateSchema)
@blp.response(201, CaseSchema)
def create_case(data: dict[str, Any]) -> dict[str, Any]:
    """Register a referral as a case (in intake, with the default records checklist)."""
    case = services.register_case(data, by=current_user)
    payload = case_payload(case)
    db.session.commit()
    return payload


@blp.route("/cases/<int:case_id>", methods=["GET"])
@blp.response(200, CaseSchema)
def get_case(case_id: int) -> dict[str, Any]:
    """One case with its records checklist (audited as a PHI read)."""
    case = services.read_case(case_id)
    payload = case_payload(case)
    db.session.commit()
    return payload


@blp.route("/cases/<int:case_id>", methods=["PATCH"])
@blp.arguments(CaseUpdateSchema)
@blp.response(200, CaseSchema)
def update_case(changes: dict[str, Any], case_id: int) -> dict[str, Any]:
    """Change case fields; the deadline is recomputed."""
    case = services.load_case(case_id, for_update=True)
    services.update_case(case, changes)
    payload = case_payload(case)
    db.session.commit()
    return payload


@blp.route("/cases/<int:case_id>/records", methods=["GET"])
@blp.response(200, RecordSchema(many=True))
def list_records(case_id: int) -> list[RecordItem]:
    """The records checklist of a case (audited as a PHI read)."""
    case = services.read_case(case_id, what="records")
    records = list(case.records)
    db.session.commit()
    return records


@blp.route("/cases/<int:case_id>/records", methods=["POST"])
@blp.arguments(RecordCreateSchema)
@blp.response(201, RecordSchema)
def add_record(data: dict[str, Any], case_id: int) -> RecordItem:
    """Add an item to the records checklist."""
    case = services.load_case(case_id, for_update=True)
    item = services.add_record(case, **data)
    db.session.commit()
    return item


@blp.route("/cases/<int:case_id>/records/<int:record_id>", methods=["PATCH"])
@blp.arguments(RecordUpdateSchema)
@blp.response(200, RecordSchema)
def update_record(data: dict[str, Any], case_id: int, record_id: int) -> RecordItem:
    """Set or clear requested_at / received_at; the case may become ready (or go back to intake)."""
    case = services.load_case(case_id, for_update=True)
    item = services.load_record(case, record_id)
    services.update_record(item, **data)
    db.session.commit()
    return item


@blp.route("/cases/<int:case_id>/status", methods=["POST"])
@blp.arguments(StatusChangeSchema)
@blp.response(200, CaseSchema)
def change_status(data: dict[str, Any], case_id: int) -> dict[str, Any]:
    """Mark discussed, close, withdraw (with a reason) or reopen; illegal moves answer 409."""
    case = services.load_case(case_id, for_update=True)
    services.set_status(case, data["status"], data.get("reason"))
    payload = case_payload(case)
    db.session.commit()
    return payload


@blp.route("/cases/<int:case_id>/readiness-override", methods=["POST"])
@blp.arguments(ReadinessOverrideSchema)
@blp.response(200, CaseSchema)
def override_readiness(data: dict[str, Any], case_id: int) -> dict[str, Any]:
    """Mark an intake case ready with records missing, giving the reason (audited)."""
    case = services.load_case(case_id, for_update=True)
    services.override_readiness(case, data["reason"])
    payload = case_payload(case)
    db.session.commit()
    return payload
