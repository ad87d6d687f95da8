"""The consensus JSON API: drafts, signing, amendments, errors in the project's format."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import CONSENSUS_NOW, make_calendar_meeting, make_consensus_setup, put_on_agenda
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.services import issue_api_token
from tumorboard.consensus.models import Consensus, ConsensusAmendment
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage

NOW = CONSENSUS_NOW

pytestmark = pytest.mark.usefixtures("consensus_clock")


@pytest.fixture
def s(app: Flask) -> Any:
    return make_consensus_setup()


class Api:
    """A client speaking JSON with a personal API token."""

    def __init__(self, client: FlaskClient, user: Any) -> None:
        self.client = client
        _, secret = issue_api_token(user, "tests")
        self.headers = {"Authorization": f"Bearer {secret}"}

    def __getattr__(self, method: str) -> Any:
        def call(url: str, **kw: Any) -> Any:
            return getattr(self.client, method)(url, headers=self.headers, **kw)
        return call


def content(s: Any, **changes: Any) -> dict[str, Any]:
    return {
        "specialties_present": ["medical_oncology", "pathology"],
        "board_diagnosis": "Invasive lobular carcinoma (synthetic)",
        "concordance": "concordant",
        "management_changed": False,
        "recommendation_kinds": ["surgery"],
        "recommendation": "Wide local excision and sentinel node biopsy.",
        "followup_owner_id": s.onc.id,
        "followup_due": "2031-01-20",
        **changes,
    }


def create(api: Api, s: Any, meeting: Any = None, **changes: Any) -> Any:
    return api.post("/api/v1/consensus", json={"case_id": s.case.id,
                                               "meeting_id": (meeting or s.meeting).id,
                                               **content(s, **changes)})


def error_fields(response: Any) -> dict[str, Any]:
    body = response.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    return body["error"]["fields"]


def count(model: Any) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_draft_create_read_patch_sign(client: FlaskClient, s) -> None:
    api = Api(client, s.onc)
    created = create(api, s)
    assert created.status_code == 201
    item = created.json
    assert item["status"] == "draft" and item["recommendation_kinds"] == ["surgery"]
    patched = api.patch(f"/api/v1/consensus/{item['id']}", json={"dissent": "Dr Rad: prefers MRI first."})
    assert patched.status_code == 200 and patched.json["dissent"] == "Dr Rad: prefers MRI first."
    signed = api.post(f"/api/v1/consensus/{item['id']}/sign")
    assert signed.status_code == 200
    assert signed.json["status"] == "signed" and signed.json["followup"]["due"] == "2031-01-20"
    got = api.get(f"/api/v1/consensus/{item['id']}")
    assert got.status_code == 200 and got.json["signed_by_id"] == s.onc.id
    reads = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "consensus.read")).all()
    assert [r.object_id for r in reads] == [str(item["id"])]


def test_a_new_draft_takes_its_defaults(client: FlaskClient, s) -> None:
    response = Api(client, s.coord).post("/api/v1/consensus",
                                         json={"case_id": s.case.id, "meeting_id": s.meeting.id})
    assert response.status_code == 201
    assert response.json["specialties_present"] == ["pathology", "radiology"]
    assert response.json["followup_owner_id"] == s.onc.id


@pytest.mark.parametrize(("changes", "field"), [
    ({"recommendation_kinds": []}, "recommendation_kinds"),
    ({"recommendation": " "}, "recommendation"),
    ({"specialties_present": ["pathology", "astrology"]}, "specialties_present"),
    ({"followup_due": "2031-01-06"}, "followup_due"),
    ({"management_changed": True}, "management_change"),
    ({"concordance": "sort_of"}, "concordance"),
    ({"surprise": 1}, "surprise"),
    ({"status": "signed"}, "status"),
])
def test_bad_input_is_a_422_and_saves_nothing(client: FlaskClient, s, changes, field) -> None:
    response = create(Api(client, s.onc), s, **changes)
    assert response.status_code == 422
    assert field in error_fields(response)
    assert count(Consensus) == 0


def test_follow_up_owner_must_be_an_oncologist(client: FlaskClient, s) -> None:
    response = create(Api(client, s.onc), s, followup_owner_id=s.path.id)
    assert response.status_code == 422 and "followup_owner_id" in error_fields(response)


def test_case_must_be_on_the_meeting_agenda_and_once_per_meeting(client: FlaskClient, s) -> None:
    api = Api(client, s.onc)
    other = make_calendar_meeting(s.board, start=NOW - timedelta(days=7))
    assert create(api, s, meeting=other).status_code == 422
    missing = api.post("/api/v1/consensus", json={"case_id": s.case.id, "meeting_id": 999999})
    assert missing.status_code == 422 and "meeting_id" in error_fields(missing)
    assert create(api, s).status_code == 201
    assert create(api, s).status_code == 409
    assert api.get("/api/v1/consensus/999999").status_code == 404


def test_only_an_oncologist_signs(client: FlaskClient, s) -> None:
    consensus_id = create(Api(client, s.coord), s).json["id"]
    for user in (s.coord, s.path):
        response = Api(client, user).post(f"/api/v1/consensus/{consensus_id}/sign")
        assert response.status_code == 403 and response.json["error"]["code"] == "forbidden"
    assert db.session.get(Consensus, consensus_id).status == "draft"


def test_signing_twice_is_refused_and_notifies_once(client: FlaskClient, s) -> None:
    api = Api(client, s.onc)
    consensus_id = create(api, s).json["id"]
    assert api.post(f"/api/v1/consensus/{consensus_id}/sign").status_code == 200
    again = api.post(f"/api/v1/consensus/{consensus_id}/sign")
    assert again.status_code == 409
    rows = db.session.scalars(sa.select(OutboxMessage)).all()
    assert [r.dedupe_key for r in rows] == [f"consensus-signed:{consensus_id}"]


def test_incomplete_draft_cannot_be_signed(client: FlaskClient, s) -> None:
    api = Api(client, s.onc)
    consensus_id = api.post("/api/v1/consensus",
                            json={"case_id": s.case.id, "meeting_id": s.meeting.id}).json["id"]
    response = api.post(f"/api/v1/consensus/{consensus_id}/sign")
    assert response.status_code == 422
    assert {"recommendation", "recommendation_kinds", "management_changed", "followup_due"} <= set(
        error_fields(response))
    assert count(OutboxMessage) == 0


def test_a_signed_consensus_answers_409_to_patch(client: FlaskClient, s) -> None:
    api = Api(client, s.onc)
    consensus_id = create(api, s).json["id"]
    api.post(f"/api/v1/consensus/{consensus_id}/sign")
    response = api.patch(f"/api/v1/consensus/{consensus_id}", json={"recommendation": "Changed."})
    assert response.status_code == 409
    db.session.expire_all()
    assert db.session.get(Consensus, consensus_id).recommendation.startswith("Wide local excision")


def test_amendments_append_in_order(client: FlaskClient, s) -> None:
    api = Api(client, s.onc)
    consensus_id = create(api, s).json["id"]
    url = f"/api/v1/consensus/{consensus_id}/amendments"
    assert api.post(url, json={"reason": "Draft first", "changes": {"dissent": "x"}}).status_code == 409
    api.post(f"/api/v1/consensus/{consensus_id}/sign")
    kinds = {"recommendation_kinds": ["surgery", "radiotherapy"]}
    first = api.post(url, json={"reason": "MRI reviewed.", "changes": kinds})
    assert first.status_code == 201 and first.json["changes"] == kinds
    owner = {"followup_owner_id": s.other_onc.id}
    second = api.post(url, json={"reason": "Owner on leave.", "changes": owner})
    assert second.status_code == 201
    for bad in ({"reason": "", "changes": {"dissent": "y"}},
                {"reason": "r", "changes": {"deferred": True}},
                {"reason": "r", "changes": {"recommendation": ""}},
                {"reason": "r", "changes": {}},
                {"reason": "r"}):
        assert api.post(url, json=bad).status_code == 422, bad
    coordinator = Api(client, s.coord)
    assert coordinator.post(url, json={"reason": "r", "changes": {"dissent": "y"}}).status_code == 403

    item = api.get(f"/api/v1/consensus/{consensus_id}").json
    assert [a["reason"] for a in item["amendments"]] == ["MRI reviewed.", "Owner on leave."]
    assert item["recommendation_kinds"] == ["surgery"]  # as signed
    assert item["current"]["recommendation_kinds"] == ["surgery", "radiotherapy"]
    assert item["current"]["followup_owner_id"] == s.other_onc.id
    assert item["followup"]["owner_id"] == s.other_onc.id
    assert count(ConsensusAmendment) == 2


def test_list_by_case_keeps_a_deferral_and_the_later_record(client: FlaskClient, s) -> None:
    api = Api(client, s.onc)
    first = create(api, s, deferred=True, recommendation_kinds=["further_workup"],
                   recommendation="Repeat biopsy first.").json["id"]
    assert api.post(f"/api/v1/consensus/{first}/sign").status_code == 200
    db.session.expire_all()
    assert s.case.status == "ready"
    later = make_calendar_meeting(s.board, start=NOW - timedelta(minutes=30))
    s.case.status = "scheduled"
    put_on_agenda(s.case, later)
    second = create(api, s, meeting=later).json["id"]
    assert api.post(f"/api/v1/consensus/{second}/sign").status_code == 200
    listing = api.get(f"/api/v1/consensus?case_id={s.case.id}")
    assert listing.status_code == 200
    assert [(i["id"], i["deferred"]) for i in listing.json] == [(first, True), (second, False)]
    assert api.get("/api/v1/consensus").status_code == 422  # case_id is required


def test_deferral_must_recommend_further_workup(client: FlaskClient, s) -> None:
    response = create(Api(client, s.onc), s, deferred=True)
    assert response.status_code == 422 and "recommendation_kinds" in error_fields(response)


def test_the_meeting_must_have_started(client: FlaskClient, app) -> None:
    s = make_consensus_setup(start=NOW + timedelta(days=1))
    api = Api(client, s.onc)
    consensus_id = create(api, s).json["id"]
    response = api.post(f"/api/v1/consensus/{consensus_id}/sign")
    assert response.status_code == 409 and "not started" in response.json["error"]["message"]


def test_openapi_documents_the_consensus_endpoints(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    paths = spec["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/consensus"])
    assert {"get", "patch"} <= set(paths["/api/v1/consensus/{consensus_id}"])
    assert "post" in paths["/api/v1/consensus/{consensus_id}/sign"]
    assert "post" in paths["/api/v1/consensus/{consensus_id}/amendments"]
    assert "Consensus" in spec["components"]["schemas"]
