"""Encrypted backups as officer actions: create, verify, restore, list, prune, ship.

Permissions: create, verify, list and prune need ``backup.run`` (admin or automation);
restore needs ``backup.restore`` (admin), and replacing the live database also a fresh
authenticator code. Every action, successful or not, is audited.

Origin: `create` signs every backup with the host's Ed25519 signing key ([backup]
signing_key); verify and restore accept only files signed by a key of [backup] signers.
Unsigned (v1/v2) files are refused unless the caller passes ``allow_unsigned`` (the
CLI's ``--allow-unsigned``), and each accepted unsigned file is audited
(``backup.allow_unsigned``).

The catalogue (table ``backups``) records each finished backup. Its ``field_key_ids``
JSON column holds ``{"ids": [...], "backup_id": hex, "payload_bytes": n,
"recipients": [fingerprints], "signer": fingerprint, "row_counts": {...}}`` (catalogue
rows of v1 backups also hold ``payload_sha256``; rows of v1/v2 backups have no signer).
Verify changes a row's status only for the catalogued file itself (the same SHA-256 and
size): a tampered or forged copy carrying a backup's id fails, and the row is left as it
was. Restore refuses a file whose SHA-256 or size differs from its catalogue row.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from polysec_tui import __version__
from polysec_tui.backup import restore as restoring
from polysec_tui.backup.envelope import (
    CHUNK_LOG2,
    EnvelopeError,
    EnvelopeWriter,
    Identity,
    Opened,
    ReaderRefusal,
    Recipient,
    Signer,
    SigningKey,
    Trust,
    open_backup,
    read_envelope,
    read_header,
)
from polysec_tui.backup.snapshot import SNAPSHOT_KIND, engine_kind, snapshot
from polysec_tui.backup.tempdirs import private_tempdir, remove_stale
from polysec_tui.config import app_dir
from polysec_tui.db.engine import WRITE_OPTION, make_engine, parse_url, redact
from polysec_tui.db.models import BackupDrill, BackupRecord
from polysec_tui.errors import CheckFailed, InputError, PolysecError
from polysec_tui.files import NewFile, atomic_write
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime

SUFFIX = ".psbk"
PARTIAL = ".partial"
GOOD = ("complete", "verified")
Progress = Callable[[int, int | None], None]
VERIFY_KIND = "verify"  # <tmp>/polysec-verify-*: the restore test's scratch SQLite
KEYGEN_HINT = ("make one with `polysec backup keygen --signing --out FILE` and put the "
               "printed public key in [backup] signers")


@dataclass(frozen=True)
class BackupConfig:
    """The ``[backup]`` table: ``dir``, ``recipients`` (public keys), ``identity``,
    ``signing_key`` (this host's Ed25519 private key file, needed to create),
    ``signers`` (the Ed25519 public keys verify and restore trust), and for `ship`:
    ``ship_to`` (``sftp://user@host[:port]/dir``), ``known_hosts``, ``ssh_identity`` and
    ``ship_append_only`` (the target refuses removal and overwrite: docs/backups.md)."""

    directory: Path
    recipients: tuple[Recipient, ...]
    identity: Path | None
    ship_to: str | None = None
    known_hosts: Path | None = None
    ssh_identity: Path | None = None
    signing_key: Path | None = None
    signers: tuple[Signer, ...] = ()
    ship_append_only: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> BackupConfig:
        section = settings.section("backup")
        unknown = set(section) - {"dir", "recipients", "identity", "ship_to", "known_hosts",
                                  "ssh_identity", "signing_key", "signers",
                                  "ship_append_only"}
        if unknown:
            raise InputError(f"config: unknown [backup] key(s): {', '.join(sorted(unknown))}")

        def strings(key: str) -> list[str]:
            raw = section.get(key, [])
            if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
                raise InputError(f"config: [backup] {key} must be a list of strings")
            return raw

        directory = Path(str(section.get("dir") or app_dir() / "backups")).expanduser()

        def path(key: str) -> Path | None:
            value = section.get(key)
            return Path(str(value)).expanduser() if value else None

        ship_to = section.get("ship_to")
        append_only = section.get("ship_append_only", False)
        if not isinstance(append_only, bool):
            raise InputError("config: [backup] ship_append_only must be true or false")
        return cls(directory, tuple(Recipient.parse(r) for r in strings("recipients")),
                   path("identity"), str(ship_to) if ship_to else None, path("known_hosts"),
                   path("ssh_identity"), path("signing_key"),
                   tuple(dict.fromkeys(Signer.parse(r) for r in strings("signers"))),
                   append_only)

    def trust(self, allow_unsigned: bool = False) -> Trust:
        """What verify and restore accept: files signed by [backup] signers, and
        unsigned (v1/v2) ones only when ``allow_unsigned``."""
        return Trust(self.signers, allow_unsigned)

    def load_signing_key(self) -> SigningKey:
        """This host's signing key; refused when missing, readable by others (exit 3)
        or not trusted by this same configuration (its backups would be refused)."""
        if self.signing_key is None:
            raise InputError(f"no backup signing key: set [backup] signing_key ({KEYGEN_HINT})")
        key = SigningKey.load(self.signing_key)
        if key.signer not in self.signers:
            raise InputError(f"the signing key {self.signing_key} (public key {key.signer}) "
                             "is not in [backup] signers: verify and restore would refuse "
                             "its backups; add it there")
        return key

    def load_identity(self, given: Path | str | None = None) -> Identity:
        """The recipient's private key that verify and restore open backups with: the
        one given (an option, the console's field), else [backup] identity."""
        path = Path(given).expanduser() if given else self.identity
        if path is None:
            raise InputError("no identity (the private key of a recipient) to open the "
                             "backup with: name its file, or set [backup] identity")
        return Identity.load(path)

    def shipping(self, to: str | None = None, known_hosts: Path | None = None,
                 ssh_identity: Path | None = None) -> tuple[str, Path, Path]:
        """The SFTP target, known_hosts and SSH key: given ones first, then the config."""
        target = to or self.ship_to
        hosts = known_hosts or self.known_hosts
        key = ssh_identity or self.ssh_identity
        if not (target and hosts and key):
            raise InputError("shipping needs an SFTP target, a known_hosts file and an SSH "
                             "key: set [backup] ship_to, known_hosts and ssh_identity in the "
                             "configuration (the commands also take them as options)")
        return target, hosts, key


def _audit(rt: Runtime, actor: Actor, action: str, target: str | None,
           details: dict[str, Any]) -> None:
    with rt.transaction() as session:
        rt.audit.append(session, officer=actor.name, action=action, at=rt.clock(),
                        target=target, details=details)


def _sha256_of(src: BinaryIO) -> str:
    """SHA-256 of a whole open file (from its start), read in 1 MiB pieces."""
    src.seek(0)
    sha = hashlib.sha256()
    while data := src.read(1 << 20):
        sha.update(data)
    return sha.hexdigest()


def _accept_unsigned(rt: Runtime, actor: Actor, opened: Opened, path: Path, purpose: str,
                     *, catalogued: bool, expected_sha256: str | None) -> None:
    """An unsigned (v1/v2) file, allowed by the officer, is accepted only if it is the
    file the catalogue recorded, or the one whose SHA-256 the officer names from records
    kept elsewhere: anyone with the recipient public key can write an unsigned file, with
    a backup id of their choosing. Audited either way."""
    named = expected_sha256 is not None and secrets.compare_digest(
        expected_sha256.strip().lower(), opened.file_sha256)
    if not (catalogued or named):
        _audit(rt, actor, "backup.allow_unsigned", f"file:{path.name}"[:256],
               {"for": purpose, "result": "refused", "path": str(path),
                "sha256": opened.file_sha256})
        raise CheckFailed(
            "an unsigned backup is accepted only if the catalogue recorded this very file "
            "or --sha256 names its SHA-256 (from the offsite records): this one is neither")
    _audit_unsigned(rt, actor, opened, path, purpose)


def _audit_unsigned(rt: Runtime, actor: Actor, opened: Opened, path: Path,
                    purpose: str) -> None:
    """An unsigned (v1/v2) file was accepted because the officer said so."""
    backup_id = uuid.UUID(bytes=opened.header.backup_id)
    _audit(rt, actor, "backup.allow_unsigned", f"backup:{backup_id}",
           {"for": purpose, "path": str(path), "format_version": opened.header.version,
            "sha256": opened.file_sha256, "size_bytes": opened.file_bytes})


# ----------------------------------------------------------------------------- create


@dataclass(frozen=True)
class CreatedBackup:
    id: uuid.UUID
    path: Path
    engine: str
    created_at: datetime
    size_bytes: int
    sha256: str
    payload_bytes: int
    alembic_revision: str | None
    field_key_ids: list[int]
    row_counts: dict[str, int]
    recipients: list[str]
    signer: str = ""  # polysec-ed25519:...

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["path"] = str(self.path)
        return doc


def create_backup(rt: Runtime, actor: Actor, *, directory: Path | None = None,
                  recipients: Iterable[Recipient] = (), progress: Progress | None = None,
                  chunk_log2: int = CHUNK_LOG2) -> CreatedBackup:
    """Snapshot the live database through the envelope into ``<dir>/.<name>.partial``,
    sign it, fsync, rename to ``<name>.psbk`` and record it. A failure leaves no
    ``.psbk``."""
    require(actor, "backup.run")
    config = BackupConfig.from_settings(rt.settings)
    recips = list(dict.fromkeys([*config.recipients, *recipients]))
    if not recips:
        raise InputError("no backup recipients: [backup] recipients in the configuration "
                         "names none (a key pair comes from `polysec backup keygen`)")
    signing_key = config.load_signing_key()
    directory = (directory or config.directory).expanduser()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"backup directory {directory} is not a directory") from None
    except OSError as exc:
        raise InputError(f"cannot use backup directory {directory}: {exc.strerror}") from None
    remove_stale(SNAPSHOT_KIND)  # plaintext copies left by a killed create
    now = rt.clock()
    backup_id = uuid.uuid4()  # 122 random bits; a valid UUID for every engine
    kind = engine_kind(rt.engine.url)
    name = f"polysec-{kind}-{now:%Y%m%dT%H%M%SZ}-{backup_id.hex[:8]}{SUFFIX}"
    final = directory / name
    partial = directory / f".{name}{PARTIAL}"
    try:
        with NewFile(final, temp=partial, what="a backup") as out:
            info, stream = snapshot(rt.engine.url.render_as_string(hide_password=False))
            meta = {"engine": kind, "created_at": now.isoformat(), "tool": f"polysec {__version__}"}
            writer = EnvelopeWriter(out, recips, meta,
                                    signing_key=signing_key, chunk_log2=chunk_log2,
                                    backup_id=backup_id.bytes)
            try:
                for data in stream:
                    writer.write(data)
                    if progress is not None:
                        progress(writer.payload_bytes, info.estimated_bytes)
            except BaseException:
                writer.close()
                raise
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            writer.finish({
                "engine": kind,
                "created_at": now.isoformat(),
                "database": redact(rt.engine.url),
                "alembic_revision": info.alembic_revision,
                "field_key_ids": info.field_key_ids,
                "row_counts": info.row_counts,
            })
            out.commit()  # linked into place: never over an existing file
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(exc, Exception):
            reason = str(exc) if isinstance(exc, PolysecError) else type(exc).__name__
            _audit(rt, actor, "backup.create", f"backup:{backup_id}",
                   {"result": "failed", "reason": reason[:500]})
        if isinstance(exc, OSError):  # e.g. the temporary directory of a SQLite snapshot
            where = f" ({exc.filename})" if exc.filename else ""
            raise InputError(f"backup not written: {exc.strerror or exc}{where}") from None
        raise
    result = CreatedBackup(
        id=backup_id, path=final, engine=kind, created_at=now,
        size_bytes=writer.encrypted_bytes, sha256=writer.file_sha256,
        payload_bytes=writer.payload_bytes, alembic_revision=info.alembic_revision,
        field_key_ids=info.field_key_ids, row_counts=info.row_counts,
        recipients=[r.fingerprint.hex() for r in recips], signer=str(signing_key.signer),
    )
    with rt.transaction() as session:
        session.add(BackupRecord(
            id=backup_id, created_at=now, path=str(final), engine=kind,
            size_bytes=result.size_bytes, sha256=result.sha256,
            alembic_revision=info.alembic_revision or "",
            field_key_ids={
                "ids": info.field_key_ids, "backup_id": backup_id.hex,
                "payload_bytes": writer.payload_bytes,
                "recipients": result.recipients,
                "signer": signing_key.signer.fingerprint.hex(), "row_counts": info.row_counts,
            },
            verified_at=None, shipped_at=None, shipped_to=None, status="complete",
        ))
        rt.audit.append(session, officer=actor.name, action="backup.create", at=now,
                        target=f"backup:{backup_id}",
                        details={"result": "ok", "path": str(final), "engine": kind,
                                 "size_bytes": result.size_bytes, "sha256": result.sha256,
                                 "signer": signing_key.signer.fingerprint.hex()})
    return result


# ----------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    path: Path
    ok: bool = False
    reason: str | None = None
    backup_id: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    catalogue: str = "not in the catalogue"
    restore_test: dict[str, Any] | None = None
    signer: str | None = None  # fingerprint of the trusted signer; None: unsigned
    sha256: str | None = None  # of the bytes verified

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["path"] = str(self.path)
        return doc


def _scratch_url(kind: str, live: URL, scratch: str | None, tmp: Path) -> URL:
    if kind == "sqlite":
        return parse_url(f"sqlite:///{tmp / 'scratch.db'}")
    base = parse_url(scratch) if scratch else live
    if engine_kind(base) != kind:
        raise InputError(f"the backup is of a {kind} database: give --scratch with a {kind} "
                         "server URL for the restore test")
    return base.set(database=f"polysec_verify_{secrets.token_hex(6)}")


class FileChanged(CheckFailed):
    """The file at the path is no longer the one the first pass accepted: a verdict on
    what lies there now, not on the backup the first pass judged."""


def _restore_into(path: Path, identity: Identity, target: URL, trust: Trust,
                  expected_sha256: str) -> Opened:
    """Pass 2: stream the (again authenticated) plaintext into a new database. The file
    must be, byte for byte, the one pass 1 accepted: a file swapped between the passes
    is refused and the target removed."""
    loader = restoring.open_loader(target)
    try:
        with open_backup(path) as src:
            try:
                opened = read_envelope(src, identity, loader.write, trust=trust)
            except EnvelopeError as exc:  # pass 1 accepted these bytes: they changed
                raise FileChanged(f"{path} changed since it was verified: "
                                  f"{exc.reason}") from None
        if opened.file_sha256 != expected_sha256:
            raise FileChanged(f"{path} changed since it was verified (SHA-256 "
                              f"{opened.file_sha256[:16]}…, verified {expected_sha256[:16]}…)")
        loader.close()
    except BaseException:
        loader.abort()
        raise
    return opened


@dataclass
class _Read:
    """Pass 1 over a backup file: what was read, whatever the outcome."""

    backup_id: uuid.UUID | None = None
    sha256: str | None = None  # of every byte of the file
    size: int | None = None
    opened: Opened | None = None
    error: EnvelopeError | None = None


def _authenticate(path: Path, identity: Identity, trust: Trust,
                  sink: Callable[[bytes], None] | None = None) -> _Read:
    """Authenticate the whole file once. On failure the file's SHA-256 is still
    computed (through the same open file) so that the caller can tell whether the
    failing bytes are the catalogued backup or some other file carrying its id."""
    read = _Read()
    with open_backup(path) as src:
        with contextlib.suppress(EnvelopeError):
            read.backup_id = uuid.UUID(bytes=read_header(src).backup_id)  # public part
        src.seek(0)
        try:
            read.opened = read_envelope(src, identity, sink, trust=trust)
            read.sha256, read.size = read.opened.file_sha256, read.opened.file_bytes
        except EnvelopeError as exc:
            read.error = exc
            read.sha256 = _sha256_of(src)
            read.size = src.tell()
    return read


def _catalogued(rt: Runtime, read: _Read) -> tuple[BackupRecord | None, bool]:
    """The catalogue row of the file's backup id, and whether the file is that row's
    file (same SHA-256 and size)."""
    if read.backup_id is None:
        return None, False
    with rt.sessions() as session:
        record = session.get(BackupRecord, read.backup_id)
    same = (record is not None and read.sha256 is not None
            and secrets.compare_digest(record.sha256, read.sha256)
            and record.size_bytes == read.size)
    return record, same


def verify_backup(rt: Runtime, actor: Actor, path: Path, identity: Identity, *,
                  restore_test: bool = False, scratch: str | None = None,
                  progress: Progress | None = None, allow_unsigned: bool = False,
                  unsigned_sha256: str | None = None) -> VerifyReport:
    """Authenticate the signer, every chunk, the manifest and the signature; compare
    with the catalogue; optionally restore into a scratch database and check it.
    ``progress(plaintext bytes checked, file size)`` follows the authentication pass.
    Raises CheckFailed (exit 1) with the reason when anything fails, after recording it.

    The catalogue row of the backup id is set to ``verified`` or ``failed`` only when
    this file is the catalogued one (same SHA-256 and size), and never for a refusal
    that is about the reader (wrong identity, untrusted signer, unsigned file)."""
    require(actor, "backup.run")
    trust = BackupConfig.from_settings(rt.settings).trust(allow_unsigned)
    report = VerifyReport(path)
    record_id: uuid.UUID | None = None  # the row this verdict may be written to
    judged = True  # False: a refusal about the reader, not a verdict on the file
    try:
        if path.name.endswith(PARTIAL):
            # Renaming is the commit of `create`: a .partial file was never committed,
            # however much of it was written.
            raise CheckFailed("an unfinished backup (.partial): the create that wrote it "
                              "was interrupted before it committed the file")
        read = _authenticate(path, identity, trust, _progress_sink(path, progress))
        report.backup_id = str(read.backup_id) if read.backup_id else None
        report.sha256 = read.sha256
        record, same = _catalogued(rt, read)
        if same:
            assert read.backup_id is not None
            record_id = read.backup_id
            report.catalogue = "matches"
        elif record is not None:
            report.catalogue = "differs: not the catalogued file (catalogue unchanged)"
        if read.error is not None:
            judged = not isinstance(read.error, ReaderRefusal)
            raise read.error
        opened = read.opened
        assert opened is not None
        report.manifest = opened.manifest
        report.signer = opened.signer.fingerprint.hex() if opened.signer else None
        if opened.signer is None:
            _accept_unsigned(rt, actor, opened, path, "verify", catalogued=same,
                             expected_sha256=unsigned_sha256)
        if record is not None and not same:
            raise CheckFailed(
                f"the file's SHA-256 or size differs from the catalogue's record of backup "
                f"{read.backup_id}: it is not the catalogued file (a copy that was altered, "
                "or another file carrying its id); the catalogue is unchanged")
        if restore_test:
            remove_stale(VERIFY_KIND)  # scratch databases left by a killed verify
            with private_tempdir(VERIFY_KIND) as tmp:
                target = _scratch_url(str(opened.manifest.get("engine")), rt.engine.url,
                                      scratch, tmp)
                try:
                    _restore_into(path, identity, target, trust, opened.file_sha256)
                    check = restoring.check_restored(target, opened.manifest, rt.cipher)
                except FileChanged:
                    judged = False  # the catalogued file passed; something else is there now
                    raise
                finally:
                    restoring.drop_database(target)
            report.restore_test = {"revision": check.revision, "row_counts": check.row_counts,
                                   "sampled_fields": check.sampled, "problems": check.problems}
            if check.problems:
                raise CheckFailed("restore test failed: " + "; ".join(check.problems[:5]))
        report.ok = True
    except CheckFailed as exc:
        report.ok = False
        report.reason = exc.message
    _record_verification(rt, actor, report, record_id if judged else None, allow_unsigned)
    if not report.ok:
        raise CheckFailed(f"backup {path} failed verification: {report.reason}")
    return report


def _progress_sink(path: Path, progress: Progress | None) -> Callable[[bytes], None] | None:
    if progress is None:
        return None
    with contextlib.suppress(OSError):
        total = path.stat().st_size
        done = [0]

        def sink(data: bytes) -> None:
            done[0] += len(data)
            progress(done[0], total)

        return sink
    return None


def _record_verification(rt: Runtime, actor: Actor, report: VerifyReport,
                         record_id: uuid.UUID | None, allow_unsigned: bool) -> None:
    now = rt.clock()
    with rt.transaction() as session:
        record = session.get(BackupRecord, record_id) if record_id else None
        if record is not None and record.status != "pruned":
            record.status = "verified" if report.ok else "failed"
            if report.ok:
                record.verified_at = now
        rt.audit.append(session, officer=actor.name, action="backup.verify", at=now,
                        target=f"backup:{report.backup_id or report.path.name}"[:256],
                        details={"result": "ok" if report.ok else "failed",
                                 "reason": report.reason, "path": str(report.path),
                                 "sha256": report.sha256, "signer": report.signer,
                                 "catalogue": report.catalogue,
                                 "catalogue_updated": record is not None
                                 and record.status != "pruned",
                                 "allow_unsigned": allow_unsigned,
                                 "restore_test": report.restore_test is not None})


# ---------------------------------------------------------------------------- restore


@dataclass
class RestoreResult:
    backup_id: str
    target: str
    replaced: bool
    old: str | None
    note: str
    check: dict[str, Any]
    signer: str | None = None  # fingerprint; None: an unsigned file, allowed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _append_elsewhere(rt: Runtime, url: URL, actor: Actor, details: dict[str, Any]) -> None:
    """An audit entry in another polysec database (the restored one)."""
    engine = make_engine(url.render_as_string(hide_password=False), create_dir=False)
    try:
        with Session(engine) as session, session.begin():
            session.connection(execution_options={WRITE_OPTION: True})
            rt.audit.append(session, officer=actor.name, action="backup.restore", at=rt.clock(),
                            target=f"backup:{details['backup_id']}", details=details)
    finally:
        engine.dispose()


def _replace_target(live: URL, stamp: str) -> URL:
    if engine_kind(live) == "sqlite":
        assert live.database
        live_path = Path(live.database)
        return live.set(database=str(live_path.with_name(f"{live_path.name}.restored-{stamp}")))
    return live.set(database=f"{live.database}_restored_{stamp}")


def restore_backup(rt: Runtime, actor: Actor, path: Path, identity: Identity, *,
                   to_url: str | None = None, replace: bool = False,
                   code: str | None = None, allow_unsigned: bool = False,
                   unsigned_sha256: str | None = None) -> RestoreResult:
    """Restore into a new database (``to_url``), or with ``replace`` swap it in for the
    live one, keeping the old one. The target is checked first; then the whole file is
    authenticated (signer, chunks, manifest, signature) and compared with its catalogue
    row before anything is written; the restored database is checked before any swap."""
    from polysec_tui.services.officers.sessions import step_up

    require(actor, "backup.restore")
    if replace == (to_url is not None):
        raise InputError("give either --to URL (a new database) or --replace")
    if replace:
        step_up(rt, actor, code or "")
    trust = BackupConfig.from_settings(rt.settings).trust(allow_unsigned)
    live = rt.engine.url
    stamp = rt.clock().strftime("%Y%m%dT%H%M%SZ")
    if replace:
        target = _replace_target(live, stamp)
    else:
        assert to_url is not None
        target = parse_url(to_url)
        if _same_database(target, live):
            raise InputError("the target is the live database: replacing it is its own "
                             "action (--replace; the console's X)")
    restoring.check_target(target)  # before the long pass: nothing is created
    read = _authenticate(path, identity, trust)  # pass 1: nothing is written
    audit_target = f"backup:{read.backup_id}" if read.backup_id else f"file:{path.name}"[:256]
    if read.error is not None:
        _audit(rt, actor, "backup.restore", audit_target,
               {"result": "refused", "reason": read.error.reason, "path": str(path),
                "sha256": read.sha256, "allow_unsigned": allow_unsigned})
        raise CheckFailed(f"backup {path} failed verification, nothing restored: "
                          f"{read.error.reason}") from None
    opened = read.opened
    assert opened is not None
    backup_id = uuid.UUID(bytes=opened.header.backup_id)
    record, same = _catalogued(rt, read)
    if record is not None and not same:
        reason = (f"the file differs from the catalogue's record of backup {backup_id} "
                  f"(SHA-256 {opened.file_sha256[:16]}…, {opened.file_bytes} bytes; the "
                  f"catalogue has {record.sha256[:16]}…, {record.size_bytes} bytes)")
        _audit(rt, actor, "backup.restore", audit_target,
               {"result": "refused", "reason": reason, "path": str(path),
                "sha256": opened.file_sha256})
        raise CheckFailed(f"backup {path} refused, nothing restored: {reason}")
    if opened.signer is None:
        _accept_unsigned(rt, actor, opened, path, "restore", catalogued=same,
                         expected_sha256=unsigned_sha256)
    kind = str(opened.manifest.get("engine"))
    if engine_kind(target) != kind:
        where = "the live one is" if replace else "--to names"
        raise InputError(f"the backup is of a {kind} database; {where} "
                         f"{engine_kind(target)}")
    # pass 2: authenticated again while loading, and must be the same bytes
    try:
        _restore_into(path, identity, target, trust, opened.file_sha256)
    except CheckFailed as exc:
        _audit(rt, actor, "backup.restore", audit_target,
               {"result": "failed", "reason": exc.message[:500], "path": str(path)})
        raise
    check = restoring.check_restored(target, opened.manifest, rt.cipher)
    check_doc = {"revision": check.revision, "row_counts": check.row_counts,
                 "sampled_fields": check.sampled, "problems": check.problems}
    signer = opened.signer.fingerprint.hex() if opened.signer else None
    details = {"backup_id": str(backup_id), "target": redact(target), "replace": replace,
               "sha256": opened.file_sha256, "signer": signer,
               "catalogue": "matches" if same else "not in the catalogue",
               "result": "ok" if not check.problems else "check failed"}
    if check.problems:
        _audit(rt, actor, "backup.restore", f"backup:{backup_id}", details)
        raise CheckFailed(f"restored {redact(target)} but its check failed (it is kept for "
                          f"inspection; nothing replaced): {'; '.join(check.problems[:5])}")
    old: str | None = None
    note = f"restored into {redact(target)}"
    if replace:
        _audit(rt, actor, "backup.restore", f"backup:{backup_id}",
               {**details, "result": "replacing"})
        rt.engine.dispose()
        if kind == "sqlite":
            assert live.database and target.database
            old = str(restoring.replace_sqlite(Path(live.database), Path(target.database),
                                               stamp))
            note = f"live database replaced; the old one is kept as {old}"
            _append_elsewhere(rt, live, actor, {**details, "old": old})
            target = live
        elif kind == "postgresql":
            old = restoring.replace_postgres(live, target, stamp)
            note = (f"live database replaced; the old one is kept as database {old} "
                    "(drop it when satisfied)")
            _append_elsewhere(rt, live, actor, {**details, "old": old})
            target = live
        else:
            # MariaDB cannot rename a database: the restored one is complete and checked;
            # the operator points polysec and the platform at it.
            old = str(live.database)
            note = ("MariaDB cannot rename a database: restored and checked as "
                    f"{redact(target)}; switch the database URL to it (the old database "
                    f"{old} is untouched)")
            _append_elsewhere(rt, target, actor, {**details, "old": old})
    else:
        _audit(rt, actor, "backup.restore", f"backup:{backup_id}", details)
    return RestoreResult(str(backup_id), redact(target), replace, old, note, check_doc,
                         signer)


def _same_database(a: URL, b: URL) -> bool:
    if engine_kind(a) != engine_kind(b):
        return False
    if engine_kind(a) == "sqlite":
        return bool(a.database and b.database
                    and Path(a.database).expanduser().resolve()
                    == Path(b.database).expanduser().resolve())
    return (a.host, a.port, a.database) == (b.host, b.port, b.database)


# ------------------------------------------------------------------------ list, prune


@dataclass(frozen=True)
class BackupView:
    id: uuid.UUID
    created_at: datetime
    path: str
    engine: str
    size_bytes: int
    sha256: str
    status: str
    verified_at: datetime | None
    file_present: bool
    shipped_at: datetime | None = None
    shipped_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _view(record: BackupRecord) -> BackupView:
    return BackupView(record.id, record.created_at, record.path, record.engine,
                      record.size_bytes, record.sha256, record.status, record.verified_at,
                      Path(record.path).is_file(), record.shipped_at, record.shipped_to)


# ------------------------------------------------------------------------ restore drills

DRILL_KIND = "drill"  # <tmp>/polysec-drill-*: the drill's scratch SQLite
DRILL_FORMAT = "polysec-restore-drill/1"
# The audit checks that judge the restored data itself (the others are about the live
# system: backups, SLAs, the server's TLS and roles).
DRILL_CHECKS = ("encryption_coverage", "blind_index_consistency", "auditlog_chain")


@dataclass
class DrillReport:
    """A restore drill and its signed record (what ``backup drill --json`` prints)."""

    id: str
    path: str
    backup_id: str | None
    started_at: datetime
    finished_at: datetime
    officer: str
    result: str  # pass | fail
    problems: list[str]
    restore_seconds: float | None  # authenticate and load into the scratch database
    checks_seconds: float | None  # the manifest's counts, decryption, the audit checks
    total_seconds: float
    rows: int
    checks: dict[str, str]  # audit check -> pass | warn | fail
    signer: str
    record_file: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _drill_checks(rt: Runtime, target: URL) -> list[Any]:
    """The data audit checks run on the restored database, with the live keyring."""
    from polysec_tui.config import Settings
    from polysec_tui.services.operations import audit_checks

    url = target.render_as_string(hide_password=False)
    engine = make_engine(url, create_dir=False)
    try:
        scratch = Runtime(Settings(url, rt.settings.keyring_path, options=rt.settings.options),
                          engine, rt.keyring, clock=rt.clock)
        ctx = audit_checks.CheckContext(scratch, rt.clock(), None,
                                        {**audit_checks.DEFAULTS, **rt.settings.section("audit")})
        findings = []
        for name in DRILL_CHECKS:
            try:
                findings.append(audit_checks.CHECKS[name].run(ctx))
            except PolysecError as exc:
                findings.append(audit_checks.Finding(name, "fail",
                                                     f"check could not complete: {exc}", ""))
        return findings
    finally:
        engine.dispose()


def drill_backup(rt: Runtime, actor: Actor, identity: Identity, *, path: Path | None = None,
                 scratch: str | None = None) -> DrillReport:
    """Restore ``path`` (default: the newest good backup) into a segregated scratch
    database (a private temporary SQLite file, or a new database on the ``scratch``
    server), check it against its manifest, run the data audit checks and the audit-log
    chain verification on it, drop it, and record the drill: a row of ``backup_drills``
    and a JSON file under ``<backup dir>/drills/``, both signed with this host's backup
    signing key. Audited. A failed drill is recorded, then CheckFailed (exit 1)."""
    require(actor, "backup.run")
    config = BackupConfig.from_settings(rt.settings)
    key = config.load_signing_key()  # before the work: a drill record is always signed
    path = path or latest_backup(rt, actor)
    trust = config.trust()
    started, began = rt.clock(), time.monotonic()
    problems: list[str] = []
    backup_id: uuid.UUID | None = None
    catalogued = False  # the file is the catalogue's file of its backup id
    restore_s = checks_s = None
    rows, checks = 0, {}
    try:
        read = _authenticate(path, identity, trust)
        backup_id = read.backup_id
        catalogued = _catalogued(rt, read)[1]
        if read.error is not None:
            raise read.error
        opened = read.opened
        assert opened is not None
        remove_stale(DRILL_KIND)  # scratch databases left by a killed drill
        with private_tempdir(DRILL_KIND) as tmp:
            target = _scratch_url(str(opened.manifest.get("engine")), rt.engine.url,
                                  scratch, tmp)
            try:
                _restore_into(path, identity, target, trust, opened.file_sha256)
                restore_s = round(time.monotonic() - began, 3)
                checked = time.monotonic()
                restored = restoring.check_restored(target, opened.manifest, rt.cipher)
                rows = sum(restored.row_counts.values())
                problems.extend(restored.problems)
                for finding in _drill_checks(rt, target):
                    checks[finding.check] = finding.status
                    if finding.status == "fail":
                        problems.append(f"{finding.check}: {finding.summary}")
                checks_s = round(time.monotonic() - checked, 3)
            finally:
                try:
                    restoring.drop_database(target)
                except Exception as exc:  # recorded: an operator must drop it
                    problems.append(f"the scratch database {redact(target)} could not be "
                                    f"dropped: {_one_line(exc)}")
    except (CheckFailed, InputError) as exc:
        problems.append(exc.message)
    except Exception as exc:  # a failed drill is recorded, whatever failed
        problems.append(f"the drill stopped: {_one_line(exc)}")
    finished = rt.clock()
    drill_id = uuid.uuid4()
    result, total = ("fail" if problems else "pass"), round(time.monotonic() - began, 3)
    record: dict[str, Any] = {
        "format": DRILL_FORMAT, "id": str(drill_id), "host": socket.gethostname(),
        "database": redact(rt.engine.url), "backup_id": str(backup_id) if backup_id else None,
        "path": str(path), "started_at": started.isoformat(),
        "finished_at": finished.isoformat(), "officer": actor.name, "role": actor.role,
        "result": result, "problems": problems[:20],
        "restore_seconds": restore_s, "checks_seconds": checks_s,
        "total_seconds": total, "rows": rows,
        "checks": checks, "polysec": __version__,
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    signature = base64.b64encode(key.sign(hashlib.sha256(text.encode()).digest())).decode()
    drills = config.directory / "drills"
    record_file = drills / f"drill-{started:%Y%m%dT%H%M%SZ}-{drill_id.hex[:8]}.json"
    # The row first: the record is kept even if its file cannot be written.
    with rt.transaction() as session:
        # A passed drill verified the catalogued file, and more: the catalogue says so.
        drilled = session.get(BackupRecord, backup_id) if catalogued and backup_id else None
        if drilled is not None and drilled.status != "pruned" and result == "pass":
            drilled.status, drilled.verified_at = "verified", finished
        session.add(BackupDrill(
            id=drill_id, backup_id=backup_id, started_at=started, finished_at=finished,
            officer=actor.name[:64], result=result, restore_seconds=restore_s,
            total_seconds=total, record=text, signature=signature,
            signer=str(key.signer)))
        rt.audit.append(session, officer=actor.name, action="backup.drill", at=finished,
                        target=f"backup:{backup_id}" if backup_id else f"file:{path.name}"[:256],
                        details={"drill": str(drill_id), "result": result,
                                 "problems": problems[:5], "restore_seconds": restore_s,
                                 "total_seconds": total,
                                 "record_file": str(record_file)})
    try:
        drills.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"the drill is recorded, but its file cannot be written: cannot "
                         f"create {drills}: {exc.strerror}") from None
    atomic_write(record_file, (json.dumps({"record": record, "signature": signature,
                                           "signer": str(key.signer)}, indent=1)
                               + "\n").encode(), what="drill record", overwrite=False)
    report = DrillReport(str(drill_id), str(path), str(backup_id) if backup_id else None,
                         started, finished, actor.name, result, problems, restore_s,
                         checks_s, total, rows, checks, str(key.signer), str(record_file))
    if problems:
        raise CheckFailed(f"restore drill of {path} failed: {'; '.join(problems[:3])}")
    return report


def _one_line(exc: BaseException) -> str:
    """An unexpected error as one line of a record: its type and its first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


@dataclass(frozen=True)
class DrillView:
    id: str
    backup_id: str | None
    started_at: datetime
    officer: str
    result: str
    restore_seconds: float | None
    total_seconds: float
    signature: str  # valid (by a key of [backup] signers) | invalid | untrusted signer

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def drill_signature(text: str, signature: str, signer: str,
                    signers: Sequence[Signer]) -> str:
    """Whether a drill record's signature holds and its signer is trusted."""
    try:
        key = Signer.parse(signer)
        raw = base64.b64decode(signature, validate=True)
    except (InputError, ValueError):
        return "invalid"
    if not key.verify(raw, hashlib.sha256(text.encode()).digest()):
        return "invalid"
    return "valid" if key in signers else "untrusted signer"


def read_drill(row: BackupDrill, signers: Sequence[Signer]) -> DrillView:
    """What a drill row shows, taken from its signed record where the signature holds
    and the record is this row's (its columns are only an index); otherwise the columns,
    marked ``invalid``."""
    status = drill_signature(row.record, row.signature, row.signer, signers)
    try:
        record = json.loads(row.record)
    except ValueError:
        record, status = {}, "invalid"
    if not isinstance(record, dict) or record.get("id") != str(row.id):
        record, status = {}, "invalid"  # a valid record copied into another row
    if status == "invalid" or not record:
        return DrillView(str(row.id), str(row.backup_id) if row.backup_id else None,
                         row.started_at, row.officer, row.result, row.restore_seconds,
                         row.total_seconds, "invalid")
    return DrillView(str(row.id), record.get("backup_id"),
                     datetime.fromisoformat(record["started_at"]), str(record["officer"]),
                     str(record["result"]), record.get("restore_seconds"),
                     float(record["total_seconds"]), status)


def list_drills(rt: Runtime, actor: Actor, *, limit: int = 50) -> list[DrillView]:
    """The latest drills, newest first, each with its signature checked."""
    require(actor, "backup.run")
    signers = BackupConfig.from_settings(rt.settings).signers
    with rt.sessions() as session:
        rows = session.scalars(select(BackupDrill).order_by(BackupDrill.started_at.desc())
                               .limit(limit)).all()
        return [read_drill(d, signers) for d in rows]


def latest_backup(rt: Runtime, actor: Actor) -> Path:
    """The file of the newest good backup in the catalogue (``--latest``)."""
    require(actor, "backup.run")
    with rt.sessions() as session:
        record = session.scalars(
            select(BackupRecord).where(BackupRecord.status.in_(GOOD))
            .order_by(BackupRecord.created_at.desc()).limit(1)).first()
    if record is None:
        raise InputError("the catalogue has no complete or verified backup")
    return Path(record.path)


def list_backups(rt: Runtime, actor: Actor) -> list[BackupView]:
    require(actor, "backup.run")
    with rt.sessions() as session:
        records = session.scalars(
            select(BackupRecord).order_by(BackupRecord.created_at.desc())).all()
        return [_view(r) for r in records]


def stale_partials(rt: Runtime, directory: Path | None = None) -> list[Path]:
    """Unfinished files of interrupted `create`s (never listed as backups)."""
    directory = directory or BackupConfig.from_settings(rt.settings).directory
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX + PARTIAL))


