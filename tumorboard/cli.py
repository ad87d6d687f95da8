"""`flask tumorboard …` commands."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from tumorboard.extensions import db
from tumorboard.vocab import ROLES, SPECIALTIES


@click.group("tumorboard")
def tumorboard_cli() -> None:
    """tumorboard administration."""


@tumorboard_cli.command("create-user")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES))
@click.option("--specialty", type=click.Choice(SPECIALTIES))
@click.option("--timezone", default="Europe/London", show_default=True)
@with_appcontext
def create_user_command(
    email: str, name: str, roles: tuple[str, ...], specialty: str | None, timezone: str
) -> None:
    """Create a user. The password is asked for, never taken from the command line."""
    from tumorboard.audit.services import record
    from tumorboard.auth.services import UserError, create_user

    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise click.ClickException("the password needs at least 12 characters")
    try:
        user = create_user(
            email=email, name=name, password=password, roles=roles, specialty=specialty,
            timezone=timezone,
        )
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    record("user.create", "user", user.id, details={"via": "cli", "roles": sorted(roles)})
    db.session.commit()
    click.echo(f"created {user.email} ({', '.join(sorted(roles))})")


@tumorboard_cli.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Load synthetic demo data once (running it again changes nothing)."""
    from tumorboard.demo import DEMO_PASSWORD, seed_demo

    created = seed_demo()
    db.session.commit()
    if created:
        click.echo("demo data loaded")
    else:
        click.echo("demo data already present: nothing to do")
    click.echo(f"demo sign-in (password {DEMO_PASSWORD}):")
    for role in ROLES:
        click.echo(f"  {role:<12} {role}@demo.tumorboard.test")
