"""login anomalies, login profiles, feature counts, analysis checkpoints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('login_anomalies',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Double(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('login_event_id', BIG_ID, nullable=False),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.Column('source_ip', sa.String(length=45), nullable=True),
    sa.Column('source_asn', sa.BigInteger(), nullable=True),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('details', JSON, nullable=False),
    sa.Column('detected_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_login_anomalies_account_id_accounts')),
    sa.ForeignKeyConstraint(['login_event_id'], ['login_events.id'], name=op.f('fk_login_anomalies_login_event_id_login_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_anomalies')),
    sa.UniqueConstraint('kind', 'login_event_id', name=op.f('uq_login_anomalies_kind_login_event_id'))
    )
    with op.batch_alter_table('login_anomalies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_anomalies_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_anomalies_account_id_at'), ['account_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_anomalies_login_event_id'), ['login_event_id'], unique=False)

    op.create_table('login_profiles',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('feature', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('last_seen_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_login_profiles_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', 'feature', 'value', name=op.f('pk_login_profiles'))
    )
    op.create_table('login_feature_counts',
    sa.Column('feature', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('feature', 'value', name=op.f('pk_login_feature_counts'))
    )
    checkpoints = op.create_table('analysis_checkpoints',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('login_id', sa.BigInteger(), nullable=False),
    sa.Column('security_event_id', sa.BigInteger(), nullable=False),
    sa.Column('runs', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', UTC_DATETIME, nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_analysis_checkpoints'))
    )
    # The row analysis runs lock and advance (recreated by the service if missing).
    op.bulk_insert(checkpoints, [{"name": "logins", "login_id": 0, "security_event_id": 0,
                                  "runs": 0, "updated_at": None}])
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_target', ['target'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_target')
    op.drop_table('analysis_checkpoints')
    op.drop_table('login_feature_counts')
    op.drop_table('login_profiles')
    op.drop_table('login_anomalies')
