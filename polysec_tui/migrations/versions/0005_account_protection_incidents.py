"""account protection and incidents (API keys, password reset flag, incidents)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 01:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_reset_required', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_table('api_keys',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=True),
    sa.Column('can_withdraw', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('revoked_at', UTC_DATETIME, nullable=True),
    sa.Column('revoked_reason', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_api_keys_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('external_id', name=op.f('uq_api_keys_external_id'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_account_id_revoked_at'), ['account_id', 'revoked_at'], unique=False)
    op.create_table('incidents',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=True),
    sa.Column('opened_by', sa.Uuid(), nullable=False),
    sa.Column('opened_at', UTC_DATETIME, nullable=False),
    sa.Column('updated_at', UTC_DATETIME, nullable=False),
    sa.Column('closed_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['opened_by'], ['officers.id'], name=op.f('fk_incidents_opened_by_officers')),
    sa.ForeignKeyConstraint(['owner_id'], ['officers.id'], name=op.f('fk_incidents_owner_id_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents'))
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incidents_state_opened_at'), ['state', 'opened_at'], unique=False)
    op.create_table('incident_links',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('incident_id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('added_by', sa.Uuid(), nullable=False),
    sa.Column('added_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['added_by'], ['officers.id'], name=op.f('fk_incident_links_added_by_officers')),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_incident_links_incident_id_incidents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_links')),
    sa.UniqueConstraint('incident_id', 'kind', 'ref', name=op.f('uq_incident_links_incident_id_kind_ref'))
    )
    with op.batch_alter_table('incident_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incident_links_kind_ref'), ['kind', 'ref'], unique=False)
    op.create_table('incident_notes',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('incident_id', BIG_ID, nullable=False),
    sa.Column('officer_id', sa.Uuid(), nullable=False),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_incident_notes_incident_id_incidents')),
    sa.ForeignKeyConstraint(['officer_id'], ['officers.id'], name=op.f('fk_incident_notes_officer_id_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_notes'))
    )
    with op.batch_alter_table('incident_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incident_notes_incident_id'), ['incident_id'], unique=False)


def downgrade() -> None:
    op.drop_table('incident_notes')
    op.drop_table('incident_links')
    op.drop_table('incidents')
    op.drop_table('api_keys')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('password_reset_required')
