"""JSON API of the consensus feature under /api/v1 (thin handlers over services.py)."""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_login import current_user
from sqlalchemy.orm import selectinload

from tumorboard.api import api_blueprint
from tumorboard.boards.models import Meeting
from tumorboard.cases.models import Case
from tumorboard.consensus import services
from tumorboard.consensus.models import Consensus, ConsensusAmendment, ConsensusFollowup
from tumorboard.consensus.schemas import (
    AmendmentCreateSchema,
    AmendmentSchema,
    ConsensusCreateSchema,
    ConsensusDraftSchema,
    ConsensusListArgsSchema,
    ConsensusSchema,
    FollowupItemSchema,
    FollowupListArgsSchema,
)
from tumorboard.errors import DomainError
from tumorboard.extensions import db

blp = api_blueprint("api_consensus", __name__, url_prefix="/api/v1", description="consensus")


def _get(consensus_id: int) -> Consensus:
    return db.get_or_404(Consensus, consensus_id, description="No such consensus.")


def _check_readable(case_id: int) -> None:
    """403 unless the user may read this case's consensus (specialists: their boards' cases)."""
    if not services.can_read(current_user, case_id):
        abort(403, services.READ_REFUSED)


def _exists(model: type, object_id: int, field: str) -> Any:
    obj = db.session.get(model, object_id)
    if obj is None:
        raise DomainError(f"No such {field.removesuffix('_id')}.", fields={field: ["Not found."]},
                          status=422)
    return obj


@blp.route("/consensus", methods=["GET"])
@blp.arguments(ConsensusListArgsSchema, location="query")
@blp.response(200, ConsensusSchema(many=True))
def consensus_list(args: dict[str, Any]) -> list[Consensus]:
    """The consensus records of a case, oldest meeting first (a PHI read: audited)."""
    _check_readable(args["case_id"])
    items = list(db.session.scalars(services.consensus_query(case_id=args["case_id"])))
    for item in items:
        services.record_read(item, actor=current_user, via="api")
    db.session.commit()
    return items


@blp.route("/consensus", methods=["POST"])
@blp.arguments(ConsensusCreateSchema)
@blp.response(201, ConsensusSchema)
def consensus_create(data: dict[str, Any]) -> Consensus:
    """Start the draft consensus of a case at a meeting."""
    case = _exists(Case, data.pop("case_id"), "case_id")
    meeting = _exists(Meeting, data.pop("meeting_id"), "meeting_id")
    consensus = services.create_draft(case, meeting, data, actor=current_user)
    db.session.commit()
    return consensus


@blp.route("/consensus/<int:consensus_id>", methods=["GET"])
@blp.response(200, ConsensusSchema)
def consensus_get(consensus_id: int) -> Consensus:
    """One consensus with its amendments (a PHI read: audited)."""
    consensus = _get(consensus_id)
    _check_readable(consensus.case_id)
    services.record_read(consensus, actor=current_user, via="api")
    db.session.commit()
    return consensus


@blp.route("/consensus/<int:consensus_id>", methods=["PATCH"])
@blp.arguments(ConsensusDraftSchema)
@blp.response(200, ConsensusSchema)
def consensus_patch(data: dict[str, Any], consensus_id: int) -> Consensus:
    """Change a draft; a signed consensus answers 409 (amend it instead)."""
    consensus = services.update_draft(_get(consensus_id), data, actor=current_user)
    db.session.commit()
    return consensus


@blp.route("/consensus/<int:consensus_id>/sign", methods=["POST"])
@blp.response(200, ConsensusSchema)
def consensus_sign(consensus_id: int) -> Consensus:
    """Sign a complete draft (oncologists only; the meeting must have started)."""
    consensus = services.sign(_get(consensus_id), actor=current_user)
    db.session.commit()
    return consensus


@blp.route("/consensus/<int:consensus_id>/amendments", methods=["POST"])
@blp.arguments(AmendmentCreateSchema)
@blp.response(201, AmendmentSchema)
def consensus_amend(data: dict[str, Any], consensus_id: int) -> ConsensusAmendment:
    """Append an amendment to a signed consensus: a reason and the fields it changes."""
    amendment = services.amend(_get(consensus_id), reason=data["reason"], changes=data["changes"],
                               actor=current_user)
    db.session.commit()
    return amendment


# --- follow-ups (the /followups pages)
def _followups(query: Any) -> list[ConsensusFollowup]:
    """Run a follow-up query and audit the read (the rows name patients' cases)."""
    items = list(db.session.scalars(query.options(selectinload(ConsensusFollowup.consensus))))
    services.record_followups_read(items, actor=current_user)
    db.session.commit()
    return items


@blp.route("/followups", methods=["GET"])
@blp.arguments(FollowupListArgsSchema, location="query")
@blp.response(200, FollowupItemSchema(many=True))
def followups_list(args: dict[str, Any]) -> list[ConsensusFollowup]:
    """The follow-ups I own, earliest due first, open ones before confirmed ones (audited)."""
    return _followups(services.followups_query(owner_id=current_user.id,
                                               pending_only=args["pending_only"]))


@blp.route("/followups/overdue", methods=["GET"])
@blp.response(200, FollowupItemSchema(many=True))
def followups_overdue() -> list[ConsensusFollowup]:
    """Every unconfirmed follow-up due before today (in my time zone), of every owner (audited)."""
    return _followups(services.followups_query(overdue_on=services.today_in(current_user.timezone)))


@blp.route("/followups/<int:followup_id>/confirm", methods=["POST"])
@blp.response(200, FollowupItemSchema)
def followup_confirm(followup_id: int) -> ConsensusFollowup:
    """The owner confirms the follow-up is done and the case closes (403 for anyone else, 409 when
    already confirmed)."""
    followup = db.get_or_404(ConsensusFollowup, followup_id, description="No such follow-up.")
    services.confirm_followup(followup, actor=current_user)
    db.session.commit()
    return followup
