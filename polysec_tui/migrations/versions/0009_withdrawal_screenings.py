"""withdrawal_screenings: screening's verdict (when, risk score) moves out of the
withdrawal row into a table of its own, so that recording a verdict only inserts.

On PostgreSQL an UPDATE that changes an indexed column (screened_at and risk_score were
indexed) writes a new entry in every index of the row, seven of them, and leaves the
old ones dead under the history probes of later batches: about half of screening's time
on a large backlog. A withdrawal without a row here is not screened yet.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 08:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('withdrawal_screenings',
    sa.Column('withdrawal_id', BIG_ID, autoincrement=False, nullable=False),
    sa.Column('screened_at', UTC_DATETIME, nullable=False),
    sa.Column('risk_score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['withdrawal_id'], ['withdrawals.id'], name=op.f('fk_withdrawal_screenings_withdrawal_id_withdrawals')),
    sa.PrimaryKeyConstraint('withdrawal_id', name=op.f('pk_withdrawal_screenings'))
    )
    with op.batch_alter_table('withdrawal_screenings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_withdrawal_screenings_screened_at'), ['screened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_withdrawal_screenings_risk_score'), ['risk_score'], unique=False)

    op.execute("INSERT INTO withdrawal_screenings (withdrawal_id, screened_at, risk_score) "
               "SELECT id, screened_at, COALESCE(risk_score, 0) FROM withdrawals "
               "WHERE screened_at IS NOT NULL")
    # In place (SQLite 3.35+ drops a column itself): a batch copy of the table would drop
    # the old withdrawals table, which the verdicts and hits reference.
    with op.batch_alter_table('withdrawals', schema=None, recreate='never') as batch_op:
        batch_op.drop_index(batch_op.f('ix_withdrawals_screened_at'))
        batch_op.drop_index(batch_op.f('ix_withdrawals_status_risk_score'))
        batch_op.drop_column('screened_at')
        batch_op.drop_column('risk_score')


def downgrade() -> None:
    with op.batch_alter_table('withdrawals', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('risk_score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('screened_at', UTC_DATETIME, nullable=True))
        batch_op.create_index(batch_op.f('ix_withdrawals_status_risk_score'), ['status', 'risk_score'], unique=False)
        batch_op.create_index(batch_op.f('ix_withdrawals_screened_at'), ['screened_at'], unique=False)
    op.execute("UPDATE withdrawals SET "
               "screened_at = (SELECT s.screened_at FROM withdrawal_screenings s "
               "WHERE s.withdrawal_id = withdrawals.id), "
               "risk_score = (SELECT s.risk_score FROM withdrawal_screenings s "
               "WHERE s.withdrawal_id = withdrawals.id) "
               "WHERE id IN (SELECT withdrawal_id FROM withdrawal_screenings)")
    with op.batch_alter_table('withdrawal_screenings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_withdrawal_screenings_risk_score'))
        batch_op.drop_index(batch_op.f('ix_withdrawal_screenings_screened_at'))
    op.drop_table('withdrawal_screenings')