def select_kept(created: Sequence[tuple[uuid.UUID, datetime]], *, daily: int, weekly: int,
                monthly: int) -> dict[uuid.UUID, list[str]]:
    """Which backups a daily/weekly/monthly policy keeps, and why: newest first, the
    newest backup of each of the last ``daily`` days that have one, likewise for ISO
    weeks and months (restic's and borg's rule)."""
    kept: dict[uuid.UUID, list[str]] = {}
    ordered = sorted(created, key=lambda c: c[1], reverse=True)
    rules: list[tuple[str, int, Callable[[datetime], object]]] = [
        ("daily", daily, lambda t: t.date()),
        ("weekly", weekly, lambda t: t.isocalendar()[:2]),
        ("monthly", monthly, lambda t: (t.year, t.month)),
    ]
    for label, limit, bucket in rules:
        seen: set[object] = set()
        for backup_id, at in ordered:
            if len(seen) >= limit:
                break
            key = bucket(at)
            if key not in seen:
                seen.add(key)
                kept.setdefault(backup_id, []).append(label)
    return kept


@dataclass
class PrunePlan:
    keep: list[dict[str, Any]]
    remove: list[dict[str, Any]]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune_backups(rt: Runtime, actor: Actor, *, keep_daily: int = 7, keep_weekly: int = 4,
                  keep_monthly: int = 12, dry_run: bool = False) -> PrunePlan:
    """Delete the files of good backups the policy does not keep; their catalogue rows
    stay, marked ``pruned``."""
    require(actor, "backup.run")
    if keep_daily + keep_weekly + keep_monthly <= 0:
        raise InputError("the policy would keep no backup at all")
    with rt.sessions() as session:
        records = session.scalars(
            select(BackupRecord).where(BackupRecord.status.in_(GOOD))).all()
    kept = select_kept([(r.id, r.created_at) for r in records], daily=keep_daily,
                       weekly=keep_weekly, monthly=keep_monthly)
    ordered = sorted(records, key=lambda r: r.created_at, reverse=True)
    plan = PrunePlan(
        keep=[{"id": str(r.id), "created_at": r.created_at.isoformat(), "path": r.path,
               "reasons": kept[r.id]} for r in ordered if r.id in kept],
        remove=[{"id": str(r.id), "created_at": r.created_at.isoformat(), "path": r.path}
                for r in ordered if r.id not in kept],
        dry_run=dry_run,
    )
    if dry_run:
        return plan
    now = rt.clock()
    doomed: list[Path] = []
    with rt.transaction() as session:
        for item in plan.remove:
            record = session.get(BackupRecord, uuid.UUID(item["id"]))
            if record is None:
                continue
            doomed.append(Path(record.path))
            record.status = "pruned"
        rt.audit.append(session, officer=actor.name, action="backup.prune", at=now,
                        details={"removed": [i["id"] for i in plan.remove],
                                 "kept": len(plan.keep), "policy": {
                                     "daily": keep_daily, "weekly": keep_weekly,
                                     "monthly": keep_monthly}})
    for path in doomed:  # after the commit: a pruned row never names a file still needed
        path.unlink(missing_ok=True)
    return plan


