"""Template helpers: `url_pattern` builds the same links as url_for; QuickSelect renders what
wtforms' Select renders."""

from __future__ import annotations

import pytest
from flask import Flask, url_for
from wtforms import Form, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired
from wtforms.widgets import Select

from tumorboard.forms import QuickSelect
from tumorboard.templating import url_pattern


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
