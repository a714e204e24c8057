"""Alerts are incidents of activity, not rows (issue 19): an acknowledgement covers an
alert (an account's activity, a source's campaign, a failed audit run) up to the member
it had grown to, ``through_at``; the same alert can be acknowledged again once it grew.
Failed audit runs were alerts before too: their acknowledgements cover the run.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 23:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("alert_acks") as batch:
        batch.add_column(sa.Column("through_at", UTC_DATETIME, nullable=True))
        batch.drop_constraint("uq_alert_acks_kind_ref", type_="unique")
        batch.create_unique_constraint("uq_alert_acks_kind_ref_through_at",
                                       ["kind", "ref", "through_at"])
    op.execute("UPDATE alert_acks SET through_at = acked_at WHERE kind = 'audit'")


def downgrade() -> None:
    # Later acknowledgements of a grown alert have no place in the old table: the
    # audit log keeps them.
    op.execute("DELETE FROM alert_acks WHERE through_at IS NOT NULL AND kind <> 'audit'")
    op.execute("DELETE FROM alert_acks WHERE id NOT IN (SELECT id FROM (SELECT min(id) AS id "
               "FROM alert_acks GROUP BY kind, ref) AS firsts)")
    with op.batch_alter_table("alert_acks") as batch:
        batch.drop_constraint("uq_alert_acks_kind_ref_through_at", type_="unique")
        batch.create_unique_constraint("uq_alert_acks_kind_ref", ["kind", "ref"])
        batch.drop_column("through_at")
