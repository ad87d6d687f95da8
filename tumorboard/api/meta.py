"""Who am I: the signed-in user as the API sees them."""

from __future__ import annotations

from typing import Any

from flask_login import current_user
from marshmallow import Schema, fields

from tumorboard.api import api_blueprint

blp = api_blueprint("api_meta", __name__, url_prefix="/api/v1", description="The current user")


class MeSchema(Schema):
    id = fields.Int()
    email = fields.Email()
    name = fields.Str()
    roles = fields.List(fields.Str())
    specialty = fields.Str(allow_none=True)


@blp.route("/me")
@blp.response(200, MeSchema)
def me() -> dict[str, Any]:
    """The signed-in user."""
    return {
        "id": current_user.id,
        "email": current_user.email,
        "name": current_user.name,
        "roles": sorted(current_user.role_names),
        "specialty": current_user.specialty,
    }
