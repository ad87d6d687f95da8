"""A signed consensus never changes: refused by the ORM guard everywhere, by a trigger on PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.factories import CONSENSUS_NOW, make_consensus_setup
from tumorboard.consensus import services
from tumorboard.consensus.models import Consensus, ConsensusAmendment, ImmutableRecordError
from tumorboard.extensions import db

NOW = CONSENSUS_NOW

pytestmark = pytest.mark.usefixtures("consensus_clock")


@pytest.fixture
def signed(app: Flask) -> Consensus:
    s = make_consensus_setup()
    consensus = services.create_draft(s.case, s.meeting, {
        "board_diagnosis": "Synthetic diagnosis", "concordance": "concordant",
        "management_changed": False, "recommendation_kinds": ["surveillance"],
        "recommendation": "Surveillance every 6 months.", "followup_due": date(2031, 2, 1),
    }, actor=s.onc)
    services.sign(consensus, actor=s.onc)
    services.amend(consensus, reason="Typo.", changes={"recommendation": "Surveillance every 3 months."},
                   actor=s.onc)
    return consensus


@pytest.fixture
def postgresql_only(app: Flask) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the database trigger exists on PostgreSQL only (the ORM guard is tested everywhere)")


def test_the_orm_refuses_to_flush_a_change_to_a_signed_consensus(signed: Consensus) -> None:
    with pytest.raises(ImmutableRecordError, match="signed and cannot be changed"), db.session.begin_nested():
        signed.recommendation = "Rewritten history."
        db.session.flush()
    assert db.session.get(Consensus, signed.id).recommendation == "Surveillance every 6 months."


def test_the_orm_refuses_to_unsign_or_delete(signed: Consensus) -> None:
    with pytest.raises(ImmutableRecordError), db.session.begin_nested():
        signed.status = "draft"
        db.session.flush()
    with pytest.raises(ImmutableRecordError), db.session.begin_nested():
        db.session.delete(signed)
        db.session.flush()
    assert db.session.get(Consensus, signed.id).status == "signed"


def test_the_orm_refuses_to_change_an_amendment(signed: Consensus) -> None:
    amendment = db.session.scalar(sa.select(ConsensusAmendment))
    with pytest.raises(ImmutableRecordError, match="append-only"), db.session.begin_nested():
        amendment.reason = "Another reason."
        db.session.flush()
    with pytest.raises(ImmutableRecordError, match="append-only"), db.session.begin_nested():
        db.session.delete(amendment)
        db.session.flush()


def test_a_draft_changes_freely(app: Flask) -> None:
    s = make_consensus_setup()
    consensus = services.create_draft(s.case, s.meeting, {"recommendation": "First words."}, actor=s.onc)
    consensus.recommendation = "Second words."
    db.session.flush()
    db.session.expire_all()
    assert db.session.get(Consensus, consensus.id).recommendation == "Second words."


@pytest.mark.postgres
def test_postgresql_refuses_a_direct_update_or_delete_of_a_signed_row(signed: Consensus,
                                                                     postgresql_only: None) -> None:
    for statement in ("UPDATE consensus SET recommendation = 'Rewritten' WHERE id = :id",
                      "UPDATE consensus SET status = 'draft', signed_at = NULL, signed_by_id = NULL "
                      "WHERE id = :id",
                      "DELETE FROM consensus_amendments WHERE consensus_id = :id",
                      "UPDATE consensus_amendments SET reason = 'x' WHERE consensus_id = :id",
                      "DELETE FROM consensus WHERE id = :id"):
        with pytest.raises(sa.exc.DBAPIError, match="cannot be changed"), db.session.begin_nested():
            db.session.execute(sa.text(statement), {"id": signed.id})
    recommendation = db.session.scalar(sa.text("SELECT recommendation FROM consensus WHERE id = :id"),
                                       {"id": signed.id})
    assert recommendation == "Surveillance every 6 months."


@pytest.mark.postgres
def test_postgresql_lets_a_draft_row_change(app: Flask, postgresql_only: None) -> None:
    s = make_consensus_setup()
    consensus = services.create_draft(s.case, s.meeting, {"recommendation": "First."}, actor=s.onc)
    db.session.execute(sa.text("UPDATE consensus SET recommendation = 'Second.' WHERE id = :id"),
                       {"id": consensus.id})
    assert db.session.scalar(sa.text("SELECT recommendation FROM consensus WHERE id = :id"),
                             {"id": consensus.id}) == "Second."


def test_ddl_constants_are_exposed_for_the_migration() -> None:
    from tumorboard.consensus import models

    assert len(models.POSTGRESQL_DDL) == 4 and len(models.POSTGRESQL_DROP_DDL) == 4
    assert all("%" not in statement for statement in models.POSTGRESQL_DDL)
