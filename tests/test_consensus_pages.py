"""The consensus pages: draft form, signing, amendments, follow-ups, print view, deferral."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import CONSENSUS_NOW, make_calendar_meeting, make_consensus_setup, put_on_agenda
from tests.helpers import login, post_form
from tumorboard.audit.models import AuditEvent
from tumorboard.consensus.models import Consensus, ConsensusAmendment, ConsensusFollowup
from tumorboard.extensions import db
from tumorboard.notifications.models import OutboxMessage

NOW = CONSENSUS_NOW
OVERDUE = '<span class="badge overdue">Overdue</span>'

pytestmark = pytest.mark.usefixtures("consensus_clock")


@pytest.fixture
def s(app: Flask) -> Any:
    return make_consensus_setup()


def signed_in(app: Flask, user: Any) -> FlaskClient:
    client = app.test_client()
    login(client, user.email)
    return client


def form_url(s: Any, meeting: Any = None) -> str:
    return f"/cases/{s.case.id}/meetings/{(meeting or s.meeting).id}/consensus"


def valid_form(s: Any, **changes: Any) -> dict[str, Any]:
    return {
        "specialties_present": ["medical_oncology", "pathology", "radiology"],
        "board_diagnosis": "Invasive ductal carcinoma, ER positive (synthetic)",
        "concordance": "minor_discrepancy",
        "management_changed": "yes",
        "management_change": "Neoadjuvant therapy before surgery.",
        "recommendation_kinds": ["systemic_therapy", "surgery"],
        "recommendation": "Neoadjuvant chemotherapy, then re-discuss for surgery.",
        "rationale": "Tumour size and nodal status.",
        "trial_eligible": "yes",
        "trial_notes": "SYNTH-01 screening",
        "dissent": "",
        "followup_owner_id": str(s.onc.id),
        "followup_due": "2031-02-01",
        **changes,
    }


def consensus_of(s: Any, meeting: Any = None) -> Consensus | None:
    db.session.expire_all()
    return db.session.scalar(sa.select(Consensus).where(
        Consensus.case_id == s.case.id, Consensus.meeting_id == (meeting or s.meeting).id))


def save(client: FlaskClient, s: Any, meeting: Any = None, **changes: Any) -> Any:
    url = form_url(s, meeting)
    return post_form(client, url, valid_form(s, **changes))


def sign(client: FlaskClient, s: Any, meeting: Any = None) -> Any:
    consensus = consensus_of(s, meeting)
    assert consensus is not None
    return post_form(client, f"/consensus/{consensus.id}/sign", {}, form_url=form_url(s, meeting))


def signed_consensus(app: Flask, s: Any) -> tuple[FlaskClient, Consensus]:
    onc = signed_in(app, s.onc)
    assert save(onc, s).status_code == 302
    assert sign(onc, s).status_code == 302
    consensus = consensus_of(s)
    assert consensus is not None and consensus.status == "signed"
    return onc, consensus


def test_new_form_prefills_specialties_of_accepted_invitations_and_the_primary_oncologist(app, s) -> None:
    page = signed_in(app, s.onc).get(form_url(s))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    selected = html.split('name="specialties_present"')[1].split("</select>")[0]
    assert '<option selected value="pathology">' in selected
    assert '<option selected value="radiology">' in selected
    assert '<option value="surgical_oncology">' in selected  # declined
    assert '<option value="nursing">' in selected  # accepted but no longer invited
    owner = html.split('name="followup_owner_id"')[1].split("</select>")[0]
    assert f'<option selected value="{s.onc.id}">' in owner
    assert "csrf_token" in html and "<script" not in html and "style=" not in html
    reads = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "consensus.read")).all()
    assert [(e.object_type, e.object_id) for e in reads] == [("case", str(s.case.id))]


def test_saving_a_draft_keeps_it_editable_and_audits_it(app, s) -> None:
    client = signed_in(app, s.coord)  # a coordinator may scribe the draft
    response = save(client, s)
    assert response.status_code == 302
    consensus = consensus_of(s)
    assert consensus is not None and consensus.status == "draft"
    assert consensus.recommendation_kinds == ["surgery", "systemic_therapy"]
    assert consensus.management_changed is True and consensus.followup_due == date(2031, 2, 1)
    assert save(client, s, recommendation="Changed while still a draft.").status_code == 302
    assert consensus_of(s).recommendation == "Changed while still a draft."
    actions = db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert "consensus.create" in actions and "consensus.update" in actions


@pytest.mark.parametrize(("changes", "message"), [
    ({"recommendation_kinds": [], "recommendation": ""}, "Choose at least one recommendation."),
    ({"recommendation": "  "}, "Write the recommendation."),
    ({"specialties_present": ["pathology", "astrology"]}, "not a valid choice"),
    ({"followup_due": "2031-01-06"}, "The due date cannot be in the past."),
    ({"management_change": ""}, "Say how the management changed."),
    ({"followup_owner_id": "0"}, "Not a valid choice"),
])
def test_bad_input_re_renders_with_a_message_and_saves_nothing(app, s, changes, message) -> None:
    client = signed_in(app, s.onc)
    response = save(client, s, **changes)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in html and 'aria-invalid="true"' in html
    assert consensus_of(s) is None


def test_follow_up_owner_must_be_an_oncologist(app, s) -> None:
    response = save(signed_in(app, s.onc), s, followup_owner_id=str(s.coord.id))
    assert response.status_code == 200  # not even offered as a choice
    assert consensus_of(s) is None


def test_only_an_oncologist_signs(app, s) -> None:
    save(signed_in(app, s.onc), s)
    for user in (s.coord, s.path):
        assert sign(signed_in(app, user), s).status_code == 403
        assert consensus_of(s).status == "draft"
    assert sign(signed_in(app, s.other_onc), s).status_code == 302
    consensus = consensus_of(s)
    assert consensus.status == "signed" and consensus.signed_by_id == s.other_onc.id


def test_signing_moves_the_case_hands_over_the_follow_up_and_notifies_exactly_once(app, s) -> None:
    onc, consensus = signed_consensus(app, s)
    assert consensus.case.status == "discussed"
    followup = db.session.scalar(sa.select(ConsensusFollowup))
    assert followup.owner_id == s.onc.id and followup.due == date(2031, 2, 1)
    assert sign(onc, s).status_code == 409  # a second signature is refused
    mails = db.session.scalars(sa.select(OutboxMessage)).all()
    assert len(mails) == 1
    mail = mails[0]
    assert mail.dedupe_key == f"consensus-signed:{consensus.id}" and mail.to_addr == s.onc.email
    body = mail.body.decode()
    assert "A board recommendation you follow up is signed" in body
    assert f"http://tumorboard.test/cases/{s.case.id}/meetings/{s.meeting.id}/consensus" in body
    for phi in (s.case.display_name, s.case.mrn, "carcinoma", "Neoadjuvant"):
        assert phi not in body and phi not in mail.subject
    assert "consensus.sign" in db.session.scalars(sa.select(AuditEvent.action)).all()


def test_a_meeting_not_yet_started_cannot_have_its_consensus_signed(app) -> None:
    s = make_consensus_setup(start=NOW + timedelta(hours=3))
    onc = signed_in(app, s.onc)
    save(onc, s)
    response = sign(onc, s)
    assert response.status_code == 409
    assert "The meeting has not started yet" in response.get_data(as_text=True)
    assert consensus_of(s).status == "draft"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0


def test_an_incomplete_draft_cannot_be_signed(app, s) -> None:
    onc = signed_in(app, s.onc)
    save(onc, s, board_diagnosis="", concordance="", followup_due="")
    response = sign(onc, s)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Record the board&#39;s diagnosis." in html and "Give the follow-up due date." in html
    assert "Neoadjuvant chemotherapy, then re-discuss for surgery." in html  # the draft is still shown
    assert consensus_of(s).status == "draft" and consensus_of(s).case.status == "scheduled"


def test_a_signed_record_cannot_be_changed_through_the_form(app, s) -> None:
    onc, consensus = signed_consensus(app, s)
    page = onc.get(form_url(s)).get_data(as_text=True)
    assert "Signed consensus" in page and "Save draft" not in page
    response = post_form(onc, form_url(s), valid_form(s, recommendation="Sneaky edit."))
    assert response.status_code == 409
    assert "add an amendment instead" in response.get_data(as_text=True)
    assert consensus_of(s).recommendation == "Neoadjuvant chemotherapy, then re-discuss for surgery."


def test_amendments_are_appended_and_listed_in_order(app, s) -> None:
    onc, consensus = signed_consensus(app, s)
    url = f"/consensus/{consensus.id}/amendments"
    first = valid_form(s, reason="Pathology review came back.", concordance="major_discrepancy")
    assert post_form(onc, url, first, form_url=form_url(s)).status_code == 302
    second = valid_form(s, reason="Trial closed to accrual.", concordance="major_discrepancy",
                        trial_eligible="no", followup_due="2031-03-01")
    assert post_form(onc, url, second, form_url=form_url(s)).status_code == 302

    amendments = db.session.scalars(sa.select(ConsensusAmendment).order_by(ConsensusAmendment.id)).all()
    assert [a.reason for a in amendments] == ["Pathology review came back.", "Trial closed to accrual."]
    assert amendments[0].changes == {"concordance": "major_discrepancy"}
    assert amendments[1].changes == {"trial_eligible": False, "followup_due": "2031-03-01"}
    signed = consensus_of(s)
    assert signed.concordance == "minor_discrepancy"  # the signed row itself never changed
    assert signed.current()["concordance"] == "major_discrepancy"
    assert db.session.scalar(sa.select(ConsensusFollowup.due)) == date(2031, 3, 1)

    page = onc.get(form_url(s)).get_data(as_text=True)
    assert page.index("Pathology review came back.") < page.index("Trial closed to accrual.")
    assert "Amendment 1" in page and "Amendment 2" in page


def test_an_amendment_needs_a_reason_and_a_change(app, s) -> None:
    onc, consensus = signed_consensus(app, s)
    url = f"/consensus/{consensus.id}/amendments"
    no_reason = post_form(onc, url, valid_form(s, reason="", concordance="concordant"), form_url=form_url(s))
    assert no_reason.status_code == 200
    assert "Give the reason for the amendment." in no_reason.get_data(as_text=True)
    nothing = post_form(onc, url, valid_form(s, reason="Just because."), form_url=form_url(s))
    assert "The amendment changes nothing." in nothing.get_data(as_text=True)
    past = post_form(onc, url, valid_form(s, reason="Move it.", followup_due="2031-01-01"),
                     form_url=form_url(s))
    assert "The due date cannot be in the past." in past.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsensusAmendment)) == 0
    assert post_form(signed_in(app, s.coord), url, valid_form(s, reason="x", concordance="concordant"),
                     form_url=form_url(s)).status_code == 403


def test_follow_up_list_overdue_flag_and_confirmation_closes_the_case(app, s) -> None:
    _, consensus = signed_consensus(app, s)
    followup = db.session.scalar(sa.select(ConsensusFollowup))
    mine = signed_in(app, s.onc).get("/followups").get_data(as_text=True)
    assert s.case.display_name in mine and "2031-02-01" in mine and OVERDUE not in mine
    assert s.case.display_name not in signed_in(app, s.other_onc).get("/followups").get_data(as_text=True)
    coord = signed_in(app, s.coord)
    assert s.case.display_name not in coord.get("/followups/overdue").get_data(as_text=True)
    assert coord.get("/followups").status_code == 403  # a coordinator owns no follow-ups

    with time_machine.travel(datetime(2031, 2, 3, 9, 0, tzinfo=UTC), tick=False):
        onc = signed_in(app, s.onc)
        assert OVERDUE in onc.get("/followups").get_data(as_text=True)
        overdue = signed_in(app, s.coord).get("/followups/overdue").get_data(as_text=True)
        assert s.case.display_name in overdue and s.onc.name in overdue
        other = signed_in(app, s.other_onc)
        refused = post_form(other, f"/followups/{followup.id}/confirm", {}, form_url="/followups")
        assert refused.status_code == 403
        done = post_form(onc, f"/followups/{followup.id}/confirm", {}, form_url="/followups")
        assert done.status_code == 302
    db.session.expire_all()
    assert followup.confirmed_at is not None and followup.confirmed_by_id == s.onc.id
    assert consensus.case.status == "closed"
    again = post_form(signed_in(app, s.onc), f"/followups/{followup.id}/confirm", {}, form_url="/followups")
    assert again.status_code == 409


def test_print_view_shows_the_signed_content_and_amendments(app, s) -> None:
    onc, consensus = signed_consensus(app, s)
    post_form(onc, f"/consensus/{consensus.id}/amendments",
              valid_form(s, reason="Nodal status revised.", concordance="major_discrepancy"),
              form_url=form_url(s))
    response = onc.get(f"/consensus/{consensus.id}/print")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for text in ("Neoadjuvant chemotherapy, then re-discuss for surgery.", "Minor discrepancy",
                 "Nodal status revised.", "Major discrepancy", "Dr Chair Onc", s.case.mrn,
                 "Systemic therapy"):
        assert text in html
    assert "style=" not in html and "<script" not in html
    reads = db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "consensus.read"))
    assert {"case_id": s.case.id, "via": "print"} in list(reads)


def test_a_draft_is_not_printed_for_the_chart(app, s) -> None:
    onc = signed_in(app, s.onc)
    save(onc, s)
    assert onc.get(f"/consensus/{consensus_of(s).id}/print").status_code == 409


def test_a_deferred_case_keeps_both_records(app, s) -> None:
    onc = signed_in(app, s.onc)
    refused = save(onc, s, deferred="y", recommendation_kinds=["surgery"])
    assert "A deferral recommends further work-up." in refused.get_data(as_text=True)
    assert consensus_of(s) is None
    save(onc, s, deferred="y", recommendation_kinds=["further_workup"],
         recommendation="Await the pathology review; re-discuss.", board_diagnosis="", concordance="",
         followup_due="")
    assert sign(onc, s).status_code == 302
    first = consensus_of(s)
    assert first.status == "signed" and first.deferred
    assert first.case.status == "ready"  # back in the queue for another meeting
    db.session.refresh(s.assignment)
    assert s.assignment.active is False
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ConsensusFollowup)) == 0

    second_meeting = make_calendar_meeting(s.board, start=NOW - timedelta(hours=1))
    first.case.status = "scheduled"  # the engine put it on the next meeting
    put_on_agenda(first.case, second_meeting)
    db.session.flush()
    assert save(onc, s, meeting=second_meeting).status_code == 302
    assert sign(onc, s, meeting=second_meeting).status_code == 302
    assert consensus_of(s, second_meeting).case.status == "discussed"

    listing = onc.get(f"/cases/{s.case.id}/consensus").get_data(as_text=True)
    assert listing.count("Open<span") == 2 and "Deferred" in listing
    records = db.session.scalars(sa.select(Consensus).where(Consensus.case_id == s.case.id)).all()
    assert sorted(c.deferred for c in records) == [False, True]
    notices = sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "notice")
    assert db.session.scalar(notices) == 2


def test_a_specialist_reads_but_cannot_save(app, s) -> None:
    save(signed_in(app, s.onc), s)
    path = signed_in(app, s.path)
    page = path.get(form_url(s))
    assert page.status_code == 200 and "Save draft" not in page.get_data(as_text=True)
    assert "Neoadjuvant chemotherapy" in page.get_data(as_text=True)
    assert post_form(path, form_url(s), valid_form(s)).status_code == 403


def test_a_case_not_on_the_meeting_agenda_has_no_consensus_page(app, s) -> None:
    elsewhere = make_calendar_meeting(s.board, start=NOW - timedelta(days=7))
    onc = signed_in(app, s.onc)
    assert onc.get(form_url(s, elsewhere)).status_code == 404
