"""Forms of the cases feature. Choices are checked by the services (one set of messages)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    SearchField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from tumorboard.cases.services import MAX_MINUTES, RISKS, STATUS_FILTERS
from tumorboard.forms import QuickSelect
from tumorboard.vocab import RECORD_KINDS, SITES, SPECIALTIES, URGENCIES, label


def _choices(values: Any) -> list[SelectChoice]:
    return [SelectChoice(v, label(v)) for v in values]


def _optional_int(value: Any) -> int | None:
    return None if value in ("", None) else int(value)


class CaseForm(FlaskForm):
    """Register or edit a case."""

    mrn = StringField("Patient reference (MRN)", validators=[DataRequired(), Length(max=64)])
    display_name = StringField("Display name", validators=[DataRequired(), Length(max=200)])
    site = SelectField("Tumor site", choices=_choices(SITES), validate_choice=False)
    diagnosis_date = DateField("Diagnosis date", validators=[InputRequired()])
    question = TextAreaField("Question for the board", validators=[DataRequired(), Length(max=5000)])
    referring_oncologist_id = SelectField("Referring oncologist", coerce=_optional_int, validate_choice=False)
    urgency = SelectField("Urgency", choices=[SelectChoice("routine", "Routine"),
                                              SelectChoice("urgent", "Urgent (clinical deterioration)")],
                          default="routine", validate_choice=False)
    planned_treatment_start = DateField("Planned treatment start", validators=[Optional()])
    specialties = SelectMultipleField("Required specialties", choices=_choices(SPECIALTIES),
                                      validate_choice=False)
    minutes = IntegerField("Minutes needed", default=10,
                           validators=[InputRequired(), NumberRange(min=1, max=MAX_MINUTES)])

    def data_for_service(self) -> dict[str, Any]:
        """The entered values, as the case services take them."""
        return {name: getattr(self, name).data for name in (
            "mrn", "display_name", "site", "diagnosis_date", "question", "referring_oncologist_id",
            "urgency", "planned_treatment_start", "specialties", "minutes")}


class QueueFilterForm(FlaskForm):
    """The queue's filters (a GET form: nothing changes, so no CSRF token)."""

    class Meta:
        csrf = False

    site = SelectField("Site", choices=[SelectChoice("", "All sites"), *_choices(SITES)], default="",
                       widget=QuickSelect())
    status = SelectField("Status", default="open", widget=QuickSelect(), choices=[
        SelectChoice("open", "Open (intake, ready, scheduled)"), SelectChoice("all", "All"),
        *_choices(s for s in STATUS_FILTERS if s not in {"open", "all"})])
    urgency = SelectField("Urgency", choices=[SelectChoice("", "Any"), *_choices(URGENCIES)], default="",
                          widget=QuickSelect())
    risk = SelectField("Risk", choices=[SelectChoice("", "Any"), *_choices(RISKS)], default="",
                       widget=QuickSelect())
    mrn = SearchField("MRN starts with", validators=[Optional(), Length(max=64)])


class RecordForm(FlaskForm):
    """Add an item to a case's records checklist."""

    kind = SelectField("Kind", choices=_choices(RECORD_KINDS), default="other", validate_choice=False,
                       widget=QuickSelect())
    label = StringField("Label", validators=[DataRequired(), Length(max=200)])
    required = BooleanField("Required before the case is ready", default=True)


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class StatusForm(FlaskForm):
    """Mark discussed, close or reopen (the target status is the button's hidden field)."""

    status = HiddenField(validators=[DataRequired()])


class WithdrawForm(FlaskForm):
    withdraw_reason = TextAreaField("Reason for withdrawing", validators=[DataRequired(), Length(max=2000)])


class OverrideForm(FlaskForm):
    override_reason = TextAreaField("Why the case is ready with records missing",
                                    validators=[DataRequired(), Length(max=2000)])
