"""IP reputation lists (`polysec iplists import`): address lists by category and ASN
tables, used by the login detectors and screening (issue 21, item 6).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 20:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ip_lists",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("published_at", UTC_DATETIME, nullable=True),
        sa.Column("imported_at", UTC_DATETIME, nullable=False),
        sa.Column("imported_by", sa.Uuid(), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["imported_by"], ["officers.id"],
                                name=op.f("fk_ip_lists_imported_by_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_ip_lists_name")),
    )
    op.create_table(
        "ip_list_ranges",
        sa.Column("list_id", BIG_ID, nullable=False),
        sa.Column("first", sa.String(32), nullable=False),
        sa.Column("last", sa.String(32), nullable=False),
        sa.Column("note", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(["list_id"], ["ip_lists.id"],
                                name=op.f("fk_ip_list_ranges_list_id_ip_lists")),
        sa.PrimaryKeyConstraint("list_id", "first", name=op.f("pk_ip_list_ranges")),
    )
    op.create_table(
        "asn_categories",
        sa.Column("list_id", BIG_ID, nullable=False),
        sa.Column("asn", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(["list_id"], ["ip_lists.id"],
                                name=op.f("fk_asn_categories_list_id_ip_lists")),
        sa.PrimaryKeyConstraint("list_id", "asn", name=op.f("pk_asn_categories")),
    )


def downgrade() -> None:
    op.drop_table("asn_categories")
    op.drop_table("ip_list_ranges")
    op.drop_table("ip_lists")
