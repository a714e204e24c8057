"""Notifications to one officer's console: the outcome of their four-eyes requests, a
claim reassigned away from them or expired (issue 19).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 22:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "officer_notifications",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("subject", sa.String(160), nullable=True),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(["officer_id"], ["officers.id"],
                                name=op.f("fk_officer_notifications_officer_id_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officer_notifications")),
    )
    op.create_index(op.f("ix_officer_notifications_officer_id_delivered_at_id"),
                    "officer_notifications", ["officer_id", "delivered_at", "id"])


def downgrade() -> None:
    # The index goes with the table (MariaDB refuses to drop an index a foreign key uses).
    op.drop_table("officer_notifications")
