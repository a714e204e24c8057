"""An index of each account's logins by device: screening asks whether a login's
device had logged in to the account a day before it (`vouch_hours`), one seek per
question however many devices an account's logins name (a client scripting logins with
a fresh device id each time could otherwise make every probe read the account's whole
history).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05 03:30:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0026'
down_revision: str | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_events_account_id_device_id_at"),
                              ["account_id", "device_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_events_account_id_device_id_at"))
