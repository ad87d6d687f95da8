"""`flask tumorboard …` commands."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from tumorboard.db import now_utc
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
    from tumorboard.demo import DEMO_PASSWORD, DOMAIN, seed_demo

    created = seed_demo()
    db.session.commit()
    if created:
        click.echo("demo data loaded")
    else:
        click.echo("demo data already present: nothing to do")
    click.echo(f"demo sign-in (password {DEMO_PASSWORD}):")
    for role in ROLES:
        click.echo(f"  {role:<12} {role}@{DOMAIN}")


@tumorboard_cli.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run the APScheduler process (materialise meetings, assign, deliver mail, alerts, seal the
    audit trail)."""
    from tumorboard.jobs.scheduler import run_scheduler

    run_scheduler(current_app._get_current_object())


@tumorboard_cli.command("assign")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@with_appcontext
def assign_command(dry_run: bool) -> None:
    """Run one assignment pass now (the scheduler does this on its own)."""
    from flask import current_app

    from tumorboard.jobs.tasks import assign, run_job
    from tumorboard.planning.services import describe_changes, run_pass

    if dry_run:
        result = run_pass(dry_run=True)
        lines = describe_changes(result.changes)
        db.session.rollback()
    else:  # the same locked job the scheduler runs: never beside another pass
        outcome = run_job(current_app._get_current_object(), "assign", lambda: assign(describe=True))
        if outcome is None:
            raise click.ClickException("another assignment pass is running; nothing done")
        result, lines = outcome
    for line in lines:
        click.echo(line)
    objective = result.plan.get("objective", {})
    click.echo(f"{len(result.changes)} change(s){' (dry run: nothing written)' if dry_run else ''}; "
               f"placed {objective.get('placed', 0)}, urgent placed {objective.get('urgent_placed', 0)}, "
               f"urgent slot requests {len(result.plan.get('urgent_slot_requests', []))}; "
               + ", ".join(f"{phase} {took:.1f} s" for phase, took in result.seconds.items()))


from tumorboard.calendar.cli import itip_cli  # noqa: E402

tumorboard_cli.add_command(itip_cli)


@tumorboard_cli.group("audit")
def audit_cli() -> None:
    """The hash-chained audit trail."""


def _parse_anchor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    count, _, digest = value.strip().partition(":")
    digest = digest.lower()
    if not count.isdigit() or len(digest) != 64 or set(digest) - set("0123456789abcdef"):
        raise click.BadParameter("give the head as N:HASH (rows, then 64 hex digits), as verify prints it")
    return int(count), digest


@audit_cli.command("verify")
@click.option("--batch", default=1000, show_default=True, help="Rows read per query.")
@click.option("--anchor", callback=_parse_anchor, metavar="N:HASH",
              help="A head printed earlier and kept outside the database: row N must still have HASH.")
@with_appcontext
def audit_verify_command(batch: int, anchor: tuple[int, str] | None) -> None:
    """Check every sealed row's hash and link; exit 1 naming the first edited, deleted or
    inserted row. Prints the head as N:HASH; with --anchor, a tail cut or rewritten since then
    fails too. Events still waiting for the sealer are counted; waiting too long fails."""
    from tumorboard.audit.services import chain_head, check_anchor, find_tampering, pending

    problem = find_tampering(batch=batch)
    if problem is not None:
        click.echo(f"audit trail TAMPERED: {problem.message}", err=True)
        click.echo(f"first bad row: id={problem.id} action={problem.action} problem={problem.kind}", err=True)
        raise SystemExit(1)
    mismatch = check_anchor(*anchor) if anchor is not None else None
    if mismatch is not None:
        click.echo(f"audit trail TAMPERED: anchor {anchor[0]}:{anchor[1]} does not hold: {mismatch}",
                   err=True)
        raise SystemExit(1)
    count, head = chain_head()
    held = f" (anchor {anchor[0]} holds)" if anchor is not None else ""
    click.echo(f"audit trail intact: {count} rows, head {count}:{head}{held}")
    waiting = pending()
    if waiting.count:
        age = (now_utc() - waiting.oldest_at).total_seconds() if waiting.oldest_at else 0.0
        click.echo(f"{waiting.count} newer events wait for the sealer, the oldest for {age:.0f} s")
        limit = current_app.config["AUDIT_SEAL_GRACE_SECONDS"]
        if age > limit:
            click.echo(f"audit trail NOT SEALED: events wait longer than {limit} s; is the scheduler "
                       "(its seal-audit job) running? `flask tumorboard audit seal` seals them now", err=True)
            raise SystemExit(1)


@audit_cli.command("seal")
@with_appcontext
def audit_seal_command() -> None:
    """Chain every committed event not chained yet (the scheduler does it every second)."""
    from tumorboard.audit.services import seal_all

    click.echo(f"sealed {seal_all()} events")
