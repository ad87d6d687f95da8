"""audit events by object and action

A case's status history filtered its events by action on the table: each read of the case (one per
page view) cost a heap visit. The index now holds the action. On PostgreSQL it is built
concurrently: the audit trail takes a row on every read, and a plain CREATE INDEX would hold them
all for as long as it takes over a large trail.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:20:00
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

COLUMNS = ['object_type', 'object_id', 'action']


def _swap(create: tuple[str, list[str]], drop: str) -> None:
    name, columns = create
    if op.get_context().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            op.create_index(name, 'audit_events', columns, postgresql_concurrently=True, if_not_exists=True)
            op.drop_index(drop, 'audit_events', postgresql_concurrently=True, if_exists=True)
    else:
        with op.batch_alter_table('audit_events') as batch_op:
            batch_op.create_index(name, columns)
            batch_op.drop_index(drop)


def upgrade():
    _swap(('ix_audit_events_object_action', COLUMNS), 'ix_audit_events_object')


def downgrade():
    _swap(('ix_audit_events_object', COLUMNS[:2]), 'ix_audit_events_object_action')
