"""RSVP links (public, signed, expiring; GET changes nothing) and the calendar feeds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import (
    invitation_of,
    make_board,
    make_calendar_meeting,
    make_calendar_team,
    put_on_agenda,
)
from tests.helpers import login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.models import User
from tumorboard.boards.models import Board
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.services import (
    feed_for_board,
    feed_for_user,
    rotate_board_feed_token,
    sync_meeting_invitations,
)
from tumorboard.calendar.tokens import make_rsvp_token
from tumorboard.extensions import db


@pytest.fixture
def team(app):
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    db.session.commit()
    return t


def audit_count() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))


def assert_no_phi(case, text: str) -> None:
    for secret in (case.display_name, case.mrn, case.question):
        assert secret not in text


# --------------------------------------------------------------------------- RSVP


def test_rsvp_page_shows_the_meeting_and_a_get_changes_nothing(team, client) -> None:
    url = f"/rsvp/{make_rsvp_token(invitation_of(team.meeting, team.path).id)}"
    before = audit_count()
    for _ in range(2):  # a link scanner fetching the page answers for nobody
        page = client.get(url)
        assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Breast MDT" in text and "Tue 7 Jan 2031, 08:00–09:00 (Europe/London)" in text
    assert "Room 4, Oncology Centre" in text
    for value, label in (("ACCEPTED", "Accept"), ("TENTATIVE", "Tentative"), ("DECLINED", "Decline")):
        assert f'name="answer" value="{value}"' in text and f">{label}</button>" in text
    assert 'name="csrf_token"' in text
    assert_no_phi(team.case, text)
    assert invitation_of(team.meeting, team.path).partstat == "NEEDS-ACTION" and audit_count() == before


def test_rsvp_post_records_the_answer(team, client) -> None:
    url = f"/rsvp/{make_rsvp_token(invitation_of(team.meeting, team.path).id)}"
    response = post_form(client, url, {"answer": "DECLINED"})
    assert response.status_code == 303
    answer = invitation_of(team.meeting, team.path)
    assert answer.partstat == "DECLINED" and answer.replied_at is not None
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "invitation.reply"))
    assert event.details == {"meeting_id": team.meeting.id, "attendee": team.path.email,
                             "partstat": "DECLINED", "via": "rsvp"}
    assert "Decline" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_rsvp_post_without_csrf_or_with_a_bad_answer_changes_nothing(team, client) -> None:
    url = f"/rsvp/{make_rsvp_token(invitation_of(team.meeting, team.path).id)}"
    assert client.post(url, data={"answer": "ACCEPTED"}).status_code == 400
    response = post_form(client, url, {"answer": "MAYBE"})
    assert response.status_code == 422
    assert "Choose Accept, Tentative or Decline." in response.get_data(as_text=True)
    assert invitation_of(team.meeting, team.path).partstat == "NEEDS-ACTION"


def test_tampered_or_unknown_tokens_are_refused(team, client) -> None:
    token = make_rsvp_token(invitation_of(team.meeting, team.path).id)
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    response = client.get(f"/rsvp/{tampered}")
    assert response.status_code == 404 and "not valid" in response.get_data(as_text=True)
    assert client.get(f"/rsvp/{make_rsvp_token(987654)}").status_code == 404
    assert client.post(f"/rsvp/{tampered}", data={"answer": "ACCEPTED"}).status_code in (400, 404)
    assert invitation_of(team.meeting, team.path).partstat == "NEEDS-ACTION"


def test_token_expires_with_its_max_age(team, client, app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "RSVP_TOKEN_MAX_AGE", 3600)
    with time_machine.travel(datetime(2030, 12, 1, 9, 0, tzinfo=UTC), tick=False):
        token = make_rsvp_token(invitation_of(team.meeting, team.path).id)
        assert client.get(f"/rsvp/{token}").status_code == 200
    with time_machine.travel(datetime(2030, 12, 1, 11, 0, tzinfo=UTC), tick=False):
        response = client.get(f"/rsvp/{token}")
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)


def test_token_stops_working_when_the_meeting_has_ended(team, client, app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "RSVP_TOKEN_MAX_AGE", 20 * 365 * 24 * 3600)
    token = make_rsvp_token(invitation_of(team.meeting, team.path).id)
    with time_machine.travel(datetime(2031, 1, 7, 9, 30, tzinfo=UTC), tick=False):
        response = client.get(f"/rsvp/{token}")
    assert response.status_code == 400 and "the meeting is over" in response.get_data(as_text=True)


def test_cancelled_meeting_needs_no_answer(team, client) -> None:
    team.meeting.status = "cancelled"
    db.session.commit()
    url = f"/rsvp/{make_rsvp_token(invitation_of(team.meeting, team.path).id)}"
    page = client.get(url).get_data(as_text=True)
    assert "cancelled" in page and 'name="answer"' not in page


# --------------------------------------------------------------------------- feeds


def test_personal_feed_lists_active_invitations_without_phi(team, client) -> None:
    other = make_calendar_meeting(team.board, start=datetime(2031, 1, 14, 8, tzinfo=UTC))
    gone = make_calendar_meeting(team.board, start=datetime(2031, 1, 21, 8, tzinfo=UTC))
    sync_meeting_invitations(other)
    sync_meeting_invitations(gone)
    other.status = "cancelled"
    invitation = db.session.scalar(sa.select(Invitation).where(Invitation.meeting_id == gone.id,
                                                               Invitation.user_id == team.path.id))
    invitation.active = False
    db.session.commit()
    response = client.get(f"/feeds/{team.path.feed_token}.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    text = response.get_data(as_text=True)
    assert text.startswith("BEGIN:VCALENDAR") and "METHOD" not in text
    assert team.meeting.ical_uid in text and other.ical_uid in text and gone.ical_uid not in text
    assert text.count("STATUS:CANCELLED") == 1 and "SUMMARY:Breast MDT" in text
    assert "ATTENDEE" not in text
    assert_no_phi(team.case, text)
    assert feed_for_user(team.path) == response.data


def test_feeds_answer_304_when_unchanged(team, client) -> None:
    url = f"/feeds/{team.path.feed_token}.ics"
    first = client.get(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    team.meeting.location = "Room 9"
    team.meeting.sequence += 1
    db.session.commit()
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert "Room 9" in changed.get_data(as_text=True)


def test_board_feed_and_revoking_it(team, client) -> None:
    old = team.board.feed_token
    response = client.get(f"/feeds/boards/{old}.ics")
    assert response.status_code == 200 and team.meeting.ical_uid in response.get_data(as_text=True)
    assert_no_phi(team.case, response.get_data(as_text=True))
    assert feed_for_board(team.board) == response.data
    new = rotate_board_feed_token(team.board)
    db.session.commit()
    assert client.get(f"/feeds/boards/{old}.ics").status_code == 404
    assert client.get(f"/feeds/boards/{new}.ics").status_code == 200
    assert db.session.scalar(sa.select(AuditEvent.object_type).where(
        AuditEvent.action == "feed_token.rotate")) == "board"
    assert db.session.get(Board, team.board.id).feed_token == new


def test_my_calendar_page_shows_and_replaces_the_feed_address(team, client) -> None:
    assert client.get("/calendar").status_code == 302  # sign-in needed
    old = team.path.feed_token
    login(client, team.path.email)
    page = client.get("/calendar").get_data(as_text=True)
    assert f"/feeds/{old}.ics" in page and "Breast MDT" in page and "/rsvp/" in page
    assert_no_phi(team.case, page)
    response = post_form(client, "/calendar/feed-token", {}, form_url="/calendar")
    assert response.status_code == 303
    db.session.expire_all()
    new = db.session.get(User, team.path.id).feed_token
    assert new != old
    assert client.get(f"/feeds/{old}.ics").status_code == 404
    assert client.get(f"/feeds/{new}.ics").status_code == 200
    assert client.post("/calendar/feed-token").status_code == 400  # no CSRF token: refused


def test_board_feed_of_a_board_without_meetings_is_an_empty_calendar(team, client) -> None:
    empty = make_board(name="Quiet MDT")
    db.session.commit()
    response = client.get(f"/feeds/boards/{empty.feed_token}.ics")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "X-WR-CALNAME:Quiet MDT" in text and "BEGIN:VEVENT" not in text
    assert "Last-Modified" not in response.headers
    assert client.get(f"/feeds/boards/{empty.feed_token}.ics",
                      headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
    assert client.get("/feeds/boards/no-such-token.ics").status_code == 404


def test_board_feed_events_carry_what_an_invitation_carries(team, client) -> None:
    urgent = make_calendar_meeting(team.board, start=datetime(2031, 1, 9, 13, tzinfo=UTC), kind="urgent",
                                   location="")
    team.board.location = "Tumour board room"
    db.session.commit()
    text = client.get(f"/feeds/boards/{team.board.feed_token}.ics").get_data(as_text=True)
    event = text[text.index(f"UID:{urgent.ical_uid}"):]
    event = event[:event.index("END:VEVENT")]
    assert "SUMMARY:Breast MDT (urgent slot)" in event and "LOCATION:Tumour board room" in event
    assert "DTSTART;TZID=Europe/London:20310109T130000" in event and "STATUS:CONFIRMED" in event
    assert f"/meetings/{urgent.id}" in event and "ATTENDEE" not in event
    # the feed follows a change of the board's name, which no meeting row records
    team.board.name = "Breast and Axilla MDT"
    db.session.commit()
    renamed = client.get(f"/feeds/boards/{team.board.feed_token}.ics").get_data(as_text=True)
    assert "X-WR-CALNAME:Breast and Axilla MDT" in renamed and "SUMMARY:Breast and Axilla MDT" in renamed
