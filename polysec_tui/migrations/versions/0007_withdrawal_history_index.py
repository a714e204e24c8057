"""withdrawal screening: covering indexes over each account's withdrawals and logins, so
the history probes of `withdrawals screen` (earlier withdrawals of the asset, to the
address, in the velocity and amount windows; the request's IP, country and network among
the recent successful logins) read the index alone (docs/screening.md). The logins'
(account_id, at) index becomes (account_id, at, success, ip, country, asn): same prefix
for every other per-account read, and no extra index to maintain on ingest.

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
    # Create before drop: MariaDB's foreign key on account_id needs an index that starts
    # with it at every moment.
    with op.batch_alter_table('login_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_events_account_id_at_success_ip_country_asn'),
                              ['account_id', 'at', 'success', 'ip', 'country', 'asn'],
                              unique=False)
        batch_op.drop_index(batch_op.f('ix_login_events_account_id_at'))
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.create_index('ix_withdrawals_account_history',
                              ['account_id', 'requested_at', 'asset', 'status', 'amount',
                               'address', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_index('ix_withdrawals_account_history')
    with op.batch_alter_table('login_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_events_account_id_at'), ['account_id', 'at'],
                              unique=False)
        batch_op.drop_index(batch_op.f('ix_login_events_account_id_at_success_ip_country_asn'))
