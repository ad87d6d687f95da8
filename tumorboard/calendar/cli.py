"""`flask tumorboard itip …`: feed incoming iTIP messages in by hand or from a mail pipe."""

from __future__ import annotations

from typing import BinaryIO

import click
from flask.cli import with_appcontext

from tumorboard.extensions import db


@click.group("itip")
def itip_cli() -> None:
    """Incoming calendar replies (iTIP REPLY, COUNTER, REFRESH)."""


@itip_cli.command("import")
@click.argument("source", type=click.File("rb"))
@with_appcontext
def import_command(source: BinaryIO) -> None:
    """Apply one iTIP message from SOURCE (a raw email or an .ics file; - for stdin)."""
    from tumorboard.calendar.services import ingest_itip
    from tumorboard.errors import DomainError

    try:
        result = ingest_itip(source.read())
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    click.echo(f"{result.method} for meeting {result.meeting_id} ({result.uid})")
    for label, emails in (("updated", result.updated), ("stale, ignored", result.stale),
                          ("answered", result.answered), ("not invited, ignored", result.ignored)):
        if emails:
            click.echo(f"  {label}: {', '.join(emails)}")
