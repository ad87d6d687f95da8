"""The follow-ups API, mirroring the /followups pages: my follow-ups (oncologists), the overdue
ones of every owner (coordinators, oncologists), confirming one (its owner only; the case closes).
Lists are audited; errors in the project's format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import CONSENSUS_NOW, make_signed_consensus
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.services import issue_api_token
from tumorboard.consensus.models import ConsensusFollowup
from tumorboard.extensions import db

NOW = CONSENSUS_NOW
AFTER_DUE = datetime(2031, 2, 3, 9, 0, tzinfo=UTC)  # the follow-up was due on 1 February

pytestmark = pytest.mark.usefixtures("consensus_clock")


@pytest.fixture
def s(app: Flask) -> Any:
    """The setup with a signed consensus whose follow-up the chair owns, due 1 February."""
    s = make_signed_consensus()
    s.followup = db.session.scalar(sa.select(ConsensusFollowup))
    return s


def api(client: FlaskClient, user: Any) -> Any:
    _, secret = issue_api_token(user, "tests")
    headers = {"Authorization": f"Bearer {secret}"}

    class Calls:
        def get(self, url: str, **kw: Any) -> Any:
            return client.get("/api/v1" + url, headers=headers, **kw)

        def post(self, url: str, **kw: Any) -> Any:
            return client.post("/api/v1" + url, headers=headers, **kw)

    return Calls()


def error(response: Any) -> dict[str, Any]:
    body = response.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


def test_my_follow_ups(client: FlaskClient, s) -> None:
    response = api(client, s.onc).get("/followups")
    assert response.status_code == 200
    assert response.json == [{
        "id": s.followup.id, "consensus_id": s.consensus.id, "case_id": s.case.id,
        "meeting_id": s.meeting.id, "owner_id": s.onc.id, "due": "2031-02-01", "overdue": False,
        "confirmed_at": None, "confirmed_by_id": None, "created_at": NOW.isoformat(),
    }]
    assert api(client, s.other_onc).get("/followups").json == []  # only the ones I own
    read = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "consensus.followups_read")
                             .order_by(AuditEvent.id))
    assert read.actor_id == s.onc.id and read.details == {"followup_ids": [s.followup.id]}


def test_overdue_follow_ups_of_every_owner(client: FlaskClient, s) -> None:
    coordinator = api(client, s.coord)
    assert coordinator.get("/followups/overdue").json == []
    with time_machine.travel(AFTER_DUE, tick=False):
        overdue = coordinator.get("/followups/overdue")
        assert overdue.status_code == 200
        assert [(f["id"], f["owner_id"], f["overdue"]) for f in overdue.json] == [
            (s.followup.id, s.onc.id, True)]
        assert api(client, s.other_onc).get("/followups/overdue").json[0]["id"] == s.followup.id
        assert api(client, s.onc).get("/followups").json[0]["overdue"] is True


def test_the_owner_confirms_and_the_case_closes(client: FlaskClient, s) -> None:
    url = f"/followups/{s.followup.id}/confirm"
    refused = api(client, s.other_onc).post(url)
    assert refused.status_code == 403 and error(refused)["code"] == "forbidden"
    done = api(client, s.onc).post(url)
    assert done.status_code == 200
    assert done.json["confirmed_by_id"] == s.onc.id and done.json["confirmed_at"] == NOW.isoformat()
    db.session.expire_all()
    assert s.followup.confirmed_at is not None and s.case.status == "closed"
    assert "consensus.followup_confirm" in db.session.scalars(sa.select(AuditEvent.action)).all()
    again = api(client, s.onc).post(url)
    assert again.status_code == 409 and error(again)["code"] == "confirmed"
    missing = api(client, s.onc).post("/followups/999999/confirm")
    assert missing.status_code == 404 and error(missing)["message"] == "No such follow-up."


def test_pending_only_leaves_out_confirmed_ones(client: FlaskClient, s) -> None:
    owner = api(client, s.onc)
    owner.post(f"/followups/{s.followup.id}/confirm")
    assert [f["id"] for f in owner.get("/followups").json] == [s.followup.id]
    assert owner.get("/followups", query_string={"pending_only": "true"}).json == []
    bad = owner.get("/followups", query_string={"pending_only": "perhaps"})
    assert bad.status_code == 422 and "pending_only" in error(bad)["fields"]


@pytest.mark.parametrize(("who", "method", "url"), [
    ("coord", "get", "/followups"),  # a coordinator owns no follow-ups
    ("coord", "post", "/followups/{id}/confirm"),
    ("path", "get", "/followups"),
    ("path", "get", "/followups/overdue"),
    ("path", "post", "/followups/{id}/confirm"),
])
def test_same_roles_as_the_pages(client: FlaskClient, s, who: str, method: str, url: str) -> None:
    response = getattr(api(client, getattr(s, who)), method)(url.format(id=s.followup.id))
    assert response.status_code == 403 and error(response)["code"] == "forbidden"
    db.session.expire_all()
    assert s.followup.confirmed_at is None


def test_openapi_documents_the_follow_up_endpoints(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    paths = spec["paths"]
    assert "get" in paths["/api/v1/followups"] and "get" in paths["/api/v1/followups/overdue"]
    confirm = paths["/api/v1/followups/{followup_id}/confirm"]["post"]
    assert {"200", "403", "404", "409"} <= set(confirm["responses"])
    item = spec["components"]["schemas"]["FollowupItem"]["properties"]
    assert {"overdue", "meeting_id", "case_id"} <= set(item)
