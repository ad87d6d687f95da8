"""Synthetic demo data: invented people and cases only, never real patient data."""

from __future__ import annotations

import random
from datetime import date, time, timedelta

import sqlalchemy as sa

from tumorboard.auth.models import User
from tumorboard.auth.services import create_user
from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty
from tumorboard.cases.models import Case, CaseSpecialty, RecordItem
from tumorboard.cases.services import compute_deadline
from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.vocab import SITES, SPECIALTIES

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105 - synthetic demo accounts only
DOMAIN = "demo.tumorboard.test"

BOARDS = [
    # name, sites, RRULE, zone, weekday offset, start time
    ("Breast MDT", ["breast"], "FREQ=WEEKLY;BYDAY=TU", "Europe/London", time(8, 0)),
    ("Thoracic MDT", ["lung"], "FREQ=WEEKLY;BYDAY=TH", "Europe/London", time(13, 0)),
    ("Lower GI MDT", ["colorectal"], "FREQ=WEEKLY;BYDAY=WE", "Europe/London", time(7, 30)),
    ("Upper GI & Sarcoma MDT", ["upper_gi", "sarcoma"], "FREQ=WEEKLY;BYDAY=MO", "Europe/London", time(12, 0)),
    ("Uro-oncology MDT", ["prostate", "urology"], "FREQ=WEEKLY;BYDAY=FR", "America/New_York", time(8, 0)),
    ("Gynae-oncology MDT", ["gynae"], "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH", "Europe/London", time(9, 0)),
]

FIRST = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley", "Harper", "Jordan", "Kai", "Logan",
         "Morgan", "Parker", "Quinn", "Reese", "Riley", "Rowan", "Sage", "Skyler", "Taylor", "Wren"]
LAST = ["Ashdown", "Brookfield", "Calder", "Dunmore", "Elswick", "Fenwick", "Garside", "Holloway",
        "Ingram", "Kettering", "Larkhill", "Marlow", "Northam", "Oakridge", "Pembury", "Redmire"]


def seed_demo(seed: int = 2026, cases: int = 100) -> bool:
    """Create the demo users, boards and cases; False (and nothing changes) if already there."""
    if db.session.scalar(sa.select(User.id).where(User.email == f"coordinator@{DOMAIN}")):
        return False
    rng = random.Random(seed)
    people = _users()
    specialists = [u for u in people if u.specialty]
    oncologists = [u for u in people if u.has_role("oncologist")]
    for name, sites, rule, zone, start in BOARDS:
        needed = sorted({s for site in sites for s in SITES[site]})
        board = Board(
            name=name, rrule=rule, timezone=zone, first_date=date.today() - timedelta(days=7),
            start_time=start, duration_minutes=90, capacity_minutes=90, default_case_minutes=10,
            location=f"{name} room, Level 3", video_url="https://video.example.org/mdt",
            sites=[BoardSite(site=s) for s in sites],
            specialties=[BoardSpecialty(specialty=s) for s in needed],
            members=[BoardMember(user_id=u.id) for u in specialists if u.specialty in needed],
        )
        db.session.add(board)
    for n in range(cases):
        _case(rng, n, rng.choice(oncologists), people[0])
    db.session.flush()
    _schedule()
    return True


def _schedule() -> None:
    """Materialise the boards' meetings and let the engine place the ready cases."""
    from tumorboard.boards.services import materialise_meetings
    from tumorboard.planning.services import run_pass

    materialise_meetings()
    run_pass()


def _users() -> list[User]:
    users = [
        create_user(email=f"coordinator@{DOMAIN}", name="Casey Coordinator", password=DEMO_PASSWORD,
                    roles=["coordinator"]),
        create_user(email=f"specialist@{DOMAIN}", name="Dr Sam Specialist", password=DEMO_PASSWORD,
                    roles=["specialist"], specialty="pathology"),
        create_user(email=f"oncologist@{DOMAIN}", name="Dr Olive Oncologist", password=DEMO_PASSWORD,
                    roles=["oncologist", "specialist"], specialty="medical_oncology"),
        create_user(email=f"admin@{DOMAIN}", name="Ada Admin", password=DEMO_PASSWORD, roles=["admin"]),
    ]
    for specialty in SPECIALTIES:
        for i in (1, 2):
            roles = ["specialist", "oncologist"] if specialty == "medical_oncology" else ["specialist"]
            users.append(create_user(
                email=f"{specialty.replace('_', '.')}.{i}@{DOMAIN}",
                name=f"Dr {FIRST[(len(users) * 7) % len(FIRST)]} {LAST[len(users) % len(LAST)]}",
                password=DEMO_PASSWORD, roles=roles, specialty=specialty,
            ))
    return users


def _case(rng: random.Random, n: int, oncologist: User, coordinator: User) -> Case:
    site = rng.choice(["breast", "lung", "colorectal", "upper_gi", "prostate", "gynae", "sarcoma"])
    diagnosed = date.today() - timedelta(days=rng.randint(5, 80))
    planned = diagnosed + timedelta(days=rng.randint(40, 100)) if rng.random() < 0.3 else None
    urgent = rng.random() < 0.1
    received = rng.random() < 0.6
    case = Case(
        mrn=f"DEMO-{100000 + n}", display_name=f"{rng.choice(FIRST)} {rng.choice(LAST)} (synthetic)",
        site=site, diagnosis_date=diagnosed, planned_treatment_start=planned,
        deadline=compute_deadline(diagnosed, planned, site),
        question=rng.choice([
            "Second opinion on the primary treatment plan.",
            "Is neoadjuvant therapy indicated before surgery?",
            "Review of pathology grade and staging before treatment.",
            "Candidate for a clinical trial?",
        ]),
        referring_oncologist_id=oncologist.id, urgency="urgent" if urgent else "routine",
        minutes=rng.choice([5, 10, 10, 15, 20]), status="ready" if received else "intake",
        ready_at=now_utc() - timedelta(days=rng.randint(0, 5)) if received else None,
        created_by_id=coordinator.id,
        specialties=[CaseSpecialty(specialty=s) for s in SITES[site]],
    )
    requested = now_utc() - timedelta(days=rng.randint(3, 20))
    for kind, label in (("imaging", "Staging CT"), ("pathology", "Pathology slides"),
                        ("labs", "Blood panel"), ("clinic_notes", "Referral letter")):
        got = received or rng.random() < 0.5
        case.records.append(RecordItem(kind=kind, label=label, requested_at=requested,
                                       received_at=requested + timedelta(days=2) if got else None))
    db.session.add(case)
    return case