# ------------------------------------------------------------------------------- ship


@dataclass
class ShipResult:
    path: str
    backup_id: str
    to: str
    remote_path: str
    manifest_path: str
    size_bytes: int
    sha256: str
    sent_bytes: int
    resumed_from: int
    already_there: bool
    catalogue: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TargetCheckResult:
    to: str
    canary: str
    refused: dict[str, bool]
    canary_intact: bool
    append_only: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_ship_target(rt: Runtime, actor: Actor, to: str, *, known_hosts: Path,
                      identity: Path) -> TargetCheckResult:
    """Prove with a canary file that the SFTP target refuses removal, renames, overwrite,
    truncation and mode changes (``sftp.check_target``); audited.
    A target that allows any of them is refused (CheckFailed): an intruder on this host
    could erase the offsite copies through it."""
    from polysec_tui.backup import sftp  # paramiko only for those who ship

    require(actor, "backup.run")
    target = sftp.SftpTarget.parse(to)
    try:
        check = sftp.check_target(target, known_hosts, identity)
    except PolysecError as exc:
        _audit(rt, actor, "backup.ship.check_target", target.url()[:256],
               {"result": "failed", "reason": exc.message[:500]})
        raise
    result = TargetCheckResult(target.url(), check.canary, check.refused, check.intact,
                               check.append_only)
    _audit(rt, actor, "backup.ship.check_target", target.url()[:256],
           {"result": "ok" if check.append_only else "failed", "canary": check.canary,
            "allowed": check.allowed, "canary_intact": check.intact})
    if not check.append_only:
        allowed = ", ".join(check.allowed) or "none"
        changed = "" if check.intact else "; the canary file was changed or removed"
        raise CheckFailed(f"{target.url()} is not append-only: it allowed {allowed}{changed}; "
                          "an intruder here could erase the offsite copies through it "
                          "(docs/backups.md has the sshd_config block)")
    return result


