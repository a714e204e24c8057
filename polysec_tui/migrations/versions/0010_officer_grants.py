"""officer_grants: every privilege grant an officer received (creation, a raised role,
re-enabling, a new authenticator or password), with who asked and who approved, so that
no officer can become their own second pair of eyes; approval_requests.sealed_enc carries
a request's secrets (F1) to its execution.

Existing officers get their grants from the audit log: the admin of `polysec init`, each
`officer.add` (asked by the officer who ran it; the first senior or admin that the init
admin added counts as the set-up's second admin) and each `officer.enable`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00.000000
"""
import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
CIPHERTEXT = sa.LargeBinary().with_variant(mysql.BLOB(), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table('approval_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed_enc', CIPHERTEXT, nullable=True))
    grants = op.create_table('officer_grants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('officer_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.Uuid(), nullable=True),
    sa.Column('approved_by', sa.Uuid(), nullable=True),
    sa.Column('request_id', sa.Uuid(), nullable=True),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['approved_by'], ['officers.id'], name=op.f('fk_officer_grants_approved_by_officers')),
    sa.ForeignKeyConstraint(['officer_id'], ['officers.id'], name=op.f('fk_officer_grants_officer_id_officers')),
    sa.ForeignKeyConstraint(['request_id'], ['approval_requests.id'], name=op.f('fk_officer_grants_request_id_approval_requests')),
    sa.ForeignKeyConstraint(['requested_by'], ['officers.id'], name=op.f('fk_officer_grants_requested_by_officers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_officer_grants'))
    )
    with op.batch_alter_table('officer_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_officer_grants_officer_id'), ['officer_id'], unique=False)
    assert grants is not None
    _backfill(grants)
    # A pending authenticator reset of the old kind gave the new secret to its approver
    # and carries none for the new executor: it is closed, to be asked for again.
    op.execute("UPDATE approval_requests SET status = 'denied', decision_note = "
               "'closed by the 0010 upgrade: ask again (the new secret now goes to the asker)' "
               "WHERE kind = 'officer.totp_reset' AND status = 'pending'")


def _backfill(grants: sa.Table) -> None:
    # Typed views of the two tables, so that ids and times come back as Python values.
    officers_t = sa.table('officers', sa.column('id', sa.Uuid()), sa.column('name', sa.String()),
                          sa.column('role', sa.String()), sa.column('created_at', UTC_DATETIME))
    log_t = sa.table('audit_log', sa.column('seq', sa.BigInteger()), sa.column('at', UTC_DATETIME),
                     sa.column('officer', sa.String()), sa.column('action', sa.String()),
                     sa.column('target', sa.String()), sa.column('details', sa.Text()))
    bind = op.get_bind()
    officers = {name: (oid, role, created) for oid, name, role, created in bind.execute(
        sa.select(officers_t.c.id, officers_t.c.name, officers_t.c.role, officers_t.c.created_at))}
    kinds = {"officer.bootstrap": "init", "officer.add": "create", "officer.enable": "enable"}
    rows = []
    explained = set()
    entries = bind.execute(sa.select(log_t.c.at, log_t.c.officer, log_t.c.action, log_t.c.target,
                                     log_t.c.details)
                           .where(log_t.c.action.in_(list(kinds))).order_by(log_t.c.seq))
    init_admin = None
    second_admin_seen = False
    for at, actor, action, target, details in entries:
        name = (target or "").removeprefix("officer:")
        if name not in officers:
            continue
        oid, role, _created = officers[name]
        kind = kinds[action]
        asker = officers.get(actor)
        if kind == "init":
            init_admin = name
        elif kind == "create" and _role(details) in ("senior", "admin"):
            if not second_admin_seen and actor == init_admin:
                kind = "setup"
            second_admin_seen = True
        rows.append({"id": uuid.uuid4(), "officer_id": oid, "kind": kind, "role": role,
                     "requested_by": None if kind == "init" or asker is None else asker[0],
                     "approved_by": None, "request_id": None, "at": at})
        explained.add(name)
    # An officer the log does not explain (entries of a database restored without them)
    # is recorded as created by someone unknown, at its creation time.
    for name, (oid, role, created) in officers.items():
        if name not in explained:
            rows.append({"id": uuid.uuid4(), "officer_id": oid, "kind": "create", "role": role,
                         "requested_by": None, "approved_by": None, "request_id": None,
                         "at": created})
    if rows:
        op.bulk_insert(grants, rows)


def _role(details: str | None) -> str | None:
    try:
        role = json.loads(details or "{}").get("role")
    except (ValueError, AttributeError):
        return None
    return role if isinstance(role, str) else None


def downgrade() -> None:
    # The index goes with the table (MariaDB refuses to drop an index a foreign key uses).
    op.drop_table('officer_grants')
    with op.batch_alter_table('approval_requests', schema=None) as batch_op:
        batch_op.drop_column('sealed_enc')
