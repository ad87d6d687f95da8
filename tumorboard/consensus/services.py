"""Consensus rules: draft, sign, amend, notify the primary oncologist, follow up.

Services validate, change and flush; the view or API handler commits once. Every refusal is a
`DomainError` raised before anything changed (422 invalid values, 409 state conflicts, 403 role).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from tumorboard.audit.services import record
from tumorboard.auth.models import User, UserRole
from tumorboard.boards.models import Meeting
from tumorboard.boards.services import meetings_query, sees_all_boards
from tumorboard.calendar.models import Invitation
from tumorboard.cases.models import Assignment, Case
from tumorboard.cases.services import change_status
from tumorboard.cases.signals import case_needs_scheduling
from tumorboard.consensus.models import (
    CONTENT_FIELDS,
    Consensus,
    ConsensusAmendment,
    ConsensusFollowup,
)
from tumorboard.db import now_utc
from tumorboard.errors import DomainError
from tumorboard.extensions import db
from tumorboard.notifications.services import build_text_message, enqueue
from tumorboard.vocab import CONCORDANCE, RECOMMENDATIONS, SPECIALTIES

Errors = dict[str, list[str]]

#: the recommendation kind a deferral must carry
DEFERRAL_KIND = "further_workup"


# --- queries
def consensus_query(*, case_id: int | None = None) -> sa.Select[tuple[Consensus]]:
    """Consensus records, oldest meeting first (optionally of one case)."""
    query = sa.select(Consensus).join(Meeting, Consensus.meeting_id == Meeting.id)
    if case_id is not None:
        query = query.where(Consensus.case_id == case_id)
    return query.order_by(Meeting.start_at, Consensus.id)


def get_for(case_id: int, meeting_id: int) -> Consensus | None:
    """The consensus of a case at a meeting, if one was started."""
    return db.session.scalar(
        sa.select(Consensus).where(Consensus.case_id == case_id, Consensus.meeting_id == meeting_id)
    )


def oncologists_query() -> sa.Select[tuple[User]]:
    """Active users holding the oncologist role, by name (follow-up owner choices)."""
    return (
        sa.select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == "oncologist", User.active.is_(True))
        .order_by(User.name, User.id)
    )


def followups_query(*, owner_id: int | None = None, overdue_on: date | None = None,
                    pending_only: bool = False) -> sa.Select[tuple[ConsensusFollowup]]:
    """Follow-ups, earliest due first; `overdue_on` keeps the unconfirmed ones due before that day."""
    query = sa.select(ConsensusFollowup)
    if owner_id is not None:
        query = query.where(ConsensusFollowup.owner_id == owner_id)
    if pending_only or overdue_on is not None:
        query = query.where(ConsensusFollowup.confirmed_at.is_(None))
    if overdue_on is not None:
        query = query.where(ConsensusFollowup.due < overdue_on)
    return query.order_by(ConsensusFollowup.confirmed_at.is_not(None), ConsensusFollowup.due,
                          ConsensusFollowup.id)


def today_in(zone: str | None = None) -> date:
    """Today's date in `zone` (default: the hospital's time zone)."""
    return now_utc().astimezone(ZoneInfo(zone or current_app.config["HOSPITAL_TIMEZONE"])).date()


def board_today(meeting: Meeting) -> date:
    """Today in the time zone of the meeting's board (due dates are checked against it)."""
    return today_in(meeting.board.timezone)


def is_overdue(followup: ConsensusFollowup, today: date | None = None) -> bool:
    """An unconfirmed follow-up whose due date has passed."""
    return followup.confirmed_at is None and followup.due < (today or today_in())


def on_agenda(case: Case, meeting: Meeting) -> bool:
    """True when the case is (or was) on the meeting's agenda."""
    return db.session.scalar(sa.select(Assignment.id).where(
        Assignment.case_id == case.id, Assignment.meeting_id == meeting.id).limit(1)) is not None


