"""Helpers shared by every feature's forms."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from flask import current_app, flash, get_template_attribute
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


#: fields rendered lately, by the key their caller gave (`rendered_fields`)
_RENDERED: dict[Hashable, Markup] = {}


def rendered_fields(form: Any | Callable[[], Any], shown: Iterable[tuple[str, dict[str, Any]]], *,
                    key: Hashable | None = None) -> Markup:
    """The fields `shown` (name, keywords of the `field` macro of templates/_macros.html) of `form`
    (or of the form that `form()` makes), as that macro renders them. With a `key`, the HTML is
    kept per process and reused for the same key: only for forms whose HTML depends on nothing
    but the key (a blank form, filters without free text). Rendering a handful of fields costs
    ~3,000 Python calls, a good part of a page; a form with errors is never kept."""
    reuse = key is not None and not current_app.jinja_env.auto_reload
    if reuse and key in _RENDERED:
        return _RENDERED[key]
    form = form() if callable(form) else form  # a form itself is not callable
    field = get_template_attribute("_macros.html", "field")
    html = Markup("").join(field(form[name], **kwargs) for name, kwargs in shown)
    if reuse and not form.errors:
        if len(_RENDERED) >= 256:  # a bound, not a target: the keys are few
            _RENDERED.clear()
        _RENDERED[key] = html
    return html

