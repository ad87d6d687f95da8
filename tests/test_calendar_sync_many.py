"""The set-based invitation sync: many meetings at once give what syncing them one by one gives
(invitations, outbox rows and their content, audit events), in a number of SQL statements that
does not grow with the number of meetings."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from tests.factories import make_board, make_calendar_meeting, make_case, make_user, put_on_agenda
from tumorboard.audit.models import AuditEvent
from tumorboard.boards.models import BoardMember
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.services import SyncResult, sync_meeting_invitations, sync_meetings_invitations
from tumorboard.calendar.tokens import read_rsvp_token
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage

TUESDAY = datetime(2031, 1, 7, 8, 0, tzinfo=UTC)


def make_mix() -> list[Any]:
    """Meetings of two boards, each owing a different kind of message (or none): new attendees,
    a moved meeting, a case gone, a cancelled meeting, an attendee back, nothing, a held meeting,
    a role change. Everything before the last change is synced and flushed."""
    path, rad = make_user("specialist", specialty="pathology"), make_user("specialist", specialty="radiology")
    surg, nurse = (make_user("specialist", specialty="surgical_oncology"),
                   make_user("specialist", specialty="nursing"))
    retired = make_user("specialist", specialty="pathology")
    retired.active = False
    onc, onc2 = (make_user("oncologist", specialty="medical_oncology") for _ in range(2))
    board = make_board(specialties=("pathology", "radiology"), members=(path, rad, surg, nurse, retired))
    other = make_board(specialties=("pathology",), members=(path,))
    names = ("new", "moved", "gone", "cancelled", "back", "same")
    m = SimpleNamespace(**{name: make_calendar_meeting(board, start=TUESDAY + timedelta(weeks=week))
                           for week, name in enumerate(names)})
    m.held = make_calendar_meeting(board, start=TUESDAY - timedelta(weeks=1), status="held")
    m.role = make_calendar_meeting(other)
    case = make_case(oncologist=onc, specialties=("surgical_oncology",))
    put_on_agenda(case, m.new)
    put_on_agenda(make_case(oncologist=onc2, specialties=("medical_oncology",)), m.role)
    gone = put_on_agenda(make_case(oncologist=onc2, specialties=("surgical_oncology",)), m.gone)
    back = put_on_agenda(make_case(oncologist=onc, specialties=("radiology",)), m.back)
    put_on_agenda(make_case(oncologist=onc), m.same)
    for meeting in (m.moved, m.gone, m.cancelled, m.back, m.same, m.role):
        sync_meeting_invitations(meeting)
    answer(m.moved, path, "ACCEPTED")
    answer(m.cancelled, rad, "DECLINED")
    back.active = False
    sync_meeting_invitations(m.back)  # onc uninvited…
    back.active = True  # …and needed again
    m.moved.start_at += timedelta(hours=2)
    m.moved.end_at += timedelta(hours=2)
    m.moved.sequence += 1
    gone.active = False
    m.cancelled.status = "cancelled"
    m.cancelled.sequence += 1
    other.members.append(BoardMember(user_id=onc2.id))  # the referrer becomes a required member
    db.session.flush()
    return [m.new, m.moved, m.gone, m.cancelled, m.back, m.same, m.held, m.role]


def answer(meeting: Any, user: Any, partstat: str) -> None:
    invitation = db.session.scalar(sa.select(Invitation).where(Invitation.meeting_id == meeting.id,
                                                               Invitation.user_id == user.id))
    invitation.partstat = partstat
    invitation.replied_at = TUESDAY - timedelta(days=3)
    invitation.comment = "see you"


def what_clients_see(row: OutboxMessage, who: dict[int, tuple[int, int]]) -> list[Any]:
    """The message as mail and calendar clients read it: headers, then each part's type, params
    and decoded content. Date, DTSTAMP, boundaries and Message-ID are of the moment; RSVP tokens
    are replaced by the (meeting, user) of the invitation they name."""
    msg = email.message_from_bytes(row.body, policy=email.policy.default)
    assert msg["Message-ID"] == row.message_id and re.fullmatch(r"<tb-[0-9a-f]{32}@tumorboard\.test>",
                                                                 row.message_id)
    assert str(msg["Subject"]) == row.subject
    of_the_moment = {"Date", "Message-ID", "Content-Type"}
    seen: list[Any] = [[(k, str(v)) for k, v in msg.items() if k not in of_the_moment]]
    for part in msg.walk():
        params = [(k, v) for k, v in part.get_params() or [] if k != "boundary"]
        seen.append((params, part.get("Content-Transfer-Encoding"), part.get("Content-Disposition")))
        if not part.is_multipart():
            content = part.get_content()
            text = content.decode() if isinstance(content, bytes) else content
            text = re.sub(r"\r\n[ \t]", "", text)  # unfolded
            text = re.sub(r"DTSTAMP:\d{8}T\d{6}Z", "DTSTAMP:…", text)
            seen.append(re.sub(r"/rsvp/([\w.-]+)", lambda t: f"/rsvp/{who[read_rsvp_token(t[1])]}", text))
    return seen


def state(meetings: list[Any], sync: Callable[[], dict[int, SyncResult]]) -> dict[str, Any]:
    """What `sync` writes, read back inside a savepoint that is then rolled back."""
    outbox_since = db.session.scalar(sa.select(sa.func.max(OutboxMessage.id))) or 0
    audit_since = db.session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0
    ids = [m.id for m in meetings]
    with db.session.begin_nested() as savepoint:
        results = sync()
        invitations = db.session.execute(
            sa.select(*(c for c in Invitation.__table__.c if c.name not in {"id", "created_at"}))
            .where(Invitation.meeting_id.in_(ids)).order_by(Invitation.meeting_id, Invitation.user_id)).all()
        who = {i: (meeting_id, user_id) for i, meeting_id, user_id in db.session.execute(
            sa.select(Invitation.id, Invitation.meeting_id, Invitation.user_id)
            .where(Invitation.meeting_id.in_(ids)))}
        rows = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.id > outbox_since)
                                  .order_by(OutboxMessage.id)).all()
        outbox = [(r.kind, r.to_addr, r.dedupe_key, r.subject, r.status, r.attempts, what_clients_see(r, who))
                  for r in rows]
        audit = db.session.execute(sa.select(AuditEvent.action, AuditEvent.object_type, AuditEvent.object_id,
                                             AuditEvent.details)
                                   .where(AuditEvent.id > audit_since).order_by(AuditEvent.id)).all()
        savepoint.rollback()
    return {"results": results, "invitations": invitations, "outbox": outbox, "audit": audit}


def test_many_meetings_at_once_give_what_one_by_one_gives(app) -> None:
    meetings = make_mix()
    one_by_one = state(meetings, lambda: {m.id: sync_meeting_invitations(m) for m in meetings})
    at_once = state(meetings, lambda: sync_meetings_invitations([m.id for m in meetings]))
    assert at_once == one_by_one
    assert {row[0] for row in at_once["outbox"]} == {"invite", "update", "uninvite", "cancel"}
    assert sum(r.sent for r in at_once["results"].values()) == len(at_once["outbox"]) == 11
    new, moved, gone, cancelled, back, same, held, role = (at_once["results"][m.id] for m in meetings)
    assert (len(new.invited), len(moved.updated), len(gone.removed), len(cancelled.cancelled)) == (4, 2, 2, 2)
    assert len(back.invited) == 1 and same.sent == held.sent == role.sent == 0
    assert [a.object_id for a in at_once["audit"]] == [str(m.id) for m in meetings[:5]]


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)


def test_statements_do_not_grow_with_the_number_of_meetings(app) -> None:
    counts = []
    for copies in (1, 4):
        meetings = [m for _ in range(copies) for m in make_mix()]
        with statements() as seen:
            results = sync_meetings_invitations([m.id for m in meetings])
        assert sum(r.sent for r in results.values()) == 11 * copies
        assert not db.session.new and not [o for o in db.session.dirty if db.session.is_modified(o)]
        counts.append(len(seen))
    assert counts[0] == counts[1] <= 16, (counts, seen)
