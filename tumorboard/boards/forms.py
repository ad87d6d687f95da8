"""Forms of the boards feature (Flask-WTF: CSRF on every form)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TimeField,
)
from wtforms.validators import URL, AnyOf, DataRequired, InputRequired, Length, NumberRange, Optional

from tumorboard.forms import QuickSelect
from tumorboard.vocab import SITES, SPECIALTIES, label


def choices(pairs: Iterable[tuple[Any, str]]) -> list[SelectChoice]:
    """Select options from (value, label) pairs."""
    return [SelectChoice(value, text) for value, text in pairs]


def _vocab(values: Iterable[str]) -> list[SelectChoice]:
    return choices((v, label(v)) for v in values)


class BoardForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    sites = SelectMultipleField("Tumor sites served", choices=_vocab(SITES),
                                validators=[DataRequired(message="Choose at least one tumor site.")])
    rrule = StringField("Recurrence (RFC 5545 RRULE)", validators=[DataRequired(), Length(max=500)],
                        default="FREQ=WEEKLY;BYDAY=TU")
    timezone = StringField("Time zone (IANA)", validators=[DataRequired(), Length(max=64)],
                           default="Europe/London")
    first_date = DateField("First date", validators=[InputRequired()])
    start_time = TimeField("Local start time", validators=[InputRequired()])
    duration_minutes = IntegerField("Duration (minutes)", default=60,
                                    validators=[InputRequired(), NumberRange(min=1, max=24 * 60)])
    location = StringField("Location", validators=[Optional(), Length(max=300)])
    video_url = StringField("Video link", validators=[Optional(), URL(require_tld=False), Length(max=500)])
    capacity_minutes = IntegerField("Capacity (minutes of cases)", default=60,
                                    validators=[InputRequired(), NumberRange(min=0, max=24 * 60)])
    default_case_minutes = IntegerField("Default minutes per case", default=10,
                                        validators=[InputRequired(), NumberRange(min=1, max=24 * 60)])
    specialties = SelectMultipleField("Required core specialties (quorum)", choices=_vocab(SPECIALTIES))
    member_ids = SelectMultipleField("Members (specialists)", coerce=int, choices=[])
    active = BooleanField("Active", default=True)

    def values(self) -> dict[str, object]:
        """The form's data as `create_board` / `update_board` take it."""
        return {
            "name": self.name.data, "sites": self.sites.data, "rrule": self.rrule.data,
            "timezone": (self.timezone.data or "").strip(), "first_date": self.first_date.data,
            "start_time": self.start_time.data, "duration_minutes": self.duration_minutes.data,
            "location": (self.location.data or "").strip(), "video_url": (self.video_url.data or "").strip(),
            "capacity_minutes": self.capacity_minutes.data,
            "default_case_minutes": self.default_case_minutes.data,
            "specialties": self.specialties.data or [], "member_ids": self.member_ids.data or [],
            "active": bool(self.active.data),
        }


class MeetingMoveForm(FlaskForm):
    start = DateTimeLocalField("New start (board's local time)", format="%Y-%m-%dT%H:%M",
                               validators=[InputRequired()])
    duration_minutes = IntegerField("Duration (minutes)",
                                    validators=[InputRequired(), NumberRange(min=1, max=24 * 60)])
    location = StringField("Location", validators=[Optional(), Length(max=300)])


class UrgentSlotForm(FlaskForm):
    start = DateTimeLocalField("Start (board's local time)", format="%Y-%m-%dT%H:%M",
                               validators=[InputRequired()])
    duration_minutes = IntegerField("Duration (minutes)",
                                    validators=[InputRequired(), NumberRange(min=1, max=24 * 60)])
    capacity_minutes = IntegerField("Capacity (minutes of cases)",
                                    validators=[InputRequired(), NumberRange(min=0, max=24 * 60)])
    location = StringField("Location", validators=[Optional(), Length(max=300)])


class ActionForm(FlaskForm):
    """A bare POST button (CSRF only)."""


class AddCaseForm(FlaskForm):
    case_id = SelectField("Case", coerce=int, choices=[], validators=[InputRequired()], widget=QuickSelect())
    pinned = BooleanField("Pin to this meeting", default=True)


class PinForm(FlaskForm):
    pinned = HiddenField(validators=[AnyOf(["1", "0"])])


class ReorderForm(FlaskForm):
    direction = HiddenField(validators=[AnyOf(["up", "down"])])


class MoveCaseForm(FlaskForm):
    #: choices differ per case; the service decides whether the meeting fits
    meeting_id = SelectField("Move to meeting", coerce=int, choices=[], validate_choice=False,
                             validators=[InputRequired()])


class MeetingFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET filter changes nothing

    board_id = SelectField("Board", coerce=str, choices=[], validators=[Optional()])
