"""The filter form of the audit page (a GET form: no CSRF token, it changes nothing)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, StringField
from wtforms.validators import Length, Optional, ValidationError


class TrailFilterForm(FlaskForm):
    class Meta:
        csrf = False

    actor = StringField("Actor email contains", validators=[Optional(), Length(max=254)])
    action = StringField("Action", validators=[Optional(), Length(max=60)],
                         description="e.g. login_failed, or case for every case.* action")
    object_type = StringField("Object type", validators=[Optional(), Length(max=40)],
                              description="e.g. case, user, api_token")
    object_id = StringField("Object id", validators=[Optional(), Length(max=40)])
    date_from = DateField("From (date)", validators=[Optional()])
    date_to = DateField("To (date, inclusive)", validators=[Optional()])

    def validate_date_to(self, field: DateField) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The end date is before the start date.")
