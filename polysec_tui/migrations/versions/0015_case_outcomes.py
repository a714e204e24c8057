"""Outcomes of decisions and alert closures (confirmed fraud, false positive, benign),
with the rules that had fired, for `polysec rules report` (issue 19).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 23:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "case_outcomes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("officer_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("rules", JSON, nullable=False),
        sa.ForeignKeyConstraint(["officer_id"], ["officers.id"],
                                name=op.f("fk_case_outcomes_officer_id_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_outcomes")),
    )
    op.create_index(op.f("ix_case_outcomes_at"), "case_outcomes", ["at"])
    op.create_index(op.f("ix_case_outcomes_subject"), "case_outcomes", ["subject"])


def downgrade() -> None:
    op.drop_table("case_outcomes")
