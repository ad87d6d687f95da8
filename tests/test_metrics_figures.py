"""Metrics on a small known data set: every figure equals the hand-computed value; the page, the
CSV and the SVG plots (no script, no style), the filters and who may see them."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_board, make_calendar_meeting, make_case, make_user, put_on_agenda
from tests.helpers import login
from tumorboard.audit.models import AuditEvent
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.quorum import meeting_quorum
from tumorboard.consensus.models import Consensus, ConsensusAmendment
from tumorboard.extensions import db
from tumorboard.metrics import services
from tumorboard.metrics.plots import PLOTS, clean_svg
from tumorboard.metrics.services import MetricsFilter

NOW = datetime(2031, 2, 1, 12, 0, tzinfo=UTC)
TODAY = date(2031, 2, 1)
JANUARY = MetricsFilter(None, date(2031, 1, 1), date(2031, 1, 31))


def at(day: int, month: int = 1) -> datetime:
    return datetime(2031, month, day, tzinfo=UTC)


def _signed(case, meeting, signer, *, signed: datetime, concordance: str, changed: bool) -> Consensus:
    consensus = Consensus(case_id=case.id, meeting_id=meeting.id, status="signed", concordance=concordance,
                          management_changed=changed, signed_at=signed, signed_by_id=signer.id,
                          recommendation_kinds=["surgery"], specialties_present=["pathology"])
    db.session.add(consensus)
    db.session.flush()
    return consensus


@pytest.fixture
def data(app) -> SimpleNamespace:
    """Breast board B (pathology + radiology) with meetings M0 (cancelled, 5 Jan), M1 (10 Jan),
    M2 (17 Jan), M4 (10 Feb, ahead); lung board L with ML (12 Jan, empty). Cases (referral, ready,
    first board, consensus; deadline):
      c1  1 Jan,  3 Jan, M1, 11 Jan concordant;                       deadline 15 Jan: complies
      c2  2 Jan,  6 Jan, M1 (after cancelled M0), 12 Jan major, changed; deadline 8 Jan: breach
      c3  3 Jan,  9 Jan, M2, 20 Jan minor → amended to new diagnosis, changed; deadline 17 Jan: complies
      c4  4 Jan, 12 Jan, M2, draft only;                              deadline 28 Feb: complies
      c5  5 Jan, intake;                                              deadline 20 Jan: breach (open)
      c6  6 Jan, withdrawn;                                           deadline 7 Jan: not counted
      c7  7 Jan, 20 Jan, on M4 (not yet met);                         deadline 1 Mar: not counted
      c8  lung, 8 Jan, 10 Jan, no meeting;                            deadline 1 Apr: not counted
    """
    onc = make_user("oncologist", specialty="medical_oncology")
    path = make_user("specialist", specialty="pathology")
    rad = make_user("specialist", specialty="radiology")
    surg = make_user("specialist", specialty="surgical_oncology")
    nurse = make_user("specialist", specialty="nursing")
    board = make_board(name="Breast B", specialties=("pathology", "radiology"), members=(path, rad))
    lung = make_board(name="Lung L", sites=("lung",), specialties=("pathology",))
    m0 = make_calendar_meeting(board, start=at(5), status="cancelled")
    m1 = make_calendar_meeting(board, start=at(10), status="held")
    m2 = make_calendar_meeting(board, start=at(17), status="held")
    m4 = make_calendar_meeting(board, start=at(10, 2))
    ml = make_calendar_meeting(lung, start=at(12), status="held")

    def case(created: datetime, ready: datetime | None, deadline: date, status: str, **kw):
        return make_case(oncologist=onc, created_at=created, ready_at=ready, deadline=deadline,
                         status=status, specialties=("pathology",), **kw)

    c1 = case(at(1), at(3), date(2031, 1, 15), "discussed")
    c2 = case(at(2), at(6), date(2031, 1, 8), "discussed", mrn="LATE-0002")
    c3 = case(at(3), at(9), date(2031, 1, 17), "discussed")
    c4 = case(at(4), at(12), date(2031, 2, 28), "scheduled", minutes=20)
    c5 = case(at(5), None, date(2031, 1, 20), "intake", mrn="LATE-0005")
    c6 = case(at(6), None, date(2031, 1, 7), "withdrawn")
    c7 = case(at(7), at(20), date(2031, 3, 1), "scheduled")
    c8 = make_case(oncologist=onc, site="lung", created_at=at(8), ready_at=at(10), deadline=date(2031, 4, 1),
                   status="ready", specialties=("pathology",))
    put_on_agenda(c2, m0, active=False)
    for c, m in ((c1, m1), (c2, m1), (c3, m2), (c4, m2), (c7, m4)):
        put_on_agenda(c, m)
    _signed(c1, m1, onc, signed=at(11), concordance="concordant", changed=False)
    _signed(c2, m1, onc, signed=at(12), concordance="major_discrepancy", changed=True)
    k3 = _signed(c3, m2, onc, signed=at(20), concordance="minor_discrepancy", changed=False)
    db.session.add(ConsensusAmendment(consensus_id=k3.id, author_id=onc.id, reason="Review of the slides",
                                      changes={"concordance": "new_diagnosis", "management_changed": True}))
    db.session.add(Consensus(case_id=c4.id, meeting_id=m2.id, status="draft", concordance="concordant"))
    for meeting, user, partstat, active in (
        (m1, path, "ACCEPTED", True), (m1, rad, "ACCEPTED", True),
        (m2, path, "ACCEPTED", True), (m2, rad, "DECLINED", True), (m2, surg, "NEEDS-ACTION", True),
        (m2, nurse, "TENTATIVE", False), (m4, path, "ACCEPTED", True),
    ):
        db.session.add(Invitation(meeting_id=meeting.id, user_id=user.id, partstat=partstat, active=active))
    db.session.flush()
    return SimpleNamespace(onc=onc, board=board, lung=lung, m0=m0, m1=m1, m2=m2, m4=m4, ml=ml,
                           cases=[c1, c2, c3, c4, c5, c6, c7, c8])


def test_percentile_is_linear_interpolation() -> None:
    assert services.percentile([], 0.5) is None
    assert services.percentile([4.0], 0.9) == 4.0
    assert services.percentile([2, 4, 6, 8, 13], 0.5) == 6
    assert services.percentile([2, 4, 6, 8, 13], 0.9) == pytest.approx(11.0)


def test_stage_times_median_and_p90_equal_hand_computed_values(data) -> None:
    stages = {s.key: s for s in services.stage_times(JANUARY, NOW)}
    # referral → ready: 2, 2 (lung), 4, 6, 8, 13 days
    assert stages["referral_ready"].count == 6
    assert stages["referral_ready"].median_days == pytest.approx(5.0)
    assert stages["referral_ready"].p90_days == pytest.approx(10.5)
    # ready → first board (M0 cancelled and M4 ahead do not count): 7, 4, 8, 5
    assert stages["ready_board"].count == 4
    assert stages["ready_board"].median_days == pytest.approx(6.0)
    assert stages["ready_board"].p90_days == pytest.approx(7.7)
    # first board → consensus (signed, a draft does not count): 1, 2, 3
    assert (stages["board_consensus"].count, stages["board_consensus"].median_days) == (3, pytest.approx(2.0))
    assert stages["board_consensus"].p90_days == pytest.approx(2.8)
    # referral → consensus: 10, 10, 17
    assert stages["referral_consensus"].median_days == pytest.approx(10.0)
    assert stages["referral_consensus"].p90_days == pytest.approx(15.6)


def test_window_compliance_counts_and_lists_breaches(data) -> None:
    compliance = services.window_compliance(JANUARY, TODAY, NOW)
    assert (compliance.compliant, compliance.breached) == (3, 2)
    assert compliance.rate == pytest.approx(0.6)
    assert [b.mrn for b in compliance.breaches] == ["LATE-0002", "LATE-0005"]  # by deadline
    late, open_case = compliance.breaches
    assert late.days_late == 2 and late.first_board == at(10)
    assert open_case.first_board is None and open_case.days_late is None


def test_concordance_counts_amendments_and_ignores_drafts(data) -> None:
    k = services.concordance(JANUARY)
    assert k.counts == {"concordant": 1, "minor_discrepancy": 0, "major_discrepancy": 1, "new_diagnosis": 1}
    assert k.total == 3 and k.management_changed == 2
    assert k.discrepancy_rate == pytest.approx(2 / 3)
    assert k.major_rate == pytest.approx(2 / 3)
    assert k.management_change_rate == pytest.approx(2 / 3)


def test_board_fill_and_quorum_rate(data) -> None:
    stats = {b.name: b for b in services.board_stats(JANUARY)}
    breast, lung = stats["Breast B"], stats["Lung L"]
    # M0 cancelled and M4 outside the period are left out
    assert (breast.meetings, breast.used_minutes, breast.capacity_minutes) == (2, 50, 120)
    assert breast.fill == pytest.approx(50 / 120)
    assert (breast.quorum_met, breast.quorum_rate) == (1, 0.5)  # M2: radiology declined
    assert (lung.meetings, lung.used_minutes, lung.quorum_met) == (1, 0, 0)


def test_batch_quorum_equals_meeting_quorum(data) -> None:
    batch = services.quorum_by_meeting([data.m1.id, data.m2.id, data.m4.id, data.ml.id])
    for meeting in (data.m1, data.m2, data.m4, data.ml):
        assert batch[meeting.id] == meeting_quorum(meeting)
    assert batch[data.m1.id].met and not batch[data.m2.id].met


def test_invite_answer_rates(data) -> None:
    answers = services.invite_answers(JANUARY)
    assert answers.counts == {"NEEDS-ACTION": 1, "ACCEPTED": 3, "DECLINED": 1, "TENTATIVE": 0,
                              "DELEGATED": 0}
    assert answers.answered_rate == pytest.approx(0.8)
    assert answers.accepted_rate == pytest.approx(0.6)


def test_site_filter(data) -> None:
    lung = services.compute(MetricsFilter("lung", date(2031, 1, 1), date(2031, 1, 31)), today=TODAY, now=NOW)
    referral = lung.stages[0]
    assert (referral.count, referral.median_days) == (1, pytest.approx(2.0))
    assert lung.compliance.counted == 0 and lung.concordance.total == 0
    assert [b.name for b in lung.boards] == ["Lung L"]
    assert lung.invites.total == 0


def test_period_filter(data) -> None:
    early = services.compute(MetricsFilter(None, date(2031, 1, 1), date(2031, 1, 12)), today=TODAY, now=NOW)
    breast = {b.name: b for b in early.boards}["Breast B"]
    assert (breast.meetings, breast.used_minutes) == (1, 20)  # M1 only
    assert early.invites.total == 2
    late = services.compute(MetricsFilter(None, date(2031, 1, 4), date(2031, 1, 31)), today=TODAY, now=NOW)
    referral = late.stages[0]  # c4 8 days, c7 13, c8 2 (c5, c6 never ready)
    assert (referral.count, referral.median_days) == (3, pytest.approx(8.0))
    assert (late.compliance.compliant, late.compliance.breached) == (1, 1)  # c4; c5
    assert late.concordance.total == 0


# --- pages ------------------------------------------------------------------------------------

def _signed_in(client, *roles: str):
    user = make_user(*roles, specialty="medical_oncology" if "oncologist" in roles else None)
    login(client, user.email)
    return user


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def test_metrics_page_shows_the_figures_and_audits_the_breach_list(client, data, frozen) -> None:
    _signed_in(client, "coordinator")
    page = client.get("/metrics?date_from=2031-01-01&date_to=2031-01-31")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Window compliance: 60.0%" in html
    assert "LATE-0002" in html and "LATE-0005" in html
    assert "2–51% by specialty" in html and "1.2–2.3%" in html
    assert html.count('<img src="/metrics/plots/') == len(PLOTS)
    assert 'alt="' in html
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "metrics.read")).one()
    assert sorted(event.details["breach_case_ids"]) == sorted([data.cases[1].id, data.cases[4].id])


def test_metrics_page_ignores_an_inverted_period(client, data, frozen) -> None:
    _signed_in(client, "oncologist")
    page = client.get("/metrics?date_from=2031-01-31&date_to=2031-01-01")
    assert page.status_code == 200
    assert "cannot be before its start" in page.get_data(as_text=True)


def test_csv_export(client, data, frozen) -> None:
    _signed_in(client, "coordinator")
    response = client.get("/metrics.csv?date_from=2031-01-01&date_to=2031-01-31")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["section", "name", "value", "detail"]
    values = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert values[("times_days", "referral_ready_median")] == "5.00"
    assert values[("times_days", "referral_ready_p90")] == "10.50"
    assert values[("compliance", "rate")] == "0.6000"
    assert values[("concordance", "new_diagnosis")] == "1"
    assert values[("board_quorum", "Breast B")] == "0.5000"
    assert values[("invites", "answered_rate")] == "0.8000"
    assert [r[1] for r in rows if r[0] == "breach"] == ["LATE-0002", "LATE-0005"]
    lung = client.get("/metrics.csv?site=lung&date_from=2031-01-01&date_to=2031-01-31").get_data(as_text=True)
    assert "LATE-0002" not in lung and "filter,site,lung" in lung


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_svg_plots_have_no_script_and_no_style(client, data, frozen, name: str) -> None:
    _signed_in(client, "coordinator")
    response = client.get(f"/metrics/plots/{name}.svg?date_from=2031-01-01&date_to=2031-01-31")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    body = response.get_data(as_text=True)
    assert "<script" not in body.lower() and "<style" not in body.lower()
    assert not re.search(r"\sstyle\s*=", body)
    assert not re.search(r"\son[a-z]+\s*=", body)  # no event handler attributes either
    root = ET.fromstring(body)  # noqa: S314 - our own response
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    title = root.find("{http://www.w3.org/2000/svg}title")
    assert title is not None and title.text == PLOTS[name][0]
    assert root.get("role") == "img"
    assert "fill=" in body  # styling survived as presentation attributes


def test_svg_plots_render_an_empty_filter(client, app, frozen) -> None:
    _signed_in(client, "coordinator")
    for name in PLOTS:
        body = client.get(f"/metrics/plots/{name}.svg").get_data(as_text=True)
        assert "<style" not in body and " style=" not in body


def test_clean_svg_turns_style_into_presentation_attributes() -> None:
    raw = ('<svg xmlns="http://www.w3.org/2000/svg">'
           '<defs><style type="text/css">*{stroke: red}</style></defs>'
           '<path style="fill: #ffffff; stroke: #000; unknown-prop: 1"/>'
           '<text style="font-size: 10px; font-family: \'DejaVu Sans\', sans; text-anchor: end">x</text>'
           '</svg>')
    out = clean_svg(raw, "A title", "A description").decode()
    assert "<style" not in out and "style=" not in out and "unknown-prop" not in out
    assert 'fill="#ffffff"' in out and 'stroke="#000"' in out and 'text-anchor="end"' in out
    assert "<title id=\"plot-title\">A title</title>" in out and "A description" in out


def test_unknown_plot_is_404(client, app) -> None:
    _signed_in(client, "coordinator")
    assert client.get("/metrics/plots/nope.svg").status_code == 404


@pytest.mark.parametrize("role, status", [("coordinator", 200), ("oncologist", 200), ("specialist", 403),
                                          ("admin", 403)])
def test_metrics_permissions(client, app, role: str, status: int) -> None:
    _signed_in(client, role)
    for url in ("/metrics", "/metrics.csv", "/metrics/plots/times.svg"):
        assert client.get(url).status_code == status, url


def test_metrics_need_sign_in(client, app) -> None:
    assert client.get("/metrics").status_code == 302
