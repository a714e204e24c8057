"""dashboard alerts: acknowledgements of high-severity events

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 00:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('alert_acks',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('officer_id', sa.Uuid(), nullable=False),
    sa.Column('acked_at', UTC_DATETIME, nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['officer_id'], ['officers.id'], name=op.f('fk_alert_acks_officer_id_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_acks')),
    sa.UniqueConstraint('kind', 'ref', name=op.f('uq_alert_acks_kind_ref'))
    )


def downgrade() -> None:
    op.drop_table('alert_acks')
