"""Requests for an assignment pass, so the scheduler process acts at once, not at the next tick."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from tumorboard.db import UTCDateTime, now_utc
from tumorboard.extensions import db


class PlanningRequest(db.Model):
    __tablename__ = "planning_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    #: set by the pass that served it; pending rows are `done_at IS NULL`
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
