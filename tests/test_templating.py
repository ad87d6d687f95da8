"""Template helpers: `url_pattern` builds the same links as url_for; the page chrome and the
navigation (built once per role set) show what url_for and the roles give; QuickSelect renders
what wtforms' Select renders."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask, url_for
from wtforms import Form, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired
from wtforms.widgets import Select

from tests.factories import make_user
from tests.helpers import login
from tumorboard.auth.models import UserRole
from tumorboard.extensions import db
from tumorboard.forms import QuickSelect
from tumorboard.templating import CHROME_LINKS, NAV, url_pattern


@pytest.mark.parametrize("value", [1, 7, 42, 2**31 - 1])
def test_url_pattern_gives_what_url_for_gives(app: Flask, value: int) -> None:
    with app.test_request_context("/", base_url="https://tb.example.org/prefix"):
        assert url_pattern("cases.detail", "case_id")(value) == url_for("cases.detail", case_id=value)
        assert url_pattern("consensus.edit", "case_id", meeting_id=5)(value) == url_for(
            "consensus.edit", case_id=value, meeting_id=5)


def test_url_pattern_takes_only_integers(app: Flask) -> None:
    with app.test_request_context("/"):
        with pytest.raises(ValueError):
            url_pattern("cases.detail", "case_id")("1/../admin")


def test_chrome_urls_are_what_url_for_gives_wherever_the_app_is_mounted(app: Flask) -> None:
    for base_url in ("https://tb.example.org/", "https://tb.example.org/prefix", "http://other/x/y"):
        with app.test_request_context("/", base_url=base_url):
            urls = app.jinja_env.globals["chrome_urls"]()
            assert urls == {name: url_for(endpoint, **values)
                            for name, (endpoint, values) in CHROME_LINKS.items()}


def _nav_links(html: str) -> list[str]:
    return [text for endpoint, text, _roles in NAV if f">{text}</a>" in html]


def test_nav_links_follow_the_roles_on_the_very_next_request(app: Flask, client) -> None:
    user = make_user("oncologist", email="nav@example.org")
    login(client, user.email)
    page = client.get("/").get_data(as_text=True)
    assert _nav_links(page) == ["Cases", "Meetings", "My follow-ups", "Metrics"]
    db.session.add(UserRole(user_id=user.id, role="admin"))
    db.session.flush()
    page = client.get("/").get_data(as_text=True)
    assert _nav_links(page) == ["Cases", "Meetings", "My follow-ups", "Metrics", "Users", "Audit trail"]
    db.session.execute(sa.delete(UserRole).where(UserRole.user_id == user.id, UserRole.role == "oncologist"))
    db.session.flush()
    page = client.get("/").get_data(as_text=True)
    assert _nav_links(page) == ["Users", "Audit trail"]
    with app.test_request_context("/"):
        assert f'<a href="{url_for("audit.events")}">Audit trail</a>' in page


def test_nav_marks_the_current_page_and_matches_url_for(app: Flask, client) -> None:
    user = make_user("coordinator", email="here@example.org")
    login(client, user.email)
    page = client.get("/cases").get_data(as_text=True)
    with app.test_request_context("/"):
        queue, boards = url_for("cases.queue"), url_for("boards.boards")
    assert f'<a href="{queue}" aria-current="page">Cases</a>' in page
    assert f'<a href="{boards}">Boards</a>' in page
    page = client.get("/boards").get_data(as_text=True)
    assert f'<a href="{queue}">Cases</a>' in page
    assert f'<a href="{boards}" aria-current="page">Boards</a>' in page
    assert "Users</a>" not in page  # not an administrator


class _Form(Form):
    plain = SelectField("Plain", choices=[SelectChoice("", "Any"), SelectChoice("a&b", "A <b>"),
                                          SelectChoice("c", "C")], default="c", widget=QuickSelect())
    required = SelectField("Required", choices=[SelectChoice("x", "X")], widget=QuickSelect(),
                           validators=[InputRequired()], render_kw={"disabled": True})
    grouped = SelectField("Grouped", widget=QuickSelect(), choices=[
        SelectChoice("1", "One", optgroup="Odd"), SelectChoice("2", "Two", optgroup="Even")])
    dressed = SelectField("Dressed", widget=QuickSelect(), choices=[
        SelectChoice("1", "One", render_kw={"data-x": "1"}), SelectChoice(True, "Yes")])


@pytest.mark.parametrize("name", ["plain", "required", "grouped", "dressed"])
@pytest.mark.parametrize("attrs", [{}, {"class_": "wide", "aria_invalid": "true"}])
def test_quick_select_renders_what_the_wtforms_select_renders(name: str, attrs: dict) -> None:
    field = _Form()[name]
    assert field(**attrs) == Select()(field, **field.render_kw or {}, **attrs)
    assert '<option selected value="c">C</option>' in _Form().plain()
    assert '<option value="a&amp;b">A &lt;b&gt;</option>' in _Form().plain()
