"""officer_grants: every privilege grant an officer received (creation, a raised role,
re-enabling, a new authenticator or password), with who asked and who approved, so that
no officer can become their own second pair of eyes; approval_requests.sealed_enc carries
a request's secrets (F1) to its execution.

Existing officers get their grants from the audit log: the bootstrap admin, each
`officer.add` (asked by the officer who ran it) and each `officer.enable`.

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


def _backfill(grants: sa.Table) -> None:
    bind = op.get_bind()
    officers = {name: (oid, role) for oid, name, role in bind.execute(
        sa.text("SELECT id, name, role FROM officers"))}
    ids = {name: oid for name, (oid, _role) in officers.items()}
    rows = []
    granted = set()
    entries = bind.execute(sa.text(
        "SELECT at, officer, action, target FROM audit_log WHERE action IN "
        "('officer.bootstrap', 'officer.add', 'officer.enable') ORDER BY seq"))
    for at, actor, action, target in entries:
        name = (target or "").removeprefix("officer:")
        if name not in officers:
            continue
        oid, role = officers[name]
        kind = {"officer.bootstrap": "bootstrap", "officer.add": "create",
                "officer.enable": "enable"}[action]
        rows.append({"id": uuid.UUID(bytes=uuid.uuid4().bytes), "officer_id": _uuid(oid),
                     "kind": kind, "role": role,
                     "requested_by": None if kind == "bootstrap" else _uuid(ids.get(actor)),
                     "approved_by": None, "request_id": None, "at": at})
        granted.add(name)
    # An officer the log does not explain (a log pruned before this revision) is
    # recorded as created by someone unknown at its creation time.
    for name, (oid, role) in officers.items():
        if name not in granted:
            created = bind.execute(sa.text("SELECT created_at FROM officers WHERE id = :i"),
                                   {"i": oid}).scalar_one()
            rows.append({"id": uuid.uuid4(), "officer_id": _uuid(oid), "kind": "create",
                         "role": role, "requested_by": None, "approved_by": None,
                         "request_id": None, "at": created})
    if rows:
        op.bulk_insert(grants, rows)
    del json


def _uuid(value: object) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes):
        return uuid.UUID(bytes=value)
    return uuid.UUID(str(value))


def downgrade() -> None:
    with op.batch_alter_table('officer_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_officer_grants_officer_id'))
    op.drop_table('officer_grants')
    with op.batch_alter_table('approval_requests', schema=None) as batch_op:
        batch_op.drop_column('sealed_enc')
