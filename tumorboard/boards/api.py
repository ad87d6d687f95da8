"""JSON API of the boards feature under /api/v1: boards, meetings, urgent slots, assignments."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort
from flask.views import MethodView
from flask_login import current_user
from flask_smorest.pagination import PaginationParameters

from tumorboard.api import api_blueprint
from tumorboard.boards import services
from tumorboard.boards.models import Board, Meeting
from tumorboard.boards.schemas import (
    AssignmentCreateSchema,
    AssignmentPatchSchema,
    AssignmentQuerySchema,
    AssignmentSchema,
    BoardCreateSchema,
    BoardQuerySchema,
    BoardSchema,
    BoardUpdateSchema,
    MaterialiseResultSchema,
    MeetingPatchSchema,
    MeetingQuerySchema,
    MeetingSchema,
    UrgentSlotSchema,
)
from tumorboard.cases import assignments as agenda_service
from tumorboard.cases.models import Assignment, Case
from tumorboard.errors import DomainError
from tumorboard.extensions import db

blp = api_blueprint("api_boards", __name__, url_prefix="/api/v1",
                    description="Boards, their meetings, urgent slots and agenda assignments")


def _page(query: sa.Select[Any], pagination: PaginationParameters) -> list[Any]:
    count = db.session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
    pagination.item_count = count
    if pagination.first_item >= count:
        return []  # past the last page (whatever `page` says: no OFFSET beyond what the database holds)
    return list(db.session.scalars(query.offset(pagination.first_item).limit(pagination.page_size)))


def _referenced(model: type[Any], ident: int, field: str) -> Any:
    """The row a request body refers to; 422 with the field when it does not exist."""
    row = db.session.get(model, ident)
    if row is None:
        raise DomainError(f"No {field.removesuffix('_id')} with id {ident}.",
                          fields={field: [f"No {field.removesuffix('_id')} with id {ident}."]})
    return row


# --- boards -----------------------------------------------------------------------------------

@blp.route("/boards")
class Boards(MethodView):
    @blp.arguments(BoardQuerySchema, location="query")
    @blp.response(200, BoardSchema(many=True))
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: PaginationParameters) -> list[Board]:
        """Boards by name (`active` filters)."""
        return _page(services.boards_query(active=args.get("active")), pagination_parameters)

    @blp.arguments(BoardCreateSchema)
    @blp.response(201, BoardSchema)
    def post(self, data: dict[str, Any]) -> Board:
        """Create a board; its meetings are materialised up to the horizon."""
        board = services.create_board(data)
        db.session.commit()
        return board


@blp.route("/boards/<int:board_id>")
class BoardItem(MethodView):
    @blp.response(200, BoardSchema)
    def get(self, board_id: int) -> Board:
        """One board."""
        return db.get_or_404(Board, board_id)

    @blp.arguments(BoardUpdateSchema)
    @blp.response(200, BoardSchema)
    def patch(self, data: dict[str, Any], board_id: int) -> Board:
        """Change a board (`active: false` deactivates it and cancels its future meetings)."""
        board = db.get_or_404(Board, board_id)
        services.update_board(board, data)
        db.session.commit()
        return board


@blp.route("/boards/<int:board_id>/materialise", methods=["POST"])
@blp.response(200, MaterialiseResultSchema)
def materialise(board_id: int) -> dict[str, int]:
    """Create the board's missing meetings up to the horizon (idempotent)."""
    board = db.get_or_404(Board, board_id)
    if not board.active:
        raise DomainError("The board is inactive.", fields={"board_id": ["inactive"]}, status=409)
    created = services.materialise_meetings(board)
    db.session.commit()
    return {"created": created}


# --- meetings ---------------------------------------------------------------------------------

@blp.route("/meetings")
class Meetings(MethodView):
    @blp.arguments(MeetingQuerySchema, location="query")
    @blp.response(200, MeetingSchema(many=True))
    @blp.paginate()
    def get(self, args: dict[str, Any], pagination_parameters: PaginationParameters) -> list[Meeting]:
        """Meetings by start (a specialist sees only their boards' meetings)."""
        query = services.meetings_query(
            user=current_user, board_id=args.get("board_id"), start=args.get("from_"),
            end=args.get("to"), status=args.get("status"), kind=args.get("kind"))
        return _page(query, pagination_parameters)


def _readable(meeting_id: int) -> Meeting:
    meeting = db.get_or_404(Meeting, meeting_id)
    if not services.can_read_agenda(current_user, meeting):
        abort(403, "Only members of this board can see its meetings.")
    return meeting


