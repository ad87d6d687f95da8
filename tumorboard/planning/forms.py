from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional


class UrgentPlacementForm(FlaskForm):
    board_id = SelectField("Board", coerce=int, choices=[], validators=[InputRequired()])
    start = DateTimeLocalField("Start (the board's local time)", format="%Y-%m-%dT%H:%M",
                               validators=[InputRequired()])
    duration_minutes = IntegerField("Duration (minutes)", default=30,
                                    validators=[InputRequired(), NumberRange(min=5, max=240)])
    location = StringField("Location (empty: the board's)", validators=[Optional(), Length(max=300)])
