"""The one permission table: which roles may reach each endpoint.

`enforce_permissions` runs before every request. An endpoint missing from the table is refused
(fail closed); `tests/test_security_permissions.py` walks the URL map to keep the table complete.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, request
from flask_login import current_user

from tumorboard.vocab import ROLES

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Allow:
    """Roles allowed to read (GET/HEAD/OPTIONS) and to write (other methods)."""

    read: frozenset[str]
    write: frozenset[str]
    public: bool = False

    def roles_for(self, method: str) -> frozenset[str]:
        return self.read if method in SAFE_METHODS else self.write


def roles(*names: str) -> frozenset[str]:
    assert set(names) <= set(ROLES), names  # noqa: S101 - a typo in the table is a bug
    return frozenset(names)


def allow(read: frozenset[str], write: frozenset[str] | None = None) -> Allow:
    return Allow(read=read, write=read if write is None else write)


PUBLIC = Allow(frozenset(), frozenset(), public=True)
ANY_ROLE = roles(*ROLES)
COORDINATOR = roles("coordinator")
CLINICAL = roles("coordinator", "oncologist", "specialist")
ADMIN = roles("admin")

PERMISSIONS: dict[str, Allow] = {
    # --- main, auth, API meta
    "static": PUBLIC,
    "main.health": PUBLIC,
    "auth.login": PUBLIC,
    "auth.logout": allow(ANY_ROLE),
    "main.index": allow(ANY_ROLE),
    "api_meta.me": allow(ANY_ROLE),
    "api-docs.openapi_json": PUBLIC,
    # --- account (each user's own password and API tokens), administration, audit trail
    "auth.password": allow(ANY_ROLE),
    "auth.tokens": allow(ANY_ROLE),
    "auth.token_revoke": allow(ANY_ROLE),
    "admin.users": allow(ADMIN),
    "admin.user_new": allow(ADMIN),
    "admin.user_deactivate": allow(ADMIN),
    "admin.user_reactivate": allow(ADMIN),
    "audit.events": allow(ADMIN),
    # --- cases (HTML "cases.*", API "api_cases.*")
    # coordinators read and act; oncologists read (queue and case pages); nobody else
    "cases.queue": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "cases.detail": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "cases.new": allow(COORDINATOR),
    "cases.edit": allow(COORDINATOR),
    "cases.add_record": allow(COORDINATOR),
    "cases.record_action": allow(COORDINATOR),
    "cases.status": allow(COORDINATOR),
    "cases.withdraw": allow(COORDINATOR),
    "cases.override": allow(COORDINATOR),
    "api_cases.list_cases": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "api_cases.get_case": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "api_cases.list_records": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "api_cases.create_case": allow(COORDINATOR),
    "api_cases.update_case": allow(COORDINATOR),
    "api_cases.add_record": allow(COORDINATOR),
    "api_cases.update_record": allow(COORDINATOR),
    "api_cases.change_status": allow(COORDINATOR),
    "api_cases.override_readiness": allow(COORDINATOR),
    # --- boards, meetings, agendas (HTML "boards.*", API "api_boards.*")
    # coordinators write; oncologists read boards, meetings, agendas; specialists read meetings and
    # agendas of the boards they belong to (checked in the views: can_read_agenda / meetings_query)
    "boards.boards": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "boards.board_new": allow(COORDINATOR),
    "boards.board": allow(COORDINATOR),
    "boards.board_remove": allow(COORDINATOR),
    "boards.board_materialise": allow(COORDINATOR),
    "boards.board_feed_rotate": allow(COORDINATOR),
    "boards.urgent_slot": allow(COORDINATOR),
    "boards.meetings": allow(CLINICAL, COORDINATOR),
    "boards.meeting": allow(CLINICAL, COORDINATOR),
    "boards.meeting_edit": allow(COORDINATOR),
    "boards.meeting_cancel": allow(COORDINATOR),
    "boards.meeting_held": allow(COORDINATOR),
    "boards.meeting_freeze": allow(COORDINATOR),
    "boards.meeting_unfreeze": allow(COORDINATOR),
    "boards.agenda_add": allow(COORDINATOR),
    "boards.assignment_pin": allow(COORDINATOR),
    "boards.assignment_reorder": allow(COORDINATOR),
    "boards.assignment_remove": allow(COORDINATOR),
    "boards.assignment_move": allow(COORDINATOR),
    "api_boards.Boards": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "api_boards.BoardItem": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "api_boards.materialise": allow(COORDINATOR),
    "api_boards.Meetings": allow(CLINICAL, COORDINATOR),
    "api_boards.MeetingItem": allow(CLINICAL, COORDINATOR),
    "api_boards.urgent_slots": allow(COORDINATOR),
    "api_boards.Assignments": allow(roles("coordinator", "oncologist"), COORDINATOR),
    "api_boards.AssignmentItem": allow(roles("coordinator", "oncologist"), COORDINATOR),
    # --- planning: urgent slot requests (the engine asks, a coordinator creates the slot)
    "planning.urgent_list": allow(COORDINATOR),
    "planning.urgent_place": allow(COORDINATOR),
    # --- calendar: RSVP, feeds, iTIP (HTML "calendar.*", API "api_calendar.*")
    "calendar.rsvp": PUBLIC,  # the signed, expiring token is the credential; GET changes nothing
    "calendar.user_feed": PUBLIC,  # secret, revocable URL; no PHI
    "calendar.board_feed": PUBLIC,  # secret, revocable URL; no PHI
    "calendar.my_calendar": allow(ANY_ROLE),
    "calendar.rotate_feed_token": allow(ANY_ROLE),
    "api_calendar.itip": allow(roles("coordinator", "admin")),  # inbound mail: an admin API token
    # --- consensus (HTML "consensus.*", API "api_consensus.*")
    # clinicians read (every read audited); coordinators and oncologists write drafts; only
    # oncologists sign and amend; the follow-up owner (checked in the service) confirms it
    "consensus.edit": allow(CLINICAL, roles("coordinator", "oncologist")),
    "consensus.sign": allow(roles("oncologist")),
    "consensus.amend": allow(roles("oncologist")),
    "consensus.print_view": allow(CLINICAL),
    "consensus.for_case": allow(CLINICAL),
    "consensus.followups": allow(roles("oncologist")),
    "consensus.overdue": allow(roles("coordinator", "oncologist")),
    "consensus.confirm_followup": allow(roles("oncologist")),
    "api_consensus.consensus_list": allow(CLINICAL),
    "api_consensus.consensus_create": allow(roles("coordinator", "oncologist")),
    "api_consensus.consensus_get": allow(CLINICAL),
    "api_consensus.consensus_patch": allow(roles("coordinator", "oncologist")),
    "api_consensus.consensus_sign": allow(roles("oncologist")),
    "api_consensus.consensus_amend": allow(roles("oncologist")),
    # follow-ups as on the /followups pages; a specialist reads consensus records only of cases on
    # their boards' agendas (checked in the views and API: consensus.services.can_read)
    "api_consensus.followups_list": allow(roles("oncologist")),
    "api_consensus.followups_overdue": allow(roles("coordinator", "oncologist")),
    "api_consensus.followup_confirm": allow(roles("oncologist")),
    # --- home and metrics
    # the home page (main.index, above) shows each role's own sections; metrics list breaching
    # cases by MRN (PHI, audited): coordinators and oncologists only; plots are aggregates
    "metrics.index": allow(roles("coordinator", "oncologist")),
    "metrics.export_csv": allow(roles("coordinator", "oncologist")),
    "metrics.plot": allow(roles("coordinator", "oncologist")),
}


def enforce_permissions() -> None:
    """Refuse the request unless the current user holds a role the table allows."""
    endpoint = request.endpoint
    if endpoint is None:
        return  # 404 / 405: Werkzeug answers
    rule = PERMISSIONS.get(endpoint)
    if rule is not None and rule.public:
        return
    if not current_user.is_authenticated:
        abort(401)
    if rule is None or not current_user.has_role(*rule.roles_for(request.method)):
        abort(403)
