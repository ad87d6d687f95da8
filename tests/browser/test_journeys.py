"""The three journeys of DESIGN.md in a real browser (headless Chromium), with basic
accessibility checks (every form control labelled; Tab reaches the submit buttons)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from tests.browser.conftest import LiveServer, tab_reaches, unlabelled_controls

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)


def _seed(live: LiveServer, *, meeting_offset: timedelta) -> SimpleNamespace:
    """Committed data for one journey: a breast board whose members cover every breast specialty,
    one meeting `meeting_offset` from now, a coordinator and two oncologists (unique emails)."""
    from tumorboard.auth.services import create_user
    from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty, Meeting
    from tumorboard.db import now_utc
    from tumorboard.extensions import db
    from tumorboard.vocab import SITES

    n = next(_seq)
    with live.app.app_context():

        def user(role: str, name: str, specialty: str | None = None) -> Any:
            return create_user(
                email=f"{role}{n}.{next(_seq)}@example.org",
                name=f"{name} {n}",
                password=PASSWORD,
                roles=[role],
                specialty=specialty,
            )

        coordinator = user("coordinator", "Cora Coordinator")
        primary = user("oncologist", "Dr Primary", "medical_oncology")
        chair = user("oncologist", "Dr Chair", "medical_oncology")
        members = {s: user("specialist", f"Dr {s}", s) for s in SITES["breast"]}
        board = Board(
            name=f"Breast MDT {n}",
            rrule="FREQ=WEEKLY;BYDAY=TU",
            timezone="Europe/London",
            first_date=date(2030, 1, 1),
            start_time=now_utc().time().replace(microsecond=0),
            duration_minutes=60,
            capacity_minutes=60,
            sites=[BoardSite(site="breast")],
            specialties=[BoardSpecialty(specialty="pathology"), BoardSpecialty(specialty="radiology")],
            members=[BoardMember(user_id=u.id) for u in members.values()],
        )
        db.session.add(board)
        db.session.flush()
        start = now_utc().replace(microsecond=0) + meeting_offset
        meeting = Meeting(
            board_id=board.id,
            board=board,
            start_at=start,
            end_at=start + timedelta(hours=1),
            ical_uid=f"meeting-browser-{n}@browser.test",
            capacity_minutes=60,
        )
        db.session.add(meeting)
        db.session.commit()
        ids = SimpleNamespace(
            coordinator=coordinator.email,
            primary=primary.email,
            chair=chair.email,
            primary_id=primary.id,
            members={s: u.id for s, u in members.items()},
            member_emails={s: u.email for s, u in members.items()},
            board_id=board.id,
            board_name=board.name,
            meeting_id=meeting.id,
        )
    return ids


def _sign_in(page: Any, live: LiveServer, email: str, *, check_keyboard: bool = False) -> None:
    page.goto(live.url("/login"))
    assert unlabelled_controls(page.content()) == []
    if check_keyboard:
        assert tab_reaches(page, "main form button[type=submit]"), "Tab does not reach Sign in"
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live.url("/"))


def _expect_text(locator: Any, text: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text)


def test_journey_1_coordinator_registers_a_case_that_lands_on_an_agenda(live, context) -> None:
    """Register → receive the records → ready → the assignment pass → on the meeting's agenda."""
    from tumorboard.jobs.tasks import JOBS, run_job

    seed = _seed(live, meeting_offset=timedelta(days=5))
    page = context.new_page()
    _sign_in(page, live, seed.coordinator, check_keyboard=True)

    page.goto(live.url("/cases/new"))
    assert unlabelled_controls(page.content()) == [], "every control of the registration form has a label"
    assert tab_reaches(page, "main form button[type=submit]"), "Tab does not reach Register case"
    mrn = f"BRW-{next(_seq):05d}"
    page.get_by_label("Patient reference (MRN)").fill(mrn)
    page.get_by_label("Display name").fill("Synthetic Browser Patient")
    page.get_by_label("Tumor site").select_option("breast")
    page.get_by_label("Diagnosis date").fill((date.today() - timedelta(days=10)).isoformat())
    page.get_by_label("Referring oncologist").select_option(str(seed.primary_id))
    page.get_by_label("Question for the board").fill("Second opinion on the surgical plan.")
    page.get_by_role("button", name="Register case").click()

    _expect_text(page.locator("main"), f"Case {mrn} registered")
    _expect_text(page.locator(".page-head"), "Intake")
    buttons = page.get_by_role("button", name="Mark received")
    total = buttons.count()
    assert total == 4  # the default checklist
    for _ in range(total):
        page.get_by_role("button", name="Mark received").first.click()
        page.wait_for_load_state()
    _expect_text(page.locator(".page-head"), "Ready")
    _expect_text(page.locator("#records-title"), "4/4")

    # what the scheduler process does within seconds of the "needs scheduling" request
    run_job(live.app, "assign-requested", JOBS["assign-requested"])

    page.reload()
    _expect_text(page.locator(".page-head"), "Scheduled")
    _expect_text(page.locator("section[aria-labelledby=schedule-title]"), seed.board_name)
    page.goto(live.url(f"/meetings/{seed.meeting_id}"))
    _expect_text(page.locator("table.agenda"), mrn)
    page.goto(live.url("/"))
    _expect_text(page.locator("#meetings"), seed.board_name)
    _expect_text(page.locator("#meetings"), "10 / 60")


