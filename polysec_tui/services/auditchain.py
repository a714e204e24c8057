"""The audit chain: every officer action appended, hash-chained, verified.

It knows tables and keys, not officers or the `Runtime` (which holds an `AuditLog` and
appends through it); the officer-facing verbs live in `services.officers.auditlog`.

Each entry carries ``hash = HMAC-SHA256(audit_key, prev_hash | canonical entry)``, where
the canonical entry is ``seq, at, officer, action, target, details`` joined with unit
separators and ``details`` is canonical JSON (sorted keys, no spaces) stored as text.
An entry is written in the same transaction as the action it records. Appenders first
update the single ``audit_head`` row, which serialises them on every engine.

The unit separator never occurs inside a field (``append`` refuses it in officer, action
and target; JSON escapes it in details) and an empty target is stored as NULL, so the
joined message names exactly one entry; `verify` treats a stored separator or an empty
target as tampering.

`verify` streams the whole table in seq order (keyset pages of raw columns) inside one
read snapshot and reports the first bad entry. The ``audit_head`` row catches a truncated
tail; an attacker who also rewrites the head is caught only by a signed checkpoint kept
outside the database (`checkpoint`, `write_checkpoint`, `read_checkpoint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import queue
import re
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from typing import cast as cast_type

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from polysec_tui.db.models import AuditHead, AuditLogEntry
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.files import atomic_write

GENESIS = "0" * 64
HEAD_ID = 1
SEP = "\x1f"
# Keys that must never reach the log: the log is read by many and kept for years.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"password", "secret", "code", "totp", "token", "key", "material", "otp"}
)
VERIFY_BATCH = 10_000
CHECKPOINT_FORMAT = "polysec-audit-checkpoint-v1"
CHECKPOINT_INFO = b"polysec audit checkpoint v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
# How far `verify` looks for the original place of a misplaced entry (diagnosis only).
_DIAGNOSE_WINDOW = 1_000

_LOG_TABLE = cast_type(Table, AuditLogEntry.__table__)
_HEAD_TABLE = cast_type(Table, AuditHead.__table__)
_LOG = _LOG_TABLE.c
_HEAD = _HEAD_TABLE.c
# Built once: building a statement costs more than running it on SQLite.
_BUMP = update(_HEAD_TABLE).where(_HEAD.id == HEAD_ID).values(seq=_HEAD.seq + 1)
_BUMP_RETURNING = _BUMP.returning(_HEAD.seq, _HEAD.hash)
_READ_HEAD = select(_HEAD.seq, _HEAD.hash).where(_HEAD.id == HEAD_ID)
_INSERT = insert(_LOG_TABLE)
_SET_HASH = update(_HEAD_TABLE).where(_HEAD.id == HEAD_ID).values(hash=bindparam("new_hash"))


def _forbidden_keys(doc: Any, found: set[str]) -> None:
    if isinstance(doc, Mapping):
        for k, v in doc.items():
            if str(k).lower() in FORBIDDEN_DETAIL_KEYS:
                found.add(str(k).lower())
            _forbidden_keys(v, found)
    elif isinstance(doc, list | tuple):
        for v in doc:
            _forbidden_keys(v, found)


def canonical_details(details: Mapping[str, Any] | None) -> str:
    doc = dict(details or {})
    leaked: set[str] = set()
    _forbidden_keys(doc, leaked)  # nested documents too
    if leaked:
        raise ValueError(f"audit details must not carry {', '.join(sorted(leaked))}")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def format_time(at: datetime) -> str:
    """Canonical text of an entry time: UTC, microseconds, ``Z`` (the MAC covers it)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_mac(key: bytes, prev_hash: str, seq: int, at: datetime, officer: str, action: str,
              target: str | None, details: str) -> str:
    message = "\x1f".join(
        (prev_hash, str(seq), format_time(at), officer, action, target or "", details)
    )
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _check_text(name: str, value: str | None) -> None:
    if value is not None and SEP in value:
        raise ValueError(f"audit {name} must not contain the unit separator")


