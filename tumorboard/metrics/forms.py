"""The metrics filter (a GET form: it changes nothing, so no CSRF token)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional, ValidationError

from tumorboard.metrics.services import MetricsFilter
from tumorboard.vocab import SITES, label


class MetricsFilterForm(FlaskForm):
    """Site and period; empty dates fall back to the default period (the last year)."""

    class Meta:
        csrf = False

    site = SelectField("Tumor site", choices=[SelectChoice("", "All sites")]
                       + [SelectChoice(s, label(s)) for s in SITES], default="")
    date_from = DateField("From", validators=[Optional()])
    date_to = DateField("To", validators=[Optional()])

    def validate_date_to(self, field: Any) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The end of the period cannot be before its start.")

    def to_filter(self, default: MetricsFilter) -> MetricsFilter:
        """The filter asked for, the default's dates where none (or an invalid one) was given."""
        valid = not self.errors
        date_from = self.date_from.data if valid and self.date_from.data else default.date_from
        date_to = self.date_to.data if valid and self.date_to.data else default.date_to
        return MetricsFilter(site=self.site.data or None if valid else None,
                             date_from=date_from, date_to=date_to)
