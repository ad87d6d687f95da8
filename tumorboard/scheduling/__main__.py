"""CLI: ``python -m tumorboard.scheduling solve [problem.json]`` → Plan JSON on stdout.

Exit 0 with a Plan; exit 2 with one ``error: <field>: <message>`` line on stderr for a malformed
Problem or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import DEFAULT_TIME_LIMIT, ProblemError, parse_problem, solve


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tumorboard.scheduling")
    commands = parser.add_subparsers(dest="command", required=True)
    solve_cmd = commands.add_parser("solve", help="solve a Problem JSON (file or stdin)")
    solve_cmd.add_argument("problem", nargs="?", help="Problem JSON file (default: stdin)")
    solve_cmd.add_argument(
        "--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="solver budget in seconds"
    )
    args = parser.parse_args(argv)
    try:
        if args.problem is None or args.problem == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.problem, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        return _fail(f"cannot read {args.problem}: {exc.strerror}")
    try:
        document = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return _fail(f"invalid JSON: {' '.join(str(exc).split())}")
    try:
        problem = parse_problem(document)
    except ProblemError as exc:
        return _fail(" ".join(str(exc).split()))
    plan = solve(problem, time_limit=max(0.0, args.time_limit))
    json.dump(plan.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
