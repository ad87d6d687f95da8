"""tumorboard: multidisciplinary tumor board scheduling for oncology second opinions."""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

from flask import Flask, abort
from werkzeug.routing import IntegerConverter, Map

from config import CONFIGS
from tumorboard.db import MAX_INT


class IdConverter(IntegerConverter):
    """`<int:…>` in every route is a row id: 1 … MAX_INT (so documented in the OpenAPI document).

    The range is enforced by `ids_in_range` after routing, not here: Werkzeug converts values
    only after picking a rule by method, so a refused value could answer 405 (another method's
    rule matched the path) where 404 is right.
    """

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = 1,
                 max: int | None = MAX_INT, signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, max, signed)

    def to_python(self, value: str) -> int:
        return int(value)


def ids_in_range(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """No row has an id outside 1 … MAX_INT: 404, before the number reaches the database (a 500)."""
    if values and any(isinstance(v, int) and not 1 <= v <= MAX_INT for v in values.values()):
        abort(404)


def create_app(config_name: str | None = None, **overrides: Any) -> Flask:
    """Build the web application. Never starts the scheduler (see `tumorboard.jobs`)."""
    name = config_name or os.environ.get("TUMORBOARD_CONFIG", "development")
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; use one of {', '.join(CONFIGS)}")
    app = Flask(
        __name__,
        template_folder="../templates",
        instance_path=os.path.join(os.path.dirname(os.path.dirname(__file__)), "instance"),
    )
    app.jinja_env.add_extension("jinja2.ext.do")
    app.url_map.converters["int"] = IdConverter  # before any route is registered
    app.url_value_preprocessor(ids_in_range)
    app.config.from_object(CONFIGS[name]())
    app.config.update(overrides)
    os.makedirs(app.instance_path, exist_ok=True)

    register_extensions(app)
    register_blueprints(app)
    register_cli(app)
    return app


def register_extensions(app: Flask) -> None:
    from tumorboard import models  # noqa: F401  (every model registered before migrations)
    from tumorboard.api import init_api
    from tumorboard.auth.services import init_login
    from tumorboard.calendar.tracking import install as install_invitation_tracking
    from tumorboard.db import end_read_only_transaction
    from tumorboard.extensions import csrf, db, migrate
    from tumorboard.planning.services import connect_signals
    from tumorboard.security import init_security

    db.init_app(app)
    app.teardown_request(end_read_only_transaction)  # before the session is removed
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    csrf.init_app(app)
    init_login(app)
    init_security(app)  # session timeouts run before enforce_permissions
    connect_signals()
    install_invitation_tracking()
    init_api(app)


#: every HTML blueprint, "module:attribute"
VIEW_BLUEPRINTS = [
    "tumorboard.main.views:bp",
    "tumorboard.auth.views:bp",
    "tumorboard.cases.views:bp",
    "tumorboard.boards.views:bp",
    "tumorboard.calendar.views:bp",
    "tumorboard.planning.views:bp",
    "tumorboard.consensus.views:bp",
    "tumorboard.auth.admin_views:bp",
    "tumorboard.audit.views:bp",
    "tumorboard.metrics.views:bp",
]


def register_blueprints(app: Flask) -> None:
    from tumorboard.auth.permissions import enforce_permissions
    from tumorboard.errors import register_error_handlers
    from tumorboard.security import refuse_nul_in_forms
    from tumorboard.templating import init_templating

    for path in VIEW_BLUEPRINTS:
        module, _, attr = path.partition(":")
        app.register_blueprint(getattr(import_module(module), attr))
    app.before_request(enforce_permissions)
    app.before_request(refuse_nul_in_forms)  # after the permission check, before any view
    register_error_handlers(app)
    init_templating(app)


def register_cli(app: Flask) -> None:
    from tumorboard.cli import tumorboard_cli

    app.cli.add_command(tumorboard_cli)
