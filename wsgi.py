"""WSGI entry point for gunicorn (`gunicorn wsgi:app`). Never starts the scheduler."""

import sys

from config import ConfigError
from tumorboard import create_app

try:
    app = create_app()
except ConfigError as exc:  # one line, no traceback: the operator knows what to set
    sys.exit(f"tumorboard: {exc}")
