"""The SIEM export (`[export]`, services/monitoring/export.py): the outbox of events in
the order they are sent, each destination's cursor, the alerts as last reported, and
the webhook events that failed every retry (issue 22, item 4).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 03:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0025'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "export_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_events")),
        sa.UniqueConstraint("audit_seq", name=op.f("uq_export_events_audit_seq")),
    )
    op.create_index(op.f("ix_export_events_at"), "export_events", ["at"])
    op.create_table(
        "export_cursors",
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(400), nullable=True),
        sa.Column("last_error_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_export_cursors")),
    )
    op.create_table(
        "export_alert_states",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_export_alert_states")),
    )
    op.create_table(
        "export_dead_letters",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("destination", sa.String(80), nullable=False),
        sa.Column("event_id", BIG_ID, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(400), nullable=False),
        sa.Column("failed_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["export_events.id"],
                                name=op.f("fk_export_dead_letters_event_id_export_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_dead_letters")),
        sa.UniqueConstraint("destination", "event_id",
                            name=op.f("uq_export_dead_letters_destination_event_id")),
    )


def downgrade() -> None:
    op.drop_table("export_dead_letters")
    op.drop_table("export_alert_states")
    op.drop_table("export_cursors")
    op.drop_index(op.f("ix_export_events_at"), table_name="export_events")
    op.drop_table("export_events")
