"""Restore drills (`polysec backup drill`): the newest backup restored into a scratch
database and checked there, each drill a signed record (issue 22).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 18:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "backup_drills",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("backup_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("finished_at", UTC_DATETIME, nullable=False),
        sa.Column("officer", sa.String(64), nullable=False),
        sa.Column("result", sa.String(8), nullable=False),
        sa.Column("restore_seconds", sa.Double(), nullable=True),
        sa.Column("total_seconds", sa.Double(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("signer", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_drills")),
    )
    op.create_index(op.f("ix_backup_drills_started_at"), "backup_drills", ["started_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backup_drills_started_at"), table_name="backup_drills")
    op.drop_table("backup_drills")