#: why a reader outside the case's boards is refused (403, as for another board's agenda)
READ_REFUSED = "Only members of a board that has the case on an agenda can read its consensus."


def can_read(user: User, case_id: int) -> bool:
    """Whether `user` may read the consensus records of a case.

    Coordinators, oncologists and admins read every one; anyone else (a specialist) only those of
    a case that is or was on the agenda of a meeting they may see (the agenda rule: a meeting of a
    board they belong to, `boards.services.meetings_query(user=…)`).
    """
    if sees_all_boards(user) or user.has_role("admin"):
        return True
    visible = meetings_query(user=user).with_only_columns(Meeting.id).order_by(None)
    return db.session.scalar(sa.select(Assignment.id).where(
        Assignment.case_id == case_id, Assignment.meeting_id.in_(visible)).limit(1)) is not None


# --- defaults
def default_specialties(meeting_id: int) -> list[str]:
    """Specialties of the people who accepted an active invitation to the meeting (vocab order)."""
    found = set(db.session.scalars(
        sa.select(User.specialty)
        .join(Invitation, Invitation.user_id == User.id)
        .where(Invitation.meeting_id == meeting_id, Invitation.active.is_(True),
               Invitation.partstat == "ACCEPTED", User.specialty.is_not(None))
    ))
    return [s for s in SPECIALTIES if s in found]


def default_values(case: Case, meeting: Meeting) -> dict[str, Any]:
    """What a new draft starts from: specialties present and the primary oncologist as owner."""
    return {
        "specialties_present": default_specialties(meeting.id),
        "followup_owner_id": case.referring_oncologist_id,
        "recommendation_kinds": [],
    }


# --- validation
def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_oncologist(user_id: Any) -> bool:
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    return user is not None and user.active and user.has_role("oncologist")


def validate_content(given: dict[str, Any], merged: dict[str, Any], *, deferred: bool,
                     today: date, complete: bool) -> Errors:
    """Field errors for `given` values (each checked) and the `merged` record (cross-field rules);
    `complete` adds what signing needs."""
    errors: Errors = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    unknown = set(given) - set(CONTENT_FIELDS)
    for name in sorted(unknown):
        add(name, "Unknown field.")
    for value in given.get("specialties_present") or []:
        if value not in SPECIALTIES:
            add("specialties_present", f"Unknown specialty: {value}.")
    if given.get("concordance") is not None and given["concordance"] not in CONCORDANCE:
        add("concordance", f"Must be one of {', '.join(CONCORDANCE)}.")
    if "recommendation_kinds" in given:
        kinds = given["recommendation_kinds"] or []
        if not kinds:
            add("recommendation_kinds", "Choose at least one recommendation.")
        for value in kinds:
            if value not in RECOMMENDATIONS:
                add("recommendation_kinds", f"Unknown recommendation: {value}.")
    if "recommendation" in given and _blank(given["recommendation"]):
        add("recommendation", "Write the recommendation.")
    if given.get("followup_owner_id") is not None and not _is_oncologist(given["followup_owner_id"]):
        add("followup_owner_id", "The follow-up owner must be an active oncologist.")
    if given.get("followup_due") is not None and given["followup_due"] < today:
        add("followup_due", "The due date cannot be in the past.")

    # rules on the whole record
    if merged.get("management_changed") and _blank(merged.get("management_change")):
        add("management_change", "Say how the management changed.")
    if deferred and DEFERRAL_KIND not in (merged.get("recommendation_kinds") or []):
        add("recommendation_kinds", "A deferral recommends further work-up.")
    if complete:
        if not merged.get("recommendation_kinds") and "recommendation_kinds" not in errors:
            add("recommendation_kinds", "Choose at least one recommendation.")
        if _blank(merged.get("recommendation")) and "recommendation" not in errors:
            add("recommendation", "Write the recommendation.")
        if merged.get("management_changed") is None:
            add("management_changed", "Say whether the management changed.")
        if not deferred:
            if _blank(merged.get("board_diagnosis")):
                add("board_diagnosis", "Record the board's diagnosis.")
            if merged.get("concordance") is None:
                add("concordance", "Record the concordance with the first opinion.")
            if merged.get("followup_owner_id") is None:
                add("followup_owner_id", "Name the oncologist who follows up.")
            if merged.get("followup_due") is None:
                add("followup_due", "Give the follow-up due date.")
    return errors


