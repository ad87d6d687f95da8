"""Fuzz the JSON API from its own OpenAPI document (schemathesis): no 500s, every answer as documented.

Every operation gets a bounded number of generated requests (valid and invalid), sent with the
bearer token of a user holding every role, against a little seeded data. Each response must not be
a server error and must match the document: a documented status, content type, headers and body.
Ids in paths and bodies are sometimes swapped for seeded ones, so requests reach real rows and not
only 404s. Writes accumulate within the test; its transaction is rolled back at the end.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import make_consensus_setup, make_user, register_test_case
from tumorboard.api import API_PREFIX
from tumorboard.auth.services import issue_api_token
from tumorboard.consensus.services import create_draft
from tumorboard.extensions import db
from tumorboard.vocab import ROLES

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

#: parameter / body field → the kind of seeded row its id names
ID_FIELDS = {
    "case_id": "case", "meeting_id": "meeting", "board_id": "board", "record_id": "record",
    "assignment_id": "assignment", "consensus_id": "consensus",
    "referring_oncologist_id": "oncologist", "followup_owner_id": "oncologist",
}


@pytest.fixture
def api_schema(app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi(f"{API_PREFIX}/openapi.json", app)


@pytest.fixture
def fuzz_world(app: Flask) -> dict[str, Any]:
    """A user with every role and its token; a board with a meeting, cases, records, an assignment
    and a draft consensus. Returns the Authorization header and the seeded ids by kind."""
    user = make_user(*ROLES, specialty="medical_oncology", name="Fuzz All-Roles")
    _, secret = issue_api_token(user, "fuzz")
    s = make_consensus_setup()
    cases = [register_test_case(oncologist=s.onc) for _ in range(2)]
    consensus = create_draft(s.case, s.meeting, {"recommendation": "Surgery first."}, actor=s.onc)
    db.session.commit()  # the test's savepoint: the requests see it, the test rollback removes it
    ids = {
        "case": [s.case.id, *(c.id for c in cases)],
        "meeting": [s.meeting.id],
        "board": [s.board.id],
        "record": [r.id for c in cases for r in c.records],
        "assignment": [s.assignment.id],
        "consensus": [consensus.id],
        "oncologist": [s.onc.id, s.other_onc.id, user.id],
    }
    return {"headers": {"Authorization": f"Bearer {secret}"}, "ids": ids}


def _seed_ids(case: Any, data: st.DataObject, ids: dict[str, list[int]]) -> None:
    """Swap some generated integer ids for seeded ones (path parameters and JSON body fields)."""
    targets = [case.path_parameters or {}]
    if isinstance(case.body, dict):
        targets.append(case.body)
    for target in targets:
        for name, value in list(target.items()):
            kind = ID_FIELDS.get(name)
            if kind and isinstance(value, int) and not isinstance(value, bool) and data.draw(st.booleans()):
                target[name] = data.draw(st.sampled_from(ids[kind]))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@schema.given(data=st.data())
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_document(case: Any, data: st.DataObject, fuzz_world: dict[str, Any]) -> None:
    _seed_ids(case, data, fuzz_world["ids"])
    case.call_and_validate(headers=fuzz_world["headers"], checks=CHECKS)
