"""marshmallow schemas of the calendar API."""

from marshmallow import Schema, fields


class IngestResultSchema(Schema):
    """What an incoming iTIP message did."""

    method = fields.Str(required=True, metadata={"description": "REPLY, COUNTER or REFRESH"})
    uid = fields.Str(required=True, metadata={"description": "the meeting's iCalendar UID"})
    meeting_id = fields.Int(required=True)
    updated = fields.List(fields.Str(), metadata={"description": "attendees whose answer was recorded"})
    stale = fields.List(fields.Str(), metadata={
        "description": "attendees whose reply was ignored: older than the stored answer, "
                       "for an outdated SEQUENCE, or no longer invited"})
    answered = fields.List(fields.Str(), metadata={
        "description": "attendees answered through the outbox (DECLINECOUNTER, or the REQUEST on REFRESH)"})
    ignored = fields.List(fields.Str(), metadata={
        "description": "ATTENDEE lines not invited (e.g. a delegate)"})
