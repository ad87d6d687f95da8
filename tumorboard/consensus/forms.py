"""Forms of the consensus feature (CSRF on each)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, SelectField, SelectMultipleField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from tumorboard.vocab import CONCORDANCE, RECOMMENDATIONS, SPECIALTIES, label

YES_NO = {"yes": True, "no": False, "": None}


def _choices(values: tuple[str, ...]) -> list[SelectChoice]:
    return [SelectChoice(v, label(v)) for v in values]


def _yes_no_choices(unknown: str) -> list[SelectChoice]:
    return [SelectChoice("", unknown), SelectChoice("yes", "Yes"), SelectChoice("no", "No")]


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "no"}.get(value, "")  # type: ignore[arg-type]


class ContentForm(FlaskForm):
    """The content of a consensus (shared by the draft form and the amendment form)."""

    specialties_present = SelectMultipleField("Specialties present", choices=_choices(SPECIALTIES))
    board_diagnosis = TextAreaField("Board's diagnosis", validators=[Length(max=5000)])
    concordance = SelectField(
        "Concordance with the first opinion",
        choices=[SelectChoice("", "Not recorded"), *_choices(CONCORDANCE)], validators=[Optional()],
    )
    management_changed = SelectField(
        "Management changed", choices=_yes_no_choices("Not recorded"),
        validators=[Optional()],
    )
    management_change = TextAreaField("How the management changed", validators=[Length(max=5000)])
    recommendation_kinds = SelectMultipleField(
        "Recommendation", choices=_choices(RECOMMENDATIONS),
        validators=[DataRequired(message="Choose at least one recommendation.")],
    )
    recommendation = TextAreaField(
        "Recommendation in words",
        validators=[DataRequired(message="Write the recommendation."), Length(max=10000)],
    )
    rationale = TextAreaField("Rationale", validators=[Length(max=10000)])
    trial_eligible = SelectField(
        "Eligible for a clinical trial",
        choices=_yes_no_choices("Not assessed"), validators=[Optional()],
    )
    trial_notes = TextAreaField("Trial notes", validators=[Length(max=5000)])
    dissent = TextAreaField("Dissent (who and why)", validators=[Length(max=5000)])
    followup_owner_id = SelectField("Follow-up owner (oncologist)", coerce=int,
                                    validators=[InputRequired()])
    followup_due = DateField("Follow-up due", validators=[Optional()])

    def set_owner_choices(self, people: list[Any]) -> None:
        self.followup_owner_id.choices = [SelectChoice(str(p.id), p.name) for p in people]

    def fill(self, values: dict[str, Any]) -> None:
        """Show `values` (consensus content) in the form."""
        for name, value in values.items():
            if name in ("management_changed", "trial_eligible"):
                value = _yes_no(value)
            elif name == "concordance":
                value = value or ""
            if name in self._fields:
                self._fields[name].data = value

    def content(self) -> dict[str, Any]:
        """The submitted content, typed as the service expects it."""
        return {
            "specialties_present": list(self.specialties_present.data or []),
            "board_diagnosis": self.board_diagnosis.data or "",
            "concordance": self.concordance.data or None,
            "management_changed": YES_NO[self.management_changed.data or ""],
            "management_change": self.management_change.data or "",
            "recommendation_kinds": list(self.recommendation_kinds.data or []),
            "recommendation": self.recommendation.data or "",
            "rationale": self.rationale.data or "",
            "trial_eligible": YES_NO[self.trial_eligible.data or ""],
            "trial_notes": self.trial_notes.data or "",
            "dissent": self.dissent.data or "",
            "followup_owner_id": self.followup_owner_id.data,
            "followup_due": self.followup_due.data,
        }



class ConsensusForm(ContentForm):
    deferred = BooleanField("Defer to another meeting (records missing: recommend further work-up)")


class AmendmentForm(ContentForm):
    reason = TextAreaField("Reason for the amendment",
                           validators=[DataRequired(message="Give the reason for the amendment."),
                                       Length(max=5000)])
