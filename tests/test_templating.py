"""Template helpers: `url_pattern` builds the same links as url_for."""

from __future__ import annotations

import pytest
from flask import Flask, url_for

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
