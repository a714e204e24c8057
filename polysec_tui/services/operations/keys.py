"""Field-key lifecycle: status, add, promote, rotate, retire (admin, fresh code, audited).

The keyring file changes by whole-file replacement under an exclusive lock (temp file,
fsync, rename): a reader sees the old or the new keyring, never half of one, and two
admins cannot lose each other's key. Keys are only ever added or re-labelled; material
is never deleted by polysec.

Rotation re-encrypts every value not under the primary key, in batches of rows of one
transaction each, all encrypted columns of a row in one pass. A batch selects rows by
the key ids in their values' F1 headers, so a killed rotation resumes where it stopped
when run again, and a value already under the primary is never touched twice. Each
update is conditional on the row's old ciphertexts being unchanged, so a concurrent
writer is never overwritten with stale data.
"""

from __future__ import annotations

import fcntl
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from polysec_tui.crypto.fields import HEADER_LEN, FieldCipher
from polysec_tui.crypto.keyring import (
    KEY_BYTES,
    FieldKey,
    Keyring,
    check_private,
    load_keyring,
)
from polysec_tui.db.models import ENCRYPTED_COLUMNS, BackupRecord, Base, KeyUsage
from polysec_tui.db.types import uuid_raw
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.files import atomic_write
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime, record_key_usage

PERMISSION = "keys.manage"
DEFAULT_BATCH = 1_000
RETAINED_BACKUP_STATUSES = ("complete", "verified")


def key_id_sql(column: Any) -> Any:
    """The 4-byte big-endian key id of an F1 ciphertext (bytes 2..5), as bytes."""
    return func.substr(column, 2, HEADER_LEN - 1)


def key_id_bytes(key_id: int) -> bytes:
    return key_id.to_bytes(HEADER_LEN - 1, "big")


def values_per_key(conn: Connection) -> dict[int, int]:
    """How many encrypted values each key id protects, over every encrypted column."""
    counts: dict[int, int] = {}
    for table_name, columns in ENCRYPTED_COLUMNS.items():
        table = Base.metadata.tables[table_name]
        for column in columns:
            col = table.c[f"{column}_enc"]
            kid = key_id_sql(col)
            for raw, count in conn.execute(
                select(kid, func.count()).where(col.is_not(None)).group_by(kid)
            ):
                if raw is not None and len(bytes(raw)) == HEADER_LEN - 1:
                    key_id = int.from_bytes(bytes(raw), "big")
                    counts[key_id] = counts.get(key_id, 0) + int(count)
    return counts


def backups_needing(conn: Connection, key_id: int) -> list[str]:
    """Retained backups whose contents are encrypted (in part) under ``key_id``."""
    needing = []
    for backup_id, doc in conn.execute(
        select(BackupRecord.id, BackupRecord.field_key_ids)
        .where(BackupRecord.status.in_(RETAINED_BACKUP_STATUSES))
    ):
        ids = doc.get("ids", []) if isinstance(doc, dict) else doc
        if key_id in {int(i) for i in ids or []}:
            needing.append(str(backup_id))
    return needing


# ------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class KeyStatus:
    id: int
    created_at: datetime
    status: str
    primary: bool
    values: int
    encryptions: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at.isoformat(),
                "status": self.status, "primary": self.primary, "values": self.values,
                "encryptions": self.encryptions}


def status(rt: Runtime, actor: Actor) -> list[KeyStatus]:
    require(actor, "audit.run")
    with rt.engine.connect() as conn:
        values = values_per_key(conn)
        usage = {int(k): int(n) for k, n in conn.execute(
            select(KeyUsage.key_id, KeyUsage.encryptions))}
    keyring = rt.keyring
    ids = sorted(set(keyring.field_keys) | set(values))
    out = []
    for key_id in ids:
        key = keyring.field_keys.get(key_id)
        out.append(KeyStatus(key_id, key.created_at if key else datetime.min,
                             key.status if key else "missing", key_id == keyring.primary_id,
                             values.get(key_id, 0), usage.get(key_id, 0)))
    return out


# ------------------------------------------------------------------- keyring file edits


