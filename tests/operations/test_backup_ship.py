"""`backup ship` against a real OpenSSH server started here on 127.0.0.1 (random port,
its own host key, sshd_config and authorized_keys), torn down after each module."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from polysec_tui.backup.envelope import EnvelopeWriter, Identity, SigningKey
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import AuditLogEntry, BackupRecord
from polysec_tui.errors import CheckFailed, ConflictError, InputError, RefusedError
from polysec_tui.services.operations import backups
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.backups import backup_options
from tests.support.helpers import account, ingest
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.sshd import keygen, needs_sshd

pytestmark = needs_sshd


@pytest.fixture
def staff(settings, tmp_path) -> Iterator[Staff]:
    identity = Identity.generate()
    options = backup_options(tmp_path, identity)
    configured = dataclasses.replace(settings, options=options)
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(configured, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    ingest(rt, "accounts", account("A1"), account("A2"))
    yield made
    rt.engine.dispose()


def big_backup(directory: Path, size: int = 3 << 20) -> Path:
    """A valid PSBK file of ``size`` payload bytes that no catalogue knows."""
    path = directory / "polysec-sqlite-big.psbk"
    with path.open("wb") as out:
        writer = EnvelopeWriter(out, [Identity.generate().recipient],
                                {"engine": "sqlite", "created_at": FIXED_NOW.isoformat()},
                                signing_key=SigningKey.generate())
        block = os.urandom(1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
        writer.finish({})
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ship_actions(rt: Runtime) -> list[tuple[str, dict[str, object]]]:
    with rt.sessions() as s:
        rows = s.execute(select(AuditLogEntry.action, AuditLogEntry.details)
                         .where(AuditLogEntry.action == "backup.ship")
                         .order_by(AuditLogEntry.seq)).all()
    return [(a, json.loads(d)) for a, d in rows]


def test_ship_uploads_verifies_and_records(staff, remote):
    rt = staff.rt
    made = backups.create_backup(rt, staff.actors["cron"])
    seen: list[tuple[int, int]] = []
    result = backups.ship_backup(rt, staff.actors["cron"], made.path, remote.url,
                                 known_hosts=remote.known_hosts, identity=remote.identity,
                                 progress=lambda done, total: seen.append((done, total)))
    arrived = remote.remote / made.path.name
    assert arrived.read_bytes() == made.path.read_bytes()
    assert result.sha256 == made.sha256 == sha(arrived)
    assert result.resumed_from == 0 and result.sent_bytes == made.size_bytes
    assert seen and seen[-1] == (made.size_bytes, made.size_bytes)
    assert not list(remote.remote.glob("*.partial"))
    assert arrived.stat().st_mode & 0o777 == 0o600
    manifest = json.loads((remote.remote / (made.path.name + ".manifest.json")).read_text())
    assert manifest["sha256"] == made.sha256 and manifest["backup_id"] == str(made.id)
    assert manifest["size_bytes"] == made.size_bytes
    # The manifest is shipped after the file: it is newer (or as new).
    assert (remote.remote / (made.path.name + ".manifest.json")).stat().st_mtime_ns >= \
        arrived.stat().st_mtime_ns
    with rt.sessions() as s:
        record = s.get(BackupRecord, made.id)
        assert record is not None and record.shipped_at is not None
        assert record.shipped_to == f"{remote.url}/{made.path.name}"
    [view] = backups.list_backups(rt, staff.actors["cron"])
    assert view.shipped_to == record.shipped_to
    assert [d["result"] for _a, d in ship_actions(rt)] == ["ok"]

    # Shipping again finds the same file there and changes nothing.
    again = backups.ship_backup(rt, staff.actors["cron"], made.path, remote.url,
                                known_hosts=remote.known_hosts, identity=remote.identity)
    assert again.already_there and again.sent_bytes == 0


def test_a_remote_file_with_other_content_is_never_replaced(staff, remote, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    made = backups.create_backup(staff.rt, staff.actors["cron"])
    squatter = remote.remote / made.path.name
    squatter.write_bytes(b"not this backup")
    with pytest.raises(ConflictError, match="already exists with other content"):
        backups.ship_backup(staff.rt, staff.actors["cron"], made.path, remote.url,
                            known_hosts=remote.known_hosts, identity=remote.identity)
    assert squatter.read_bytes() == b"not this backup"
    with staff.rt.sessions() as s:
        assert s.get(BackupRecord, made.id).shipped_at is None
    assert [d["result"] for _a, d in ship_actions(staff.rt)] == ["failed"]


def test_a_changed_host_key_is_refused(staff, remote, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    made = backups.create_backup(staff.rt, staff.actors["cron"])
    impostor = keygen(tmp_path / "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{remote.port} {impostor}\n")
    with pytest.raises(RefusedError) as refused:
        backups.ship_backup(staff.rt, staff.actors["cron"], made.path, remote.url,
                            known_hosts=known, identity=remote.identity)
    message = refused.value.message
    assert "CHANGED" in message and "man-in-the-middle" in message and "\n" not in message
    assert list(remote.remote.iterdir()) == []
    assert ship_actions(staff.rt)[-1][1]["result"] == "failed"


def test_an_unknown_host_is_refused(staff, remote, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    made = backups.create_backup(staff.rt, staff.actors["cron"])
    known = tmp_path / "known_hosts"
    # Pinned for the standard port only: [127.0.0.1]:PORT is a different, unknown host.
    known.write_text("127.0.0.1 " + remote.known_hosts.read_text().split(" ", 1)[1])
    with pytest.raises(RefusedError, match=r"unknown host \[127\.0\.0\.1\]:\d+: no key"):
        backups.ship_backup(staff.rt, staff.actors["cron"], made.path, remote.url,
                            known_hosts=known, identity=remote.identity)
    # A host pinned with a key of another type: the offered key is not that one.
    rsa = keygen(tmp_path / "other_rsa", "rsa")
    known.write_text(f"[127.0.0.1]:{remote.port} {rsa}\n")
    with pytest.raises(RefusedError,
                       match=r"CHANGED: the server offered ssh-ed25519 .* pins ssh-rsa SHA256:"):
        backups.ship_backup(staff.rt, staff.actors["cron"], made.path, remote.url,
                            known_hosts=known, identity=remote.identity)
    assert list(remote.remote.iterdir()) == []


def test_a_wrong_identity_is_refused(staff, remote, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    made = backups.create_backup(staff.rt, staff.actors["cron"])
    stranger = tmp_path / "stranger"
    keygen(stranger)
    with pytest.raises(RefusedError, match=r"refused the key .*stranger \(ssh-ed25519 SHA256:"):
        backups.ship_backup(staff.rt, staff.actors["cron"], made.path, remote.url,
                            known_hosts=remote.known_hosts, identity=stranger)
    assert list(remote.remote.iterdir()) == []


class Cut(Exception):
    pass


def test_an_interrupted_upload_resumes(staff, remote, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    path = big_backup(tmp_path)
    size = path.stat().st_size

    def cut(done: int, total: int) -> None:
        if done >= 1 << 20:
            raise Cut

    with pytest.raises(Cut):
        backups.ship_backup(staff.rt, staff.actors["cron"], path, remote.url,
                            known_hosts=remote.known_hosts, identity=remote.identity,
                            progress=cut)
    partial = remote.remote / (path.name + ".partial")
    assert not (remote.remote / path.name).exists()
    cut_at = partial.stat().st_size
    assert 0 < cut_at < size
    assert partial.read_bytes() == path.read_bytes()[:cut_at]

    result = backups.ship_backup(staff.rt, staff.actors["cron"], path, remote.url,
                                 known_hosts=remote.known_hosts, identity=remote.identity)
    assert result.resumed_from == cut_at and result.sent_bytes == size - cut_at
    assert result.catalogue == "not in the catalogue"
    assert sha(remote.remote / path.name) == sha(path) == result.sha256
    assert not partial.exists()


def test_a_partial_that_is_not_a_prefix_is_uploaded_again(staff, remote, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    path = big_backup(tmp_path, 1 << 20)
    (remote.remote / (path.name + ".partial")).write_bytes(b"\0" * 4096)  # garbage
    result = backups.ship_backup(staff.rt, staff.actors["cron"], path, remote.url,
                                 known_hosts=remote.known_hosts, identity=remote.identity)
    size = path.stat().st_size
    # Resumed at 4096, the read-back differed, so the whole file went again from zero.
    assert result.resumed_from == 0 and result.sent_bytes == (size - 4096) + size
    assert sha(remote.remote / path.name) == sha(path)


def test_refusals_before_connecting(staff, remote, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    rt = staff.rt
    made = backups.create_backup(rt, staff.actors["cron"])
    with pytest.raises(RefusedError, match=r"may not backup\.run"):
        backups.ship_backup(rt, staff.actors["ann"], made.path, remote.url,
                            known_hosts=remote.known_hosts, identity=remote.identity)
    with pytest.raises(InputError, match="key authentication only"):
        backups.ship_backup(rt, staff.actors["cron"], made.path,
                            f"sftp://u:pw@127.0.0.1:{remote.port}/x",
                            known_hosts=remote.known_hosts, identity=remote.identity)
    made.path.write_bytes(made.path.read_bytes() + b"x")  # swapped since create
    with pytest.raises(CheckFailed, match="differs from the catalogue"):
        backups.ship_backup(rt, staff.actors["cron"], made.path, remote.url,
                            known_hosts=remote.known_hosts, identity=remote.identity)
    assert list(remote.remote.iterdir()) == []


def test_the_ship_command(staff, remote, tmp_path, db_url, capsys, monkeypatch):
    if not db_url.startswith("sqlite"):
        pytest.skip("the command's wiring does not depend on the engine")
    from tests.support.cli import as_automation, run_cli

    rt = staff.rt
    made = backups.create_backup(rt, staff.actors["cron"])
    config = tmp_path / "polysec.toml"
    config.write_text(f'[backup]\ndir = "{made.path.parent}"\n'
                      f'recipients = ["{Identity.generate().recipient}"]\n')
    as_automation(monkeypatch, rt, staff.actors["root"], db_url, config)
    done = run_cli(capsys, "backup", "ship", "--latest", "--to", remote.url, "--known-hosts",
                   str(remote.known_hosts), "--identity", str(remote.identity), "--json")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert doc["sha256"] == made.sha256 and doc["catalogue"] == "recorded"
    listed = json.loads(run_cli(capsys, "backup", "list", "--json").out)
    assert listed["backups"][0]["shipped_to"] == doc["to"]
    # The target, known_hosts and key can come from [backup] instead.
    missing = run_cli(capsys, "backup", "ship", "--latest")
    assert missing.code == 2 and "set [backup] ship_to, known_hosts and ssh_identity" in \
        missing.err
    config.write_text(config.read_text() + f'ship_to = "{remote.url}"\n'
                      f'known_hosts = "{remote.known_hosts}"\n'
                      f'ssh_identity = "{remote.identity}"\n')
    again = run_cli(capsys, "backup", "ship", "--latest", "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["already_there"] is True
    impostor = tmp_path / "kh"
    impostor.write_text(f"[127.0.0.1]:{remote.port} {keygen(tmp_path / 'imp')}\n")
    bad = run_cli(capsys, "backup", "ship", str(made.path), "--to", remote.url,
                  "--known-hosts", str(impostor), "--identity", str(remote.identity))
    assert bad.code == 3 and "CHANGED" in bad.err and len(bad.err.strip().splitlines()) == 1
