"""Fuzz the JSON API from its own OpenAPI document (schemathesis): no 500s, every answer as documented.

Every operation gets a bounded number of generated requests (valid and invalid), sent with the
bearer token of a user holding every role, against a little seeded data. Each response must not be
a server error and must match the document: a documented status, content type, headers and body.
Ids in paths and bodies are sometimes swapped for seeded ones, so requests reach real rows and not
only 404s. Writes accumulate within the test; its transaction is rolled back at the end.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import make_case, make_consensus_setup, make_user, put_on_agenda, register_test_case
from tumorboard.api import API_PREFIX
from tumorboard.auth.services import issue_api_token
from tumorboard.consensus.models import Consensus, ConsensusFollowup
from tumorboard.consensus.services import create_draft
from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.vocab import ROLES

#: generated requests per operation and mode (valid, invalid): enough to find the obvious, fast in CI.
#: Explore further locally with e.g. TB_FUZZ_EXAMPLES=300 TB_FUZZ_SEED=7 (the default is reproducible).
MAX_EXAMPLES = int(os.environ.get("TB_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("TB_FUZZ_SEED")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

#: body fields whose valid values a generator cannot guess: sometimes sent, to get past validation
KNOWN_VALUES = {
    "timezone": ["Europe/London", "America/New_York"],
    "rrule": ["FREQ=WEEKLY;BYDAY=TU", "FREQ=MONTHLY;BYDAY=1WE"],
    "start_time": ["08:00", "17:30:00"],
}

#: parameter / body field → the kind of seeded row its id names
ID_FIELDS = {
    "case_id": "case", "meeting_id": "meeting", "board_id": "board", "record_id": "record",
    "assignment_id": "assignment", "consensus_id": "consensus",
    "referring_oncologist_id": "oncologist", "followup_owner_id": "oncologist", "followup_id": "followup",
}


@pytest.fixture
def api_schema(app: Flask) -> Any:
    def isolated(environ: dict[str, Any], start_response: Any) -> Any:
        # each request in an app context (and so a database session) of its own, as in production
        # and as tests.conftest.IsolatedClient does: Flask would otherwise reuse the test's
        with app.app_context():
            return app(environ, start_response)

    return schemathesis.openapi.from_wsgi(f"{API_PREFIX}/openapi.json", isolated)


@pytest.fixture
def fuzz_world(app: Flask) -> dict[str, Any]:
    """A user with every role and its token; a board with a meeting, cases, records, an assignment,
    a draft consensus and a signed one whose follow-up the user owns. Returns the Authorization
    header and the seeded ids by kind."""
    user = make_user(*ROLES, specialty="medical_oncology", name="Fuzz All-Roles")
    _, secret = issue_api_token(user, "fuzz")
    s = make_consensus_setup()
    cases = [register_test_case(oncologist=s.onc) for _ in range(2)]
    cases.append(make_case(oncologist=s.onc, status="ready", specialties=()))
    consensus = create_draft(s.case, s.meeting, {"recommendation": "Surgery first."}, actor=s.onc)
    followup = _signed_followup(s, owner=user)
    db.session.commit()  # the test's savepoint: the requests see it, the test rollback removes it
    ids = {
        "case": [s.case.id, *(c.id for c in cases)],
        "meeting": [s.meeting.id],
        "board": [s.board.id],
        "record": [r.id for c in cases for r in c.records],
        "assignment": [s.assignment.id],
        "consensus": [consensus.id],
        "oncologist": [s.onc.id, s.other_onc.id, user.id],
        "followup": [followup.id],
    }
    return {"headers": {"Authorization": f"Bearer {secret}"}, "ids": ids}


def _signed_followup(s: Any, owner: Any) -> ConsensusFollowup:
    """A discussed case on the setup's meeting with a signed consensus (rows written directly: the
    meeting has not started yet) and its open follow-up owned by `owner`."""
    case = make_case(oncologist=s.onc, status="discussed")
    put_on_agenda(case, s.meeting, active=False)
    consensus = Consensus(case_id=case.id, meeting_id=s.meeting.id, status="signed",
                          signed_at=now_utc(), signed_by_id=s.onc.id, recommendation="Surgery.")
    db.session.add(consensus)
    db.session.flush()
    followup = ConsensusFollowup(consensus_id=consensus.id, case_id=case.id, owner_id=owner.id,
                                 due=date(2031, 2, 1))
    db.session.add(followup)
    db.session.flush()
    return followup


def _seed(case: Any, data: st.DataObject, ids: dict[str, list[int]]) -> None:
    """Swap some generated integer ids for seeded ones (path parameters and JSON body fields), and
    some strings for values that pass validation (KNOWN_VALUES), so requests reach the services."""
    targets = [case.path_parameters or {}]
    if isinstance(case.body, dict):
        targets.append(case.body)
    for target in targets:
        for name, value in list(target.items()):
            kind = ID_FIELDS.get(name)
            if kind and isinstance(value, int) and not isinstance(value, bool) and data.draw(st.booleans()):
                target[name] = data.draw(st.sampled_from(ids[kind]))
            elif name in KNOWN_VALUES and isinstance(value, str) and data.draw(st.booleans()):
                target[name] = data.draw(st.sampled_from(KNOWN_VALUES[name]))


def _fuzz(operation: Any, mode: GenerationMode, world: dict[str, Any]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
    def run(case: Any, data: st.DataObject) -> None:
        _seed(case, data, world["ids"])
        case.call_and_validate(headers=world["headers"], checks=CHECKS)

    (run if SEED is None else seed(int(SEED))(run))()


def test_api_conforms_to_its_document(api_schema: Any, fuzz_world: dict[str, Any],
                                      subtests: pytest.Subtests) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        for mode in GenerationMode:
            with subtests.test(msg=f"{operation.label} ({mode})"):
                _fuzz(operation, mode, fuzz_world)
