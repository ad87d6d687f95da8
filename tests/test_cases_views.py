"""The coordinator's pages: register, edit, detail (audited), checklist and status actions, roles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
import time_machine
from flask.testing import FlaskClient

from tests.factories import make_board, make_user, register_test_case
from tests.helpers import login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.auth.models import User
from tumorboard.boards.models import Meeting
from tumorboard.cases import views
from tumorboard.cases.models import Assignment, Case
from tumorboard.extensions import db


@pytest.fixture(autouse=True)
def frozen(app) -> Iterator[None]:
    with time_machine.travel(datetime(2026, 11, 20, 12, 0, tzinfo=UTC), tick=False):
        yield


@pytest.fixture
def coordinator(client: FlaskClient) -> User:
    user = make_user("coordinator")
    login(client, user.email)
    return user


@pytest.fixture
def oncologist() -> User:
    return make_user("oncologist", specialty="medical_oncology", name="Dr Synthetic Oncologist")


def _form(oncologist: User, **kw: str) -> dict[str, str]:
    return {"mrn": "WEB-0001", "display_name": "Synthetic Web Patient", "site": "lung",
            "diagnosis_date": "2026-11-05", "question": "Neoadjuvant therapy?",
            "referring_oncologist_id": str(oncologist.id), "urgency": "routine",
            "planned_treatment_start": "", "minutes": "15", **kw}


def _count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Case.id))) or 0


def _reload(case: Case) -> Case:
    db.session.expire_all()
    return db.session.get(Case, case.id)


def test_coordinator_registers_a_case_with_the_form(client, coordinator, oncologist) -> None:
    form = client.get("/cases/new").get_data(as_text=True)
    assert 'for="mrn"' in form and "Dr Synthetic Oncologist" in form
    response = post_form(client, "/cases/new", _form(oncologist, specialties=["pathology", "radiology"]))
    assert response.status_code == 302
    case = db.session.scalar(sa.select(Case))
    assert response.headers["Location"] == f"/cases/{case.id}"
    assert case.deadline == date(2027, 2, 3) and case.minutes == 15
    assert case.specialty_names == ["pathology", "radiology"] and case.created_by_id == coordinator.id
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Case WEB-0001 registered." in page and "Staging imaging" in page and "2027-02-03" in page


@pytest.mark.parametrize(("change", "message"), [
    ({"diagnosis_date": "2026-11-21"}, "cannot be in the future"),
    ({"planned_treatment_start": "2026-11-01"}, "cannot be before the diagnosis date"),
    ({"referring_oncologist_id": ""}, "oncologist role"),
    ({"site": "elbow"}, "Unknown tumor site"),
    ({"diagnosis_date": "05/11/2026"}, "Not a valid date"),
    ({"minutes": "0"}, "between 1 and 240"),
    ({"mrn": ""}, "This field is required"),
])
def test_bad_form_input_is_shown_on_the_form_and_nothing_is_saved(client, coordinator, oncologist,
                                                                  change: dict, message: str) -> None:
    response = post_form(client, "/cases/new", _form(oncologist, **change))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in html and 'class="errors"' in html
    assert 'value="Synthetic Web Patient"' in html  # what was typed is kept
    assert _count() == 0


def test_edit_form_recomputes_the_deadline(client, coordinator) -> None:
    case = register_test_case(diagnosis_date=date(2026, 11, 1))
    page = client.get(f"/cases/{case.id}/edit").get_data(as_text=True)
    assert f'value="{case.mrn}"' in page and '<option selected value="breast">' in page
    data = {"mrn": case.mrn, "display_name": case.display_name, "site": "breast",
            "diagnosis_date": "2026-11-01", "question": case.question,
            "referring_oncologist_id": str(case.referring_oncologist_id), "urgency": "urgent",
            "planned_treatment_start": "2027-01-10", "minutes": "10",
            "specialties": case.specialty_names}
    response = post_form(client, f"/cases/{case.id}/edit", data)
    assert response.status_code == 302
    case = _reload(case)
    assert case.deadline == date(2027, 1, 10) and case.urgency == "urgent"


def test_viewing_a_case_is_audited(client, coordinator) -> None:
    case = register_test_case()
    assert client.get(f"/cases/{case.id}").status_code == 200
    client.get(f"/cases/{case.id}")
    reads = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "case.read")).all()
    assert [(e.object_id, e.actor_id) for e in reads] == [(str(case.id), coordinator.id)] * 2
    assert client.get("/cases/999999").status_code == 404


def test_case_page_shows_referral_checklist_meetings_and_history_in_constant_queries(
        client, coordinator, oncologist) -> None:
    case = register_test_case(oncologist=oncologist)
    board = make_board(name="Breast MDT")
    for n, status in ((1, "cancelled"), (2, "scheduled")):
        meeting = Meeting(board_id=board.id, start_at=datetime(2026, 11, 23 + n, 8, tzinfo=UTC),
                          end_at=datetime(2026, 11, 23 + n, 9, tzinfo=UTC), ical_uid=f"m-{n}@test",
                          status=status)
        db.session.add(meeting)
        db.session.flush()
        db.session.add(Assignment(case_id=case.id, meeting_id=meeting.id, active=n == 2, pinned=n == 2))
    db.session.flush()
    url = f"/cases/{case.id}"
    post_form(client, f"{url}/records/{case.records[0].id}/received", {}, form_url=url)
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        if statement.startswith(("SELECT", "INSERT")):  # not the test transaction's savepoints
            statements.append(statement)

    engine = db.session.get_bind().engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = client.get(url).get_data(as_text=True)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert "Dr Synthetic Oncologist" in page and "Medical oncology" not in page
    assert "medical oncology, pathology, radiation oncology, radiology, surgical oncology" in page
    assert "1/4 required received" in page and "Undo received" in page and "Mark requested" in page
    assert "20 Nov 2026 12:00" in page  # received at, in the coordinator's zone (UTC)
    assert "Breast MDT" in page and "(cancelled)" in page and "Coordinator, pinned" not in page
    assert "Engine, pinned" in page and "25 Nov 2026 08:00" in page
    assert "registered" in page
    assert len(statements) == 5  # user, case with its records, audit, assignments, history: none per row


MARKUP = '<script>alert("x")</script> & Co'


def test_case_page_escapes_what_users_typed(client, coordinator, oncologist) -> None:
    oncologist.name = MARKUP
    case = register_test_case(oncologist=oncologist, mrn=f"M{MARKUP}", display_name=MARKUP, question=MARKUP)
    board = make_board(name=f"Board {MARKUP}")
    meeting = Meeting(board_id=board.id, start_at=datetime(2026, 11, 24, 8, tzinfo=UTC),
                      end_at=datetime(2026, 11, 24, 9, tzinfo=UTC), ical_uid="m-x@test")
    db.session.add(meeting)
    db.session.flush()
    db.session.add(Assignment(case_id=case.id, meeting_id=meeting.id))
    db.session.flush()
    url = f"/cases/{case.id}"
    record = {"kind": "other", "label": f"Letter {MARKUP}"}
    assert post_form(client, f"{url}/records", record, form_url=url).status_code == 302
    post_form(client, f"{url}/withdraw", {"withdraw_reason": f"Reason {MARKUP}"}, form_url=url)
    refused = post_form(client, f"{url}/records", record, form_url=url)  # shown again, as typed
    for page in (client.get(url).get_data(as_text=True), refused.get_data(as_text=True)):
        assert "<script>" not in page and "& Co" not in page
    page = client.get(url).get_data(as_text=True)
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co"
    for shown in (f"M{escaped}", f"Letter {escaped}", f"Board {escaped}", f"Reason {escaped}"):
        assert shown in page, shown
    # title, name, MRN, oncologist, question, record label and its two buttons, board, reason
    assert page.count(escaped) == 10
    assert 'value="Letter &lt;script&gt;' in refused.get_data(as_text=True)


def test_blank_action_forms_are_rendered_as_wtforms_renders_them(app) -> None:
    with app.test_request_context():
        for name, (form_class, _) in views._ACTION_FORMS.items():
            fresh = views._form_fields(name, form_class(formdata=None, meta={"csrf": False}))
            assert views._form_fields(name) == fresh  # the first call renders and keeps
            assert views._form_fields(name) is views._form_fields(name) == fresh
        record_form = views._form_fields("record_form")
    assert 'name="kind"' in record_form
    assert 'id="required" name="required" type="checkbox" value="y"' in record_form


def test_marking_records_received_makes_the_case_ready(client, coordinator) -> None:
    case = register_test_case()
    url = f"/cases/{case.id}"
    for item in case.records[:-1]:
        post_form(client, f"{url}/records/{item.id}/received", {}, form_url=url)
    assert _reload(case).status == "intake"
    last = case.records[-1]
    response = post_form(client, f"{url}/records/{last.id}/received", {}, form_url=url)
    assert response.status_code == 302
    assert _reload(case).status == "ready"
    assert "The case is now ready." in client.get(url).get_data(as_text=True)
    post_form(client, f"{url}/records/{last.id}/unreceived", {}, form_url=url)
    assert _reload(case).status == "intake"


def test_adding_a_record_with_a_duplicate_label_shows_the_error(client, coordinator) -> None:
    case = register_test_case()
    url = f"/cases/{case.id}"
    response = post_form(client, f"{url}/records", {"kind": "imaging", "label": "Staging Imaging",
                                                    "required": "y"}, form_url=url)
    assert response.status_code == 200 and "already has" in response.get_data(as_text=True)
    ok = post_form(client, f"{url}/records", {"kind": "other", "label": "Genetics letter"}, form_url=url)
    assert ok.status_code == 302
    added = _reload(case).records[-1]
    assert added.label == "Genetics letter" and added.required is False  # unchecked box


def test_illegal_transition_is_flashed_and_changes_nothing(client, coordinator) -> None:
    case = register_test_case()
    url = f"/cases/{case.id}"
    response = post_form(client, f"{url}/status", {"status": "closed"}, form_url=url)
    assert response.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "This case is intake: it cannot become closed" in page
    assert _reload(case).status == "intake"


def test_withdraw_needs_a_reason_then_reopen(client, coordinator) -> None:
    case = register_test_case()
    url = f"/cases/{case.id}"
    response = post_form(client, f"{url}/withdraw", {"withdraw_reason": ""}, form_url=url)
    assert response.status_code == 200 and "This field is required" in response.get_data(as_text=True)
    assert _reload(case).status == "intake"
    post_form(client, f"{url}/withdraw", {"withdraw_reason": "Referred elsewhere."}, form_url=url)
    assert _reload(case).status == "withdrawn"
    page = client.get(url).get_data(as_text=True)
    assert "Referred elsewhere." in page and "Reopen case" in page
    post_form(client, f"{url}/status", {"status": "intake"}, form_url=url)
    assert _reload(case).status == "intake"


def test_readiness_override_form(client, coordinator) -> None:
    case = register_test_case()
    url = f"/cases/{case.id}"
    response = post_form(client, f"{url}/readiness-override", {"override_reason": " "}, form_url=url)
    assert response.status_code == 200 and _reload(case).status == "intake"
    post_form(client, f"{url}/readiness-override", {"override_reason": "Slides seen by our pathologist."},
              form_url=url)
    case = _reload(case)
    assert case.status == "ready" and case.readiness_override == "Slides seen by our pathologist."
    assert db.session.scalar(sa.select(AuditEvent.details).where(
        AuditEvent.action == "case.readiness_override")) == {"reason": "Slides seen by our pathologist."}


def test_action_without_csrf_token_is_refused(client, coordinator) -> None:
    case = register_test_case()
    response = client.post(f"/cases/{case.id}/status", data={"status": "withdrawn"})
    assert response.status_code == 400 and _reload(case).status == "intake"


@pytest.mark.parametrize("role", ["specialist", "admin"])
def test_specialist_and_admin_cannot_see_or_change_cases(client, oncologist, role: str) -> None:
    case = register_test_case()
    user = make_user(role, specialty="pathology" if role == "specialist" else None)
    login(client, user.email)
    for url in ("/cases", "/cases/new", f"/cases/{case.id}", f"/cases/{case.id}/edit"):
        assert client.get(url).status_code == 403, url
    response = post_form(client, "/cases/new", _form(oncologist), form_url="/")  # the session's token
    assert response.status_code == 403
    edit = post_form(client, f"/cases/{case.id}/edit", _form(oncologist), form_url="/")
    assert edit.status_code == 403
    assert _count() == 1 and _reload(case).site == "breast"
    assert "/cases" not in client.get("/").get_data(as_text=True).split("<main")[0]  # no nav link


def test_oncologist_reads_without_action_buttons(client, oncologist) -> None:
    case = register_test_case(oncologist=oncologist)
    login(client, oncologist.email)
    assert client.get("/cases").status_code == 200
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert case.mrn in page and "Mark received" not in page and "Withdraw case" not in page
    assert client.get("/cases/new").status_code == 403
    refused = post_form(client, f"/cases/{case.id}/records/{case.records[0].id}/received", {},
                        form_url=f"/cases/{case.id}")
    assert refused.status_code == 403 and _reload(case).records[0].received_at is None
