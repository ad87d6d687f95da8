"""Forms of sign-in, the account pages and user administration (all CSRF-protected)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, EqualTo, Length
from wtforms.widgets import CheckboxInput, ListWidget

from tumorboard.vocab import ROLES, SPECIALTIES, label


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    remember = BooleanField("Keep me signed in if the browser closes", default=False)


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class PasswordChangeForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=200)])
    new = PasswordField("New password", validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("new", message="The two new passwords differ.")])


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired(), Length(max=100)],
                       description="What uses it, e.g. “nightly export script”.")


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class UserCreateForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=254)])
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    roles = MultiCheckboxField("Roles", choices=[SelectChoice(r, label(r)) for r in ROLES],
                               validators=[DataRequired(message="Choose at least one role.")])
    specialty = SelectField("Specialty", choices=[SelectChoice("", "None")]
                            + [SelectChoice(s, label(s)) for s in SPECIALTIES])
    password = PasswordField("Initial password", validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField("Initial password again", validators=[
        DataRequired(), EqualTo("password", message="The two passwords differ.")])
