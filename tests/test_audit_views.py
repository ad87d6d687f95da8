"""The administrators' audit page: filters, pagination, and the reading itself audited."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import make_user
from tests.helpers import login
from tumorboard.audit.models import AuditEvent
from tumorboard.audit.services import record
from tumorboard.extensions import db

_ROW_IDS = re.compile(r"<tr>\s*<td>(\d+)</td>")


def _admin_client(app: Flask, tz: str = "UTC") -> FlaskClient:
    make_user("admin", email="auditor@example.org", timezone=tz)
    c = app.test_client()
    login(c, "auditor@example.org")
    return c


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.status_code
    return [int(i) for i in _ROW_IDS.findall(response.get_data(as_text=True))]


def test_who_saw_which_case_and_when(app: Flask) -> None:
    alice = make_user("oncologist", email="alice@example.org")
    bob = make_user("coordinator", email="bob@example.org")
    seen = [record("case.read", "case", 12, actor=alice), record("case.read", "case", 12, actor=bob)]
    record("case.read", "case", 13, actor=alice)
    record("case.update", "case", 12, actor=bob)
    c = _admin_client(app)
    response = c.get("/admin/audit", query_string={"action": "case.read", "object_type": "case",
                                                   "object_id": "12"})
    assert _ids(response) == seen[::-1]
    page = response.get_data(as_text=True)
    assert "alice@example.org" in page and "bob@example.org" in page
    # "case" covers every case.* action
    assert len(_ids(c.get("/admin/audit", query_string={"action": "case", "object_id": "12"}))) == 3
    assert len(_ids(c.get("/admin/audit", query_string={"actor": "ALICE@"}))) == 2


def test_date_range_in_the_viewers_time_zone(app: Flask) -> None:
    at = {}
    for label, moment in (("before", datetime(2026, 6, 30, 22, 59, tzinfo=UTC)),  # 30 June, 23:59 London
                          ("inside", datetime(2026, 6, 30, 23, 0, tzinfo=UTC)),  # 1 July, 00:00 London
                          ("last", datetime(2026, 7, 2, 22, 59, tzinfo=UTC)),  # 2 July, 23:59 London
                          ("after", datetime(2026, 7, 2, 23, 0, tzinfo=UTC))):
        with time_machine.travel(moment, tick=False):
            at[label] = record("test.dated")
    c = _admin_client(app, tz="Europe/London")
    response = c.get("/admin/audit", query_string={"action": "test.dated", "date_from": "2026-07-01",
                                                   "date_to": "2026-07-02"})
    assert _ids(response) == [at["last"], at["inside"]]


def test_pagination_is_by_keyset(app: Flask) -> None:
    made = [record("test.bulk", "case", i) for i in range(120)]
    c = _admin_client(app)
    first = c.get("/admin/audit", query_string={"action": "test.bulk"})
    assert _ids(first) == made[::-1][:50]
    older = re.search(r'href="([^"]*before=\d+[^"]*)"', first.get_data(as_text=True)).group(1)
    second = c.get(older.replace("&amp;", "&"))
    assert _ids(second) == made[::-1][50:100]
    third_link = re.search(r'href="([^"]*before=\d+[^"]*)"', second.get_data(as_text=True)).group(1)
    third = c.get(third_link.replace("&amp;", "&"))
    assert _ids(third) == made[::-1][100:]
    assert "Older events" not in third.get_data(as_text=True)
    assert "action=test.bulk" in third_link  # filters are kept from page to page


def test_reading_the_trail_is_audited(app: Flask) -> None:
    c = _admin_client(app)
    c.get("/admin/audit", query_string={"object_type": "case", "object_id": "12"})
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "audit.read")).one()
    assert event.actor_email == "auditor@example.org"
    assert event.details == {"object_type": "case", "object_id": "12"}


def test_bad_filters_are_refused_clearly(app: Flask) -> None:
    c = _admin_client(app)
    bad = c.get("/admin/audit", query_string={"date_from": "yesterday"})
    assert bad.status_code == 422 and "Not a valid date" in bad.get_data(as_text=True)
    backwards = c.get("/admin/audit", query_string={"date_from": "2026-07-02", "date_to": "2026-07-01"})
    assert backwards.status_code == 422 and "before the start date" in backwards.get_data(as_text=True)
    assert c.get("/admin/audit", query_string={"before": "x"}).status_code == 200  # ignored


def test_only_administrators_read_the_trail(app: Flask, client: FlaskClient) -> None:
    make_user("coordinator", "oncologist", "specialist", email="clinician@example.org")
    login(client, "clinician@example.org")
    assert client.get("/admin/audit").status_code == 403
    assert not db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "audit.read")).all()