class AuditLog:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def append(self, session: Session, *, officer: str, action: str, at: datetime,
               target: str | None = None, details: Mapping[str, Any] | None = None) -> int:
        """Append one entry inside the caller's transaction; returns its seq."""
        text = canonical_details(details)
        _check_text("officer", officer)
        _check_text("action", action)
        _check_text("target", target)
        if at.tzinfo is None:
            raise ValueError("audit entry time must be timezone-aware")
        target = target or None  # "" and None would MAC alike: store one of them
        # The head row's lock is the last lock an action takes: write the action's own
        # pending rows first (an insert locks the rows its foreign keys point at). With
        # the head locked first, an ORM flush at commit took them after it, the opposite
        # order of a transaction that locks an officer row and then appends: two
        # parallel logins deadlocked on PostgreSQL.
        session.flush()
        # Concurrent appenders wait here. Where the database can, the same statement
        # returns the new seq and the previous hash.
        conn = session.connection()
        if conn.dialect.update_returning:
            head = conn.execute(_BUMP_RETURNING).one_or_none()
        else:
            conn.execute(_BUMP)
            head = conn.execute(_READ_HEAD).one_or_none()
        if head is None:  # the migration creates the head row; never guess a chain
            raise CheckFailed("the audit log is broken (its head row is missing), so nothing "
                              "can be recorded: run `polysec auditlog verify`")
        seq, prev = int(head[0]), str(head[1])
        digest = entry_mac(self._key, prev, seq, at, officer, action, target, text)
        try:
            conn.execute(_INSERT, {"seq": seq, "at": at, "officer": officer,
                                   "action": action, "target": target, "details": text,
                                   "prev_hash": prev, "hash": digest})
        except IntegrityError:
            # Appenders serialise on the head row, so an entry already at the next seq
            # was put there behind the head's back. Fail closed: no unrecorded action.
            raise CheckFailed(f"the audit log is broken (an entry {seq} exists beyond its "
                              "head), so nothing can be recorded: run `polysec auditlog "
                              "verify`") from None
        conn.execute(_SET_HASH, {"new_hash": digest})
        return seq

    def mac(self, prev_hash: str, seq: int, at: datetime, officer: str, action: str,
            target: str | None, details: str) -> str:
        return entry_mac(self._key, prev_hash, seq, at, officer, action, target, details)

    # ------------------------------------------------------------------ verification

    def verify(self, bind: Engine | Connection | Session, checkpoint: Checkpoint | None = None,
               *, batch_size: int = VERIFY_BATCH) -> VerifyReport:
        """Check the whole chain, the head row and (if given) a checkpoint."""
        if isinstance(bind, Engine):
            with bind.connect() as conn, _lenient_text(conn):
                if conn.dialect.name in ("postgresql", "mysql", "mariadb"):
                    # One snapshot for the head and every page.
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    return _Verifier(self._key, conn, checkpoint, batch_size).run()
        conn = bind.connection() if isinstance(bind, Session) else bind
        return _Verifier(self._key, conn, checkpoint, batch_size).run()

    def checkpoint(self, bind: Engine | Connection | Session, at: datetime,
                   *, verify_first: bool = True) -> Checkpoint:
        """A signed copy of the head. With ``verify_first`` (the default) the chain is
        verified first and a broken log raises CheckFailed instead of being blessed."""
        if verify_first:
            report = self.verify(bind)
            report.raise_for_failure()
            seq, digest = report.head_seq, report.head_hash
        else:
            seq, digest = read_head(bind)
        return Checkpoint.sign(self._key, seq=seq, hash=digest, at=at)


