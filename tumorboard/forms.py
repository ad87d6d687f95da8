"""Helpers shared by every feature's forms."""

from __future__ import annotations

from typing import Any

from flask import flash

from tumorboard.errors import DomainError


def show_errors(form: Any, error: DomainError) -> None:
    """Show a service's field errors on the form (fields it does not have go to the top)."""
    for name, messages in error.fields.items():
        field = getattr(form, name, None)
        if field is None:
            flash(f"{error.message} ({name}: {'; '.join(map(str, messages))})", "error")
            continue
        field.errors = list(field.errors) + [str(m) for m in messages]
    if not error.fields:
        flash(error.message, "error")
