"""The platform's asset prices in a reference currency (`polysec ingest prices`), so that
withdrawals in different assets are compared by their value (issue 20).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 12:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AMOUNT = sa.Numeric(38, 18).with_variant(sa.String(64), "sqlite")


def upgrade() -> None:
    op.create_table(
        "asset_prices",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("asset", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("price", AMOUNT, nullable=False),
        sa.Column("ingested_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_prices")),
        sa.UniqueConstraint("currency", "asset", "at",
                            name=op.f("uq_asset_prices_currency_asset_at")),
    )


def downgrade() -> None:
    op.drop_table("asset_prices")
