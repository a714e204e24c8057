"""withdrawal screening (blocklist, rule hits, review columns)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('address_blocklist',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('address', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('added_by', sa.Uuid(), nullable=True),
    sa.Column('added_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['added_by'], ['officers.id'], name=op.f('fk_address_blocklist_added_by_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_address_blocklist')),
    sa.UniqueConstraint('address', name=op.f('uq_address_blocklist_address'))
    )
    op.create_table('withdrawal_flags',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('withdrawal_id', BIG_ID, nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('score', sa.Double(), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('details', JSON, nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['withdrawal_id'], ['withdrawals.id'], name=op.f('fk_withdrawal_flags_withdrawal_id_withdrawals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawal_flags')),
    sa.UniqueConstraint('withdrawal_id', 'rule', name=op.f('uq_withdrawal_flags_withdrawal_id_rule'))
    )
    with op.batch_alter_table('withdrawal_flags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_withdrawal_flags_rule_withdrawal_id'), ['rule', 'withdrawal_id'], unique=False)

    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column('decided_by', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('decided_at', UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column('approval_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_withdrawals_claimed_by_officers'), 'officers', ['claimed_by'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_withdrawals_decided_by_officers'), 'officers', ['decided_by'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_withdrawals_approval_id_approval_requests'), 'approval_requests', ['approval_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_withdrawals_status_risk_score'), ['status', 'risk_score'], unique=False)
        batch_op.create_index(batch_op.f('ix_withdrawals_screened_at'), ['screened_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_withdrawals_screened_at'))
        batch_op.drop_index(batch_op.f('ix_withdrawals_status_risk_score'))
        batch_op.drop_constraint(batch_op.f('fk_withdrawals_approval_id_approval_requests'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_withdrawals_decided_by_officers'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_withdrawals_claimed_by_officers'), type_='foreignkey')
        batch_op.drop_column('approval_id')
        batch_op.drop_column('decided_at')
        batch_op.drop_column('decided_by')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('claimed_by')
    op.drop_table('withdrawal_flags')
    op.drop_table('address_blocklist')
