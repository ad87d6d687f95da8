"""Imports every feature's models so metadata (and Alembic) sees the whole schema."""

from tumorboard.audit.models import AuditEvent
from tumorboard.auth.models import ApiToken, User, UserRole
from tumorboard.boards.models import Board, BoardMember, BoardSite, BoardSpecialty, Meeting
from tumorboard.calendar.models import Invitation
from tumorboard.cases.models import Assignment, Case, CaseSpecialty, RecordItem
from tumorboard.consensus.models import Consensus, ConsensusAmendment, ConsensusFollowup
from tumorboard.notifications.models import OutboxMessage
from tumorboard.planning.models import PlanningRequest

__all__ = [
    "ApiToken",
    "Assignment",
    "AuditEvent",
    "Board",
    "BoardMember",
    "BoardSite",
    "BoardSpecialty",
    "Case",
    "CaseSpecialty",
    "Consensus",
    "ConsensusAmendment",
    "ConsensusFollowup",
    "Invitation",
    "Meeting",
    "OutboxMessage",
    "PlanningRequest",
    "RecordItem",
    "User",
    "UserRole",
]
