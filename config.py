"""Configuration classes, read from environment variables when instantiated.

`create_app(name)` picks one of CONFIGS; nothing here is computed at import time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


class ConfigError(RuntimeError):
    """The configuration cannot run (a required variable is missing or invalid)."""


def database_url(url: str) -> str:
    """Use psycopg 3 for plain `postgresql://` URLs (the usual form in deployment docs)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _choice(name: str, default: str, allowed: set[str]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(sorted(a or '(empty)' for a in allowed))}, "
                          f"got {value!r}")
    return value


class Config:
    """Settings shared by every environment."""

    DEBUG = False
    TESTING = False

    def __init__(self) -> None:
        env = os.environ.get
        self.SECRET_KEY = env("SECRET_KEY") or "dev-only-secret-key-change-me"
        self.SQLALCHEMY_DATABASE_URI = database_url(
            env("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'instance' / 'tumorboard.db'}"
        )
        #: a pooled PostgreSQL connection idle this long is tested before use (not every one:
        #: tumorboard/db.py); one that died while in use fails one request, then all are replaced
        self.DATABASE_PING_AFTER_SECONDS = float(env("DATABASE_PING_AFTER_SECONDS", "1"))
        #: PostgreSQL's synchronous_commit for what a GET writes (its audit rows of the reading;
        #: tumorboard/db.py): "off" does not wait for the disk, so a read never queues behind the
        #: WAL of a pass; a crash of the database server (not of the app) may then lose the last
        #: ~0.6 s of read-audit rows. "" keeps the server's setting (full durability). Every
        #: change (POST, jobs) always commits with the server's setting.
        self.READS_SYNCHRONOUS_COMMIT = _choice("READS_SYNCHRONOUS_COMMIT", "off",
                                                {"", "off", "local", "remote_write", "on", "remote_apply"})
        self.SERVER_NAME_FOR_LINKS = env("TUMORBOARD_BASE_URL", "http://127.0.0.1:5000")
        self.MAIL_FROM = env("MAIL_FROM", "tumorboard@localhost")
        self.SMTP_HOST = env("SMTP_HOST", "127.0.0.1")
        self.SMTP_PORT = _int("SMTP_PORT", 8025)
        self.SMTP_STARTTLS = env("SMTP_STARTTLS", "") in {"1", "true", "yes"}
        self.SMTP_USERNAME = env("SMTP_USERNAME") or None
        self.SMTP_PASSWORD = env("SMTP_PASSWORD") or None
        #: delivery attempts (with backoff 1, 2, 4 … min, max 1 h) before a message is dead
        self.OUTBOX_MAX_ATTEMPTS = _int("OUTBOX_MAX_ATTEMPTS", 10)
        #: coordinators are alerted this long before a meeting still without quorum
        self.QUORUM_ALERT_HOURS = _int("QUORUM_ALERT_HOURS", 72)
        self.HOSPITAL_TIMEZONE = env("HOSPITAL_TIMEZONE", "Europe/London")
        #: days from diagnosis to the latest treatment start when none is planned
        self.PRETREATMENT_WINDOW_DAYS = _int("PRETREATMENT_WINDOW_DAYS", 90)
        #: a case not yet scheduled this many days before its deadline is "at risk"
        self.AT_RISK_MARGIN_DAYS = _int("AT_RISK_MARGIN_DAYS", 14)
        self.MEETING_HORIZON_WEEKS = _int("MEETING_HORIZON_WEEKS", 12)
        #: scheduling engine settings (see DESIGN.md, "Scheduling engine contract")
        self.PREP_LEAD_HOURS = _int("PREP_LEAD_HOURS", 48)
        self.URGENT_PREP_LEAD_HOURS = _int("URGENT_PREP_LEAD_HOURS", 12)
        self.URGENT_WITHIN_HOURS = _int("URGENT_WITHIN_HOURS", 72)
        self.PLANNER_TIME_LIMIT_SECONDS = float(env("PLANNER_TIME_LIMIT_SECONDS", "5"))
        #: the case queue's total ("1,234 cases") is counted at most this often per web process
        self.QUEUE_TOTAL_SECONDS = _int("QUEUE_TOTAL_SECONDS", 5)
        #: a pass writes its plan in batches of this many changes, pausing after each for
        #: PLANNER_APPLY_PAUSE times as long as the batch took (0: no pause)
        self.PLANNER_APPLY_BATCH = _int("PLANNER_APPLY_BATCH", 500)
        self.PLANNER_APPLY_PAUSE = float(env("PLANNER_APPLY_PAUSE", "1"))
        #: after a pass of at least this many changes, VACUUM (ANALYZE) what it rewrote (0: never)
        self.PLANNER_VACUUM_AFTER = _int("PLANNER_VACUUM_AFTER", 1000)
        self.SCHEDULER_LOCK_DIR = env("SCHEDULER_LOCK_DIR", str(BASE_DIR / "instance"))
        #: `audit verify` fails when an audit event has waited longer than this for the sealer
        self.AUDIT_SEAL_GRACE_SECONDS = _int("AUDIT_SEAL_GRACE_SECONDS", 300)
        #: argon2 cost; tests lower it to stay fast
        self.PASSWORD_HASH_PARAMS = {"time_cost": 3, "memory_cost": 65536, "parallelism": 2}
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SAMESITE = "Lax"
        self.WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
        #: security (tumorboard/security.py, auth): idle logoff, absolute session lifetime
        self.IDLE_TIMEOUT_MINUTES = _int("IDLE_TIMEOUT_MINUTES", 15)
        self.SESSION_ABSOLUTE_HOURS = _int("SESSION_ABSOLUTE_HOURS", 12)
        self.PERMANENT_SESSION_LIFETIME = timedelta(hours=self.SESSION_ABSOLUTE_HOURS)
        #: sign-in throttling: failures per email / per client address within the window
        self.LOGIN_MAX_FAILURES = _int("LOGIN_MAX_FAILURES", 5)
        self.LOGIN_MAX_FAILURES_PER_IP = _int("LOGIN_MAX_FAILURES_PER_IP", 20)
        self.LOGIN_FAILURE_WINDOW_MINUTES = _int("LOGIN_FAILURE_WINDOW_MINUTES", 15)
        self.PASSWORD_MIN_LENGTH = _int("PASSWORD_MIN_LENGTH", 12)
        #: number of reverse proxies in front of the app (X-Forwarded-For / -Proto); 0 = none
        self.PROXY_FIX_X_FOR = _int("PROXY_FIX_X_FOR", 0)
        self.HSTS_SECONDS = _int("HSTS_SECONDS", 0)


class DevelopmentConfig(Config):
    DEBUG = True


class TestingConfig(Config):
    TESTING = True

    def __init__(self) -> None:
        super().__init__()
        self.SECRET_KEY = "testing-secret-key"  # noqa: S105 - tests only
        self.SQLALCHEMY_DATABASE_URI = database_url(
            os.environ.get("TEST_DATABASE_URL") or "sqlite:///:memory:"
        )
        self.PASSWORD_HASH_PARAMS = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
        self.SERVER_NAME_FOR_LINKS = "http://tumorboard.test"
        # passes apply in batches of 3 (so every test of the planner goes through the batching)
        # and never pause
        self.PLANNER_APPLY_BATCH = 3
        self.PLANNER_APPLY_PAUSE = 0.0
        self.QUEUE_TOTAL_SECONDS = 0  # counted on every page (tests change the queue between pages)


class ProductionConfig(Config):
    def __init__(self) -> None:
        missing = [name for name in ("SECRET_KEY", "DATABASE_URL") if not os.environ.get(name)]
        if missing:
            raise ConfigError(f"production needs {' and '.join(missing)} set in the environment")
        super().__init__()
        self.SESSION_COOKIE_SECURE = True
        self.REMEMBER_COOKIE_SECURE = True
        #: "__Host-": the browser only accepts it over HTTPS, for this host, path /
        self.SESSION_COOKIE_NAME = "__Host-session"
        self.HSTS_SECONDS = _int("HSTS_SECONDS", 31536000)


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
