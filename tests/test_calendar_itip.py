"""Incoming iTIP: REPLY, COUNTER, REFRESH through the service, the API and the CLI; real samples."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.factories import invitation_of, make_calendar_team, make_user
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.services import issue_api_token
from tumorboard.calendar.ical import parse_itip
from tumorboard.calendar.imip import build_imip_message
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.services import ingest_itip, sync_meeting_invitations
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "ics-samples" / "ics"
SAMPLE_FILES = sorted(SAMPLES.glob("*.ics")) if SAMPLES.is_dir() else []


def itip(uid: str, email: str, partstat: str = "ACCEPTED", *, method: str = "REPLY", sequence: int = 0,
         dtstamp: str | None = "20310102T100000Z", params: str = "", comment: str | None = None,
         start: str = "20310107T080000Z", extra: tuple[str, ...] = ()) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Synthetic//Test//EN", f"METHOD:{method}",
             "BEGIN:VEVENT", f"UID:{uid}", f"SEQUENCE:{sequence}"]
    if dtstamp:
        lines.append(f"DTSTAMP:{dtstamp}")
    lines += [f"DTSTART:{start}", "ORGANIZER;CN=tumorboard:mailto:tumorboard@localhost",
              f"ATTENDEE;PARTSTAT={partstat}{params}:mailto:{email}", *extra]
    if comment:
        lines.append(f"COMMENT:{comment}")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines).encode()


@pytest.fixture
def team(app):
    t = make_calendar_team()
    sync_meeting_invitations(t.meeting)
    db.session.commit()
    return t


def state() -> tuple:
    """Everything an ingest could change."""
    db.session.expire_all()
    invitations = db.session.execute(sa.select(
        Invitation.id, Invitation.partstat, Invitation.replied_at, Invitation.comment,
        Invitation.delegated_to, Invitation.last_sequence_sent).order_by(Invitation.id)).all()
    count = sa.select(sa.func.count())
    return (invitations, db.session.scalar(count.select_from(OutboxMessage)),
            db.session.scalar(count.select_from(AuditEvent)))


def test_reply_records_the_answer(team) -> None:
    data = itip(team.meeting.ical_uid, "PATH@Example.ORG", comment="Will bring the slides")
    result = ingest_itip(data)
    assert (result.method, result.uid, result.updated, result.stale) == (
        "REPLY", team.meeting.ical_uid, ["path@example.org"], [])
    answer = invitation_of(team.meeting, team.path)
    assert answer.partstat == "ACCEPTED" and answer.comment == "Will bring the slides"
    assert answer.replied_at == datetime(2031, 1, 2, 10, 0, tzinfo=UTC)
    assert db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "invitation.reply")
                             ).details["partstat"] == "ACCEPTED"
    assert invitation_of(team.meeting, team.rad).partstat == "NEEDS-ACTION"


def test_older_reply_is_ignored_as_stale(team) -> None:
    ingest_itip(itip(team.meeting.ical_uid, team.path.email, "ACCEPTED", dtstamp="20310102T100000Z"))
    late = ingest_itip(itip(team.meeting.ical_uid, team.path.email, "DECLINED", dtstamp="20310101T100000Z"))
    assert late.stale == [team.path.email] and late.updated == []
    assert invitation_of(team.meeting, team.path).partstat == "ACCEPTED"


def test_reply_to_an_outdated_sequence_is_ignored_as_stale(team) -> None:
    team.meeting.sequence = 1
    sync_meeting_invitations(team.meeting)  # update REQUEST with SEQUENCE:1
    old = ingest_itip(itip(team.meeting.ical_uid, team.path.email, "ACCEPTED", sequence=0,
                           dtstamp="20320101T000000Z"))
    assert old.stale == [team.path.email]
    assert invitation_of(team.meeting, team.path).partstat == "NEEDS-ACTION"
    current = ingest_itip(itip(team.meeting.ical_uid, team.path.email, "ACCEPTED", sequence=1))
    assert current.updated == [team.path.email]
    assert invitation_of(team.meeting, team.path).partstat == "ACCEPTED"


def test_reply_without_dtstamp_is_dated_now(team) -> None:
    ingest_itip(itip(team.meeting.ical_uid, team.rad.email, "TENTATIVE", dtstamp=None))
    answer = invitation_of(team.meeting, team.rad)
    assert answer.partstat == "TENTATIVE"
    assert abs((datetime.now(UTC) - answer.replied_at).total_seconds()) < 3600


def test_sent_by_and_delegation(team) -> None:
    sent_by = ';SENT-BY="mailto:assistant@example.org"'
    result = ingest_itip(itip(team.meeting.ical_uid, team.path.email, "ACCEPTED", params=sent_by))
    assert result.updated == [team.path.email]  # the attendee is the ATTENDEE address, not SENT-BY
    delegated = ingest_itip(itip(
        team.meeting.ical_uid, team.rad.email, "DELEGATED", dtstamp="20310103T000000Z",
        params=';DELEGATED-TO="mailto:deputy@example.org"',
        extra=('ATTENDEE;PARTSTAT=NEEDS-ACTION;DELEGATED-FROM="mailto:rad@example.org":'
               "mailto:deputy@example.org",),
    ))
    assert delegated.updated == [team.rad.email] and delegated.ignored == ["deputy@example.org"]
    answer = invitation_of(team.meeting, team.rad)
    assert answer.partstat == "DELEGATED" and answer.delegated_to == "deputy@example.org"


def test_counter_is_recorded_and_declined_through_the_outbox(team) -> None:
    before = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
    data = itip(team.meeting.ical_uid, team.path.email, "NEEDS-ACTION", method="COUNTER",
                start="20310108T090000Z")
    result = ingest_itip(data)
    assert result.answered == [team.path.email] and result.updated == []
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "itip.counter"))
    assert event.details["proposed_start"] == "2031-01-08T09:00:00+00:00"
    rows = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()[before:]
    assert [(r.kind, r.to_addr) for r in rows] == [("declinecounter", team.path.email)]
    reply = parse_itip(rows[0].body)
    assert reply.method == "DECLINECOUNTER" and reply.uid == team.meeting.ical_uid
    assert [r.email for r in reply.replies] == [team.path.email]
    ingest_itip(data)  # the same COUNTER imported again is not declined twice
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == before + 1


def test_refresh_resends_the_request(team) -> None:
    before = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
    result = ingest_itip(itip(team.meeting.ical_uid, team.rad.email, "NEEDS-ACTION", method="REFRESH"))
    assert result.answered == [team.rad.email]
    rows = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()[before:]
    assert len(rows) == 1 and rows[0].to_addr == team.rad.email
    assert parse_itip(rows[0].body).method == "REQUEST"


@pytest.mark.parametrize(("make", "words"), [
    (lambda t: itip("meeting-nope@elsewhere.test", t.path.email), "No meeting of ours has the UID"),
    (lambda t: itip(t.meeting.ical_uid, "stranger@elsewhere.test"), "not invited"),
    (lambda t: b"BEGIN:VCALENDAR\r\nthis is not iCalendar\r\n", "Not a usable iTIP message"),
    (lambda t: b"Hello, just an email", "Not a usable iTIP message"),
    (lambda t: itip(t.meeting.ical_uid, t.path.email, method="REQUEST"), "organizer"),
    (lambda t: itip(t.meeting.ical_uid, t.path.email, "COMPLETED"), "PARTSTAT"),
])
def test_refusals_change_nothing(team, make, words) -> None:
    before = state()
    with pytest.raises(DomainError) as refused:
        ingest_itip(make(team))
    assert refused.value.status == 422 and words in refused.value.message
    db.session.rollback()
    assert state() == before


# --------------------------------------------------------------------------- API


def api_token(*roles: str) -> dict[str, str]:
    user = make_user(*roles)
    _, secret = issue_api_token(user, "inbound mail")
    db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


def test_api_accepts_a_raw_email_from_the_inbound_mail_integration(team, client) -> None:
    ics = itip(team.meeting.ical_uid, team.path.email, "DECLINED", comment="On leave")
    mail = build_imip_message(ics=ics, method="REPLY", subject="Declined: Breast MDT", text="Declined",
                              sender=team.path.email, to="tumorboard@localhost",
                              message_id="<reply-1@example.org>")
    response = client.post("/api/v1/itip", data=bytes(mail), content_type="message/rfc822",
                           headers=api_token("admin"))
    assert response.status_code == 200, response.json
    assert response.json["method"] == "REPLY" and response.json["uid"] == team.meeting.ical_uid
    assert response.json["updated"] == [team.path.email] and response.json["stale"] == []
    assert invitation_of(team.meeting, team.path).partstat == "DECLINED"


def test_api_refuses_with_422_and_changes_nothing(team, client) -> None:
    headers = api_token("coordinator")
    before = state()
    for body in (itip("unknown@elsewhere.test", team.path.email),
                 itip(team.meeting.ical_uid, "stranger@elsewhere.test"), b"garbage"):
        response = client.post("/api/v1/itip", data=body, content_type="text/calendar", headers=headers)
        assert response.status_code == 422
        assert set(response.json["error"]) == {"code", "message", "fields"}
    response = client.post("/api/v1/itip", data=b"{}", content_type="application/json", headers=headers)
    assert response.status_code == 415
    assert state() == before


def test_api_needs_a_coordinator_or_admin(team, client) -> None:
    body = itip(team.meeting.ical_uid, team.path.email)
    assert client.post("/api/v1/itip", data=body, content_type="text/calendar").status_code == 401
    response = client.post("/api/v1/itip", data=body, content_type="text/calendar",
                           headers=api_token("specialist"))
    assert response.status_code == 403 and invitation_of(team.meeting, team.path).partstat == "NEEDS-ACTION"


def test_api_is_documented_with_a_request_body(client) -> None:
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/itip"]["post"]
    assert {"message/rfc822", "text/calendar"} <= set(operation["requestBody"]["content"])


# --------------------------------------------------------------------------- CLI


def test_cli_imports_a_file_and_stdin(team, app, tmp_path) -> None:
    runner = app.test_cli_runner()
    path = tmp_path / "reply.ics"
    path.write_bytes(itip(team.meeting.ical_uid, team.path.email, "TENTATIVE"))
    result = runner.invoke(args=["tumorboard", "itip", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "REPLY" in result.output and "updated: path@example.org" in result.output
    assert invitation_of(team.meeting, team.path).partstat == "TENTATIVE"
    result = runner.invoke(args=["tumorboard", "itip", "import", "-"],
                           input=itip(team.meeting.ical_uid, team.rad.email, "ACCEPTED"))
    assert result.exit_code == 0 and invitation_of(team.meeting, team.rad).partstat == "ACCEPTED"


def test_cli_refusal_exits_1_with_the_message(team, app, tmp_path) -> None:
    before = state()
    path = tmp_path / "reply.ics"
    path.write_bytes(itip("unknown@elsewhere.test", team.path.email))
    result = app.test_cli_runner().invoke(args=["tumorboard", "itip", "import", str(path)])
    assert result.exit_code == 1 and "No meeting of ours has the UID" in result.output
    assert state() == before


# --------------------------------------------------------------------------- real-client samples


def _unfold(text: str) -> str:
    return re.sub(r"\r?\n[ \t]", "", text)


@pytest.mark.skipif(not SAMPLE_FILES, reason=f"real-client samples not found in {SAMPLES}")
@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.stem)
def test_every_shared_sample(team, sample: Path) -> None:
    text = _unfold(sample.read_bytes().decode("utf-8"))
    method = re.search(r"(?m)^METHOD:(\w+)", text).group(1).upper()
    if method != "REPLY":
        before = state()
        with pytest.raises(DomainError) as refused:
            ingest_itip(sample.read_bytes())
        assert refused.value.status == 422 and "organizer" in refused.value.message
        db.session.rollback()
        assert state() == before
        return
    pointed = re.sub(r"(?m)^UID:.*?(\r?)$", lambda m: f"UID:{team.meeting.ical_uid}{m.group(1)}", text)
    attendee = parse_itip(pointed).replies[0].email
    user = make_user("specialist", specialty="pathology", email=attendee)
    db.session.add(Invitation(meeting_id=team.meeting.id, user_id=user.id, last_sequence_sent=0))
    db.session.flush()
    expected = re.search(r"(?m)^ATTENDEE;.*?PARTSTAT=([A-Z-]+)", text).group(1)
    result = ingest_itip(pointed.encode())
    assert result.updated == [attendee] and result.stale == []
    assert invitation_of(team.meeting, user).partstat == expected
    assert invitation_of(team.meeting, team.path).partstat == "NEEDS-ACTION"  # nobody else changed
