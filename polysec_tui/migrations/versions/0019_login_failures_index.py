"""An index of the failed logins alone (partial on SQLite and PostgreSQL), from which a
batch run finds the sliding windows that can fire: at 5,000,000 logins the look-back of
an incremental run counts its failures in milliseconds instead of reading every login
of the day (issue 18's incremental budget).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 15:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_login_events_failures", ["success", "at", "account_id", "ip", "asn"],
            unique=False, sqlite_where=sa.text("success = 0"),
            postgresql_where=sa.text("success = false"))


def downgrade() -> None:
    with op.batch_alter_table("login_events", schema=None) as batch_op:
        batch_op.drop_index("ix_login_events_failures")
