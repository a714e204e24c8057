"""Sanctions lists and their digital currency addresses (`polysec sanctions import`):
screening holds a withdrawal to a listed address as critical, and a list change
re-screens past destinations (issue 21).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 17:30:00.000000
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Exact comparison on MariaDB too (migration 0011).
ADDRESS = sa.String(128).with_variant(
    mysql.VARCHAR(128, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")


# The named lock rows (services/withdrawals/locks.py), made here: two first takers
# creating one at the same moment would collide on its key.
LOCKS = ("screening", "sanctions")
checkpoints = sa.table("analysis_checkpoints", sa.column("name"), sa.column("login_id"),
                       sa.column("security_event_id"), sa.column("runs"),
                       sa.column("updated_at", sa.DateTime()))


def upgrade() -> None:
    existing = set(op.get_bind().execute(
        sa.select(checkpoints.c.name).where(checkpoints.c.name.in_(LOCKS))).scalars())
    now = datetime.now(UTC).replace(tzinfo=None)
    missing = [{"name": n, "login_id": 0, "security_event_id": 0, "runs": 0,
                "updated_at": now} for n in LOCKS if n not in existing]
    if missing:
        op.bulk_insert(checkpoints, missing)
    op.create_table(
        "sanctions_lists",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("source_format", sa.String(32), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("published_at", UTC_DATETIME, nullable=True),
        sa.Column("imported_at", UTC_DATETIME, nullable=False),
        sa.Column("imported_by", sa.Uuid(), nullable=True),
        sa.Column("addresses", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["imported_by"], ["officers.id"],
                                name=op.f("fk_sanctions_lists_imported_by_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sanctions_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_sanctions_lists_name")),
    )
    op.create_table(
        "sanctioned_addresses",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("list_id", BIG_ID, nullable=False),
        sa.Column("address", ADDRESS, nullable=False),
        sa.Column("currency", sa.String(32), nullable=True),
        sa.Column("entity", sa.String(256), nullable=False),
        sa.Column("entity_ref", sa.String(128), nullable=False),
        sa.Column("listed_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["sanctions_lists.id"],
                                name=op.f("fk_sanctioned_addresses_list_id_sanctions_lists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sanctioned_addresses")),
        sa.UniqueConstraint("list_id", "address",
                            name=op.f("uq_sanctioned_addresses_list_id_address")),
    )
    op.create_index(op.f("ix_sanctioned_addresses_address"), "sanctioned_addresses",
                    ["address"], unique=False)
    op.create_index(op.f("ix_sanctioned_addresses_listed_at"), "sanctioned_addresses",
                    ["listed_at"], unique=False)
    op.create_table(
        "sanctioned_payments",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("withdrawal_id", BIG_ID, nullable=False),
        sa.Column("list_id", BIG_ID, nullable=False),
        sa.Column("found_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["withdrawal_id"], ["withdrawals.id"],
                                name=op.f("fk_sanctioned_payments_withdrawal_id_withdrawals")),
        sa.ForeignKeyConstraint(["list_id"], ["sanctions_lists.id"],
                                name=op.f("fk_sanctioned_payments_list_id_sanctions_lists")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sanctioned_payments")),
        sa.UniqueConstraint("withdrawal_id", "list_id",
                            name=op.f("uq_sanctioned_payments_withdrawal_id_list_id")),
    )
    op.create_index(op.f("ix_sanctioned_payments_found_at"), "sanctioned_payments",
                    ["found_at"], unique=False)


def downgrade() -> None:
    op.execute(checkpoints.delete().where(checkpoints.c.name == "sanctions"))
    op.drop_index(op.f("ix_sanctioned_payments_found_at"), table_name="sanctioned_payments")
    op.drop_table("sanctioned_payments")
    op.drop_index(op.f("ix_sanctioned_addresses_listed_at"), table_name="sanctioned_addresses")
    op.drop_index(op.f("ix_sanctioned_addresses_address"), table_name="sanctioned_addresses")
    op.drop_table("sanctioned_addresses")
    op.drop_table("sanctions_lists")
