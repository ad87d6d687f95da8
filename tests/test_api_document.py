"""The API's OpenAPI document covers every route and documents its errors; errors outside any
route (unknown path, wrong method, an id no row can have) answer with the same JSON body."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import make_board, make_user
from tumorboard.api import API_PREFIX, STANDARD_ERRORS
from tumorboard.auth.services import issue_api_token
from tumorboard.db import MAX_INT

ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    response = client.get(f"{API_PREFIX}/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def headers(app: Flask) -> dict[str, str]:
    _, secret = issue_api_token(make_user("coordinator", "oncologist", "admin"), "tests")
    return {"Authorization": f"Bearer {secret}"}


def _is_error_body(body: Any) -> bool:
    return (isinstance(body, dict) and set(body) == {"error"}
            and set(body["error"]) == {"code", "message", "fields"})


def test_every_api_route_is_in_the_document(app: Flask, document: dict[str, Any]) -> None:
    paths = document["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/") or rule.rule == f"{API_PREFIX}/openapi.json":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if method.lower() not in paths.get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []


def test_every_operation_documents_the_error_body(document: dict[str, Any]) -> None:
    components = document["components"]
    assert components["schemas"]["Error"]["required"] == ["error"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            assert "default" not in responses, (method, path)
            for status, response in responses.items():
                if int(status) < 400:
                    continue
                response = components["responses"][response["$ref"].rsplit("/", 1)[1]] \
                    if "$ref" in response else response
                assert response["content"]["application/json"]["schema"] == ERROR_REF, (method, path, status)
            assert {str(s) for s in STANDARD_ERRORS} <= set(responses), (method, path)


@pytest.mark.parametrize("authenticated", [False, True])
def test_unknown_api_path_is_a_json_404(client: FlaskClient, headers: dict[str, str],
                                        authenticated: bool) -> None:
    response = client.get(f"{API_PREFIX}/no-such-thing", headers=headers if authenticated else {})
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert _is_error_body(response.get_json())
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.delete(f"{API_PREFIX}/cases", headers=headers)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert _is_error_body(response.get_json())
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert {"GET", "POST"} <= set(response.headers["Allow"].split(", "))


@pytest.mark.parametrize("method, path", [
    ("GET", "/cases/0"),
    ("GET", f"/cases/{MAX_INT + 1}"),
    ("GET", "/cases/99999999999999999999999/records"),
    ("POST", "/cases/99999999999999999999999/records"),  # another method's rule matches the path
    ("PATCH", f"/consensus/{MAX_INT + 1}"),
    ("DELETE", f"/assignments/{2**63}"),
])
def test_an_id_no_row_can_have_is_a_json_404(client: FlaskClient, headers: dict[str, str], method: str,
                                              path: str) -> None:
    response = client.open(API_PREFIX + path, method=method, headers=headers, json={})
    assert response.status_code == 404
    assert _is_error_body(response.get_json())


def test_an_id_no_row_can_have_is_a_404_page_too(client: FlaskClient) -> None:
    assert client.get(f"/cases/{2**64}").status_code == 404


def test_ids_in_bodies_and_queries_are_bounded(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get(f"{API_PREFIX}/consensus", query_string={"case_id": 2**63}, headers=headers)
    assert response.status_code == 422
    assert "case_id" in response.get_json()["error"]["fields"]
    response = client.post(f"{API_PREFIX}/assignments", json={"case_id": 2**63, "meeting_id": 1},
                           headers=headers)
    assert response.status_code == 422
    assert "case_id" in response.get_json()["error"]["fields"]


def test_a_page_past_the_end_is_empty_however_far(client: FlaskClient, headers: dict[str, str]) -> None:
    make_board()
    response = client.get(f"{API_PREFIX}/boards", query_string={"page": 2**62}, headers=headers)
    assert response.status_code == 200
    assert response.get_json() == []
    response = client.get(f"{API_PREFIX}/cases", query_string={"page": MAX_INT + 1}, headers=headers)
    assert response.status_code == 422
    assert client.get("/cases", query_string={"page": 2**64}, headers=headers).status_code == 200


def _board(name: str, **changes: Any) -> dict[str, Any]:
    return {"name": name, "sites": ["breast"], "rrule": "FREQ=WEEKLY;BYDAY=TU",
            "timezone": "Europe/London", "first_date": "2031-01-07", "start_time": "08:00",
            "duration_minutes": 60, "capacity_minutes": 60, **changes}


def test_a_board_name_taken_exactly_is_a_conflict_whatever_the_letters(
        client: FlaskClient, headers: dict[str, str]) -> None:
    # SQLite's lower() folds ASCII only: the exact name must still be caught before the insert
    assert client.post(f"{API_PREFIX}/boards", json=_board("Équipe Sein"), headers=headers).status_code == 201
    response = client.post(f"{API_PREFIX}/boards", json=_board(" Équipe Sein "), headers=headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["fields"] == {"name": ["A board with this name exists already."]}


def test_a_board_start_time_with_an_offset_is_refused(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.post(f"{API_PREFIX}/boards", json=_board("Offset MDT", start_time="08:00:00+05:00"),
                           headers=headers)
    assert response.status_code == 422
    assert "start_time" in response.get_json()["error"]["fields"]


def test_text_with_a_nul_character_is_a_field_error(client: FlaskClient, headers: dict[str, str]) -> None:
    # PostgreSQL cannot store NUL in text: refused before any service (or the database) sees it
    response = client.post(f"{API_PREFIX}/cases", headers=headers, json={
        "mrn": "NUL-1", "display_name": "Synthetic Patient", "site": "breast", "diagnosis_date": "2026-11-01",
        "question": "Second\x00opinion", "referring_oncologist_id": 1})
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {"question": ["Text must not contain NUL characters."]}
    response = client.get(f"{API_PREFIX}/cases", query_string={"mrn": "A\x00"}, headers=headers)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["mrn"]
