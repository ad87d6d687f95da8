import sqlalchemy as sa

from tumorboard.auth.models import User
from tumorboard.auth.services import authenticate
from tumorboard.boards.models import Board
from tumorboard.cases.models import Case
from tumorboard.extensions import db


def test_create_user_asks_for_the_password(app) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tumorboard", "create-user", "--email", "New@Example.org", "--name", "N",
                                 "--role", "coordinator", "--role", "oncologist"],
                           input="a long enough secret\na long enough secret\n")
    assert result.exit_code == 0, result.output
    user = authenticate("new@example.org", "a long enough secret")
    assert user is not None and user.role_names == {"coordinator", "oncologist"}


def test_create_user_has_no_password_option(app) -> None:
    result = app.test_cli_runner().invoke(args=["tumorboard", "create-user", "--email", "x@example.org",
                                                "--name", "X", "--role", "admin", "--password", "p"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_create_user_refuses_a_taken_email(app) -> None:
    runner = app.test_cli_runner()
    args = ["tumorboard", "create-user", "--email", "dup@example.org", "--name", "D", "--role", "admin"]
    assert runner.invoke(args=args, input="a long enough secret\n" * 2).exit_code == 0
    result = runner.invoke(args=[*args[:3], "DUP@example.org", *args[4:]], input="a long enough secret\n" * 2)
    assert result.exit_code == 1 and "exists already" in result.output


def test_seed_demo_is_idempotent_and_synthetic(app) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["tumorboard", "seed-demo"])
    assert first.exit_code == 0 and "coordinator@demo.example.org" in first.output
    counts = [db.session.scalar(sa.select(sa.func.count()).select_from(m)) for m in (User, Board, Case)]
    second = runner.invoke(args=["tumorboard", "seed-demo"])
    assert "nothing to do" in second.output
    again = [db.session.scalar(sa.select(sa.func.count()).select_from(m)) for m in (User, Board, Case)]
    assert again == counts
    assert counts[2] >= 100 and counts[1] >= 3
    assert all(c.mrn.startswith("DEMO-") for c in db.session.scalars(sa.select(Case)))
