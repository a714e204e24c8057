"""dashboard alerts: acknowledgements of high-severity events; on PostgreSQL, change
notifications for the live dashboard (see polysec_tui/services/monitoring/live.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 00:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Spelled out (not imported from services.live) so this revision never changes.
CHANNEL = "polysec_dashboard"
WATCHED_TABLES = ("login_events", "security_events", "withdrawals", "login_anomalies",
                  "audit_head", "audit_runs", "backups", "approval_requests", "incidents")
NOTIFY_FUNCTION = f"""
CREATE FUNCTION polysec_notify_dashboard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table('alert_acks',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('officer_id', sa.Uuid(), nullable=False),
    sa.Column('acked_at', UTC_DATETIME, nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['officer_id'], ['officers.id'], name=op.f('fk_alert_acks_officer_id_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_acks')),
    sa.UniqueConstraint('kind', 'ref', name=op.f('uq_alert_acks_kind_ref'))
    )
    if op.get_bind().dialect.name == "postgresql":
        # One notification per statement (not per row); identical notifications of a
        # transaction are delivered once, at commit.
        op.execute(NOTIFY_FUNCTION)
        for table in WATCHED_TABLES:
            op.execute(f"CREATE TRIGGER polysec_notify_dashboard AFTER INSERT OR UPDATE OR "
                       f"DELETE ON {table} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION polysec_notify_dashboard()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS polysec_notify_dashboard ON {table}")
        op.execute("DROP FUNCTION IF EXISTS polysec_notify_dashboard()")
    op.drop_table('alert_acks')
