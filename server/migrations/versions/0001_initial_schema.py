"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 00:29:50.688924
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=255), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_at', ['at'], unique=False)

    op.create_table('control_documents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('doc_type', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('signed', sa.LargeBinary(), nullable=True),
    sa.Column('published_at', sa.DateTime(), nullable=False),
    sa.Column('published_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('doc_type', 'target', 'version', name='uq_control_documents_version')
    )
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_received_at', ['received_at'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('gate_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('reasons', sa.String(length=512), server_default='', nullable=False),
    sa.Column('alert', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('ts', sa.DateTime(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('late', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('credential_kind', sa.String(length=32), nullable=True),
    sa.Column('subject', sa.String(length=64), nullable=True),
    sa.Column('temperature_c', sa.Float(), nullable=True),
    sa.Column('credential_status', sa.String(length=16), nullable=True),
    sa.Column('operator', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.Column('purged', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_alert_id', ['alert', 'id'], unique=False)
        batch_op.create_index('ix_events_gate_seq', ['gate_id', 'seq'], unique=False)
        batch_op.create_index('ix_events_gate_ts', ['gate_id', 'ts', 'id'], unique=False)
        batch_op.create_index('ix_events_outcome_ts', ['outcome', 'ts'], unique=False)
        batch_op.create_index('ix_events_subject_ts', ['subject', 'ts'], unique=False)
        batch_op.create_index('ix_events_ts', ['ts', 'id'], unique=False)

    op.create_table('gates',
    sa.Column('gate_id', sa.String(length=64), nullable=False),
    sa.Column('min_seq', sa.BigInteger(), nullable=True),
    sa.Column('max_seq', sa.BigInteger(), nullable=True),
    sa.Column('event_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_event_at', sa.DateTime(), nullable=True),
    sa.Column('last_seen', sa.DateTime(), nullable=True),
    sa.Column('online', sa.Boolean(), nullable=True),
    sa.Column('state_at', sa.DateTime(), nullable=True),
    sa.Column('health', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('gate_id')
    )
    op.create_table('passes',
    sa.Column('pass_id', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('zones', sa.String(length=255), server_default='', nullable=False),
    sa.Column('not_before', sa.DateTime(), nullable=True),
    sa.Column('expires', sa.DateTime(), nullable=True),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('issued_by', sa.String(length=64), nullable=False),
    sa.Column('kid', sa.String(length=32), nullable=True),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoke_reason', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('pass_id')
    )
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.create_index('ix_passes_subject', ['subject'], unique=False)

    op.create_table('rollup_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('gate_id', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'gate_id', 'outcome', 'reason')
    )
    op.create_table('rollup_hourly',
    sa.Column('hour', sa.DateTime(), nullable=False),
    sa.Column('gate_id', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('hour', 'gate_id', 'outcome', 'reason')
    )
    with op.batch_alter_table('rollup_hourly', schema=None) as batch_op:
        batch_op.create_index('ix_rollup_hourly_gate_hour', ['gate_id', 'hour'], unique=False)

    op.create_table('status_entries',
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('subject')
    )
    op.create_table('subjects',
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('id_number', sa.String(length=64), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('household', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('subject')
    )
    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('auth_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )



def downgrade() -> None:

    op.drop_table('auth_tokens')
    op.drop_table('users')
    op.drop_table('subjects')
    op.drop_table('status_entries')
    with op.batch_alter_table('rollup_hourly', schema=None) as batch_op:
        batch_op.drop_index('ix_rollup_hourly_gate_hour')

    op.drop_table('rollup_hourly')
    op.drop_table('rollup_daily')
    with op.batch_alter_table('passes', schema=None) as batch_op:
        batch_op.drop_index('ix_passes_subject')

    op.drop_table('passes')
    op.drop_table('gates')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_ts')
        batch_op.drop_index('ix_events_subject_ts')
        batch_op.drop_index('ix_events_outcome_ts')
        batch_op.drop_index('ix_events_gate_ts')
        batch_op.drop_index('ix_events_gate_seq')
        batch_op.drop_index('ix_events_alert_id')

    op.drop_table('events')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_received_at')

    op.drop_table('dead_letters')
    op.drop_table('control_documents')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_at')

    op.drop_table('audit_log')

