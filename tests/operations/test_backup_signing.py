"""Backups prove who made them (issue 16, part 2), and the files at rest and input
errors of the backup commands (parts 5 and 6).

The attacker here holds the recipient public key (it sits on the backup host by design)
and can read, copy and write the backup directory: whatever file they make, verify,
`verify --restore-test` and restore (`--to` and `--replace`) refuse it, and the
catalogue does not change because of it. The forgeries start from the decrypted payload
of a genuine backup (a real forger builds theirs from a copy of the database, as in the
issue); what matters is who signs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from polysec_tui.backup import envelope as env
from polysec_tui.backup import restore as restoring
from polysec_tui.backup.envelope import (
    Identity,
    Signer,
    SigningKey,
    Trust,
    UnsignedBackup,
    UntrustedSigner,
)
from polysec_tui.backup.restore import drop_database
from polysec_tui.backup.snapshot import snapshot
from polysec_tui.backup.tempdirs import private_tempdir, remove_stale
from polysec_tui.db.engine import parse_url
from polysec_tui.db.models import AuditLogEntry, BackupRecord
from polysec_tui.errors import CheckFailed, InputError, RefusedError
from polysec_tui.services.officers import sessions
from polysec_tui.services.operations import backups
from polysec_tui.services.runtime import Runtime
from tests.support.backups import backup_toml, contents, forge, new_database_url, trust_of
from tests.support.cli import Result
from tests.support.helpers import account, ingest
from tests.support.officers import Staff

HOST = SigningKey.generate()
TRUST = Trust((HOST.signer,))


# ------------------------------------------------------------------------- forgeries


@dataclasses.dataclass(frozen=True)
class Impostor(SigningKey):
    """Signs with its own private key but names another signer in the header."""

    claimed: Signer | None = None

    @property
    def signer(self) -> Signer:
        assert self.claimed is not None
        return self.claimed


def sqlite_edit(tmp: Path) -> Callable[[bytes], bytes]:
    """The issue's attack on a SQLite snapshot: an officer's password hash swapped and
    the withdrawals approved."""

    def edit(data: bytes) -> bytes:
        db = tmp / f"edit-{uuid.uuid4().hex[:6]}.db"
        db.write_bytes(data)
        conn = sqlite3.connect(db)
        conn.execute("UPDATE officers SET password_hash = 'attacker' WHERE name = 'root'")
        conn.execute("UPDATE withdrawals SET status = 'approved'")
        conn.commit()
        conn.close()
        return db.read_bytes()

    return edit


def make(payload: bytes, key: SigningKey | None, *, version: int = 3,
         who: Identity | None = None) -> tuple[bytes, Identity]:
    alice = who or Identity.generate()
    out = io.BytesIO()
    env.write_stream(io.BytesIO(payload), out, [alice.recipient], {"engine": "test"},
                     {"alembic_revision": "x"}, signing_key=key, chunk_log2=6,
                     version=version)
    return out.getvalue(), alice


def reason(blob: bytes, who: Identity, trust: Trust = TRUST) -> str:
    with pytest.raises(env.EnvelopeError) as info:
        env.read_envelope(io.BytesIO(blob), who, trust=trust)
    return info.value.reason


def signature_at(blob: bytes) -> int:
    """Offset of the signature frame (the last 69 bytes)."""
    return len(blob) - 5 - env.SIGNATURE_LEN


# ------------------------------------------------------------------- the format alone


def test_v3_is_signed_and_names_its_signer() -> None:
    blob, alice = make(os.urandom(150), HOST)
    opened = env.read_envelope(io.BytesIO(blob), alice, trust=TRUST)
    assert opened.header.version == 3 and opened.signer == HOST.signer
    assert opened.header.signer == HOST.signer.public
    assert blob[signature_at(blob):signature_at(blob) + 5] == struct.pack(">cI", b"S", 64)
    assert opened.file_bytes == len(blob)


def test_a_file_made_with_the_recipient_key_alone_is_refused() -> None:
    payload = os.urandom(150)
    unsigned, alice = make(payload, None, version=2)
    assert reason(unsigned, alice).startswith("an unsigned backup (format version 2")
    with pytest.raises(UnsignedBackup):
        env.read_envelope(io.BytesIO(unsigned), alice, trust=TRUST)
    # Allowed explicitly, it opens (and says it is unsigned).
    opened = env.read_envelope(io.BytesIO(unsigned), alice,
                               trust=Trust((HOST.signer,), allow_unsigned=True))
    assert opened.signer is None and not opened.signed
    # Signed by the forger's own key: untrusted, even when unsigned files are allowed.
    eve = SigningKey.generate()
    own, alice = make(payload, eve, who=alice)
    for trust in (TRUST, Trust((HOST.signer,), allow_unsigned=True), Trust()):
        with pytest.raises(UntrustedSigner, match="signed by an untrusted key"):
            env.read_envelope(io.BytesIO(own), alice, trust=trust)
    # Naming the host's key in the header without its private key: the signature fails.
    claimed, alice = make(payload, Impostor(eve.private, HOST.signer), who=alice)
    assert reason(claimed, alice).startswith(
        f"the signature does not verify with signer {HOST.signer.fingerprint.hex()}")


def test_the_signer_is_refused_before_any_decryption() -> None:
    blob, _alice = make(b"x" * 100, SigningKey.generate())
    assert reason(blob, Identity.generate()).startswith("signed by an untrusted key")


def test_altered_signature_header_manifest_or_appended_bytes_are_refused() -> None:
    blob, alice = make(os.urandom(150), HOST)
    sig = signature_at(blob)
    header_len = len(env.read_header(io.BytesIO(blob)).raw)
    for i in range(sig + 5, len(blob)):  # every bit of the signature
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= bit
            assert reason(bytes(bad), alice).startswith("the signature does not verify")
    # The signer's key in the header: another (untrusted) key, or the header fails.
    signer_at = header_len - env.SIGNER_LEN
    bad = bytearray(blob)
    bad[signer_at] ^= 0x01
    assert reason(bytes(bad), alice).startswith("signed by an untrusted key")
    trusting_both = Trust((HOST.signer, Signer(bytes(bad[signer_at:header_len]))))
    assert reason(bytes(bad), alice, trusting_both)  # other header: chunk 0 fails
    # Removed, cut, lengthened, appended to, or taken from another backup.
    assert reason(blob[:sig], alice).startswith("the signature is missing after the manifest")
    assert reason(blob[:-1], alice) == "truncated: the file ends inside the signature"
    assert reason(blob[:sig + 3], alice).startswith("truncated: the file ends inside the "
                                                    "signature frame")
    longer = blob[:sig] + struct.pack(">cI", b"S", 65) + blob[sig + 5:] + b"\0"
    assert "impossible length 65" in reason(longer, alice)
    assert reason(blob + b"\0", alice) == "1 unexpected bytes after the signature (appended data)"
    assert reason(blob + blob[sig:], alice).startswith("69 unexpected bytes after the signature")
    other, _ = make(os.urandom(150), HOST, who=alice)
    assert reason(blob[:sig] + other[signature_at(other):], alice).startswith(
        "the signature does not verify")
    # A v3 file relabelled as v2 without its signature: the wrapped key names the version.
    relabelled = bytearray(blob[:sig])
    relabelled[8] = 2
    del relabelled[signer_at:header_len]
    assert "does not unwrap" in reason(bytes(relabelled), alice,
                                       Trust((HOST.signer,), allow_unsigned=True))


def test_the_signature_covers_every_byte_before_it() -> None:
    blob, alice = make(os.urandom(150), HOST)
    for i in range(signature_at(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        assert reason(bytes(bad), alice)
    # Re-signed by the host (the one key that can), a changed manifest frame is still
    # caught by its tag: the manifest is sealed under this backup's data key.
    sig = signature_at(blob)
    bad = bytearray(blob[:sig])
    bad[-1] ^= 0x01
    digest = __import__("hashlib").sha256(bytes(bad)).digest()
    resigned = bytes(bad) + struct.pack(">cI", b"S", 64) + HOST.sign(digest)
    assert reason(resigned, alice).startswith("the manifest failed authentication")


def test_signing_key_file_is_private_and_written_once(tmp_path: Path) -> None:
    path = tmp_path / "host.key"
    HOST.write_new(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(path).signer == HOST.signer
    assert Signer.parse(str(HOST.signer)) == HOST.signer
    with pytest.raises(InputError, match="never overwritten"):
        SigningKey.generate().write_new(path)
    path.chmod(0o640)
    with pytest.raises(RefusedError, match="accessible to group or others"):
        SigningKey.load(path)
    with pytest.raises(InputError, match="must start with 'polysec-ed25519:'"):
        Signer.parse(str(Identity.generate().recipient))


# -------------------------------------------------------------- on every database


def host_key(rt: Runtime) -> SigningKey:
    path = backups.BackupConfig.from_settings(rt.settings).signing_key
    assert path is not None
    return SigningKey.load(path)


def statuses(rt: Runtime) -> dict[uuid.UUID, str]:
    with rt.sessions() as s:
        return {r.id: r.status for r in s.scalars(select(BackupRecord))}


def audit_actions(rt: Runtime) -> list[tuple[str, dict[str, Any]]]:
    with rt.sessions() as s:
        rows = s.execute(select(AuditLogEntry.action, AuditLogEntry.details)
                         .where(AuditLogEntry.action.like("backup.%"))
                         .order_by(AuditLogEntry.seq)).all()
    return [(a, json.loads(d) if isinstance(d, str) else d) for a, d in rows]


def nothing_created(target: str, live: str) -> None:
    """Neither the target nor a ``<live>_restored_*`` database (or file) exists."""
    url, live_url = parse_url(target), parse_url(live)
    if url.get_backend_name() == "sqlite":
        assert not Path(url.database or "").exists()
        live_path = Path(live_url.database or "")
        assert not list(live_path.parent.glob(f"{live_path.name}.restored-*"))
        return
    admin = restoring._admin_engine(url)
    try:
        with admin.connect() as conn:
            if url.get_backend_name() == "postgresql":
                sql = "SELECT datname FROM pg_database"
            else:
                sql = "SELECT schema_name FROM information_schema.schemata"
            names = {name for (name,) in conn.exec_driver_sql(sql)}
    finally:
        admin.dispose()
    assert url.database not in names
    assert not [n for n in names if n.startswith(f"{live_url.database}_restored_")]


def no_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if anything would create a database (a scratch, restored or target one)."""

    def refuse(*_args: Any) -> Any:
        pytest.fail("a database was about to be created for a refused file")

    monkeypatch.setattr(restoring, "open_loader", refuse)