def _keyring_path(rt: Runtime) -> Path:
    if rt.keyring.source.startswith("$"):
        raise InputError(f"the keyring comes from {rt.keyring.source}; change it where that "
                         "variable is set, not with polysec")
    return rt.settings.keyring_path


@contextmanager
def _locked_keyring(rt: Runtime) -> Iterator[tuple[Path, Keyring]]:
    """The keyring file re-read under an exclusive lock (released on exit)."""
    path = _keyring_path(rt)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a") as lock:  # noqa: PTH123 - an fd for flock
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            check_private(path)
            yield path, load_keyring(path)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _save(path: Path, keyring: Keyring) -> None:
    atomic_write(path, keyring.to_json().encode(), mode=0o600, what="keyring")


def _authorise(rt: Runtime, actor: Actor, code: str) -> None:
    require(actor, PERMISSION)
    sessions.step_up(rt, actor, code)


def add(rt: Runtime, actor: Actor, code: str) -> FieldKey:
    """A new active key (not yet primary). Returns it (its material stays in the file)."""
    _authorise(rt, actor, code)
    with _locked_keyring(rt) as (path, keyring):
        new = FieldKey(max(keyring.field_keys) + 1, rt.clock(), "active",
                       secrets.token_bytes(KEY_BYTES))
        updated = replace(keyring, field_keys={**keyring.field_keys, new.id: new})
        with rt.transaction() as session:
            rt.audit.append(session, officer=actor.name, action="keys.add", at=rt.clock(),
                            target=f"field-key:{new.id}")
            _save(path, updated)  # a failed write rolls the audit entry back
    return new


def promote(rt: Runtime, actor: Actor, key_id: int, code: str) -> None:
    """Make ``key_id`` the primary: new values are encrypted under it from now on."""
    _authorise(rt, actor, code)
    with _locked_keyring(rt) as (path, keyring):
        key = keyring.field_keys.get(key_id)
        if key is None:
            raise InputError(f"no field key {key_id} in the keyring")
        if key.status != "active":
            raise RefusedError(f"field key {key_id} is {key.status}; only an active key can "
                               "become primary")
        if keyring.primary_id == key_id:
            raise ConflictError(f"field key {key_id} is already the primary")
        previous = keyring.primary_id
        with rt.transaction() as session:
            rt.audit.append(session, officer=actor.name, action="keys.promote",
                            at=rt.clock(), target=f"field-key:{key_id}",
                            details={"previous_primary": previous})
            _save(path, replace(keyring, primary_id=key_id))


def retire(rt: Runtime, actor: Actor, key_id: int, code: str) -> None:
    """Mark a key retired: refused while any value or retained backup still needs it."""
    _authorise(rt, actor, code)
    with _locked_keyring(rt) as (path, keyring):
        key = keyring.field_keys.get(key_id)
        if key is None:
            raise InputError(f"no field key {key_id} in the keyring")
        if key_id == keyring.primary_id:
            raise RefusedError(f"field key {key_id} is the primary; promote another first")
        if key.status == "retired":
            raise ConflictError(f"field key {key_id} is already retired")
        with rt.engine.connect() as conn:
            still = values_per_key(conn).get(key_id, 0)
            backups = backups_needing(conn, key_id)
        if still:
            raise RefusedError(f"field key {key_id} still protects {still} values; run "
                               "`polysec keys rotate` first")
        if backups:
            raise RefusedError(f"field key {key_id} is needed by {len(backups)} retained "
                               f"backups (first: {backups[0]}); prune them first")
        retired = replace(key, status="retired")
        with rt.transaction() as session:
            rt.audit.append(session, officer=actor.name, action="keys.retire",
                            at=rt.clock(), target=f"field-key:{key_id}")
            _save(path, replace(keyring,
                                field_keys={**keyring.field_keys, key_id: retired}))


# ------------------------------------------------------------------------------ rotation


@dataclass(frozen=True)
class RotateReport:
    primary: int
    reencrypted: int
    batches: int
    skipped_changed: int
    remaining: int

    def to_dict(self) -> dict[str, Any]:
        return {"primary": self.primary, "reencrypted": self.reencrypted,
                "batches": self.batches, "skipped_changed": self.skipped_changed,
                "remaining": self.remaining}


Progress = Callable[[int], None]


