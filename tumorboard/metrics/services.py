"""Metrics computed with SQL aggregates (SQLite and PostgreSQL alike).

Cohorts: the case metrics (times, window compliance, concordance) cover the cases *referred*
(`Case.created_at`, hospital calendar dates) in the period and of the site; the meeting metrics
(fill, quorum, invite answers) cover the meetings (not cancelled) that *start* in the period, of
the boards serving the site. Every query returns aggregates or a handful of rows, never one row
per case: percentiles are picked with a window function (`row_number() over (partition by … order by …)`), so
10,000 cases cost a few milliseconds of transfer, not 10,000 objects.

Definitions:
* first board: the earliest start of a meeting, not cancelled and already started, the case was
  assigned to (active or not: a deferral keeps its history);
* consensus: the earliest `signed_at` of a signed, not deferred consensus of the case;
* window compliance: a case discussed (first board) on or before its deadline complies; one
  discussed later, or still open (intake/ready/scheduled) with its deadline passed, is a breach;
  the others (deadline ahead, or withdrawn) are not counted. Dates compare in UTC.
* concordance and management change: the content in force (signed value, or the latest amendment
  of that field) of signed, not deferred consensus records.
* quorum: `tumorboard.calendar.quorum.meeting_quorum` in SQL — the board's core specialties plus
  those of the cases actively on the agenda, each covered by an active ACCEPTED invitee.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app

from tumorboard.auth.models import User
from tumorboard.boards.models import Board, BoardSite, BoardSpecialty, Meeting
from tumorboard.calendar.models import Invitation
from tumorboard.calendar.quorum import Quorum
from tumorboard.cases.models import Assignment, Case, CaseSpecialty
from tumorboard.consensus.models import Consensus, ConsensusAmendment
from tumorboard.db import now_utc
from tumorboard.extensions import db
from tumorboard.vocab import CONCORDANCE, OPEN_CASE_STATUSES, PARTSTATS

#: published ranges shown beside our rates (second-opinion review literature)
PUBLISHED_DISCREPANCY = (0.02, 0.51)  # any discrepancy, by specialty
PUBLISHED_MAJOR_PATHOLOGY = (0.012, 0.023)  # major pathology disagreement
STAGES = (
    ("referral_ready", "Referral → ready"),
    ("ready_board", "Ready → first board"),
    ("board_consensus", "First board → consensus"),
    ("referral_consensus", "Referral → consensus"),
)
BREACH_LIST_LIMIT = 100
DEFAULT_PERIOD_DAYS = 365


@dataclass(frozen=True)
class MetricsFilter:
    """Site (None = all) and period (hospital calendar dates, both ends included)."""

    site: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def as_args(self) -> dict[str, str]:
        """The filter as query-string arguments (for links to the plots and the CSV)."""
        args = {"site": self.site or "", "date_from": self.date_from.isoformat() if self.date_from else "",
                "date_to": self.date_to.isoformat() if self.date_to else ""}
        return {k: v for k, v in args.items() if v}


@dataclass(frozen=True)
class StageTimes:
    key: str
    label: str
    count: int
    median_days: float | None
    p90_days: float | None


@dataclass(frozen=True)
class Breach:
    case_id: int
    mrn: str
    site: str
    deadline: date
    first_board: datetime | None

    @property
    def days_late(self) -> int | None:
        return (self.first_board.date() - self.deadline).days if self.first_board else None


@dataclass
class Compliance:
    compliant: int
    breached: int
    breaches: list[Breach] = field(default_factory=list)

    @property
    def counted(self) -> int:
        return self.compliant + self.breached

    @property
    def rate(self) -> float | None:
        return self.compliant / self.counted if self.counted else None


@dataclass
class Concordance:
    counts: dict[str, int]
    management_changed: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, value: str) -> float | None:
        return self.counts.get(value, 0) / self.total if self.total else None

    @property
    def discrepancy_rate(self) -> float | None:
        """Any discrepancy with the first opinion (minor, major or a new diagnosis)."""
        return 1 - self.counts.get("concordant", 0) / self.total if self.total else None

    @property
    def major_rate(self) -> float | None:
        """Major discrepancy or a new diagnosis."""
        if not self.total:
            return None
        return (self.counts.get("major_discrepancy", 0) + self.counts.get("new_diagnosis", 0)) / self.total

    @property
    def management_change_rate(self) -> float | None:
        return self.management_changed / self.total if self.total else None


@dataclass(frozen=True)
class BoardStats:
    board_id: int
    name: str
    meetings: int
    capacity_minutes: int
    used_minutes: int
    quorum_met: int

    @property
    def fill(self) -> float | None:
        return self.used_minutes / self.capacity_minutes if self.capacity_minutes else None

    @property
    def quorum_rate(self) -> float | None:
        return self.quorum_met / self.meetings if self.meetings else None


@dataclass
class InviteAnswers:
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def answered_rate(self) -> float | None:
        return 1 - self.counts.get("NEEDS-ACTION", 0) / self.total if self.total else None

    @property
    def accepted_rate(self) -> float | None:
        return self.counts.get("ACCEPTED", 0) / self.total if self.total else None


@dataclass
class Metrics:
    filters: MetricsFilter
    stages: list[StageTimes]
    compliance: Compliance
    concordance: Concordance
    boards: list[BoardStats]
    invites: InviteAnswers


# --------------------------------------------------------------------------- helpers


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _days_between(start: Any, end: Any) -> sa.ColumnElement[float]:
    """`end - start` in days, as a float, in SQL."""
    if _dialect() == "postgresql":
        return sa.extract("epoch", end - start) / 86400.0
    return sa.func.julianday(end) - sa.func.julianday(start)


def _utc_date(value: Any) -> sa.ColumnElement[Any]:
    """The UTC calendar date of a stored timestamp, comparable with a Date column."""
    if _dialect() == "postgresql":
        return sa.cast(sa.func.timezone("UTC", value), sa.Date)
    return sa.func.date(value)


def _floor(value: Any) -> sa.ColumnElement[int]:
    if _dialect() == "postgresql":
        return sa.cast(sa.func.floor(value), sa.Integer)
    return sa.cast(value, sa.Integer)  # SQLite truncates; the value is never negative


def percentile(values: list[float], p: float) -> float | None:
    """Linear-interpolation percentile (PostgreSQL's percentile_cont) of sorted `values`."""
    if not values:
        return None
    pos = p * (len(values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (pos - low) * (values[high] - values[low])


def _pick_percentiles(rows: list[Any], ps: tuple[float, ...]) -> tuple[int, list[float | None]]:
    """(count, percentiles) from the ranked rows (rn, n, v) kept around each position."""
    if not rows:
        return 0, [None for _ in ps]
    n = int(rows[0].n)
    by_rank = {int(r.rn): float(r.v) for r in rows}
    out: list[float | None] = []
    for p in ps:
        pos = p * (n - 1)
        low = math.floor(pos)
        lo = by_rank[low + 1]
        hi = by_rank.get(low + 2, lo)
        out.append(lo + (pos - low) * (hi - lo))
    return n, out


def hospital_zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["HOSPITAL_TIMEZONE"])


def _bounds(filters: MetricsFilter) -> tuple[datetime | None, datetime | None]:
    """The period as UTC instants [start, end) from hospital calendar dates."""
    zone = hospital_zone()
    start = (datetime.combine(filters.date_from, time(0), tzinfo=zone).astimezone(UTC)
             if filters.date_from else None)
    end = (datetime.combine(filters.date_to + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
           if filters.date_to else None)
    return start, end


def default_filter(today: date | None = None) -> MetricsFilter:
    """The last year up to today (hospital time), every site."""
    today = today or now_utc().astimezone(hospital_zone()).date()
    return MetricsFilter(None, today - timedelta(days=DEFAULT_PERIOD_DAYS), today)


def case_conditions(filters: MetricsFilter) -> list[sa.ColumnElement[bool]]:
    """The case cohort: referred in the period, of the site."""
    start, end = _bounds(filters)
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.site:
        conditions.append(Case.site == filters.site)
    if start is not None:
        conditions.append(Case.created_at >= start)
    if end is not None:
        conditions.append(Case.created_at < end)
    return conditions


def meeting_conditions(filters: MetricsFilter) -> list[sa.ColumnElement[bool]]:
    """The meeting cohort: not cancelled, starting in the period, of a board serving the site."""
    start, end = _bounds(filters)
    conditions: list[sa.ColumnElement[bool]] = [Meeting.status != "cancelled"]
    if filters.site:
        conditions.append(Meeting.board_id.in_(
            sa.select(BoardSite.board_id).where(BoardSite.site == filters.site)))
    if start is not None:
        conditions.append(Meeting.start_at >= start)
    if end is not None:
        conditions.append(Meeting.start_at < end)
    return conditions


def _first_board(now: datetime) -> sa.Subquery:
    return (
        sa.select(Assignment.case_id.label("case_id"), sa.func.min(Meeting.start_at).label("at"))
        .join(Meeting, Meeting.id == Assignment.meeting_id)
        .where(Meeting.status != "cancelled", Meeting.start_at <= now)
        .group_by(Assignment.case_id).subquery("first_board")
    )


def _first_consensus() -> sa.Subquery:
    return (
        sa.select(Consensus.case_id.label("case_id"), sa.func.min(Consensus.signed_at).label("at"))
        .where(Consensus.status == "signed", Consensus.deferred.is_(False))
        .group_by(Consensus.case_id).subquery("first_consensus")
    )


# --------------------------------------------------------------------------- the metrics


def stage_times(filters: MetricsFilter, now: datetime | None = None,
                ps: tuple[float, float] = (0.5, 0.9)) -> list[StageTimes]:
    """Median and 90th percentile (days) of each stage, over the cases that reached its end.

    One query: the cohort's timestamps (a CTE), the four spans as (stage, days) rows, ranked per
    stage by a window function; only the rows around each percentile's position come back and the
    interpolation (PostgreSQL's percentile_cont) is done here.
    """
    now = now or now_utc()
    board, consensus = _first_board(now), _first_consensus()
    base = (
        sa.select(Case.created_at.label("created"), Case.ready_at.label("ready"), board.c.at.label("board"),
                  consensus.c.at.label("consensus"))
        .outerjoin(board, board.c.case_id == Case.id).outerjoin(consensus, consensus.c.case_id == Case.id)
        .where(*case_conditions(filters)).cte("cohort")
    )
    spans = {
        "referral_ready": (base.c.created, base.c.ready),
        "ready_board": (base.c.ready, base.c.board),
        "board_consensus": (base.c.board, base.c.consensus),
        "referral_consensus": (base.c.created, base.c.consensus),
    }
    values = sa.union_all(*(
        sa.select(sa.literal(key).label("stage"), _days_between(start, end).label("v"))
        .where(start.is_not(None), end.is_not(None))
        for key, (start, end) in spans.items()
    )).subquery("spans")
    ranked = sa.select(
        values.c.stage, values.c.v,
        sa.func.row_number().over(partition_by=values.c.stage, order_by=values.c.v).label("rn"),
        sa.func.count().over(partition_by=values.c.stage).label("n"),
    ).subquery("ranked")
    near = [ranked.c.rn.between(_floor(p * (ranked.c.n - 1)), _floor(p * (ranked.c.n - 1)) + 3) for p in ps]
    rows: dict[str, list[Any]] = {key: [] for key in spans}
    for row in db.session.execute(sa.select(ranked.c.stage, ranked.c.rn, ranked.c.n, ranked.c.v)
                                  .where(sa.or_(*near))):
        rows[row.stage].append(row)
    out = []
    for key, text in STAGES:
        count, (median, p90) = _pick_percentiles(rows[key], ps)
        out.append(StageTimes(key, text, count, median, p90))
    return out


def window_compliance(filters: MetricsFilter, today: date, now: datetime | None = None,
                      limit: int = BREACH_LIST_LIMIT) -> Compliance:
    """Cases discussed by their deadline vs breaches (counts in one query, then the breach list)."""
    board = _first_board(now or now_utc())
    board_date = _utc_date(board.c.at)
    compliant = sa.and_(board.c.at.is_not(None), board_date <= Case.deadline)
    breached = sa.or_(
        sa.and_(board.c.at.is_not(None), board_date > Case.deadline),
        sa.and_(board.c.at.is_(None), Case.deadline < today, Case.status.in_(OPEN_CASE_STATUSES)),
    )
    conditions = [*case_conditions(filters), Case.status != "withdrawn"]
    base = sa.select(Case.id).outerjoin(board, board.c.case_id == Case.id)
    row = db.session.execute(
        base.with_only_columns(
            sa.func.coalesce(sa.func.sum(sa.case((compliant, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((breached, 1), else_=0)), 0),
        ).where(*conditions)
    ).one()
    rows = db.session.execute(
        base.with_only_columns(Case.id, Case.mrn, Case.site, Case.deadline, board.c.at)
        .where(*conditions, breached).order_by(Case.deadline, Case.id).limit(limit)
    ).all()
    breaches = [Breach(r[0], r[1], r[2], r[3], _aware(r[4])) for r in rows]
    return Compliance(int(row[0]), int(row[1]), breaches)


def _aware(value: Any) -> datetime | None:
    """A timestamp from an aggregate (SQLite gives a string, PostgreSQL an aware datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def concordance(filters: MetricsFilter) -> Concordance:
    """Concordance with the first opinion and management changes of signed, not deferred records,
    as amended (amendments of these two fields are applied to the aggregate)."""
    conditions = [Consensus.status == "signed", Consensus.deferred.is_(False), *case_conditions(filters)]
    base = sa.select(Consensus.id).join(Case, Case.id == Consensus.case_id).where(*conditions)
    counts: Counter[str] = Counter()
    changed = 0
    for value, count, changes in db.session.execute(
        base.with_only_columns(
            Consensus.concordance, sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((Consensus.management_changed.is_(True), 1), else_=0)), 0),
        ).group_by(Consensus.concordance)
    ):
        if value is not None:
            counts[value] += int(count)
        changed += int(changes)
    # amendments are rare: replay them on the few records that have any
    amended = db.session.execute(
        sa.select(ConsensusAmendment.consensus_id, ConsensusAmendment.changes, Consensus.concordance,
                  Consensus.management_changed)
        .join(Consensus, Consensus.id == ConsensusAmendment.consensus_id)
        .where(ConsensusAmendment.consensus_id.in_(base.scalar_subquery()))
        .order_by(ConsensusAmendment.consensus_id, ConsensusAmendment.id)
    ).all()
    current: dict[int, list[Any]] = {}
    for consensus_id, changes, signed_value, signed_changed in amended:
        state = current.setdefault(consensus_id, [signed_value, signed_changed, signed_value, signed_changed])
        changes = changes or {}
        if "concordance" in changes:
            state[2] = changes["concordance"]
        if "management_changed" in changes:
            state[3] = changes["management_changed"]
    for signed_value, signed_changed, value, now_changed in current.values():
        if signed_value != value:
            if signed_value is not None:
                counts[signed_value] -= 1
            if value is not None:
                counts[value] += 1
        changed += int(bool(now_changed)) - int(bool(signed_changed))
    return Concordance({k: counts.get(k, 0) for k in CONCORDANCE}, changed)


def _required_specialties(meeting_ids: Any) -> sa.Select[Any]:
    core = (sa.select(Meeting.id.label("meeting_id"), BoardSpecialty.specialty.label("specialty"))
            .join(BoardSpecialty, BoardSpecialty.board_id == Meeting.board_id)
            .where(Meeting.id.in_(meeting_ids)))
    cases = (sa.select(Assignment.meeting_id.label("meeting_id"), CaseSpecialty.specialty.label("specialty"))
             .join(CaseSpecialty, CaseSpecialty.case_id == Assignment.case_id)
             .where(Assignment.active.is_(True), Assignment.meeting_id.in_(meeting_ids)))
    return sa.union(core, cases)


def _accepted_specialties(meeting_ids: Any) -> sa.Select[Any]:
    return (sa.select(Invitation.meeting_id.label("meeting_id"), User.specialty.label("specialty"))
            .join(User, User.id == Invitation.user_id)
            .where(Invitation.meeting_id.in_(meeting_ids), Invitation.active.is_(True),
                   Invitation.partstat == "ACCEPTED", User.specialty.is_not(None))
            .distinct())


def quorum_by_meeting(meeting_ids: list[int]) -> dict[int, Quorum]:
    """`meeting_quorum` of several meetings in two queries (the home page's upcoming meetings)."""
    if not meeting_ids:
        return {}
    required: dict[int, set[str]] = {m: set() for m in meeting_ids}
    accepted: dict[int, set[str]] = {m: set() for m in meeting_ids}
    for meeting_id, specialty in db.session.execute(_required_specialties(meeting_ids)):
        required[meeting_id].add(specialty)
    for meeting_id, specialty in db.session.execute(_accepted_specialties(meeting_ids)):
        accepted[meeting_id].add(specialty)
    out = {}
    for meeting_id in meeting_ids:
        need, have = frozenset(required[meeting_id]), frozenset(accepted[meeting_id])
        missing = need - have
        out[meeting_id] = Quorum(required=need, accepted=have & need, missing=missing, met=not missing)
    return out


def board_stats(filters: MetricsFilter) -> list[BoardStats]:
    """Per board: meetings, capacity and minutes used (fill), meetings with quorum met."""
    scope = sa.select(Meeting.id).where(*meeting_conditions(filters))
    used = (sa.select(Assignment.meeting_id.label("meeting_id"),
                      sa.func.sum(Assignment.minutes).label("used"))
            .where(Assignment.active.is_(True), Assignment.meeting_id.in_(scope))
            .group_by(Assignment.meeting_id).subquery("used"))
    required = _required_specialties(scope).subquery("required")
    accepted = _accepted_specialties(scope).subquery("accepted")
    missing = (sa.select(required.c.meeting_id.label("meeting_id"), sa.func.count().label("missing"))
               .outerjoin(accepted, sa.and_(accepted.c.meeting_id == required.c.meeting_id,
                                            accepted.c.specialty == required.c.specialty))
               .where(accepted.c.meeting_id.is_(None))
               .group_by(required.c.meeting_id).subquery("missing"))
    rows = db.session.execute(
        sa.select(Board.id, Board.name, sa.func.count(Meeting.id),
                  sa.func.coalesce(sa.func.sum(Meeting.capacity_minutes), 0),
                  sa.func.coalesce(sa.func.sum(used.c.used), 0),
                  sa.func.coalesce(sa.func.sum(sa.case((missing.c.missing.is_(None), 1), else_=0)), 0))
        .join(Meeting, Meeting.board_id == Board.id)
        .outerjoin(used, used.c.meeting_id == Meeting.id)
        .outerjoin(missing, missing.c.meeting_id == Meeting.id)
        .where(*meeting_conditions(filters))
        .group_by(Board.id, Board.name).order_by(Board.name)
    ).all()
    return [BoardStats(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


def invite_answers(filters: MetricsFilter) -> InviteAnswers:
    """Active invitations to the meetings in scope, by answer (PARTSTAT)."""
    rows = db.session.execute(
        sa.select(Invitation.partstat, sa.func.count())
        .join(Meeting, Meeting.id == Invitation.meeting_id)
        .where(Invitation.active.is_(True), *meeting_conditions(filters))
        .group_by(Invitation.partstat)
    ).all()
    found = {p: int(c) for p, c in rows}
    return InviteAnswers({p: found.get(p, 0) for p in PARTSTATS})


PARTS = ("stages", "compliance", "concordance", "boards", "invites")


def compute(filters: MetricsFilter, *, today: date | None = None, now: datetime | None = None,
            parts: tuple[str, ...] = PARTS) -> Metrics:
    """The metrics for the filter (about a dozen aggregate queries); `parts` limits the work to
    some sections (a plot needs one), the others stay empty."""
    now = now or now_utc()
    today = today or now.astimezone(hospital_zone()).date()
    return Metrics(
        filters=filters,
        stages=stage_times(filters, now) if "stages" in parts else [],
        compliance=window_compliance(filters, today, now) if "compliance" in parts else Compliance(0, 0),
        concordance=(concordance(filters) if "concordance" in parts
                     else Concordance({k: 0 for k in CONCORDANCE}, 0)),
        boards=board_stats(filters) if "boards" in parts else [],
        invites=invite_answers(filters) if "invites" in parts else InviteAnswers({p: 0 for p in PARTSTATS}),
    )


def csv_rows(metrics: Metrics) -> list[list[str]]:
    """The metrics as CSV rows: section, name, value, detail."""

    def num(value: float | None, digits: int = 4) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    f = metrics.filters
    rows = [["section", "name", "value", "detail"],
            ["filter", "site", f.site or "all", ""],
            ["filter", "from", f.date_from.isoformat() if f.date_from else "", ""],
            ["filter", "to", f.date_to.isoformat() if f.date_to else "", ""]]
    for s in metrics.stages:
        rows.append(["times_days", f"{s.key}_median", num(s.median_days, 2), f"n={s.count}"])
        rows.append(["times_days", f"{s.key}_p90", num(s.p90_days, 2), f"n={s.count}"])
    c = metrics.compliance
    rows += [["compliance", "compliant", str(c.compliant), ""],
             ["compliance", "breached", str(c.breached), ""],
             ["compliance", "rate", num(c.rate), f"n={c.counted}"]]
    k = metrics.concordance
    for value in CONCORDANCE:
        rows.append(["concordance", value, str(k.counts[value]), num(k.share(value))])
    rows += [["concordance", "discrepancy_rate", num(k.discrepancy_rate),
              "published {:.0%}-{:.0%}".format(*PUBLISHED_DISCREPANCY)],
             ["concordance", "major_rate", num(k.major_rate),
              "published major pathology {:.1%}-{:.1%}".format(*PUBLISHED_MAJOR_PATHOLOGY)],
             ["concordance", "management_change_rate", num(k.management_change_rate), f"n={k.total}"]]
    for b in metrics.boards:
        rows.append(["board_fill", b.name, num(b.fill), f"{b.used_minutes}/{b.capacity_minutes} min, "
                     f"{b.meetings} meetings"])
        rows.append(["board_quorum", b.name, num(b.quorum_rate), f"{b.quorum_met}/{b.meetings} meetings"])
    i = metrics.invites
    for partstat, count in i.counts.items():
        rows.append(["invites", partstat, str(count), ""])
    rows += [["invites", "answered_rate", num(i.answered_rate), f"n={i.total}"],
             ["invites", "accepted_rate", num(i.accepted_rate), f"n={i.total}"]]
    for breach in c.breaches:
        rows.append(["breach", breach.mrn, breach.deadline.isoformat(),
                     breach.first_board.date().isoformat() if breach.first_board else "not discussed"])
    return rows
