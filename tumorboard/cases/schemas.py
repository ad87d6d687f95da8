"""Marshmallow schemas of the cases API (they also generate its OpenAPI description).

Input schemas refuse unknown fields (marshmallow's default RAISE).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from tumorboard.api.schemas import Id
from tumorboard.cases.services import MAX_MINUTES, MAX_PER_PAGE, RISKS, STATUS_FILTERS
from tumorboard.db import MAX_INT
from tumorboard.vocab import CASE_STATUSES, RECORD_KINDS, SITES, SPECIALTIES, URGENCIES

# --------------------------------------------------------------------------- input


class CaseUpdateSchema(Schema):
    """Fields of a case; PATCH sends any of them."""

    mrn = fields.Str(validate=validate.Length(min=1, max=64),
                     metadata={"description": "Opaque patient reference from the hospital's records"})
    display_name = fields.Str(validate=validate.Length(min=1, max=200))
    site = fields.Str(validate=validate.OneOf(SITES))
    diagnosis_date = fields.Date(metadata={"description": "Not in the future"})
    question = fields.Str(validate=validate.Length(min=1), metadata={"description": "Question for the board"})
    referring_oncologist_id = Id(strict=True,
                                 metadata={"description": "A user with the oncologist role"})
    urgency = fields.Str(validate=validate.OneOf(URGENCIES),
                         metadata={"description": "urgent = clinical deterioration"})
    planned_treatment_start = fields.Date(allow_none=True,
                                          metadata={"description": "Not before the diagnosis date"})
    specialties = fields.List(fields.Str(validate=validate.OneOf(SPECIALTIES)),
                              metadata={"description": "Required specialties; default: the site's"})
    minutes = fields.Int(strict=True, validate=validate.Range(min=1, max=MAX_MINUTES))


class CaseCreateSchema(CaseUpdateSchema):
    mrn = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    display_name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    site = fields.Str(required=True, validate=validate.OneOf(SITES))
    diagnosis_date = fields.Date(required=True)
    question = fields.Str(required=True, validate=validate.Length(min=1))
    referring_oncologist_id = Id(required=True, strict=True)
    urgency = fields.Str(load_default="routine", validate=validate.OneOf(URGENCIES))
    minutes = fields.Int(load_default=10, strict=True, validate=validate.Range(min=1, max=MAX_MINUTES))


class QueueArgsSchema(Schema):
    site = fields.Str(validate=validate.OneOf(SITES))
    status = fields.Str(load_default="open", validate=validate.OneOf(STATUS_FILTERS),
                        metadata={"description": "open (intake, ready, scheduled), all, or one status"})
    urgency = fields.Str(validate=validate.OneOf(URGENCIES))
    risk = fields.Str(validate=validate.OneOf(RISKS))
    mrn = fields.Str(validate=validate.Length(max=64), metadata={"description": "Exact or prefix"})
    page = fields.Int(load_default=1, validate=validate.Range(min=1, max=MAX_INT))
    per_page = fields.Int(load_default=50, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class RecordCreateSchema(Schema):
    kind = fields.Str(required=True, validate=validate.OneOf(RECORD_KINDS))
    label = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    required = fields.Bool(load_default=True)


class RecordUpdateSchema(Schema):
    requested_at = fields.AwareDateTime(allow_none=True, metadata={"description": "ISO 8601 with offset"})
    received_at = fields.AwareDateTime(allow_none=True, metadata={"description": "ISO 8601 with offset; "
                                                                  "null undoes received"})


class StatusChangeSchema(Schema):
    status = fields.Str(required=True, validate=validate.OneOf(CASE_STATUSES),
                        metadata={"description": "discussed, closed, withdrawn (reason required) or "
                                                 "intake (reopen a withdrawn case)"})
    reason = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class ReadinessOverrideSchema(Schema):
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=2000))


# --------------------------------------------------------------------------- output


class UserRefSchema(Schema):
    id = fields.Int()
    name = fields.Str()


class RecordSchema(Schema):
    id = fields.Int()
    kind = fields.Str()
    label = fields.Str()
    required = fields.Bool()
    requested_at = fields.AwareDateTime(allow_none=True)
    received_at = fields.AwareDateTime(allow_none=True)
    case_status = fields.Function(lambda r: r.case.status,
                                  metadata={"description": "The case's status after the change"})


class MeetingRefSchema(Schema):
    id = fields.Int()
    start_at = fields.AwareDateTime()
    board = fields.Str()


class CaseSummarySchema(Schema):
    id = fields.Int()
    mrn = fields.Str()
    display_name = fields.Str()
    site = fields.Str()
    urgency = fields.Str()
    status = fields.Str()
    deadline = fields.Date()
    days_left = fields.Int()
    risk = fields.Str(metadata={"description": "on_track, at_risk or breached"})
    records_received = fields.Int(metadata={"description": "Required records received"})
    records_required = fields.Int()
    meeting = fields.Nested(MeetingRefSchema, allow_none=True)


class CaseSchema(CaseSummarySchema):
    diagnosis_date = fields.Date()
    question = fields.Str()
    referring_oncologist = fields.Nested(UserRefSchema)
    planned_treatment_start = fields.Date(allow_none=True)
    specialties = fields.List(fields.Str())
    minutes = fields.Int()
    ready_at = fields.AwareDateTime(allow_none=True)
    readiness_override = fields.Str(allow_none=True)
    schedule_note = fields.Str(allow_none=True)
    records = fields.List(fields.Nested(RecordSchema))
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class PaginationSchema(Schema):
    page = fields.Int()
    per_page = fields.Int()
    total = fields.Int()
    pages = fields.Int()


class CasePageSchema(Schema):
    items = fields.List(fields.Nested(CaseSummarySchema))
    pagination = fields.Nested(PaginationSchema)
