import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError
from tumorboard import create_app

ROOT = Path(__file__).resolve().parents[1]


def test_production_refuses_to_start_without_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1/x")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app("production")


def test_production_refuses_to_start_without_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_app("production")


def test_production_starts_with_both_and_uses_psycopg_and_secure_cookies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1/x")
    app = create_app("production")
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert not app.debug


def test_a_misspelt_synchronous_commit_for_reads_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READS_SYNCHRONOUS_COMMIT", "of")
    with pytest.raises(ConfigError, match="READS_SYNCHRONOUS_COMMIT must be one of"):
        create_app("development")
    monkeypatch.setenv("READS_SYNCHRONOUS_COMMIT", "On")
    assert create_app("development").config["READS_SYNCHRONOUS_COMMIT"] == "on"


def test_wsgi_exits_with_one_line_when_production_is_misconfigured() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    env["TUMORBOARD_CONFIG"] = "production"
    done = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "tumorboard: production needs SECRET_KEY and DATABASE_URL set in the environment"
    ]


def test_unknown_config_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown configuration"):
        create_app("staging")
