"""withdrawal screening: one covering index over each account's withdrawals, so the
history probes of `withdrawals screen` (earlier withdrawals of the asset, to the address,
in the velocity and amount windows) read the index alone (docs/screening.md)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 02:50:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.create_index('ix_withdrawals_account_history',
                              ['account_id', 'requested_at', 'asset', 'status', 'amount',
                               'address'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_index('ix_withdrawals_account_history')
