"""Forms of the calendar feature."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import AnyOf, DataRequired

from tumorboard.calendar.services import ANSWERS


class RsvpForm(FlaskForm):
    """The answer, sent by one of the Accept / Tentative / Decline buttons (name="answer")."""

    answer = StringField("Answer", validators=[
        DataRequired(message="Choose an answer."),
        AnyOf(ANSWERS, message="Choose Accept, Tentative or Decline."),
    ])


class ConfirmForm(FlaskForm):
    """A POST action with nothing to fill in but the CSRF token."""