def _refuse(errors: Errors, message: str = "The consensus has invalid fields") -> None:
    if errors:
        raise DomainError(f"{message}: {', '.join(sorted(errors))}.", fields=errors, status=422)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    cleaned = dict(values)
    for name, vocabulary in (("specialties_present", SPECIALTIES),
                             ("recommendation_kinds", RECOMMENDATIONS)):
        if cleaned.get(name) is not None:  # unique, in vocabulary order (unknown ones last)
            order = {v: i for i, v in enumerate(vocabulary)}
            cleaned[name] = sorted(dict.fromkeys(cleaned[name]), key=lambda v: order.get(v, len(order)))
    for name in ("board_diagnosis", "management_change", "recommendation", "rationale",
                 "trial_notes", "dissent"):
        if name in cleaned:
            cleaned[name] = (cleaned[name] or "").strip()
    return cleaned


def _lock(obj: Any) -> None:
    # Reload the row locked (PostgreSQL: FOR UPDATE) so two concurrent requests act one after the
    # other and the second sees the first's result (e.g. "already signed", not a trigger error).
    db.session.refresh(obj, with_for_update=True)


def refuse_if_signed(consensus: Consensus) -> None:
    """Raise 409 when the consensus is signed (only amendments may follow)."""
    if consensus.signed:
        raise DomainError(
            "This consensus is signed and cannot be changed: add an amendment instead.",
            status=409, code="signed",
        )


# --- drafts
def create_draft(case: Case, meeting: Meeting, values: dict[str, Any], *, actor: User) -> Consensus:
    """Start the consensus of `case` at `meeting` (the case must be on that meeting's agenda)."""
    if get_for(case.id, meeting.id) is not None:
        raise DomainError("This case already has a consensus for that meeting.", status=409,
                          code="exists")
    if not on_agenda(case, meeting):
        raise DomainError("This case is not on that meeting's agenda.",
                          fields={"meeting_id": ["The case is not on this meeting's agenda."]},
                          status=422)
    if meeting.status == "cancelled":
        raise DomainError("That meeting was cancelled.", status=409, code="cancelled")
    deferred = bool(values.get("deferred", False))
    content = _clean({k: v for k, v in values.items() if k != "deferred"})
    merged = {**default_values(case, meeting), **content}
    _refuse(validate_content(content, merged, deferred=deferred, today=board_today(meeting),
                             complete=False))
    consensus = Consensus(case_id=case.id, meeting_id=meeting.id, status="draft", deferred=deferred,
                          created_by_id=actor.id, **merged)
    try:  # a concurrent request may have started it since we looked
        with db.session.begin_nested():
            db.session.add(consensus)
    except IntegrityError as exc:
        raise DomainError("This case already has a consensus for that meeting.", status=409,
                          code="exists") from exc
    record("consensus.create", "consensus", consensus.id, actor=actor,
           details={"case_id": case.id, "meeting_id": meeting.id})
    return consensus


