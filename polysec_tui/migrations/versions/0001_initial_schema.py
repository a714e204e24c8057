"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 20:25:58.958451
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
AMOUNT = sa.Numeric(38, 18).with_variant(sa.String(64), "sqlite")
CIPHERTEXT = sa.LargeBinary().with_variant(mysql.BLOB(), "mysql", "mariadb")
BLIND_INDEX = sa.LargeBinary(16).with_variant(mysql.VARBINARY(16), "mysql", "mariadb")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('email_enc', CIPHERTEXT, nullable=False),
    sa.Column('email_bidx', BLIND_INDEX, nullable=False),
    sa.Column('full_name_enc', CIPHERTEXT, nullable=True),
    sa.Column('phone_enc', CIPHERTEXT, nullable=True),
    sa.Column('date_of_birth_enc', CIPHERTEXT, nullable=True),
    sa.Column('address_enc', CIPHERTEXT, nullable=True),
    sa.Column('ingested_at', UTC_DATETIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('external_id', name=op.f('uq_accounts_external_id'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_email_bidx'), ['email_bidx'], unique=False)

    op.create_table('audit_log',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.Column('officer', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=256), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_log'))
    )
    op.create_index(op.f('ix_audit_log_action'), 'audit_log', ['action'], unique=False)
    audit_head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    # The chain starts here: appenders lock and advance this one row.
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table('backups',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('engine', sa.String(length=16), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('alembic_revision', sa.String(length=32), nullable=False),
    sa.Column('field_key_ids', JSON, nullable=False),
    sa.Column('verified_at', UTC_DATETIME, nullable=True),
    sa.Column('shipped_at', UTC_DATETIME, nullable=True),
    sa.Column('shipped_to', sa.String(length=1024), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backups'))
    )
    op.create_table('database_info',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_database_info'))
    )
    op.create_table('demo_scenarios',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('account_external_id', sa.String(length=64), nullable=True),
    sa.Column('source_ip', sa.String(length=45), nullable=True),
    sa.Column('started_at', UTC_DATETIME, nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_demo_scenarios'))
    )
    op.create_table('key_usage',
    sa.Column('key_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('encryptions', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_key_usage'))
    )
    op.create_table('officers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('totp_secret_enc', CIPHERTEXT, nullable=True),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('locked_until', UTC_DATETIME, nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('last_login_at', UTC_DATETIME, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_officers')),
    sa.UniqueConstraint('name', name=op.f('uq_officers_name'))
    )
    op.create_table('approval_requests',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('requester_id', sa.Uuid(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('decided_by', sa.Uuid(), nullable=True),
    sa.Column('decided_at', UTC_DATETIME, nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['decided_by'], ['officers.id'], name=op.f('fk_approval_requests_decided_by_officers')),
    sa.ForeignKeyConstraint(['requester_id'], ['officers.id'], name=op.f('fk_approval_requests_requester_id_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approval_requests'))
    )
    with op.batch_alter_table('approval_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_requests_status_expires_at'), ['status', 'expires_at'], unique=False)

    op.create_table('audit_runs',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('started_at', UTC_DATETIME, nullable=False),
    sa.Column('finished_at', UTC_DATETIME, nullable=True),
    sa.Column('officer_id', sa.Uuid(), nullable=True),
    sa.Column('result', sa.String(length=8), nullable=True),
    sa.ForeignKeyConstraint(['officer_id'], ['officers.id'], name=op.f('fk_audit_runs_officer_id_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_runs'))
    )
    op.create_table('balances',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('amount', AMOUNT, nullable=False),
    sa.Column('updated_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_balances_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', 'asset', name=op.f('pk_balances'))
    )
    op.create_table('demo_scenario_events',
    sa.Column('scenario_id', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['scenario_id'], ['demo_scenarios.id'], name=op.f('fk_demo_scenario_events_scenario_id_demo_scenarios')),
    sa.PrimaryKeyConstraint('scenario_id', 'event_type', 'external_id', name=op.f('pk_demo_scenario_events'))
    )
    op.create_table('holds',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('expires_at', UTC_DATETIME, nullable=True),
    sa.Column('released_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_holds_account_id_accounts')),
    sa.ForeignKeyConstraint(['created_by'], ['officers.id'], name=op.f('fk_holds_created_by_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holds'))
    )
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_holds_account_id_expires_at'), ['account_id', 'expires_at'], unique=False)

    op.create_table('login_events',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('failure_reason', sa.String(length=32), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('asn', sa.BigInteger(), nullable=True),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('region', sa.String(length=128), nullable=True),
    sa.Column('city', sa.String(length=128), nullable=True),
    sa.Column('latitude', sa.Double(), nullable=True),
    sa.Column('longitude', sa.Double(), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('browser', sa.String(length=64), nullable=True),
    sa.Column('os', sa.String(length=64), nullable=True),
    sa.Column('device_type', sa.String(length=32), nullable=True),
    sa.Column('device_id', sa.String(length=128), nullable=True),
    sa.Column('rtt_ms', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_login_events_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_events')),
    sa.UniqueConstraint('external_id', name=op.f('uq_login_events_external_id'))
    )
    with op.batch_alter_table('login_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_events_account_id_at'), ['account_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_events_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_events_ip_at'), ['ip', 'at'], unique=False)

    op.create_table('officer_sessions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('officer_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('last_seen_at', UTC_DATETIME, nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=False),
    sa.Column('revoked_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['officer_id'], ['officers.id'], name=op.f('fk_officer_sessions_officer_id_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_officer_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_officer_sessions_token_hash'))
    )
    with op.batch_alter_table('officer_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_officer_sessions_officer_id'), ['officer_id'], unique=False)

    op.create_table('security_events',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('device_id', sa.String(length=128), nullable=True),
    sa.Column('details', JSON, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_security_events_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_security_events')),
    sa.UniqueConstraint('external_id', name=op.f('uq_security_events_external_id'))
    )
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_security_events_account_id_at'), ['account_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_security_events_at'), ['at'], unique=False)

    op.create_table('totp_enrolments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('secret_enc', CIPHERTEXT, nullable=False),
    sa.Column('enrolled_at', UTC_DATETIME, nullable=False),
    sa.Column('last_used_step', sa.BigInteger(), nullable=True),
    sa.Column('last_used_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_totp_enrolments_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_totp_enrolments')),
    sa.UniqueConstraint('account_id', name=op.f('uq_totp_enrolments_account_id'))
    )
    op.create_table('withdrawals',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('requested_at', UTC_DATETIME, nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('amount', AMOUNT, nullable=False),
    sa.Column('available_balance', AMOUNT, nullable=True),
    sa.Column('address', sa.String(length=128), nullable=False),
    sa.Column('address_label', sa.String(length=128), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('device_id', sa.String(length=128), nullable=True),
    sa.Column('login_external_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('risk_score', sa.Float(), nullable=True),
    sa.Column('screened_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_withdrawals_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawals')),
    sa.UniqueConstraint('external_id', name=op.f('uq_withdrawals_external_id'))
    )
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_withdrawals_account_id_requested_at'), ['account_id', 'requested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_withdrawals_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_withdrawals_requested_at'), ['requested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_withdrawals_status_requested_at'), ['status', 'requested_at'], unique=False)

    op.create_table('audit_findings',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('run_id', BIG_ID, nullable=False),
    sa.Column('check_name', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('evidence', JSON, nullable=False),
    sa.Column('remediation', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['audit_runs.id'], name=op.f('fk_audit_findings_run_id_audit_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_findings'))
    )
    with op.batch_alter_table('audit_findings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_findings_run_id'), ['run_id'], unique=False)

    op.create_table('review_decisions',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('withdrawal_id', BIG_ID, nullable=False),
    sa.Column('officer_id', sa.Uuid(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('decided_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['officer_id'], ['officers.id'], name=op.f('fk_review_decisions_officer_id_officers')),
    sa.ForeignKeyConstraint(['withdrawal_id'], ['withdrawals.id'], name=op.f('fk_review_decisions_withdrawal_id_withdrawals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_decisions'))
    )
    with op.batch_alter_table('review_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_decisions_withdrawal_id'), ['withdrawal_id'], unique=False)

    op.create_table('twofa_reset_requests',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('approval_id', sa.Uuid(), nullable=False),
    sa.Column('evidence', JSON, nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_twofa_reset_requests_account_id_accounts')),
    sa.ForeignKeyConstraint(['approval_id'], ['approval_requests.id'], name=op.f('fk_twofa_reset_requests_approval_id_approval_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twofa_reset_requests'))
    )
    with op.batch_alter_table('twofa_reset_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_twofa_reset_requests_account_id'), ['account_id'], unique=False)



def downgrade() -> None:
    op.drop_table('twofa_reset_requests')
    op.drop_table('review_decisions')
    op.drop_table('audit_findings')
    op.drop_table('withdrawals')
    op.drop_table('totp_enrolments')
    op.drop_table('security_events')
    op.drop_table('officer_sessions')
    op.drop_table('login_events')
    op.drop_table('holds')
    op.drop_table('demo_scenario_events')
    op.drop_table('balances')
    op.drop_table('audit_runs')
    op.drop_table('approval_requests')
    op.drop_table('officers')
    op.drop_table('key_usage')
    op.drop_table('demo_scenarios')
    op.drop_table('database_info')
    op.drop_table('backups')
    op.drop_table('audit_head')
    op.drop_table('audit_log')
    op.drop_table('accounts')