@contextlib.contextmanager
def _lenient_text(conn: Connection) -> Iterator[None]:
    """On SQLite, text that is not UTF-8 (a blob written into a text column) arrives as
    text with surrogate escapes, which fails its MAC, instead of stopping the verification
    with a decoding error. Restored before the connection goes back to the pool."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    before = raw.text_factory
    raw.text_factory = lambda data: data.decode("utf-8", "surrogateescape")
    try:
        yield
    finally:
        raw.text_factory = before


def read_head(bind: Engine | Connection | Session) -> tuple[int, str]:
    """The (seq, hash) of the audit_head row."""
    query = select(_HEAD.seq, _HEAD.hash).where(_HEAD.id == HEAD_ID)
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            row = conn.execute(query).one()
    else:
        row = bind.execute(query).one()
    return int(row[0]), str(row[1])


# ------------------------------------------------------------------------ reports


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries_checked: int
    first_bad_seq: int | None
    reason: str | None
    head_seq: int
    head_hash: str

    def message(self) -> str:
        if self.ok:
            return f"audit log ok: {self.entries_checked} entries, head seq {self.head_seq}"
        return f"audit log broken at seq {self.first_bad_seq}: {self.reason}"

    def raise_for_failure(self) -> None:
        if not self.ok:
            raise CheckFailed(self.message())

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries_checked": self.entries_checked,
                "first_bad_seq": self.first_bad_seq, "reason": self.reason,
                "head_seq": self.head_seq, "head_hash": self.head_hash}


class _Broken(Exception):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


def _at_text(dialect: str) -> ColumnElement[str]:
    """SQL giving the canonical time text (`format_time`) of the stored naive UTC ``at``.

    The database formats it: no datetime object per row. SQLite holds SQLAlchemy's
    storage text ``YYYY-MM-DD HH:MM:SS.ffffff`` (the only form an append writes); any
    other text becomes ``invalid:...`` and is reported as an edit."""
    at = _LOG.at
    if dialect == "postgresql":
        expr: ColumnElement[Any] = func.to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    elif dialect in ("mysql", "mariadb"):
        expr = func.date_format(at, "%Y-%m-%dT%H:%i:%s.%fZ")
    else:
        raw = type_coerce(at, String)
        expr = case(
            (and_(func.length(raw) == 26, func.substr(raw, 11, 1) == " "),
             func.substr(raw, 1, 10) + "T" + func.substr(raw, 12) + "Z"),
            else_="invalid:" + raw,
        )
    return type_coerce(expr, String)


def _message_sql(dialect: str) -> ColumnElement[str]:
    """SQL building an entry's MAC message (see `entry_mac`) from the stored columns, so a
    page of entries arrives as three values per row. An empty target (appends store NULL)
    becomes an extra separator: no genuine message contains one, so the MAC fails."""
    target = case((_LOG.target == "", SEP + SEP), else_=func.coalesce(_LOG.target, ""))
    parts: list[ColumnElement[Any]] = [
        _LOG.prev_hash, cast(_LOG.seq, String), _at_text(dialect), _LOG.officer,
        _LOG.action, target, _LOG.details,
    ]
    message: ColumnElement[Any] = type_coerce(parts[0], String)
    for part in parts[1:]:
        message = message + SEP + type_coerce(part, String)
    return type_coerce(message, String)


class _BadAfter(Exception):
    """The entry after ``last_seq`` failed a check (diagnosed once the scan stopped)."""

    def __init__(self, last_seq: int, last_hash: str) -> None:
        super().__init__(last_seq)
        self.last_seq = last_seq
        self.last_hash = last_hash


def _time_text(at: Any) -> str:
    """Python twin of `_at_text` for a value already fetched (diagnosis only)."""
    if isinstance(at, str):
        return at
    if isinstance(at, datetime):
        return format_time(at if at.tzinfo else at.replace(tzinfo=UTC))
    return "invalid:" + repr(at)


_Row = tuple[int, Any, str, str, str | None, str, str, str]


class _Verifier:
    def __init__(self, key: bytes, conn: Connection, checkpoint: Checkpoint | None,
                 batch_size: int) -> None:
        self.key = key
        self.conn = conn
        self.cp = checkpoint
        self.batch_size = batch_size
        self.checked = 0
        self._page_query: Select[tuple[int, str, str]] | None = None

    def _page(self, after: int, limit: int) -> Sequence[tuple[int, str, str]]:
        """(seq, MAC message, hash) of the next ``limit`` entries after ``after``."""
        if self._page_query is None:  # built once: compiling it costs more than a page
            self._page_query = (
                select(_LOG.seq, _message_sql(self.conn.dialect.name), _LOG.hash)
                .where(_LOG.seq > bindparam("after")).order_by(_LOG.seq)
                .limit(bindparam("limit", literal_execute=False))
            )
        query = self._page_query
        params = {"after": after, "limit": limit}
        result = self.conn.execute(query, params)
        try:  # the driver's plain tuples: no Row objects for a million entries
            rows: Sequence[tuple[int, str, str]] = result.cursor.fetchall()
        finally:
            result.close()
        return rows

    def _pages(self) -> Generator[Sequence[tuple[int, str, str]], None, None]:
        """Pages in seq order, the next one fetched by a thread while this one is checked
        (the database formats and sends it while Python computes MACs)."""
        pages: queue.Queue[Sequence[tuple[int, str, str]] | BaseException] = queue.Queue(2)
        stop = threading.Event()

        def fetch() -> None:
            after = 0
            try:
                while not stop.is_set():
                    rows = self._page(after, self.batch_size)
                    pages.put(rows)
                    if not rows:
                        return
                    after = rows[-1][0]
            except BaseException as exc:  # handed to the consumer, raised there
                pages.put(exc)

        worker = threading.Thread(target=fetch, name="auditlog-verify-fetch", daemon=True)
        worker.start()
        try:
            while True:
                item = pages.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if not item:
                    return
        finally:
            stop.set()
            while worker.is_alive():  # unblock a put() on a full queue
                with contextlib.suppress(queue.Empty):
                    pages.get(timeout=0.05)
            worker.join()

    def _rows(self, after: int, limit: int) -> Sequence[_Row]:
        """Whole entries (``at`` as canonical text), for the diagnosis of a bad one."""
        query = (
            select(_LOG.seq, _at_text(self.conn.dialect.name), _LOG.officer, _LOG.action,
                   _LOG.target, _LOG.details, _LOG.prev_hash, _LOG.hash)
            .where(_LOG.seq > after).order_by(_LOG.seq).limit(limit)
        )
        return [tuple(r) for r in self.conn.execute(query)]

    def run(self) -> VerifyReport:
        head = self.conn.execute(
            select(_HEAD.seq, _HEAD.hash).where(_HEAD.id == HEAD_ID)
        ).one_or_none()
        head_seq, head_hash = (int(head[0]), str(head[1])) if head else (-1, "")
        try:
            if head is None:
                raise _Broken(1, "the audit_head row is missing")
            last_seq, last_hash = self._scan()
            self._check_end(last_seq, last_hash, head_seq, head_hash)
        except _Broken as broken:
            return VerifyReport(False, self.checked, broken.seq, broken.reason,
                                head_seq, head_hash)
        return VerifyReport(True, self.checked, None, None, head_seq, head_hash)

    def _scan(self) -> tuple[int, str]:
        # Keyed once; each entry copies the keyed state (no re-keying per message).
        keyed = hmac.new(self.key, digestmod=hashlib.sha256)
        cp_seq = self.cp.seq if self.cp is not None else -1
        pages = self._pages()
        try:
            return self._check_pages(pages, keyed, cp_seq)
        except _BadAfter as bad:
            pages.close()  # stop and join the fetch thread before the next query
            raise self._diagnose(bad.last_seq, bad.last_hash) from None
        finally:
            pages.close()

    def _check_pages(self, pages: Iterator[Sequence[tuple[int, str, str]]],
                     keyed: hmac.HMAC, cp_seq: int) -> tuple[int, str]:
        last_seq, last_hash = 0, GENESIS
        for rows in pages:
            if not rows:
                break
            for seq, message, digest in rows:
                mac = keyed.copy()
                try:
                    mac.update(message.encode())
                except (AttributeError, UnicodeEncodeError):  # NULL, or not valid text
                    self.checked = last_seq
                    raise _BadAfter(last_seq, last_hash) from None
                if (mac.hexdigest() != digest or seq != last_seq + 1
                        or not message.startswith(last_hash)):
                    self.checked = last_seq  # seqs run 1, 2, ... up to here
                    raise _BadAfter(last_seq, last_hash)
                if seq == cp_seq:
                    self.checked = last_seq
                    self._check_checkpoint(seq, digest)
                last_seq, last_hash = seq, digest
        self.checked = last_seq
        return last_seq, last_hash

    def _check_checkpoint(self, seq: int, digest: str) -> None:
        assert self.cp is not None
        if not hmac.compare_digest(digest, self.cp.hash):
            raise _Broken(seq, f"entry {seq} differs from checkpoint (taken {self.cp.at})")

    def _check_end(self, last_seq: int, last_hash: str, head_seq: int, head_hash: str) -> None:
        if last_seq < head_seq:
            missing = (f"entry {head_seq} missing" if last_seq + 1 == head_seq
                       else f"entries {last_seq + 1}..{head_seq} missing")
            raise _Broken(last_seq + 1,
                          f"log truncated: {missing} (the audit head is at seq {head_seq})")
        if last_seq > head_seq:
            raise _Broken(head_seq + 1,
                          f"entries after the audit head (seq {head_seq}): the head was "
                          "rolled back or entries were added behind it")
        if last_hash != head_hash:
            raise _Broken(max(last_seq, 1), f"audit head hash differs from entry {last_seq}")
        if self.cp is not None and last_seq < self.cp.seq:
            raise _Broken(last_seq + 1,
                          f"log truncated before seq {self.cp.seq}: the log ends at seq "
                          f"{last_seq}, the checkpoint of {self.cp.at} names seq {self.cp.seq}")

    # ------------------------------------------------------------------ diagnosis

    def _mac_at(self, row: _Row, seq: int, prev_hash: str | None = None) -> bool:
        _s, at, officer, action, target, details, stored_prev, digest = row
        message = SEP.join((stored_prev if prev_hash is None else prev_hash, str(seq),
                            _time_text(at), officer, action, target or "", details))
        if message.count(SEP) != 6:
            return False
        return hmac.compare_digest(
            hmac.digest(self.key, message.encode(), hashlib.sha256).hex(), digest)

    def _diagnose(self, last_seq: int, last_hash: str) -> _Broken:
        """Why the entry after ``last_seq`` is bad: runs once, so it may be slow. A row
        whose fields are of the wrong type or not valid text (the tampering that SQLite's
        loose typing allows) is reported as malformed rather than explained."""
        try:
            return self._explain(last_seq, last_hash)
        except (TypeError, ValueError, AttributeError):  # UnicodeError is a ValueError
            expected = last_seq + 1
            return _Broken(expected, f"entry {expected} is malformed (a field is empty, of "
                                     "the wrong type or not valid text)")

    def _explain(self, last_seq: int, last_hash: str) -> _Broken:
        rows = self._rows(last_seq, 1 + _DIAGNOSE_WINDOW)
        row, following = rows[0], rows[1:]
        seq, prev_hash, target = row[0], row[6], row[4]
        expected = last_seq + 1
        if seq != expected:
            missing = (f"entry {expected} missing" if seq == expected + 1
                       else f"entries {expected}..{seq - 1} missing")
            return _Broken(seq, missing)
        if target == "":
            return _Broken(seq, f"entry {seq} was edited (empty target; appends store NULL)")
        if any(SEP in str(v) for v in row[2:5] if v is not None):
            return _Broken(seq, f"entry {seq} was edited (a field holds a unit separator)")
        if self._mac_at(row, seq):
            # Authentic content for this seq, but it does not follow the previous entry.
            return _Broken(seq, f"entry {seq} does not chain to entry {last_seq} (prev_hash "
                                "differs): entries were removed, inserted or replaced")
        # Was this content signed for another seq (moved, renumbered, copied)?
        for other in _near(seq, _DIAGNOSE_WINDOW):
            if other >= 1 and self._mac_at(row, other):
                if other == seq + 1:
                    return _Broken(seq, f"entry {seq} is entry {other} renumbered: entry "
                                        f"{seq} was deleted and later entries renumbered")
                return _Broken(seq, f"entry {seq} holds entry {other} (entries reordered "
                                    "or copied)")
        if following:
            nxt = following[0]
            if nxt[0] == seq + 1 and self._fits(_content(nxt), seq, last_hash, nxt[7]):
                return _Broken(seq, f"entry {seq} was inserted (the original entry {seq} "
                                    f"was renumbered to {seq + 1})")
        # Content swapped with a later entry while seq, prev_hash and hash stayed put?
        for later in following:
            if self._fits(_content(later), seq, prev_hash, row[7]):
                return _Broken(seq, f"entry {seq} holds the content of entry {later[0]} "
                                    "(entries reordered)")
        if prev_hash != last_hash:
            return _Broken(seq, f"entry {seq} was edited or forged (prev_hash and hash do "
                                "not match)")
        return _Broken(seq, f"entry {seq} was edited (its hash does not match its fields)")

    def _fits(self, content: tuple[Any, ...], seq: int, prev_hash: str, digest: str) -> bool:
        """Was ``content`` (at, officer, action, target, details) signed as this entry?"""
        at, officer, action, target, details = content
        return self._mac_at((seq, at, officer, action, target, details, prev_hash, digest),
                            seq)


def _content(row: _Row) -> tuple[Any, ...]:
    return tuple(row[1:6])


def _near(seq: int, window: int) -> list[int]:
    out: list[int] = []
    for d in range(1, window + 1):
        out.extend((seq + d, seq - d))
    return out


# ---------------------------------------------------------------------- checkpoints


def checkpoint_key(audit_key: bytes) -> bytes:
    """The checkpoint MAC key: HKDF-SHA256 from the keyring's audit key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=CHECKPOINT_INFO).derive(audit_key)