@pytest.fixture
def made(staff: Staff) -> backups.CreatedBackup:
    return backups.create_backup(staff.rt, staff.actors["cron"])


def test_forged_backups_are_refused_by_verify_restore_test_and_replace(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = staff.rt
    trust = trust_of(rt)
    edit = sqlite_edit(tmp_path) if db_url.startswith("sqlite") else None
    eve = SigningKey.generate()
    forgeries = {
        "unsigned": forge(made.path, identity, trust, tmp_path / "unsigned.psbk",
                          signing_key=None, version=2, edit=edit),
        "own key": forge(made.path, identity, trust, tmp_path / "own.psbk",
                         signing_key=eve, edit=edit),
        "claims the host": forge(made.path, identity, trust, tmp_path / "claims.psbk",
                                 signing_key=Impostor(eve.private, host_key(rt).signer),
                                 edit=edit),
    }
    reasons = {"unsigned": "an unsigned backup", "own key": "signed by an untrusted key",
               "claims the host": "the signature does not verify"}
    before = contents(rt.engine)
    no_loader(monkeypatch)
    for name, path in forgeries.items():
        for restore_test in (False, True):
            with pytest.raises(CheckFailed, match=reasons[name]):
                backups.verify_backup(rt, staff.actors["cron"], path, identity,
                                      restore_test=restore_test)
    with pytest.raises(CheckFailed, match="nothing restored: an unsigned backup"):
        backups.restore_backup(rt, staff.actors["root"], forgeries["unsigned"], identity,
                               replace=True, code=staff.next_code("root"))
    with pytest.raises(CheckFailed, match="nothing restored: the signature does not verify"):
        backups.restore_backup(rt, staff.actors["root"], forgeries["claims the host"],
                               identity, replace=True, code=staff.next_code("root"))
    target = new_database_url(db_url, tmp_path)
    with pytest.raises(CheckFailed, match="nothing restored: signed by an untrusted key"):
        backups.restore_backup(rt, staff.actors["root"], forgeries["own key"], identity,
                               to_url=target)
    after = contents(rt.engine)
    for changed in ("audit_log", "audit_head", "officers"):  # the audit, the codes used
        after.pop(changed), before.pop(changed)
    assert after == before  # the live database is untouched
    nothing_created(target, db_url)
    assert statuses(rt) == {made.id: "complete"}
    refused = [d["result"] for a, d in audit_actions(rt) if a == "backup.restore"]
    assert refused == ["refused"] * 3


def test_unsigned_backups_need_allow_unsigned_which_is_audited(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str) -> None:
    """A v2 file made before this change (its catalogue row has its SHA-256)."""
    rt = staff.rt
    legacy_id = uuid.uuid4()
    old = forge(made.path, identity, trust_of(rt), tmp_path / "legacy-v2.psbk",
                signing_key=None, version=2, backup_id=legacy_id.bytes)
    with rt.transaction() as s:
        s.add(BackupRecord(id=legacy_id, created_at=made.created_at, path=str(old),
                           engine=made.engine, size_bytes=old.stat().st_size,
                           sha256=backups._sha256_of(old.open("rb")),
                           alembic_revision=made.alembic_revision or "", field_key_ids={},
                           status="complete"))
    with pytest.raises(CheckFailed, match="refused without --allow-unsigned"):
        backups.verify_backup(rt, staff.actors["cron"], old, identity)
    assert statuses(rt)[legacy_id] == "complete"  # a refusal, not a verdict
    target = new_database_url(db_url, tmp_path)
    with pytest.raises(CheckFailed, match="refused without --allow-unsigned"):
        backups.restore_backup(rt, staff.actors["root"], old, identity, to_url=target)
    assert not any(a == "backup.allow_unsigned" for a, _d in audit_actions(rt))

    report = backups.verify_backup(rt, staff.actors["cron"], old, identity,
                                   allow_unsigned=True)
    assert report.ok and report.signer is None and report.catalogue == "matches"
    assert statuses(rt)[legacy_id] == "verified"
    try:
        result = backups.restore_backup(rt, staff.actors["root"], old, identity,
                                        to_url=target, allow_unsigned=True)
        assert result.check["problems"] == [] and result.signer is None
    finally:
        drop_database(parse_url(target))
    allowed = [d for a, d in audit_actions(rt) if a == "backup.allow_unsigned"]
    assert [(d["for"], d["format_version"]) for d in allowed] == [("verify", 2),
                                                                  ("restore", 2)]
    assert {d["sha256"] for d in allowed} == {report.sha256}


def test_a_tampered_or_forged_copy_never_marks_the_catalogued_backup_failed(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str) -> None:
    rt = staff.rt
    trust = trust_of(rt)
    blob = made.path.read_bytes()
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    copies = {
        "flipped": bytes(flipped),
        "cut": blob[:-100],
        "appended": blob + b"\0",
        "unsigned, same id": forge(made.path, identity, trust, tmp_path / "a.psbk",
                                   signing_key=None, version=2,
                                   backup_id=made.id.bytes).read_bytes(),
        "own key, same id": forge(made.path, identity, trust, tmp_path / "b.psbk",
                                  signing_key=SigningKey.generate(),
                                  backup_id=made.id.bytes).read_bytes(),
    }
    genuine = made.path.read_bytes()
    for rounds in ("complete", "verified"):
        for name, data in copies.items():
            copy = tmp_path / f"copy-{name}.psbk"
            copy.write_bytes(data)
            for path in (copy, made.path):  # a copy elsewhere, or swapped in its place
                if path == made.path:
                    made.path.write_bytes(data)
                with pytest.raises(CheckFailed):
                    backups.verify_backup(rt, staff.actors["cron"], path, identity,
                                          allow_unsigned=True)
                made.path.write_bytes(genuine)
                assert statuses(rt)[made.id] == rounds, name
        report = backups.verify_backup(rt, staff.actors["cron"], made.path, identity)
        assert report.ok and report.catalogue == "matches"
    # The audit log has every attempt, with the catalogue left alone.
    failed = [d for a, d in audit_actions(rt) if a == "backup.verify" and d["result"] != "ok"]
    assert len(failed) == 2 * 2 * len(copies)
    assert not any(d["catalogue_updated"] for d in failed)


def test_a_special_file_in_place_of_a_backup_is_refused_at_once(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str) -> None:
    """A FIFO would block the reader, /dev/zero would never end (the SHA-256 of a
    failing file is computed to compare it with the catalogue)."""
    if not db_url.startswith("sqlite"):
        pytest.skip("refused before the database is read")
    made.path.unlink()
    os.mkfifo(made.path)
    zero = tmp_path / "zero.psbk"
    zero.symlink_to("/dev/zero")
    for path in (made.path, zero):
        with pytest.raises(InputError, match="is a special file, not a backup file"):
            backups.verify_backup(staff.rt, staff.actors["cron"], path, identity)
        with pytest.raises(InputError, match="is a special file, not a backup file"):
            backups.restore_backup(staff.rt, staff.actors["root"], path, identity,
                                   to_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert statuses(staff.rt) == {made.id: "complete"}


def test_restore_refuses_a_file_that_differs_from_the_catalogue(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even validly signed (here by the host's own key, as a thief of that key could):
    the catalogue row of the backup id has another SHA-256."""
    rt = staff.rt
    resigned = forge(made.path, identity, trust_of(rt), tmp_path / "resigned.psbk",
                     signing_key=host_key(rt), backup_id=made.id.bytes)
    no_loader(monkeypatch)
    target = new_database_url(db_url, tmp_path)
    with pytest.raises(CheckFailed, match="differs from the catalogue's record of backup"):
        backups.restore_backup(rt, staff.actors["root"], resigned, identity, to_url=target)
    with pytest.raises(CheckFailed, match="differs from the catalogue's record of backup"):
        backups.restore_backup(rt, staff.actors["root"], resigned, identity, replace=True,
                               code=staff.next_code("root"))
    with pytest.raises(CheckFailed, match="not the catalogued file"):
        backups.verify_backup(rt, staff.actors["cron"], resigned, identity)
    assert statuses(rt) == {made.id: "complete"}
    nothing_created(target, db_url)


def test_the_second_pass_must_read_the_file_the_first_accepted(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older genuine backup swapped in between the two passes (a rollback) is not
    restored."""
    rt = staff.rt
    staff.clock.advance(seconds=60)
    ingest(rt, "accounts", account("LATER"))
    newer = backups.create_backup(rt, staff.actors["cron"])
    real = restoring.open_loader

    def swap_then_open(target: Any) -> Any:
        newer.path.write_bytes(made.path.read_bytes())
        return real(target)

    monkeypatch.setattr(restoring, "open_loader", swap_then_open)
    target = new_database_url(db_url, tmp_path)
    with pytest.raises(CheckFailed, match="changed since it was verified"):
        backups.restore_backup(rt, staff.actors["root"], newer.path, identity, to_url=target)
    nothing_created(target, db_url)  # the loader removed what it had created


def test_a_file_swapped_during_the_restore_test_leaves_the_catalogue_alone(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """verify --restore-test: the first pass judged the catalogued file intact; another
    file swapped in before the second pass fails the verification without marking the
    genuine backup failed."""
    rt = staff.rt
    staff.clock.advance(seconds=60)
    ingest(rt, "accounts", account("LATER"))
    newer = backups.create_backup(rt, staff.actors["cron"])
    genuine = newer.path.read_bytes()
    real = restoring.open_loader

    def swap_then_open(target: Any) -> Any:
        newer.path.write_bytes(made.path.read_bytes())
        return real(target)

    monkeypatch.setattr(restoring, "open_loader", swap_then_open)
    with pytest.raises(CheckFailed, match="changed since it was verified"):
        backups.verify_backup(rt, staff.actors["cron"], newer.path, identity,
                              restore_test=True)
    assert statuses(rt)[newer.id] == "complete"
    newer.path.write_bytes(genuine)


# ------------------------------------------------------------------- files at rest


def test_a_sqlite_snapshot_is_private_from_its_first_byte(staff: Staff, tmp_path: Path,
                                                          db_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("only SQLite snapshots are files (pg_dump and mariadb-dump stream)")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    old = os.umask(0o022)
    try:
        _info, stream = snapshot(db_url)
        next(iter(stream))
        try:
            [directory] = list(tmp.iterdir())
            assert directory.name.startswith("polysec-snapshot-")
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}
            assert modes["snapshot.db"] == 0o600, modes
            assert all(mode == 0o600 for mode in modes.values()), modes
        finally:
            stream.close()  # type: ignore[attr-defined]
        assert list(tmp.iterdir()) == []
    finally:
        os.umask(old)


def test_a_restored_sqlite_database_is_private(staff: Staff, identity: Identity,
                                               made: backups.CreatedBackup, tmp_path: Path,
                                               db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("server databases are not files of polysec")
    target = tmp_path / "new" / "restored.db"
    old = os.umask(0o022)
    try:
        backups.restore_backup(staff.rt, staff.actors["root"], made.path, identity,
                               to_url=f"sqlite:///{target}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    for path in target.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_private_tempdirs_of_dead_processes_are_removed_and_live_ones_kept(
        tmp_path: Path) -> None:
    code = ("import os, signal, sys\nfrom pathlib import Path\n"
            "from polysec_tui.backup.tempdirs import private_tempdir\n"
            "with private_tempdir('snapshot', Path(sys.argv[1])) as d:\n"
            "    (d / 'snapshot.db').write_bytes(b'plaintext')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False,
                          capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    [dead] = list(tmp_path.iterdir())
    assert dead.name.startswith("polysec-snapshot-") and (dead / "snapshot.db").exists()
    stale_init = tmp_path / ".polysec-snapshot-init-old"
    stale_init.mkdir()
    os.utime(stale_init, (0, 0))
    fresh_init = tmp_path / ".polysec-snapshot-init-new"
    fresh_init.mkdir()
    other_kind = tmp_path / "polysec-verify-abc"
    other_kind.mkdir()
    with private_tempdir("snapshot", tmp_path) as alive:
        assert set(remove_stale("snapshot", tmp_path)) == {dead, stale_init}
        assert alive.is_dir() and not dead.exists() and not stale_init.exists()
        assert fresh_init.exists() and other_kind.exists()
    assert not alive.exists()


# ------------------------------------------------------------------ the command line


def cli_env(staff: Staff, db_url: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment of a `polysec` command run by the automation account."""
    rt = staff.rt
    token, _ = sessions.create_token(rt, staff.actors["root"], "cron")
    config = tmp_path / "polysec.toml"
    config.write_text(backup_toml(rt.settings.options))
    env = {"POLYSEC_DB_URL": db_url, "POLYSEC_KEYRING": str(rt.settings.keyring_path),
           "POLYSEC_CONFIG": str(config), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "POLYSEC_TOKEN": token}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from polysec_tui.commands import common
    from polysec_tui.services.runtime import open_runtime

    # The commands read the staff's clock: its sessions and codes are at FIXED_NOW.
    monkeypatch.setattr(common, "open_runtime",
                        lambda settings: open_runtime(settings, clock=staff.clock))
    return config


def one_line_error(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polysec: error: "), result.err
    assert "internal error" not in result.err and "Traceback" not in result.err
    return lines[0]


def test_unwritable_targets_are_one_line_and_exit_2(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.cli import run_cli

    cli_env(staff, db_url, tmp_path, monkeypatch)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for where in ("/proc", "/proc/sys/polysec", str(a_file), str(a_file / "sub")):
        result = run_cli(capsys, "backup", "create", "--to", where)
        assert result.code == 2, (where, result.err)
        assert where.split("/")[1] in one_line_error(result)
    assert len(backups.list_backups(staff.rt, staff.actors["cron"])) == 1

    url = parse_url(db_url)
    targets = [f"sqlite:////proc/{uuid.uuid4().hex}.db", f"sqlite:///{a_file}/x.db",
               f"sqlite:///{a_file}", f"sqlite:///{tmp_path}"]
    if url.get_backend_name() != "sqlite":  # a server that cannot be reached
        targets = [url.set(port=1, database="polysec_nowhere").render_as_string(
            hide_password=False)]
    # Restore runs as an admin: log in as root through the session file.
    token, _ = staff.login("root")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    for target in targets:
        result = run_cli(capsys, "backup", "restore", str(made.path), "--identity",
                         str(write_identity(identity, tmp_path)), "--to", target)
        assert result.code == 2, (target, result.err)
        one_line_error(result)


def write_identity(identity: Identity, tmp_path: Path) -> Path:
    path = tmp_path / "offline.key"
    if not path.exists():
        identity.write_new(path)
    return path


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_restore_directory_is_exit_2(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("a directory is a SQLite target")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="not writable"):
        backups.restore_backup(staff.rt, staff.actors["root"], made.path, identity,
                               to_url=f"sqlite:///{locked / 'x.db'}")


def test_create_needs_a_trusted_signing_key_of_its_own(
        staff: Staff, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the key is checked before the database is touched")
    from tests.support.cli import run_cli

    config = cli_env(staff, db_url, tmp_path, monkeypatch)
    options = staff.rt.settings.options["backup"]
    key_path = Path(options["signing_key"])

    def configure(**changes: Any) -> None:
        config.write_text(backup_toml({"backup": {
            k: v for k, v in {**options, **changes}.items() if v is not None}}))

    configure(signing_key=None)
    result = run_cli(capsys, "backup", "create")
    assert result.code == 2 and "keygen --signing" in one_line_error(result)
    configure(signers=[str(SigningKey.generate().signer)])
    result = run_cli(capsys, "backup", "create")
    assert result.code == 2 and "is not in [backup] signers" in one_line_error(result)
    configure()
    key_path.chmod(0o644)
    result = run_cli(capsys, "backup", "create")
    assert result.code == 3 and "accessible to group or others" in one_line_error(result)
    key_path.chmod(0o600)
    result = run_cli(capsys, "backup", "create", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["signer"] == options["signers"][0]


def test_the_commands_refuse_forgeries_and_allow_unsigned_on_request(
        staff: Staff, identity: Identity, made: backups.CreatedBackup,
        tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the services are tested on every engine above; the wiring here")
    from tests.support.cli import run_cli

    cli_env(staff, db_url, tmp_path, monkeypatch)
    key = write_identity(identity, tmp_path)
    unsigned = forge(made.path, identity, trust_of(staff.rt), tmp_path / "v2.psbk",
                     signing_key=None, version=2)
    refused = run_cli(capsys, "backup", "verify", str(unsigned), "--identity", str(key))
    assert refused.code == 1 and "refused without --allow-unsigned" in refused.err
    # Not in the catalogue: anyone with the recipient key could have written it, so the
    # flag alone is not enough; the SHA-256 from records kept elsewhere is.
    unknown = run_cli(capsys, "backup", "verify", str(unsigned), "--identity", str(key),
                      "--allow-unsigned")
    assert unknown.code == 1 and "catalogue recorded this very file or --sha256" in unknown.err
    sha = backups._sha256_of(unsigned.open("rb"))
    allowed = run_cli(capsys, "backup", "verify", str(unsigned), "--identity", str(key),
                      "--allow-unsigned", "--sha256", sha)
    assert allowed.code == 0, allowed.err
    assert "UNSIGNED (accepted with --allow-unsigned; audited)" in allowed.out
    genuine = run_cli(capsys, "backup", "verify", str(made.path), "--identity", str(key))
    assert genuine.code == 0, genuine.err
    assert f"signed by {Signer.parse(made.signer).fingerprint.hex()}" in genuine.out
    token, _ = staff.login("root")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    replace = run_cli(capsys, "backup", "restore", str(unsigned), "--identity", str(key),
                      "--replace", "--code", staff.next_code("root"))
    assert replace.code == 1 and "nothing restored: an unsigned backup" in replace.err
    target = tmp_path / "restored.db"
    wrong_sha = run_cli(capsys, "backup", "restore", str(unsigned), "--identity", str(key),
                        "--to", f"sqlite:///{target}", "--allow-unsigned", "--sha256", "0" * 64)
    assert wrong_sha.code == 1 and not target.exists()
    done = run_cli(capsys, "backup", "restore", str(unsigned), "--identity", str(key),
                   "--to", f"sqlite:///{target}", "--allow-unsigned", "--sha256", sha)
    assert done.code == 0, done.err
    assert "UNSIGNED" in done.out and target.is_file()
    assert [(d["for"], d.get("result")) for a, d in audit_actions(staff.rt)
            if a == "backup.allow_unsigned"] == [("verify", "refused"), ("verify", None),
                                                 ("restore", "refused"), ("restore", None)]


def test_list_shows_catalogue_text_inert(staff: Staff, made: backups.CreatedBackup,
                                         tmp_path: Path, db_url: str,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("output does not depend on the engine")
    from tests.support.cli import run_cli

    with staff.rt.transaction() as s:
        record = s.get(BackupRecord, made.id)
        assert record is not None
        record.path = str(tmp_path / "evil\x1b]52;c;aGk=\x07\u202e\nforged line.psbk")
    cli_env(staff, db_url, tmp_path, monkeypatch)
    listed = run_cli(capsys, "backup", "list")
    assert listed.code == 0
    assert not any(ch in listed.out for ch in "\x1b\x07\u202e")
    [line] = listed.out.splitlines()  # the value cannot start a line of its own
    assert "evil\\" in line and "x1b]52;c;aGk=" in line and "u202e" in line

