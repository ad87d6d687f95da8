"""Quorum per meeting and per case, the quorum partial, and the once-only alert to coordinators."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import render_template

from tests.factories import make_calendar_meeting, make_calendar_team, make_user, put_on_agenda
from tests.helpers import login
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.quorum import case_quorum, meeting_quorum, send_quorum_alerts
from tumorboard.calendar.services import sync_meeting_invitations
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage

START = datetime(2031, 1, 7, 8, 0, tzinfo=UTC)  # the team's meeting


def accept(meeting, *users, partstat: str = "ACCEPTED") -> None:
    for user in users:
        db.session.scalar(sa.select(Invitation).where(Invitation.meeting_id == meeting.id,
                                                      Invitation.user_id == user.id)).partstat = partstat
    db.session.flush()


def alerts() -> list[OutboxMessage]:
    return list(db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "alert")
                                   .order_by(OutboxMessage.id)))


def test_meeting_quorum_needs_an_acceptance_per_required_specialty(app) -> None:
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    quorum = meeting_quorum(t.meeting)
    assert quorum.required == {"pathology", "radiology", "surgical_oncology"}
    assert quorum.accepted == set() and quorum.missing == quorum.required and not quorum.met

    accept(t.meeting, t.path)
    accept(t.meeting, t.rad, partstat="TENTATIVE")  # tentative does not count
    accept(t.meeting, t.onc)  # medical oncology accepted, but nobody needs it
    quorum = meeting_quorum(t.meeting)
    assert quorum.accepted == {"pathology"} and quorum.missing == {"radiology", "surgical_oncology"}
    assert quorum.missing_labels == ["Radiology", "Surgical oncology"]

    accept(t.meeting, t.rad, t.surg)
    assert meeting_quorum(t.meeting).met

    db.session.scalar(sa.select(Invitation).where(Invitation.user_id == t.surg.id)).active = False
    assert meeting_quorum(t.meeting).missing == {"surgical_oncology"}  # no longer invited: not counted


def test_case_quorum_looks_at_the_case_specialties_only(app) -> None:
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    assert case_quorum(t.case, t.meeting).missing == {"surgical_oncology"}
    accept(t.meeting, t.surg)
    quorum = case_quorum(t.case, t.meeting)
    assert quorum.met and quorum.required == {"surgical_oncology"}
    assert not meeting_quorum(t.meeting).met  # pathology and radiology still missing


def test_quorum_partial_renders_met_and_missing(app) -> None:
    t = make_calendar_team()
    sync_meeting_invitations(t.meeting)
    accept(t.meeting, t.path)
    with app.test_request_context():
        html = render_template("calendar/_quorum.html", quorum=meeting_quorum(t.meeting))
    assert "Quorum: not met" in html
    assert "Pathology: accepted" in html and "Radiology: no acceptance yet" in html
    accept(t.meeting, t.rad)
    with app.test_request_context():
        assert "Quorum: met" in render_template("calendar/_quorum.html", quorum=meeting_quorum(t.meeting))


def test_quorum_alert_goes_to_every_coordinator_once(app) -> None:
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    accept(t.meeting, t.path)
    coordinators = [make_user("coordinator"), make_user("coordinator", "admin")]
    retired = make_user("coordinator")
    retired.active = False
    make_user("specialist")
    covered = make_calendar_meeting(t.board, start=START + timedelta(hours=4))
    sync_meeting_invitations(covered)
    accept(covered, t.path, t.rad)
    later = make_calendar_meeting(t.board, start=START + timedelta(days=7))  # outside the window
    cancelled = make_calendar_meeting(t.board, start=START + timedelta(hours=8), status="cancelled")

    now = START - timedelta(hours=48)
    assert send_quorum_alerts(now=now) == 2
    rows = alerts()
    assert sorted(r.to_addr for r in rows) == sorted(u.email for u in coordinators)
    assert {r.dedupe_key for r in rows} == {f"quorum-alert:{t.meeting.id}:{u.email}" for u in coordinators}
    body = email.message_from_bytes(rows[0].body, policy=email.policy.default).get_content()
    assert "Breast MDT" in body and "Radiology, Surgical oncology" in body
    assert f"Agenda (sign-in required): http://tumorboard.test/meetings/{t.meeting.id}\r\n" in body
    for secret in (t.case.display_name, t.case.mrn, t.case.question):
        assert secret not in body and secret not in rows[0].subject
    assert send_quorum_alerts(now=now + timedelta(hours=1)) == 0  # sent once per meeting
    assert len(alerts()) == 2
    assert later.id and cancelled.id and covered.id  # none of them alerted

    assert send_quorum_alerts(now=START - timedelta(days=4)) == 0  # not yet within 72 h
    assert send_quorum_alerts(now=START + timedelta(days=4), hours_before=96) == 2  # `later` now


def test_agenda_page_shows_the_meeting_and_case_quorum(app, client) -> None:
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    accept(t.meeting, t.path, t.surg)
    coordinator = make_user("coordinator")
    db.session.commit()
    login(client, coordinator.email)
    page = client.get(f"/meetings/{t.meeting.id}").get_data(as_text=True)
    # the meeting needs the board's pathology and radiology and the case's surgical oncology
    assert "Quorum: not met" in page and "Radiology: no acceptance yet" in page
    assert "Pathology: accepted" in page and "Surgical oncology: accepted" in page
    assert re.search(r'class="quorum-met">\s*met</td>', page)  # the case's own specialty is covered
    assert not meeting_quorum(t.meeting).met
    accept(t.meeting, t.rad)
    db.session.commit()
    assert "Quorum: met" in client.get(f"/meetings/{t.meeting.id}").get_data(as_text=True)


def test_agenda_page_names_the_specialties_a_case_still_misses(app, client) -> None:
    t = make_calendar_team()
    put_on_agenda(t.case, t.meeting)
    sync_meeting_invitations(t.meeting)
    coordinator = make_user("coordinator")
    db.session.commit()
    login(client, coordinator.email)
    page = client.get(f"/meetings/{t.meeting.id}").get_data(as_text=True)
    assert "missing: surgical oncology" in page
    assert "Required specialties</dt><dd>pathology, radiology" in page  # the board's core ones
