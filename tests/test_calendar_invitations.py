"""Invitations: who is invited, REQUEST/CANCEL through the outbox, SEQUENCE, idempotent sync."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.factories import invitation_of, make_calendar_meeting, make_calendar_team, make_user, put_on_agenda
from tumorboard.boards.models import BoardMember
from tumorboard.calendar.ical import parse_itip
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.services import (
    expected_attendees,
    sync_meeting_invitations,
    sync_upcoming_invitations,
)
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage


def outbox() -> list[OutboxMessage]:
    return list(db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def calendar_text(row: OutboxMessage) -> str:
    msg = email.message_from_bytes(row.body, policy=email.policy.default)
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    return re.sub(r"\r?\n[ \t]", "", part.get_content())  # unfolded


def all_text(row: OutboxMessage) -> str:
    """Every decoded part of a message plus its headers: what leaves the hospital."""
    msg = email.message_from_bytes(row.body, policy=email.policy.default)
    chunks = [str(v) for v in msg.values()]
    for part in msg.walk():
        if not part.is_multipart():
            content = part.get_content()
            chunks.append(content.decode() if isinstance(content, bytes) else content)
    return "\n".join(chunks) + row.body.decode("utf-8", "replace")


def assert_no_phi(case, texts) -> None:
    for text in texts:
        for secret in (case.display_name, case.mrn, case.question, "hepatic"):
            assert secret.lower() not in text.lower()


def test_expected_attendees_follow_board_and_agenda(app) -> None:
    t = make_calendar_team()
    retired = make_user("specialist", specialty="pathology")
    retired.active = False
    t.board.members.append(BoardMember(user_id=retired.id))
    db.session.flush()
    assert expected_attendees(t.meeting) == {t.path.id: "REQ-PARTICIPANT", t.rad.id: "REQ-PARTICIPANT"}
    put_on_agenda(t.case, t.meeting)
    assert expected_attendees(t.meeting) == {
        t.path.id: "REQ-PARTICIPANT", t.rad.id: "REQ-PARTICIPANT",
        t.surg.id: "REQ-PARTICIPANT",  # the case needs surgical oncology
        t.onc.id: "OPT-PARTICIPANT",  # the referring oncologist may present
    }  # nursing is not needed by the board nor the case


def test_sync_invites_each_attendee_once(app) -> None:
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)
    result = sync_meeting_invitations(t.meeting)
    assert sorted(result.invited) == sorted(u.email for u in (t.path, t.rad, t.surg, t.onc))
    rows = outbox()
    assert sorted(r.to_addr for r in rows) == sorted(result.invited)
    assert {r.kind for r in rows} == {"invite"}
    for row in rows:
        msg = parse_itip(row.body)
        assert (msg.method, msg.uid, msg.sequence) == ("REQUEST", t.meeting.ical_uid, 0)
        assert {r.email for r in msg.replies} == set(result.invited)  # the event lists everyone
        assert {r.partstat for r in msg.replies} == {"NEEDS-ACTION"}
        text = calendar_text(row)
        assert "SUMMARY:Breast MDT" in text and "Room 4" in text
        assert ("DESCRIPTION:1 case on the agenda.\\nAgenda (sign-in required): "
                f"http://tumorboard.test/meetings/{t.meeting.id}\\n"
                "Answer: http://tumorboard.test/rsvp/") in text
        assert "ORGANIZER;CN=tumorboard:mailto:tumorboard@localhost" in text
    assert all(i.last_sequence_sent == 0 for i in db.session.scalars(sa.select(Invitation)))

    again = sync_meeting_invitations(t.meeting)
    assert again.sent == 0 and len(outbox()) == 4  # running it twice sends nothing new


def test_time_change_raises_sequence_and_sends_an_update_to_everyone(app) -> None:
    t = make_calendar_team()
    sync_meeting_invitations(t.meeting)
    invitation_of(t.meeting, t.path).partstat = "ACCEPTED"
    before = len(outbox())

    t.meeting.start_at += timedelta(hours=2)
    t.meeting.end_at += timedelta(hours=2)
    t.meeting.sequence += 1
    result = sync_meeting_invitations(t.meeting)
    assert sorted(result.updated) == sorted([t.path.email, t.rad.email]) and not result.invited
    updates = outbox()[before:]
    assert {r.kind for r in updates} == {"update"}
    for row in updates:
        msg = parse_itip(row.body)
        assert msg.method == "REQUEST" and msg.sequence == 1
        assert msg.start == datetime(2031, 1, 7, 10, 0, tzinfo=UTC)
        assert row.subject.startswith("Updated: Breast MDT")
    accepted = invitation_of(t.meeting, t.path)
    assert accepted.partstat == "NEEDS-ACTION" and accepted.last_sequence_sent == 1  # asked again
    assert sync_meeting_invitations(t.meeting).sent == 0


def test_removed_attendee_alone_gets_a_cancel(app) -> None:
    t = make_calendar_team()
    assignment = put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    before = len(outbox())

    assignment.active = False  # the case left the agenda: surgery and its oncologist are not needed
    db.session.flush()
    result = sync_meeting_invitations(t.meeting)
    assert sorted(result.removed) == sorted([t.surg.email, t.onc.email])
    cancels = outbox()[before:]
    assert sorted(r.to_addr for r in cancels) == sorted([t.surg.email, t.onc.email])
    for row in cancels:
        msg = parse_itip(row.body)
        assert msg.method == "CANCEL" and [r.email for r in msg.replies] == [row.to_addr]  # only them
    assert not invitation_of(t.meeting, t.surg).active and invitation_of(t.meeting, t.path).active
    assert sync_meeting_invitations(t.meeting).sent == 0

    assignment.active = True  # back on this agenda: invited again
    db.session.flush()
    assert sorted(sync_meeting_invitations(t.meeting).invited) == sorted([t.surg.email, t.onc.email])


def test_cancelled_meeting_sends_cancel_to_all_once(app) -> None:
    t = make_calendar_team()
    sync_meeting_invitations(t.meeting)
    before = len(outbox())
    t.meeting.status = "cancelled"
    t.meeting.sequence += 1
    result = sync_meeting_invitations(t.meeting)
    assert sorted(result.cancelled) == sorted([t.path.email, t.rad.email])
    cancels = outbox()[before:]
    assert len(cancels) == 2
    for row in cancels:
        msg = parse_itip(row.body)
        assert msg.method == "CANCEL" and msg.sequence == 1
        assert "STATUS:CANCELLED" in calendar_text(row) and row.subject.startswith("Cancelled:")
    assert sync_meeting_invitations(t.meeting).sent == 0
    assert sync_upcoming_invitations(now=datetime(2031, 1, 1, tzinfo=UTC)) == 0


def test_a_cancelled_meeting_without_bumped_sequence_is_still_cancelled_once(app) -> None:
    t = make_calendar_team()
    sync_meeting_invitations(t.meeting)
    t.meeting.status = "cancelled"
    assert sync_meeting_invitations(t.meeting).sent == 2
    assert sync_meeting_invitations(t.meeting).sent == 0


def test_sync_upcoming_covers_future_meetings_only(app) -> None:
    t = make_calendar_team()
    past = make_calendar_meeting(t.board, start=datetime(2030, 6, 4, 7, tzinfo=UTC))
    now = datetime(2031, 1, 1, tzinfo=UTC)
    assert sync_upcoming_invitations(now=now) == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Invitation)
                             .where(Invitation.meeting_id == past.id)) == 0
    assert sync_upcoming_invitations(now=now) == 0


def test_no_phi_in_any_message(app) -> None:
    t = make_calendar_team()
    assignment = put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    t.meeting.sequence += 1
    t.meeting.location = "Room 9"
    sync_meeting_invitations(t.meeting)
    assignment.active = False
    sync_meeting_invitations(t.meeting)
    t.meeting.status = "cancelled"
    t.meeting.sequence += 1
    sync_meeting_invitations(t.meeting)
    rows = outbox()
    assert {r.kind for r in rows} == {"invite", "update", "uninvite", "cancel"}
    assert_no_phi(t.case, [all_text(r) for r in rows] + [r.subject for r in rows])


def test_a_rolled_back_savepoint_keeps_the_invitations_owed_by_earlier_changes(app) -> None:
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)  # the agenda changed: its invitations are owed at the commit
    try:
        with db.session.begin_nested():  # a later step refused (e.g. one case of a batch)
            raise ValueError("refused")
    except ValueError:
        pass
    db.session.commit()
    assert sorted(r.to_addr for r in outbox()) == sorted(u.email for u in (t.path, t.rad, t.surg, t.onc))
