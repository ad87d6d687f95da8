"""Marshmallow schemas of the boards API (unknown fields are an error: marshmallow's RAISE)."""

from __future__ import annotations

from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

from marshmallow import Schema, fields, validate, validates_schema
from marshmallow.exceptions import ValidationError

from tumorboard.api.schemas import Id
from tumorboard.db import MAX_INT
from tumorboard.vocab import ASSIGNMENT_SOURCES, MEETING_KINDS, MEETING_STATUSES, SITES, SPECIALTIES

_MINUTES = validate.Range(min=0, max=24 * 60)


def _local_time(value: time) -> None:
    if value.tzinfo is not None:
        raise ValidationError("A local time of day in the board's time zone, without an offset.")

_POSITIVE_MINUTES = validate.Range(min=1, max=24 * 60)


# --- boards -----------------------------------------------------------------------------------

class MemberSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    specialty = fields.Str(allow_none=True)


class BoardSchema(Schema):
    id = fields.Int()
    name = fields.Str()
    sites = fields.List(fields.Str(), attribute="site_names")
    rrule = fields.Str()
    timezone = fields.Str()
    first_date = fields.Date()
    start_time = fields.Time()
    duration_minutes = fields.Int()
    location = fields.Str()
    video_url = fields.Str()
    capacity_minutes = fields.Int()
    default_case_minutes = fields.Int()
    specialties = fields.List(fields.Str(), attribute="specialty_names")
    members = fields.Method("_members", metadata={"type": "array", "items": {"type": "object"}})
    active = fields.Bool()

    def _members(self, board: Any) -> list[dict[str, Any]]:
        return [{"id": m.user.id, "name": m.user.name, "specialty": m.user.specialty}
                for m in sorted(board.members, key=lambda m: m.user_id)]


def _board_fields(required: bool) -> dict[str, fields.Field]:
    """Input fields of a board; all required on create, none on update."""
    req = {"required": True} if required else {}
    return {
        "name": fields.Str(validate=validate.Length(min=1, max=200), **req),
        "sites": fields.List(fields.Str(validate=validate.OneOf(list(SITES))),
                             validate=validate.Length(min=1), **req),
        "rrule": fields.Str(validate=validate.Length(min=1, max=500), **req),
        "timezone": fields.Str(validate=validate.Length(min=1, max=64), **req),
        "first_date": fields.Date(**req),
        "start_time": fields.Time(validate=_local_time, metadata={
            "description": "HH:MM[:SS] in the board's time zone (no offset)", "example": "08:00"}, **req),
        "duration_minutes": fields.Int(strict=True, validate=_POSITIVE_MINUTES, **req),
        "location": fields.Str(validate=validate.Length(max=300)),
        "video_url": fields.Str(validate=validate.Length(max=500)),
        "capacity_minutes": fields.Int(strict=True, validate=_MINUTES, **req),
        "default_case_minutes": fields.Int(strict=True, validate=_POSITIVE_MINUTES),
        "specialties": fields.List(fields.Str(validate=validate.OneOf(SPECIALTIES))),
        "member_ids": fields.List(Id(strict=True)),
        "active": fields.Bool(),
    }


class _TimezoneCheck(Schema):
    @validates_schema
    def _zone(self, data: dict[str, Any], **_kw: Any) -> None:
        name = data.get("timezone")
        if name is None:
            return
        try:
            ZoneInfo(name)
        except (ValueError, KeyError, OSError) as exc:
            raise ValidationError("Not a known IANA time zone, e.g. Europe/London.", "timezone") from exc


BoardCreateSchema = _TimezoneCheck.from_dict(_board_fields(True), name="BoardCreateSchema")
BoardUpdateSchema = _TimezoneCheck.from_dict(_board_fields(False), name="BoardUpdateSchema")


class BoardQuerySchema(Schema):
    active = fields.Bool()


class MaterialiseResultSchema(Schema):
    created = fields.Int()


# --- meetings ---------------------------------------------------------------------------------

