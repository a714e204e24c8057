"""Address-book events (`polysec ingest security-events`, kinds address_added,
address_whitelisted, address_removed): the destination they name, so that screening
counts an address the client saved long before as history (issue 21, item 3).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 22:40:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Compared exactly, as withdrawals' destinations are (0011).
ADDRESS = sa.String(128).with_variant(
    mysql.VARCHAR(128, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")


def upgrade() -> None:
    # Nullable, no default: a change of the catalogue only, however many events there are.
    op.add_column("security_events", sa.Column("address", ADDRESS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("security_events") as batch:
        batch.drop_column("address")
