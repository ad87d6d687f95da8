"""Schemas shared by every API operation: the one error body."""

from __future__ import annotations

from marshmallow import Schema, fields


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
