"""A proposal's login thresholds run in shadow on new logins (issue 21, item 7): where
they disagree with those in force, a row of ``rule_set_login_shadows``; how many logins
they judged, ``rule_sets.shadow_logins``.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 13:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0029'
down_revision: str | None = '0028'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rule_set_login_shadows",
        sa.Column("rule_set_id", sa.Integer(), nullable=False),
        sa.Column("login_event_id", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("judged_at", UTC_DATETIME, nullable=False),
        sa.Column("live_severity", sa.String(length=8), nullable=True),
        sa.Column("shadow_severity", sa.String(length=8), nullable=True),
        sa.ForeignKeyConstraint(["rule_set_id"], ["rule_sets.id"],
                                name=op.f("fk_rule_set_login_shadows_rule_set_id_rule_sets")),
        sa.ForeignKeyConstraint(
            ["login_event_id"], ["login_events.id"],
            name=op.f("fk_rule_set_login_shadows_login_event_id_login_events")),
        sa.PrimaryKeyConstraint("rule_set_id", "login_event_id", "kind",
                                name=op.f("pk_rule_set_login_shadows")),
    )
    # Nullable, no default: an instant change of the catalogue on every engine.
    op.add_column("rule_sets", sa.Column("shadow_logins", BIG_ID, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rule_sets") as batch:
        batch.drop_column("shadow_logins")
    op.drop_table("rule_set_login_shadows")