def ship_backup(rt: Runtime, actor: Actor, path: Path, to: str, *, known_hosts: Path,
                identity: Path, progress: Callable[[int, int], None] | None = None,
                append_only: bool = False) -> ShipResult:
    """Upload a finished backup to ``sftp://user@host[:port]/dir`` (see
    ``backup/sftp.py``: pinned host key, key auth, ``.partial`` + rename, resume, read-back
    SHA-256, manifest last; on an ``append_only`` target straight to NAME, no resume, no
    mode change) and record it in the catalogue (``shipped_at``/``shipped_to``)."""
    from polysec_tui.backup import sftp  # paramiko only for those who ship

    require(actor, "backup.run")
    target = sftp.SftpTarget.parse(to)
    audit_target = f"file:{path.name}"[:256]
    try:
        if path.name.endswith(PARTIAL):
            raise InputError("an unfinished backup (.partial) is never shipped")
        if not path.is_file():
            raise InputError(f"no such backup file: {path}")
        try:
            with path.open("rb") as src:
                header = read_header(src)
        except EnvelopeError as exc:
            raise InputError(f"{path} is not a polysec backup: {exc.reason}") from None
        backup_id = uuid.UUID(bytes=header.backup_id)
        audit_target = f"backup:{backup_id}"
        with rt.sessions() as session:
            record = session.get(BackupRecord, backup_id)
            recorded = None if record is None else (record.sha256, record.status,
                                                    record.created_at)
        if recorded is not None and recorded[1] in ("failed", "pruned"):
            raise InputError(f"backup {backup_id} is {recorded[1]} in the catalogue; "
                             "not shipped")
        manifest = {"format": "polysec-backup-ship", "backup_id": str(backup_id),
                    "engine": header.meta.get("engine"),
                    "created_at": header.meta.get("created_at"),
                    "recipients": header.recipient_fingerprints}
        if recorded is not None:
            # The catalogue's digest first: never ship a file swapped since `create`.
            local = sftp.local_sha256(path)
            if local != recorded[0]:
                raise CheckFailed("the file's SHA-256 differs from the catalogue's record "
                                  "of this backup; not shipped")
        shipped = sftp.ship_file(path, target, known_hosts, identity, manifest=manifest,
                                 progress=progress, append_only=append_only)
    except PolysecError as exc:
        _audit(rt, actor, "backup.ship", audit_target,
               {"result": "failed", "to": target.url(), "reason": exc.message[:500]})
        raise
    now = rt.clock()
    shipped_to = f"{target.url().rstrip('/')}/{path.name}"
    with rt.transaction() as session:
        record = session.get(BackupRecord, backup_id)
        if record is not None:
            record.shipped_at = now
            record.shipped_to = shipped_to[:1024]
        rt.audit.append(session, officer=actor.name, action="backup.ship", at=now,
                        target=audit_target,
                        details={"result": "ok", "to": shipped_to, "sha256": shipped.sha256,
                                 "size_bytes": shipped.size, "sent_bytes": shipped.sent_bytes,
                                 "resumed_from": shipped.resumed_from,
                                 "already_there": shipped.already_there,
                                 "append_only": append_only})
    return ShipResult(str(path), str(backup_id), shipped_to, shipped.remote_path,
                      shipped.manifest_path, shipped.size, shipped.sha256, shipped.sent_bytes,
                      shipped.resumed_from, shipped.already_there,
                      "recorded" if record is not None else "not in the catalogue")
