"""client 2FA reset (outbox, client sessions)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 00:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('twofa_reenrol_required', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))

    op.create_table('client_sessions',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('last_seen_at', UTC_DATETIME, nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('device_id', sa.String(length=128), nullable=True),
    sa.Column('revoked_at', UTC_DATETIME, nullable=True),
    sa.Column('revoked_reason', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_client_sessions_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_sessions')),
    sa.UniqueConstraint('external_id', name=op.f('uq_client_sessions_external_id'))
    )
    with op.batch_alter_table('client_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_client_sessions_account_id_revoked_at'), ['account_id', 'revoked_at'], unique=False)

    op.create_table('client_notifications',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('sent_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_client_notifications_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_client_notifications'))
    )
    with op.batch_alter_table('client_notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_client_notifications_sent_at_id'), ['sent_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_client_notifications_account_id_created_at'), ['account_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_table('client_notifications')
    op.drop_table('client_sessions')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('twofa_reenrol_required')
