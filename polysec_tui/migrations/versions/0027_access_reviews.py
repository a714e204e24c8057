"""The periodic access review (`polysec officer review`): an admin who did not grant an
officer's access confirms or revokes it (issue 22, item 5).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 03:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0027'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "access_reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("reviewer_id", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["officer_id"], ["officers.id"],
                                name=op.f("fk_access_reviews_officer_id_officers")),
        sa.ForeignKeyConstraint(["reviewer_id"], ["officers.id"],
                                name=op.f("fk_access_reviews_reviewer_id_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_reviews")),
    )
    op.create_index(op.f("ix_access_reviews_officer_id_at"), "access_reviews",
                    ["officer_id", "at"])


def downgrade() -> None:
    # The table's indexes go with it (MariaDB refuses to drop one a foreign key needs).
    op.drop_table("access_reviews")
