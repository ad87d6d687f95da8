"""Who may read a consensus: coordinators, oncologists (and admins) every one; a specialist only
that of a case on the agenda (now or before) of a meeting of a board they belong to — the agenda
rule, refused with 403 like another board's agenda. Reads stay audited; refusals change nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import (
    CONSENSUS_NOW,
    make_board,
    make_calendar_meeting,
    make_consensus_setup,
    make_signed_consensus,
    make_user,
    put_on_agenda,
)
from tests.helpers import login
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.services import issue_api_token
from tumorboard.consensus import services
from tumorboard.extensions import db

NOW = CONSENSUS_NOW

pytestmark = pytest.mark.usefixtures("consensus_clock")


@pytest.fixture
def s(app: Flask) -> Any:
    return make_signed_consensus()


def pages(s: Any) -> list[str]:
    return [f"/cases/{s.case.id}/meetings/{s.meeting.id}/consensus", f"/consensus/{s.consensus.id}/print",
            f"/cases/{s.case.id}/consensus"]


def api_urls(s: Any) -> list[str]:
    return [f"/api/v1/consensus?case_id={s.case.id}", f"/api/v1/consensus/{s.consensus.id}"]


def browser(app: Flask, user: Any) -> FlaskClient:
    client = app.test_client()
    login(client, user.email)
    return client


def bearer(user: Any) -> dict[str, str]:
    _, secret = issue_api_token(user, "tests")
    return {"Authorization": f"Bearer {secret}"}


def reads() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "consensus.read"))


def assert_reads(app: Flask, s: Any, user: Any) -> None:
    client, headers = browser(app, user), bearer(user)
    before = reads()
    for url in pages(s):
        assert client.get(url).status_code == 200, url
    for url in api_urls(s):
        assert client.get(url, headers=headers).status_code == 200, url
    assert reads() == before + 5  # every read audited


def assert_refused(app: Flask, s: Any, user: Any) -> None:
    client, headers = browser(app, user), bearer(user)
    before = reads()
    for url in pages(s):
        response = client.get(url)
        assert response.status_code == 403, url
        assert s.case.display_name not in response.get_data(as_text=True)
    for url in api_urls(s):
        response = client.get(url, headers=headers)
        assert response.status_code == 403, url
        assert response.json["error"] == {"code": "forbidden", "message": services.READ_REFUSED, "fields": {}}
    assert reads() == before


def test_a_member_of_the_board_reads_the_consensus(app, s) -> None:
    assert_reads(app, s, s.path)


def test_a_specialist_of_no_board_of_the_case_is_refused(app, s) -> None:
    outsider = make_user("specialist", specialty="pathology", name="Dr Elsewhere")
    make_board(name="Lung MDT", sites=("lung",), members=(outsider,))
    assert_refused(app, s, outsider)


def test_no_consensus_page_before_a_draft_either(app) -> None:
    s = make_consensus_setup()
    outsider = make_user("specialist", specialty="radiology")
    url = f"/cases/{s.case.id}/meetings/{s.meeting.id}/consensus"
    assert browser(app, outsider).get(url).status_code == 403
    assert browser(app, s.rad).get(url).status_code == 200
    response = app.test_client().get(f"/api/v1/consensus?case_id={s.case.id}", headers=bearer(outsider))
    assert response.status_code == 403


def test_a_member_of_another_board_that_had_the_case_reads_all_its_records(app, s) -> None:
    # the case was on (and taken off) the agenda of another board's meeting: its members may read
    # the case's consensus records, this meeting's included
    other_member = make_user("specialist", specialty="radiation_oncology")
    other = make_board(name="Second opinion MDT", members=(other_member,))
    earlier = make_calendar_meeting(other, start=NOW - timedelta(days=14))
    put_on_agenda(s.case, earlier, active=False)
    assert_reads(app, s, other_member)


def test_leaving_the_board_ends_access(app, s) -> None:
    s.board.members = [m for m in s.board.members if m.user_id != s.path.id]
    db.session.flush()
    assert_refused(app, s, s.path)


@pytest.mark.parametrize("roles", [("coordinator",), ("oncologist",), ("specialist", "admin")])
def test_coordinators_oncologists_and_admins_read_every_consensus(app, s, roles) -> None:
    user = make_user(*roles, specialty="pathology")  # a member of no board
    assert_reads(app, s, user)


def test_can_read(app, s) -> None:
    outsider = make_user("specialist", specialty="pathology")
    assert services.can_read(s.path, s.case.id) and services.can_read(s.coord, s.case.id)
    assert not services.can_read(outsider, s.case.id)
    assert not services.can_read(s.path, 999999)
