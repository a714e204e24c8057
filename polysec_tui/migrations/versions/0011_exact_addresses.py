"""Destination addresses compare exactly on MariaDB and MySQL too: their default
collation (utf8mb4_general_ci) folded case and accents, so blocklisting one address
matched others, and adding an address that differs only in case from a listed one broke
the unique key. SQLite and PostgreSQL compare bytes already: nothing changes there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 14:00:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("withdrawals", "address"), ("address_blocklist", "address"))


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} MODIFY {column} VARCHAR(128) "
                   f"CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL")


def upgrade() -> None:
    _collate("utf8mb4_bin")


def downgrade() -> None:
    _collate("utf8mb4_general_ci")