@dataclass(frozen=True)
class Checkpoint:
    """A signed head: the log must still hold entry ``seq`` with ``hash``."""

    seq: int
    hash: str
    at: str  # canonical UTC text (format_time)
    mac: str
    format: str = CHECKPOINT_FORMAT

    @staticmethod
    def _message(fmt: str, seq: int, digest: str, at: str) -> bytes:
        return SEP.join((fmt, str(seq), digest, at)).encode()

    @classmethod
    def sign(cls, audit_key: bytes, *, seq: int, hash: str, at: datetime) -> Checkpoint:
        at_text = format_time(at)
        mac = hmac.new(checkpoint_key(audit_key),
                       cls._message(CHECKPOINT_FORMAT, seq, hash, at_text),
                       hashlib.sha256).hexdigest()
        return cls(seq=seq, hash=hash, at=at_text, mac=mac)

    def verify_mac(self, audit_key: bytes) -> bool:
        expected = hmac.new(checkpoint_key(audit_key),
                            self._message(self.format, self.seq, self.hash, self.at),
                            hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.mac)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "seq": self.seq, "hash": self.hash, "at": self.at,
                "mac": self.mac}


def write_checkpoint(path: Path | str, cp: Checkpoint) -> None:
    """Written whole or not at all, owner-only, never over an existing file."""
    data = (json.dumps(cp.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    atomic_write(path, data, what="checkpoint", overwrite=False)


def read_checkpoint(path: Path | str, audit_key: bytes) -> Checkpoint:
    """Read and authenticate a checkpoint; ``audit_key`` is the keyring's audit key.
    A missing file is an InputError (exit 2); a malformed or forged one CheckFailed (1)."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read checkpoint {source}: {exc.strerror}") from None
    bad = CheckFailed(f"checkpoint {source} is malformed or forged (MAC does not verify)")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(doc, dict) or set(doc) != {"format", "seq", "hash", "at", "mac"}:
        raise bad
    seq, digest, at, mac, fmt = doc["seq"], doc["hash"], doc["at"], doc["mac"], doc["format"]
    if (fmt != CHECKPOINT_FORMAT or type(seq) is not int or seq < 0
            or not isinstance(digest, str) or not _HEX64.fullmatch(digest)
            or not isinstance(at, str) or not isinstance(mac, str)):
        raise bad
    cp = Checkpoint(seq=seq, hash=digest, at=at, mac=mac, format=fmt)
    if not cp.verify_mac(audit_key):
        raise bad
    return cp


# -------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class AuditEntryView:
    seq: int
    at: datetime
    officer: str
    action: str
    target: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": format_time(self.at), "officer": self.officer,
                "action": self.action, "target": self.target, "details": self.details,
                "prev_hash": self.prev_hash, "hash": self.hash}


def _view(entry: AuditLogEntry) -> AuditEntryView:
    try:
        details = json.loads(entry.details)
    except ValueError:
        details = {"_unparseable": entry.details}
    if not isinstance(details, dict):
        details = {"_value": details}
    return AuditEntryView(seq=entry.seq, at=entry.at, officer=entry.officer,
                          action=entry.action, target=entry.target, details=details,
                          prev_hash=entry.prev_hash, hash=entry.hash)


def tail(session: Session, n: int = 20, *, officer: str | None = None,
         action: str | None = None, target: str | None = None,
         since: datetime | None = None) -> list[AuditEntryView]:
    """The newest ``n`` entries matching the filters, newest first."""
    query = select(AuditLogEntry).order_by(AuditLogEntry.seq.desc()).limit(max(n, 0))
    if officer is not None:
        query = query.where(AuditLogEntry.officer == officer)
    if action is not None:
        query = query.where(AuditLogEntry.action == action)
    if target is not None:
        query = query.where(AuditLogEntry.target == target)
    if since is not None:
        query = query.where(AuditLogEntry.at >= since)
    return [_view(e) for e in session.scalars(query)]


def show(session: Session, seq: int) -> AuditEntryView | None:
    entry = session.get(AuditLogEntry, seq)
    return None if entry is None else _view(entry)


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditLogEntry)) or 0)
