"""Helpers shared by every feature's forms."""

from __future__ import annotations

from typing import Any

from flask import flash
from markupsafe import Markup, escape
from wtforms.widgets import Select, html_params

from tumorboard.errors import DomainError


class QuickSelect(Select):
    """wtforms' select widget for a SelectField, with plain-string rendering: the same HTML, but
    a list of a few hundred options renders in a fraction of a millisecond instead of several,
    and a short list without wtforms' per-render inspection of `render_option`'s signature."""

    def __call__(self, field: Any, **kwargs: Any) -> Markup:
        if self.multiple or field.has_groups():
            return super().__call__(field, **kwargs)
        kwargs.setdefault("id", field.id)
        for flag, value in vars(field.flags).items():  # as Select does: required, disabled
            if flag in self.validation_attrs:
                kwargs.setdefault(flag, value)
        options = "".join(self.render_option(choice) for choice in field.iter_choices())
        return Markup(f"<select {html_params(name=field.name, **kwargs)}>{options}</select>")  # noqa: S704

    @classmethod
    def render_option(cls, choice: Any, **kwargs: Any) -> Markup:
        if choice.render_kw or kwargs or isinstance(choice.value, bool):
            return super().render_option(choice, **kwargs)
        selected = " selected" if choice.selected else ""
        text = choice.label or choice.value
        value, text = escape(choice.value), escape(text)  # both escaped: safe to mark up
        return Markup(f'<option{selected} value="{value}">{text}</option>')  # noqa: S704


def show_errors(form: Any, error: DomainError) -> None:
    """Show a service's refusal on a form: each field's messages under that field, and the
    message (with any messages for fields the form does not have) at the top of the page."""
    unplaced: list[str] = []
    for name, messages in error.fields.items():
        messages = [str(m) for m in (messages if isinstance(messages, list | tuple) else [messages])]
        field = form._fields.get(name)
        if field is None:
            unplaced.extend(f"{name}: {m}" for m in messages)
            continue
        field.errors = [*field.errors, *messages]
    flash(error.message + (f" ({'; '.join(unplaced)})" if unplaced else ""), "error")