def update_draft(consensus: Consensus, values: dict[str, Any], *, actor: User) -> Consensus:
    """Change a draft (only the fields given); a signed consensus is refused with 409."""
    _lock(consensus)
    refuse_if_signed(consensus)
    deferred = bool(values.get("deferred", consensus.deferred))
    content = _clean({k: v for k, v in values.items() if k != "deferred"})
    merged = {**consensus.content(), **content}
    _refuse(validate_content(content, merged, deferred=deferred,
                             today=board_today(consensus.meeting), complete=False))
    changed = sorted(k for k, v in content.items() if getattr(consensus, k) != v)
    if deferred != consensus.deferred:
        changed.append("deferred")
    for name, value in content.items():
        setattr(consensus, name, value)
    consensus.deferred = deferred
    db.session.flush()
    record("consensus.update", "consensus", consensus.id, actor=actor, details={"fields": changed})
    return consensus


def save_draft(case: Case, meeting: Meeting, values: dict[str, Any], *, actor: User) -> Consensus:
    """Create the draft of `case` at `meeting`, or update it when it exists."""
    existing = get_for(case.id, meeting.id)
    if existing is None:
        return create_draft(case, meeting, values, actor=actor)
    return update_draft(existing, values, actor=actor)


# --- signing
def consensus_link(consensus: Consensus) -> str:
    """The absolute link to the consensus page (behind sign-in; ids only, no PHI)."""
    base = current_app.config["SERVER_NAME_FOR_LINKS"].rstrip("/")
    path = current_app.url_map.bind("").build(  # works outside a request too (jobs, CLI)
        "consensus.edit", {"case_id": consensus.case_id, "meeting_id": consensus.meeting_id})
    return base + path


def _notify_signed(consensus: Consensus) -> None:
    owner_id = consensus.followup_owner_id or consensus.case.referring_oncologist_id
    owner = db.session.get(User, owner_id)
    if owner is None:
        return
    if consensus.deferred:
        text = ("A board discussion of a case you follow was deferred to another meeting:\n"
                f"{consensus_link(consensus)}\n")
    else:
        text = f"A board recommendation you follow up is signed:\n{consensus_link(consensus)}\n"
    message = build_text_message(to=owner.email, subject="Board recommendation signed",
                                 text=text + "\nSign in to read it.\n")
    enqueue(kind="notice", to=owner.email, message=message,
            dedupe_key=f"consensus-signed:{consensus.id}")


def sign(consensus: Consensus, *, actor: User) -> Consensus:
    """Sign a complete draft (oncologists only, once the meeting has started).

    The case becomes discussed (a deferral sends it back to ready and off this meeting's agenda),
    the follow-up is handed to its owner and the primary oncologist is notified once.
    """
    if not actor.has_role("oncologist"):
        raise DomainError("Only an oncologist can sign a consensus.", status=403)
    _lock(consensus)
    if consensus.signed:
        raise DomainError("This consensus is already signed.", status=409, code="signed")
    meeting = consensus.meeting
    if meeting.status == "cancelled":
        raise DomainError("That meeting was cancelled: its consensus cannot be signed.", status=409,
                          code="cancelled")
    if meeting.start_at > now_utc():
        raise DomainError("The meeting has not started yet: sign the consensus once it was discussed.",
                          status=409, code="meeting_not_started")
    content = consensus.content()
    _refuse(validate_content(content, content, deferred=consensus.deferred, today=board_today(meeting),
                             complete=True), "The consensus is not complete")
    case = consensus.case
    change_status(case, "discussed")
    if consensus.deferred:
        change_status(case, "ready")
        for assignment in db.session.scalars(sa.select(Assignment).where(
                Assignment.case_id == case.id, Assignment.meeting_id == meeting.id,
                Assignment.active.is_(True))):
            assignment.active = False
    consensus.status = "signed"
    consensus.signed_at = now_utc()
    consensus.signed_by_id = actor.id
    db.session.flush()
    if not consensus.deferred:
        db.session.add(ConsensusFollowup(
            consensus_id=consensus.id, case_id=case.id, owner_id=consensus.followup_owner_id,
            due=consensus.followup_due,
        ))
        db.session.expire(consensus, ["followup"])
    _notify_signed(consensus)
    db.session.flush()
    record("consensus.sign", "consensus", consensus.id, actor=actor,
           details={"case_id": case.id, "meeting_id": meeting.id, "deferred": consensus.deferred})
    if consensus.deferred:
        case_needs_scheduling.send(case)
    return consensus


