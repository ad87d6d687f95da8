"""Marshmallow schemas of the consensus API (unknown fields are an error: marshmallow's RAISE)."""

from __future__ import annotations

from flask_login import current_user
from marshmallow import Schema, fields, validate

from tumorboard.api.schemas import Id
from tumorboard.consensus.models import ConsensusFollowup
from tumorboard.consensus.services import is_overdue, today_in
from tumorboard.vocab import CONCORDANCE, CONSENSUS_STATUSES, RECOMMENDATIONS, SPECIALTIES


class ConsensusContentSchema(Schema):
    """What the board decided; every field optional (a draft may be partial)."""

    specialties_present = fields.List(fields.Str(validate=validate.OneOf(SPECIALTIES)))
    board_diagnosis = fields.Str(validate=validate.Length(max=5000))
    concordance = fields.Str(validate=validate.OneOf(CONCORDANCE), allow_none=True)
    management_changed = fields.Bool(allow_none=True)
    management_change = fields.Str(validate=validate.Length(max=5000),
                                   metadata={"description": "how; required when management_changed"})
    recommendation_kinds = fields.List(fields.Str(validate=validate.OneOf(RECOMMENDATIONS)),
                                       metadata={"description": "at least one"})
    recommendation = fields.Str(validate=validate.Length(max=10000),
                                metadata={"description": "free text, required"})
    rationale = fields.Str(validate=validate.Length(max=10000))
    trial_eligible = fields.Bool(allow_none=True)
    trial_notes = fields.Str(validate=validate.Length(max=5000))
    dissent = fields.Str(validate=validate.Length(max=5000), metadata={"description": "who and why"})
    followup_owner_id = Id(allow_none=True,
                           metadata={"description": "an oncologist; default: the referring one"})
    followup_due = fields.Date(allow_none=True, metadata={"description": "not in the past"})


class ConsensusDraftSchema(ConsensusContentSchema):
    """PATCH body: content plus the deferral flag."""

    deferred = fields.Bool(metadata={"description": "defer the case to another meeting "
                                                    "(recommendation kinds must include further_workup)"})


class ConsensusCreateSchema(ConsensusDraftSchema):
    """POST body: the case and meeting, and any content already known."""

    case_id = Id(required=True)
    meeting_id = Id(required=True)


class AmendmentCreateSchema(Schema):
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=5000))
    changes = fields.Nested(ConsensusContentSchema, required=True,
                            metadata={"description": "field → new value"})


class ConsensusListArgsSchema(Schema):
    case_id = Id(required=True)


class AmendmentSchema(Schema):
    id = fields.Int()
    author_id = fields.Int()
    author_name = fields.Function(lambda a: a.author.name if a.author else None)
    created_at = fields.AwareDateTime()
    reason = fields.Str()
    changes = fields.Dict(keys=fields.Str())


class FollowupSchema(Schema):
    id = fields.Int()
    owner_id = fields.Int()
    due = fields.Date()
    confirmed_at = fields.AwareDateTime(allow_none=True)


class FollowupListArgsSchema(Schema):
    pending_only = fields.Bool(load_default=False, metadata={"description": "only the unconfirmed ones"})


class FollowupItemSchema(FollowupSchema):
    """A follow-up as the follow-up lists show it (ids only: the case and consensus have the rest)."""

    consensus_id = fields.Int()
    case_id = fields.Int()
    meeting_id = fields.Function(lambda f: f.consensus.meeting_id, metadata={"type": "integer"})
    confirmed_by_id = fields.Int(allow_none=True)
    created_at = fields.AwareDateTime()
    overdue = fields.Method("_overdue", metadata={
        "type": "boolean", "description": "unconfirmed and due before today (the reader's time zone)"})

    def _overdue(self, obj: ConsensusFollowup) -> bool:
        return is_overdue(obj, today_in(current_user.timezone))


class ConsensusSchema(ConsensusContentSchema):
    """A consensus as recorded (as signed), its amendments in order and the content in force."""

    id = fields.Int()
    case_id = fields.Int()
    meeting_id = fields.Int()
    status = fields.Str(validate=validate.OneOf(CONSENSUS_STATUSES))
    deferred = fields.Bool()
    created_by_id = fields.Int(allow_none=True)
    signed_by_id = fields.Int(allow_none=True)
    signed_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    amendments = fields.List(fields.Nested(AmendmentSchema))
    followup = fields.Nested(FollowupSchema, allow_none=True)
    current = fields.Method("_current", metadata={"description": "content with the amendments applied"})

    def _current(self, obj: object) -> dict[str, object]:
        return ConsensusContentSchema().dump(obj.current())  # type: ignore[attr-defined]
