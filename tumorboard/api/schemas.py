"""Schemas and fields shared by every API feature: row ids, the one error body."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from tumorboard.db import MAX_INT


class Id(fields.Integer):
    """A row id in a body or query: 1 … MAX_INT (documented as such), so no number the database
    cannot hold gets past validation; whether the row exists is the view's or service's check."""

    def __init__(self, **kwargs: Any) -> None:
        extra = kwargs.pop("validate", None)
        extra = [] if extra is None else [extra] if callable(extra) else list(extra)
        super().__init__(validate=[validate.Range(min=1, max=MAX_INT), *extra], **kwargs)



class ErrorDetailSchema(Schema):
    code = fields.Str(required=True, metadata={
        "description": "Machine-readable: validation_error, not_found, conflict, illegal_transition …"})
    message = fields.Str(required=True, metadata={"description": "For a person to read"})
    #: `fields` in the body (a Schema attribute of that name would shadow Schema.fields)
    fields_ = fields.Dict(keys=fields.Str(), required=True, data_key="fields", metadata={
        "description": "Field (or location) → messages; empty when the error is not about a field"})


class ErrorSchema(Schema):
    """`{"error": {"code", "message", "fields"}}`: the body of every API error (tumorboard.errors)."""

    error = fields.Nested(ErrorDetailSchema, required=True)
