"""Snoozing an alert's subject (an account, a source, a detector on an account) for a
bounded time, audited and listed (issue 19).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 23:58:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_snoozes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("rule", sa.String(48), nullable=True),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("until", UTC_DATETIME, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["officer_id"], ["officers.id"],
                                name=op.f("fk_alert_snoozes_officer_id_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_snoozes")),
    )
    op.create_index(op.f("ix_alert_snoozes_until"), "alert_snoozes", ["until"])


def downgrade() -> None:
    op.drop_table("alert_snoozes")
