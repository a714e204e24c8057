"""client 2FA reset (outbox, client sessions)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 00:00:00.000000
"""
from collections.abc import Sequence

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