def test_journey_2_specialist_accepts_by_rsvp_link_and_quorum_shows_it(live, context) -> None:
    """A specialist opens the signed RSVP link of an invite (no sign-in) and accepts; the quorum
    on the coordinator's pages counts the acceptance."""
    from tumorboard.calendar.models import Invitation
    from tumorboard.calendar.services import rsvp_url
    from tumorboard.extensions import db

    seed = _seed(live, meeting_offset=timedelta(days=3))
    with live.app.app_context():
        invitations = {
            s: Invitation(
                meeting_id=seed.meeting_id,
                user_id=uid,
                partstat="ACCEPTED" if s == "radiology" else "NEEDS-ACTION",
            )
            for s, uid in seed.members.items()
            if s in ("pathology", "radiology")
        }
        db.session.add_all(invitations.values())
        db.session.commit()
        link = rsvp_url(invitations["pathology"])
    assert link.startswith(live.base)

    coordinator = context.new_page()
    _sign_in(coordinator, live, seed.coordinator)
    row = coordinator.locator("#meetings tr", has_text=seed.board_name)
    _expect_text(row, "Missing: Pathology")

    specialist = context.browser.new_context().new_page()
    try:
        specialist.goto(link)
        _expect_text(specialist.locator("main"), seed.board_name)
        assert "Synthetic" not in specialist.content()  # no PHI behind the link
        specialist.get_by_role("button", name="Accept").click()
        _expect_text(specialist.locator("main"), "your answer (Accept) is recorded")
        _expect_text(specialist.locator(".meeting-facts"), "Accepted")
    finally:
        specialist.context.close()

    coordinator.reload()
    _expect_text(coordinator.locator("#meetings tr", has_text=seed.board_name), "Met")
    coordinator.goto(live.url(f"/meetings/{seed.meeting_id}"))
    quorum = coordinator.locator("section[aria-label=Quorum]")
    _expect_text(quorum, "Quorum: met")
    _expect_text(quorum, "Pathology: accepted")


def test_journey_3_oncologist_signs_the_consensus_and_the_primary_sees_the_follow_up(live, context) -> None:
    """The chair records and signs the consensus of a case discussed at a meeting that has
    started; the case's primary oncologist then sees the follow-up on their home page."""
    from tumorboard.cases.models import Assignment, Case, CaseSpecialty
    from tumorboard.extensions import db

    seed = _seed(live, meeting_offset=-timedelta(minutes=30))
    mrn = f"BRW-{next(_seq):05d}"
    with live.app.app_context():
        case = Case(
            mrn=mrn,
            display_name="Synthetic Consensus Patient",
            site="breast",
            diagnosis_date=date.today() - timedelta(days=20),
            deadline=date.today() + timedelta(days=60),
            question="Adjuvant therapy?",
            referring_oncologist_id=seed.primary_id,
            status="scheduled",
            specialties=[CaseSpecialty(specialty="pathology")],
        )
        db.session.add(case)
        db.session.flush()
        db.session.add(Assignment(case_id=case.id, meeting_id=seed.meeting_id, minutes=10, position=1))
        db.session.commit()
        case_id = case.id
        assert db.session.scalar(sa.select(Case.status).where(Case.id == case_id)) == "scheduled"

    chair = context.new_page()
    _sign_in(chair, live, seed.chair)
    waiting = chair.locator("#awaiting-consensus")
    _expect_text(waiting, mrn)
    waiting.get_by_role("link", name=f"Record the consensus of {mrn}").click()

    assert unlabelled_controls(chair.content()) == [], "every control of the consensus form has a label"
    chair.get_by_label("Specialties present").select_option(["pathology", "radiology"])
    chair.get_by_label("Board's diagnosis").fill("Invasive ductal carcinoma, grade 2 (synthetic).")
    chair.get_by_label("Concordance with the first opinion").select_option("minor_discrepancy")
    chair.get_by_label("Management changed", exact=True).select_option("yes")
    chair.get_by_label("How the management changed").fill("Adds adjuvant radiotherapy.")
    chair.get_by_label("Recommendation", exact=True).select_option(["surgery", "radiotherapy"])
    chair.get_by_label("Recommendation in words").fill("Wide local excision, then radiotherapy.")
    chair.get_by_label("Rationale").fill("Synthetic rationale.")
    chair.locator("select[name=followup_owner_id]").select_option(str(seed.primary_id))
    chair.get_by_label("Follow-up due").fill((date.today() + timedelta(days=14)).isoformat())
    assert tab_reaches(chair, "main form button[type=submit].primary"), "Tab does not reach Save draft"
    chair.get_by_role("button", name="Save draft").click()
    _expect_text(chair.locator("main"), "Draft saved")
    chair.get_by_role("button", name="Sign consensus").click()
    _expect_text(chair.locator("main"), "Consensus signed")

    primary = context.browser.new_context().new_page()
    try:
        _sign_in(primary, live, seed.primary)
        followups = primary.locator("#my-followups")
        _expect_text(followups, mrn)
        _expect_text(followups, f"due {(date.today() + timedelta(days=14)).isoformat()}")
        primary.goto(live.url("/followups"))
        _expect_text(primary.locator("main table"), "Synthetic Consensus Patient")
    finally:
        primary.context.close()
