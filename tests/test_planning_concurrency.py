"""Two scheduler processes on one PostgreSQL database never assign a case twice."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from tests.factories import make_board, make_calendar_meeting, make_case
from tumorboard import create_app
from tumorboard.cases.models import Assignment, Case
from tumorboard.extensions import db

ROOT = Path(__file__).resolve().parents[1]


def test_two_assignment_passes_at_once_assign_each_case_once(scratch_postgres: str) -> None:
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=scratch_postgres)
    now = datetime.now(UTC)
    with app.app_context():
        db.create_all()
        board = make_board(sites=("breast",), specialties=())
        for week in range(1, 4):
            make_calendar_meeting(board, start=now + timedelta(days=7 * week), capacity_minutes=120)
        for _ in range(30):
            make_case(status="ready", ready_at=now - timedelta(days=3), specialties=(),
                      diagnosis_date=date.today() - timedelta(days=10))
        db.session.commit()

    env = {**os.environ, "DATABASE_URL": scratch_postgres, "TUMORBOARD_CONFIG": "development",
           "FLASK_APP": "wsgi"}
    command = [sys.executable, "-m", "flask", "tumorboard", "assign"]
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0 or "another assignment pass is running" in err, (out, err)
        assert "IntegrityError" not in err

    with app.app_context():
        placed = db.session.execute(
            sa.select(Assignment.case_id, sa.func.count()).where(Assignment.active.is_(True))
            .group_by(Assignment.case_id)).all()
        scheduled = db.session.scalar(sa.select(sa.func.count()).select_from(Case)
                                      .where(Case.status == "scheduled"))
        db.session.remove()
        db.engine.dispose()
    assert placed and all(count == 1 for _, count in placed)
    assert scheduled == len(placed) == 30
