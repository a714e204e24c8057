"""withdrawals: drop the (account_id, requested_at) index. Migration 0007's
ix_withdrawals_account_history starts with the same two columns and serves every read
that used it, while each extra index costs every insert and every screening update its
own entry (on PostgreSQL an update that changes an indexed column writes a new entry in
every index of the row: this one was about a quarter of a batch's update time).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 06:00:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # MariaDB's foreign key on account_id keeps ix_withdrawals_account_history, which
    # starts with account_id.
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_withdrawals_account_id_requested_at'))


def downgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_withdrawals_account_id_requested_at'),
                              ['account_id', 'requested_at'], unique=False)