def rotate(rt: Runtime, actor: Actor, code: str, *, batch: int = DEFAULT_BATCH,
           max_batches: int | None = None, progress: Progress | None = None) -> RotateReport:
    """Re-encrypt every value not under the primary key, ``batch`` rows a transaction.

    ``max_batches`` stops early (the rest waits for the next run), for a bounded window.
    """
    if batch < 1:
        raise InputError("--batch must be at least 1")
    _authorise(rt, actor, code)
    # The keyring as it is on disk now: a promote since this process started counts.
    keyring = rt.keyring if rt.keyring.source.startswith("$") else load_keyring(
        rt.settings.keyring_path)
    return reencrypt(rt, keyring, actor.name, batch=batch, max_batches=max_batches,
                     progress=progress)


def reencrypt(rt: Runtime, keyring: Keyring, officer: str, *, batch: int = DEFAULT_BATCH,
              max_batches: int | None = None,
              progress: Progress | None = None) -> RotateReport:
    """The work of :func:`rotate`, once authorised (the benchmark calls it directly).

    One pass a table: a batch is ``batch`` rows with any value under another key, and
    each such value of the row is re-encrypted in the batch's one transaction."""
    cipher = FieldCipher(keyring)
    primary = key_id_bytes(keyring.primary_id)
    done = skipped = batches = 0
    dialect = rt.engine.dialect.name
    for table_name, columns in ENCRYPTED_COLUMNS.items():
        table = Base.metadata.tables[table_name]
        cols = [table.c[f"{c}_enc"] for c in columns]
        openers = [cipher.opener(table_name, c) for c in columns]
        raw_id, id_bytes = uuid_raw(table.c.id, dialect)
        stale = or_(*(and_(col.is_not(None), key_id_sql(col) != primary) for col in cols))
        after: uuid.UUID | None = None
        while max_batches is None or batches < max_batches:
            query = select(raw_id, *cols).where(stale).order_by(table.c.id).limit(batch)
            if after is not None:
                query = query.where(table.c.id > after)
            with rt.transaction() as session:
                rows = session.execute(query).all()
                if not rows:
                    break
                # Rows grouped by which of their columns change: one executemany each.
                by_change: dict[tuple[int, ...], list[dict[str, Any]]] = {}
                for raw, *blobs in rows:
                    key = id_bytes(raw)
                    row_id = uuid.UUID(bytes=key)
                    change = tuple(i for i, blob in enumerate(blobs)
                                   if blob is not None and blob[1:HEADER_LEN] != primary)
                    params: dict[str, Any] = {"b_id": row_id}
                    for i in change:
                        params[f"b_old{i}"] = blobs[i]
                        params[f"b_new{i}"] = cipher.encrypt(
                            openers[i](key, blobs[i]), table=table_name,
                            column=columns[i], row_id=row_id)
                    by_change.setdefault(change, []).append(params)
                changed = 0
                for change, params_list in by_change.items():
                    if not change:
                        continue
                    # The condition on each old ciphertext leaves a row a concurrent
                    # writer changed meanwhile for the next run.
                    rowcount = session.connection().execute(
                        update(table)
                        .where(table.c.id == bindparam("b_id"),
                               *(cols[i] == bindparam(f"b_old{i}") for i in change))
                        .values({cols[i].name: bindparam(f"b_new{i}") for i in change}),
                        params_list,
                    ).rowcount
                    changed += rowcount * len(change)
                    skipped += (len(params_list) - rowcount) * len(change)
                done += changed
                batches += 1
                after = uuid.UUID(bytes=id_bytes(rows[-1][0]))
                rt.audit.append(session, officer=officer, action="keys.rotate",
                                at=rt.clock(), target=table_name,
                                details={"primary": keyring.primary_id,
                                         "reencrypted": changed, "last_row": str(after)})
                # the usage of ``cipher`` is counted in this same transaction
                record_key_usage(session, cipher.take_usage())
            if progress:
                progress(done)
    with rt.engine.connect() as conn:
        remaining = sum(n for k, n in values_per_key(conn).items()
                        if k != keyring.primary_id)
    return RotateReport(keyring.primary_id, done, batches, skipped, remaining)