class MeetingSchema(Schema):
    id = fields.Int()
    board_id = fields.Int()
    board_name = fields.Function(lambda m: m.board.name)
    kind = fields.Str()
    recurrence_id = fields.DateTime(allow_none=True)
    start = fields.DateTime(attribute="start_at")
    end = fields.DateTime(attribute="end_at")
    timezone = fields.Function(lambda m: m.board.timezone)
    local_start = fields.Function(lambda m: m.start_at.astimezone(ZoneInfo(m.board.timezone)).isoformat())
    status = fields.Str()
    location = fields.Str()
    capacity_minutes = fields.Int()
    minutes_used = fields.Method("_minutes_used", metadata={"type": "integer"})
    ical_uid = fields.Str()
    sequence = fields.Int()
    agenda_frozen_at = fields.DateTime(allow_none=True)

    def _minutes_used(self, meeting: Any) -> int:
        from tumorboard.cases.assignments import minutes_used

        return minutes_used(meeting)


class MeetingQuerySchema(Schema):
    board_id = Id()
    from_ = fields.AwareDateTime(data_key="from")
    to = fields.AwareDateTime()
    status = fields.Str(validate=validate.OneOf(MEETING_STATUSES))
    kind = fields.Str(validate=validate.OneOf(MEETING_KINDS))


class MeetingPatchSchema(Schema):
    """Move (start with end or duration, and/or location), cancel or hold, freeze the agenda."""

    start = fields.AwareDateTime()
    end = fields.AwareDateTime()
    duration_minutes = fields.Int(strict=True, validate=_POSITIVE_MINUTES)
    location = fields.Str(validate=validate.Length(max=300))
    status = fields.Str(validate=validate.OneOf(["cancelled", "held"]))
    agenda_frozen = fields.Bool()

    @validates_schema
    def _one_thing(self, data: dict[str, Any], **_kw: Any) -> None:
        moves = {"start", "end", "duration_minutes", "location"} & set(data)
        if "status" in data and (moves or "agenda_frozen" in data):
            raise ValidationError("Change the status on its own.", "status")
        if "end" in data and "duration_minutes" in data:
            raise ValidationError("Give either an end or a duration, not both.", "end")
        if not data:
            raise ValidationError("Nothing to change.", "_schema")


class UrgentSlotSchema(Schema):
    board_id = Id(strict=True, required=True)
    start = fields.AwareDateTime(required=True)
    duration_minutes = fields.Int(strict=True, validate=_POSITIVE_MINUTES)
    capacity_minutes = fields.Int(strict=True, validate=_MINUTES)
    location = fields.Str(validate=validate.Length(max=300))


# --- assignments ------------------------------------------------------------------------------

class AssignmentSchema(Schema):
    id = fields.Int()
    case_id = fields.Int()
    meeting_id = fields.Int()
    minutes = fields.Int()
    position = fields.Int()
    source = fields.Str(validate=validate.OneOf(ASSIGNMENT_SOURCES))
    pinned = fields.Bool()
    active = fields.Bool()
    created_at = fields.DateTime()
    #: the meeting's agenda takes more minutes than its capacity (a coordinator overbooked it)
    overbooked = fields.Method("_overbooked", metadata={"type": "boolean"})

    def _overbooked(self, assignment: Any) -> bool:
        from tumorboard.cases.assignments import is_overbooked

        return is_overbooked(assignment.meeting)


class AssignmentQuerySchema(Schema):
    meeting_id = Id()
    case_id = Id()
    include_inactive = fields.Bool(load_default=False)


class AssignmentCreateSchema(Schema):
    case_id = Id(strict=True, required=True)
    meeting_id = Id(strict=True, required=True)
    pinned = fields.Bool(load_default=False)
    minutes = fields.Int(strict=True, validate=_POSITIVE_MINUTES)


class AssignmentPatchSchema(Schema):
    meeting_id = Id(strict=True)
    pinned = fields.Bool()
    position = fields.Int(strict=True, validate=validate.Range(min=1, max=MAX_INT))

    @validates_schema
    def _something(self, data: dict[str, Any], **_kw: Any) -> None:
        if not data:
            raise ValidationError("Nothing to change.", "_schema")
