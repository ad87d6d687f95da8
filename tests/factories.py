"""Factory helpers: build valid rows with sensible defaults, override what a test cares about."""

from __future__ import annotations

import itertools
from datetime import date, time, timedelta
from typing import Any

from tumorboard.auth.models import User
from tumorboard.auth.services import create_user
from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty
from tumorboard.cases.models import Case, CaseSpecialty
from tumorboard.cases.services import compute_deadline
from tumorboard.extensions import db
from tumorboard.vocab import SITES

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)


def make_user(*roles: str, specialty: str | None = None, **kw: Any) -> User:
    n = next(_seq)
    return create_user(
        email=kw.pop("email", f"user{n}@example.org"), name=kw.pop("name", f"User {n}"),
        password=kw.pop("password", PASSWORD), roles=list(roles or ("coordinator",)),
        specialty=specialty, **kw,
    )


def make_board(*, sites: tuple[str, ...] = ("breast",), members: tuple[User, ...] = (), **kw: Any) -> Board:
    n = next(_seq)
    specialties = kw.pop("specialties", SITES[sites[0]])
    board = Board(
        name=kw.pop("name", f"Board {n}"), rrule=kw.pop("rrule", "FREQ=WEEKLY;BYDAY=TU"),
        timezone=kw.pop("timezone", "Europe/London"), first_date=kw.pop("first_date", date(2026, 1, 6)),
        start_time=kw.pop("start_time", time(8, 0)), duration_minutes=kw.pop("duration_minutes", 60),
        capacity_minutes=kw.pop("capacity_minutes", 60),
        sites=[BoardSite(site=s) for s in sites],
        specialties=[BoardSpecialty(specialty=s) for s in specialties],
        members=[BoardMember(user_id=u.id) for u in members], **kw,
    )
    db.session.add(board)
    db.session.flush()
    return board


def make_case(*, oncologist: User | None = None, site: str = "breast", **kw: Any) -> Case:
    n = next(_seq)
    oncologist = oncologist or make_user("oncologist", specialty="medical_oncology")
    diagnosed = kw.pop("diagnosis_date", date(2026, 11, 1))
    planned = kw.pop("planned_treatment_start", None)
    case = Case(
        mrn=kw.pop("mrn", f"TEST-{n:06d}"), display_name=kw.pop("display_name", f"Synthetic Patient {n}"),
        site=site, diagnosis_date=diagnosed, planned_treatment_start=planned,
        deadline=kw.pop("deadline", compute_deadline(diagnosed, planned, site)),
        question=kw.pop("question", "Second opinion on the plan."),
        referring_oncologist_id=oncologist.id,
        specialties=[CaseSpecialty(specialty=s) for s in kw.pop("specialties", SITES[site])], **kw,
    )
    db.session.add(case)
    db.session.flush()
    return case


def days(n: int) -> timedelta:
    return timedelta(days=n)
