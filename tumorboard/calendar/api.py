"""JSON API of the calendar feature under /api/v1: incoming iTIP (REPLY, COUNTER, REFRESH)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import current_app, request

from tumorboard.api import api_blueprint
from tumorboard.calendar.schemas import IngestResultSchema
from tumorboard.calendar.services import ingest_itip
from tumorboard.errors import DomainError
from tumorboard.extensions import db

blp = api_blueprint("api_calendar", __name__, url_prefix="/api/v1", description="calendar")

#: body types accepted by POST /itip (a raw email or a bare .ics)
ITIP_CONTENT_TYPES = frozenset({
    "message/rfc822", "text/calendar", "application/ics", "text/plain", "application/octet-stream",
})
DEFAULT_ITIP_MAX_BYTES = 2 * 1024 * 1024

_RAW = {"schema": {"type": "string", "format": "binary"}}


@blp.route("/itip", methods=["POST"])
@blp.doc(
    summary="Ingest an incoming iTIP message",
    description=(
        "For the inbound-mail integration (an admin API token) or a coordinator. The body is the "
        "raw email as received (message/rfc822, the text/calendar part is found inside) or a bare "
        "iCalendar object (text/calendar). REPLY updates the attendee's answer unless stale; "
        "COUNTER is recorded and declined (DECLINECOUNTER through the outbox); REFRESH re-sends "
        "the invitation. An unknown UID or attendee, an organizer's method (REQUEST, CANCEL …) or "
        "malformed data answer 422 and change nothing."
    ),
    requestBody={
        "required": True,
        "content": {"message/rfc822": _RAW, "text/calendar": _RAW, "application/ics": _RAW},
    },
)
@blp.response(200, IngestResultSchema)
@blp.alt_response(413, HTTPStatus(413).name)
@blp.alt_response(415, HTTPStatus(415).name)
def itip() -> dict[str, Any]:
    """Apply one iTIP message."""
    content_type = (request.mimetype or "").lower()
    if content_type not in ITIP_CONTENT_TYPES:
        raise DomainError(
            f"Send the raw email (message/rfc822) or the iCalendar object (text/calendar), "
            f"not {content_type or 'an untyped body'}.",
            status=415, code="unsupported_media_type",
        )
    limit = int(current_app.config.get("ITIP_MAX_BYTES", DEFAULT_ITIP_MAX_BYTES))
    if (request.content_length or 0) > limit:
        raise DomainError(f"The message is larger than {limit} bytes.", status=413, code="too_large")
    data = request.get_data(cache=False)
    if not data.strip():
        raise DomainError("The body is empty: send the iTIP message.", fields={"body": ["empty"]})
    result = ingest_itip(data)
    db.session.commit()
    return result.as_dict()
