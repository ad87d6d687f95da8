"""The cases JSON API: create, read (audited), edit, records, status, validation and permissions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask.testing import FlaskClient

from tests.factories import make_case, make_user, register_test_case
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.models import User
from tumorboard.auth.services import issue_api_token
from tumorboard.cases.models import Case
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.extensions import db

TODAY = date(2026, 11, 20)


@pytest.fixture(autouse=True)
def frozen(app) -> Iterator[None]:
    with time_machine.travel(datetime(2026, 11, 20, 12, 0, tzinfo=UTC), tick=False):
        yield


def _auth(user: User) -> dict[str, str]:
    _token, secret = issue_api_token(user, "tests")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def coordinator() -> dict[str, str]:
    return _auth(make_user("coordinator"))


@pytest.fixture
def oncologist() -> User:
    return make_user("oncologist", specialty="medical_oncology")


def _body(oncologist: User, **kw: Any) -> dict[str, Any]:
    return {"mrn": "API-0001", "display_name": "Synthetic Patient", "site": "colorectal",
            "diagnosis_date": "2026-11-02", "question": "Surgery first?",
            "referring_oncologist_id": oncologist.id, **kw}


def _count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Case.id))) or 0


def test_create_case_with_defaults(client: FlaskClient, coordinator, oncologist) -> None:
    response = client.post("/api/v1/cases", json=_body(oncologist), headers=coordinator)
    assert response.status_code == 201, response.json
    body = response.json
    assert body["status"] == "intake" and body["urgency"] == "routine" and body["minutes"] == 10
    assert body["deadline"] == "2027-01-31" and body["days_left"] == 72 and body["risk"] == "on_track"
    assert body["specialties"] == sorted(["medical_oncology", "surgical_oncology", "pathology", "radiology"])
    assert [r["label"] for r in body["records"]][:2] == ["Staging imaging", "Pathology slides"]
    assert (body["records_received"], body["records_required"]) == (0, 4)
    assert body["referring_oncologist"] == {"id": oncologist.id, "name": oncologist.name}


@pytest.mark.parametrize(("change", "field"), [
    ({"minutes": "ten"}, "minutes"),  # wrong type
    ({"minutes": "10"}, "minutes"),  # a string is not a number here
    ({"referring_oncologist_id": "abc"}, "referring_oncologist_id"),
    ({"specialties": "pathology"}, "specialties"),
    ({"diagnosis_date": "2026-02-30"}, "diagnosis_date"),  # bad date
    ({"diagnosis_date": "yesterday"}, "diagnosis_date"),
    ({"planned_treatment_start": "2026-13-01"}, "planned_treatment_start"),
    ({"site": "elbow"}, "site"),
    ({"specialties": ["astrology"]}, "specialties"),
    ({"colour": "blue"}, "colour"),  # unknown field
    ({"deadline": "2027-01-01"}, "deadline"),  # computed, not accepted
    ({"diagnosis_date": "2026-11-21"}, "diagnosis_date"),  # future
    ({"planned_treatment_start": "2026-10-01"}, "planned_treatment_start"),  # before diagnosis
    ({"referring_oncologist_id": 987_654}, "referring_oncologist_id"),  # unknown user
])
def test_create_refuses_bad_input_with_422_and_the_field(client, coordinator, oncologist,
                                                        change: dict, field: str) -> None:
    response = client.post("/api/v1/cases", json=_body(oncologist, **change), headers=coordinator)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "validation_error" and field in error["fields"]
    assert _count() == 0


def test_missing_required_fields_are_listed(client, coordinator) -> None:
    response = client.post("/api/v1/cases", json={"mrn": "X"}, headers=coordinator)
    assert response.status_code == 422
    assert {"display_name", "site", "diagnosis_date", "question",
            "referring_oncologist_id"} <= set(response.json["error"]["fields"])


def test_unknown_ids_answer_404_or_422(client, coordinator) -> None:
    case = register_test_case()
    assert client.get("/api/v1/cases/999999", headers=coordinator).status_code == 404
    missing = client.patch("/api/v1/cases/999999", json={"minutes": 20}, headers=coordinator)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    record = client.patch(f"/api/v1/cases/{case.id}/records/999999", json={"received_at": None},
                          headers=coordinator)
    assert record.status_code == 404


def test_get_case_is_audited_as_a_phi_read(client, coordinator) -> None:
    case = register_test_case()
    response = client.get(f"/api/v1/cases/{case.id}", headers=coordinator)
    assert response.status_code == 200 and response.json["mrn"] == case.mrn
    reads = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "case.read")).all()
    assert [(e.object_type, e.object_id) for e in reads] == [("case", str(case.id))]
    client.get(f"/api/v1/cases/{case.id}/records", headers=coordinator)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "case.read")) == 2


def test_patch_recomputes_the_deadline_and_refuses_bad_values(client, coordinator) -> None:
    case = register_test_case(diagnosis_date=date(2026, 11, 1))
    response = client.patch(f"/api/v1/cases/{case.id}", json={"planned_treatment_start": "2027-01-15"},
                            headers=coordinator)
    assert response.status_code == 200 and response.json["deadline"] == "2027-01-15"
    assert response.json["risk"] == "on_track"
    bad = client.patch(f"/api/v1/cases/{case.id}", json={"minutes": 20, "display_name": None},
                       headers=coordinator)
    assert bad.status_code == 422 and "display_name" in bad.json["error"]["fields"]
    db.session.expire_all()
    assert db.session.get(Case, case.id).minutes == 10  # nothing half-saved


def test_records_checklist_through_the_api_makes_the_case_ready(client, coordinator) -> None:
    case = register_test_case()
    sent: list[Case] = []
    case_needs_scheduling.connect(sent.append, weak=False)
    try:
        added = client.post(f"/api/v1/cases/{case.id}/records",
                            json={"kind": "other", "label": "Genetic panel", "required": False},
                            headers=coordinator)
        assert added.status_code == 201 and added.json["required"] is False
        listed = client.get(f"/api/v1/cases/{case.id}/records", headers=coordinator).json
        required = [r for r in listed if r["required"]]
        for item in required:
            response = client.patch(f"/api/v1/cases/{case.id}/records/{item['id']}",
                                    json={"requested_at": "2026-11-10T09:00:00+01:00",
                                          "received_at": "2026-11-19T10:00:00Z"}, headers=coordinator)
            assert response.status_code == 200, response.json
        assert response.json["case_status"] == "ready"
    finally:
        case_needs_scheduling.disconnect(sent.append)
    assert [c.id for c in sent] == [case.id]
    naive = client.patch(f"/api/v1/cases/{case.id}/records/{required[0]['id']}",
                         json={"received_at": "2026-11-19T10:00:00"}, headers=coordinator)
    assert naive.status_code == 422 and "received_at" in naive.json["error"]["fields"]
    undo = client.patch(f"/api/v1/cases/{case.id}/records/{required[0]['id']}",
                        json={"received_at": None}, headers=coordinator)
    assert undo.json["case_status"] == "intake"


def test_status_changes_and_illegal_transitions(client, coordinator) -> None:
    case = register_test_case()
    url = f"/api/v1/cases/{case.id}/status"
    illegal = client.post(url, json={"status": "closed"}, headers=coordinator)
    assert illegal.status_code == 409 and illegal.json["error"]["code"] == "illegal_transition"
    assert "intake" in illegal.json["error"]["message"]
    no_reason = client.post(url, json={"status": "withdrawn"}, headers=coordinator)
    assert no_reason.status_code == 422 and "reason" in no_reason.json["error"]["fields"]
    unknown = client.post(url, json={"status": "paused"}, headers=coordinator)
    assert unknown.status_code == 422
    done = client.post(url, json={"status": "withdrawn", "reason": "Duplicate referral."},
                       headers=coordinator)
    assert done.status_code == 200 and done.json["status"] == "withdrawn"
    reopened = client.post(url, json={"status": "intake"}, headers=coordinator)
    assert reopened.json["status"] == "intake"


def test_readiness_override_through_the_api(client, coordinator) -> None:
    case = register_test_case()
    url = f"/api/v1/cases/{case.id}/readiness-override"
    assert client.post(url, json={}, headers=coordinator).status_code == 422
    assert client.post(url, json={"reason": "  "}, headers=coordinator).status_code == 422
    response = client.post(url, json={"reason": "Outside slides reviewed."}, headers=coordinator)
    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert response.json["readiness_override"] == "Outside slides reviewed."
    again = client.post(url, json={"reason": "twice"}, headers=coordinator)
    assert again.status_code == 409


def test_list_uses_the_queue_filters_and_paginates(client, coordinator, oncologist) -> None:
    for n in range(7):
        make_case(oncologist=oncologist, mrn=f"LST-{n}", deadline=TODAY + timedelta(days=n * 5))
    make_case(oncologist=oncologist, mrn="LST-closed", status="closed")
    page = client.get("/api/v1/cases?per_page=3&page=2", headers=coordinator).json
    assert page["pagination"] == {"page": 2, "per_page": 3, "total": 7, "pages": 3}
    assert [i["mrn"] for i in page["items"]] == ["LST-3", "LST-4", "LST-5"]
    at_risk = client.get("/api/v1/cases?risk=at_risk&mrn=lst", headers=coordinator).json
    assert [i["mrn"] for i in at_risk["items"]] == ["LST-0", "LST-1", "LST-2"]
    reads = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "queue.read")
                               .order_by(AuditEvent.id)).all()
    assert [len(r.details["case_ids"]) for r in reads] == [3, 3]  # each page read is on record
    assert all(i["risk"] == "at_risk" for i in at_risk["items"])
    for bad in ("per_page=201", "per_page=0", "page=x", "risk=red", "status=paused"):
        response = client.get(f"/api/v1/cases?{bad}", headers=coordinator)
        assert response.status_code == 422, bad
        assert response.json["error"]["fields"]


def test_specialist_and_admin_cannot_create_edit_or_read_cases(client, oncologist) -> None:
    case = register_test_case()
    for role in ("specialist", "admin"):
        headers = _auth(make_user(role, specialty="pathology" if role == "specialist" else None))
        assert client.post("/api/v1/cases", json=_body(oncologist), headers=headers).status_code == 403
        assert client.patch(f"/api/v1/cases/{case.id}", json={"minutes": 30},
                            headers=headers).status_code == 403
        assert client.get("/api/v1/cases", headers=headers).status_code == 403
        assert client.get(f"/api/v1/cases/{case.id}", headers=headers).status_code == 403
    assert _count() == 1


def test_oncologist_reads_but_cannot_write(client, oncologist) -> None:
    case = register_test_case(oncologist=oncologist)
    headers = _auth(oncologist)
    assert client.get("/api/v1/cases", headers=headers).status_code == 200
    assert client.get(f"/api/v1/cases/{case.id}", headers=headers).status_code == 200
    refused = client.post(f"/api/v1/cases/{case.id}/status", json={"status": "withdrawn", "reason": "x"},
                          headers=headers)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"


def test_openapi_documents_the_case_endpoints(client) -> None:
    spec = client.get("/api/v1/openapi.json").json
    assert {"/api/v1/cases", "/api/v1/cases/{case_id}", "/api/v1/cases/{case_id}/records",
            "/api/v1/cases/{case_id}/records/{record_id}", "/api/v1/cases/{case_id}/status",
            "/api/v1/cases/{case_id}/readiness-override"} <= set(spec["paths"])
    assert set(spec["paths"]["/api/v1/cases/{case_id}"]) >= {"get", "patch"}
