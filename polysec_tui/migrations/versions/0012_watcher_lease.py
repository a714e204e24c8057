"""The detector service's lease (`polysec watch`): one row that one watcher holds at a
time, with its heartbeat and the figures the dashboard shows about monitoring.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 16:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "watcher_lease",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(160), nullable=True),
        sa.Column("host", sa.String(128), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("acquired_at", UTC_DATETIME, nullable=True),
        sa.Column("heartbeat_at", UTC_DATETIME, nullable=True),
        sa.Column("caught_up_at", UTC_DATETIME, nullable=True),
        sa.Column("withdrawal_id", sa.BigInteger(), nullable=False),
        sa.Column("judged_total", sa.BigInteger(), nullable=False),
        sa.Column("judged_last_minute", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(400), nullable=True),
        sa.Column("last_error_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_watcher_lease")),
    )


def downgrade() -> None:
    op.drop_table("watcher_lease")
