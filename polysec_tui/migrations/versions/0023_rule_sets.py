"""Versioned rule sets (`polysec rules propose | backtest`): screening's thresholds and
weights changed only by a proposal, a backtest and a second officer's approval; each
verdict names the version it was judged by; proposals run in shadow (issue 21, item 7).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 22:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "rule_sets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("based_on", sa.Integer(), nullable=True),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("changes", JSON, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.Uuid(), nullable=False),
        sa.Column("proposed_at", UTC_DATETIME, nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("backtest", JSON, nullable=True),
        sa.Column("backtested_at", UTC_DATETIME, nullable=True),
        sa.Column("backtested_by", sa.Uuid(), nullable=True),
        sa.Column("activated_at", UTC_DATETIME, nullable=True),
        sa.Column("activated_by", sa.Uuid(), nullable=True),
        sa.Column("shadow_judged", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(["proposed_by"], ["officers.id"],
                                name=op.f("fk_rule_sets_proposed_by_officers")),
        sa.ForeignKeyConstraint(["request_id"], ["approval_requests.id"],
                                name=op.f("fk_rule_sets_request_id_approval_requests")),
        sa.ForeignKeyConstraint(["backtested_by"], ["officers.id"],
                                name=op.f("fk_rule_sets_backtested_by_officers")),
        sa.ForeignKeyConstraint(["activated_by"], ["officers.id"],
                                name=op.f("fk_rule_sets_activated_by_officers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_sets")),
    )
    op.create_index(op.f("ix_rule_sets_activated_at"), "rule_sets", ["activated_at"])
    op.create_table(
        "rule_set_shadows",
        sa.Column("rule_set_id", sa.Integer(), nullable=False),
        sa.Column("withdrawal_id", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("judged_at", UTC_DATETIME, nullable=False),
        sa.Column("live_score", sa.Float(), nullable=False),
        sa.Column("shadow_score", sa.Float(), nullable=False),
        sa.Column("live_held", sa.Boolean(), nullable=False),
        sa.Column("shadow_held", sa.Boolean(), nullable=False),
        sa.Column("live_rules", JSON, nullable=False),
        sa.Column("shadow_rules", JSON, nullable=False),
        sa.ForeignKeyConstraint(["rule_set_id"], ["rule_sets.id"],
                                name=op.f("fk_rule_set_shadows_rule_set_id_rule_sets")),
        sa.ForeignKeyConstraint(["withdrawal_id"], ["withdrawals.id"],
                                name=op.f("fk_rule_set_shadows_withdrawal_id_withdrawals")),
        sa.PrimaryKeyConstraint("rule_set_id", "withdrawal_id",
                                name=op.f("pk_rule_set_shadows")),
    )
    # Nullable, no default: an instant change of the catalogue on every engine, however
    # many verdicts there are.
    op.add_column("withdrawal_screenings", sa.Column("rule_set", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("withdrawal_screenings") as batch:
        batch.drop_column("rule_set")
    op.drop_table("rule_set_shadows")
    op.drop_index(op.f("ix_rule_sets_activated_at"), table_name="rule_sets")
    op.drop_table("rule_sets")