# --- amendments
def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def amend(consensus: Consensus, *, reason: str, changes: dict[str, Any], actor: User) -> ConsensusAmendment:
    """Append an amendment (field → new value, with a reason) to a signed consensus.

    Only changed fields are kept; the record in force must still be complete. A change of the
    follow-up owner or due date moves the pending follow-up along.
    """
    if not actor.has_role("oncologist"):
        raise DomainError("Only an oncologist can amend a consensus.", status=403)
    if not consensus.signed:
        raise DomainError("A draft is edited, not amended: amendments are for signed records.",
                          status=409, code="draft")
    errors: Errors = {}
    if _blank(reason):
        errors["reason"] = ["Give the reason for the amendment."]
    current = consensus.current()
    given = _clean(changes)
    given = {k: v for k, v in given.items() if k not in current or current[k] != v}
    if not given and not errors and not (set(changes) - set(CONTENT_FIELDS)):
        errors["changes"] = ["The amendment changes nothing."]
    errors.update(validate_content(given, {**current, **given}, deferred=consensus.deferred,
                                   today=board_today(consensus.meeting), complete=True))
    followup = consensus.followup
    if followup is not None and followup.confirmed_at is not None:
        for name in ("followup_owner_id", "followup_due"):
            if name in given:
                errors.setdefault(name, []).append("The follow-up is already confirmed.")
    _refuse(errors, "The amendment has invalid fields")
    amendment = ConsensusAmendment(
        consensus_id=consensus.id, author_id=actor.id, reason=reason.strip(),
        changes={k: _json_value(v) for k, v in given.items()},
    )
    db.session.add(amendment)
    if followup is not None:
        if "followup_owner_id" in given:
            followup.owner_id = given["followup_owner_id"]
        if "followup_due" in given:
            followup.due = given["followup_due"]
    db.session.flush()
    db.session.expire(consensus, ["amendments"])
    record("consensus.amend", "consensus", consensus.id, actor=actor,
           details={"amendment_id": amendment.id, "fields": sorted(given)})
    return amendment


# --- follow-up
def confirm_followup(followup: ConsensusFollowup, *, actor: User) -> ConsensusFollowup:
    """The owner confirms the follow-up is done; the case closes."""
    if followup.owner_id != actor.id:
        raise DomainError("Only the oncologist who owns this follow-up can confirm it.", status=403)
    _lock(followup)
    if followup.confirmed_at is not None:
        raise DomainError("This follow-up is already confirmed.", status=409, code="confirmed")
    change_status(followup.case, "closed")
    followup.confirmed_at = now_utc()
    followup.confirmed_by_id = actor.id
    db.session.flush()
    record("consensus.followup_confirm", "consensus", followup.consensus_id, actor=actor,
           details={"followup_id": followup.id, "case_id": followup.case_id})
    return followup


# --- reads (PHI)
def record_read(consensus: Consensus, *, actor: User, via: str = "page") -> None:
    """Audit a read of a consensus (PHI access)."""
    record("consensus.read", "consensus", consensus.id, actor=actor,
           details={"case_id": consensus.case_id, "via": via})


def record_case_read(case: Case, meeting: Meeting | None, *, actor: User) -> None:
    """Audit a consensus page read before any consensus exists, or a case's consensus list."""
    record("consensus.read", "case", case.id, actor=actor,
           details={"meeting_id": meeting.id if meeting is not None else None})


def record_followups_read(followups: list[ConsensusFollowup], *, actor: User) -> None:
    """Audit a follow-up list (it names patients)."""
    record("consensus.followups_read", "user", actor.id, actor=actor,
           details={"followup_ids": [f.id for f in followups]})
