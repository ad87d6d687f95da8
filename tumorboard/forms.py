"""Helpers shared by every feature's forms."""

from __future__ import annotations

from typing import Any

from flask import flash

from tumorboard.errors import DomainError


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