@blp.route("/meetings/<int:meeting_id>")
class MeetingItem(MethodView):
    @blp.response(200, MeetingSchema)
    def get(self, meeting_id: int) -> Meeting:
        """One meeting."""
        return _readable(meeting_id)

    @blp.arguments(MeetingPatchSchema)
    @blp.response(200, MeetingSchema)
    def patch(self, data: dict[str, Any], meeting_id: int) -> Meeting:
        """Move (start + end or duration, location), cancel or hold a meeting, freeze its agenda."""
        meeting = db.get_or_404(Meeting, meeting_id)
        if data.get("status") == "cancelled":
            services.cancel_meeting(meeting)
        elif data.get("status") == "held":
            services.mark_held(meeting)
        else:
            if {"start", "end", "duration_minutes", "location"} & set(data):
                services.move_meeting(meeting, start=data.get("start"), end=data.get("end"),
                                      duration_minutes=data.get("duration_minutes"),
                                      location=data.get("location"))
            if data.get("agenda_frozen") is True:
                services.freeze_agenda(meeting)
            elif data.get("agenda_frozen") is False:
                services.unfreeze_agenda(meeting)
        db.session.commit()
        return meeting


@blp.route("/meetings/urgent-slots", methods=["POST"])
@blp.arguments(UrgentSlotSchema)
@blp.response(201, MeetingSchema)
def urgent_slots(data: dict[str, Any]) -> Meeting:
    """Create an ad-hoc urgent meeting for a board."""
    board = _referenced(Board, data["board_id"], "board_id")
    meeting = services.create_urgent_slot(board, data["start"], data.get("duration_minutes"),
                                          data.get("capacity_minutes"), data.get("location"))
    db.session.commit()
    return meeting


# --- assignments ------------------------------------------------------------------------------

@blp.route("/assignments")
class Assignments(MethodView):
    @blp.arguments(AssignmentQuerySchema, location="query")
    @blp.response(200, AssignmentSchema(many=True))
    @blp.paginate(page_size=50)
    def get(self, args: dict[str, Any], pagination_parameters: PaginationParameters) -> list[Assignment]:
        """Assignments (active only unless `include_inactive`), by meeting and agenda position."""
        query = sa.select(Assignment).order_by(Assignment.meeting_id, Assignment.position, Assignment.id)
        if args.get("meeting_id") is not None:
            query = query.where(Assignment.meeting_id == args["meeting_id"])
        if args.get("case_id") is not None:
            query = query.where(Assignment.case_id == args["case_id"])
        if not args["include_inactive"]:
            query = query.where(Assignment.active.is_(True))
        return _page(query, pagination_parameters)

    @blp.arguments(AssignmentCreateSchema)
    @blp.response(201, AssignmentSchema)
    def post(self, data: dict[str, Any]) -> Assignment:
        """Put a case on a meeting's agenda (source coordinator)."""
        case = _referenced(Case, data["case_id"], "case_id")
        meeting = _referenced(Meeting, data["meeting_id"], "meeting_id")
        assignment = agenda_service.assign(case, meeting, source="coordinator", pinned=data["pinned"],
                                           minutes=data.get("minutes"))
        db.session.commit()
        return assignment


@blp.route("/assignments/<int:assignment_id>")
class AssignmentItem(MethodView):
    @blp.response(200, AssignmentSchema)
    def get(self, assignment_id: int) -> Assignment:
        """One assignment."""
        return db.get_or_404(Assignment, assignment_id)

    @blp.arguments(AssignmentPatchSchema)
    @blp.response(200, AssignmentSchema)
    def patch(self, data: dict[str, Any], assignment_id: int) -> Assignment:
        """Move to another meeting, pin or unpin, or set the agenda position (1 = first)."""
        assignment = db.get_or_404(Assignment, assignment_id)
        if data.get("meeting_id") is not None and data["meeting_id"] != assignment.meeting_id:
            meeting = _referenced(Meeting, data["meeting_id"], "meeting_id")
            assignment = agenda_service.move(assignment, meeting, pinned=data.get("pinned"))
        elif "pinned" in data:
            agenda_service.set_pinned(assignment, data["pinned"])
        if "position" in data:
            agenda_service.set_position(assignment, data["position"])
        db.session.commit()
        return assignment

    @blp.response(204)
    def delete(self, assignment_id: int) -> None:
        """Take the case off the agenda; it goes back to ready."""
        agenda_service.unassign(db.get_or_404(Assignment, assignment_id))
        db.session.commit()
