"""Metrics pages: the dashboard, its CSV export and its SVG plots (thin shells over services)."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, abort, render_template, request, url_for
from werkzeug.wrappers import Response

from tumorboard.audit.services import record
from tumorboard.extensions import db
from tumorboard.metrics import services
from tumorboard.metrics.forms import MetricsFilterForm
from tumorboard.metrics.plots import PLOTS
from tumorboard.metrics.services import PUBLISHED_DISCREPANCY, PUBLISHED_MAJOR_PATHOLOGY, MetricsFilter

bp = Blueprint("metrics", __name__)

#: which section of the metrics each plot needs
PLOT_PARTS = {"times": "stages", "compliance": "compliance", "concordance": "concordance",
              "boards": "boards", "invites": "invites"}


def _filters() -> tuple[MetricsFilterForm, MetricsFilter]:
    form = MetricsFilterForm(request.args)
    form.validate()
    return form, form.to_filter(services.default_filter())


def _audit_read(metrics: services.Metrics, via: str) -> None:
    """The breach list names patients (MRN): reading it is audited."""
    record("metrics.read", "metrics", None, details={
        "via": via, **metrics.filters.as_args(),
        "breach_case_ids": [b.case_id for b in metrics.compliance.breaches],
    })
    db.session.commit()


@bp.route("/metrics")
def index() -> str:
    """The dashboard: numbers, plots (as <img> of the SVG routes) and the breach list."""
    form, filters = _filters()
    metrics = services.compute(filters)
    _audit_read(metrics, "page")
    args = filters.as_args()
    plots = [(url_for("metrics.plot", name=name, **args), title) for name, (title, _) in PLOTS.items()]
    return render_template("metrics/index.html", form=form, m=metrics, plots=plots,
                           csv_url=url_for("metrics.export_csv", **args),
                           published_discrepancy=PUBLISHED_DISCREPANCY,
                           published_major=PUBLISHED_MAJOR_PATHOLOGY)


@bp.route("/metrics.csv")
def export_csv() -> Response:
    """The same figures (and the breach list) as CSV."""
    _form, filters = _filters()
    metrics = services.compute(filters)
    _audit_read(metrics, "csv")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(services.csv_rows(metrics))
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="tumorboard-metrics.csv"'
    return response


@bp.route("/metrics/plots/<name>.svg")
def plot(name: str) -> Response:
    """One plot as an SVG file (aggregates only, no PHI; no script, no style)."""
    if name not in PLOTS:
        abort(404, description=f"There is no plot {name!r}.")
    _form, filters = _filters()
    metrics = services.compute(filters, parts=(PLOT_PARTS[name],))
    return Response(PLOTS[name][1](metrics), mimetype="image/svg+xml")
