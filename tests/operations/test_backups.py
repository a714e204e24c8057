"""Backups end to end: create, verify, restore on every engine; catalogue, prune,
permissions and an interrupted create."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from polysec_tui.backup.envelope import EnvelopeError, Identity, open_file
from polysec_tui.backup.restore import drop_database
from polysec_tui.backup.snapshot import SNAPSHOT_KIND
from polysec_tui.backup.tempdirs import private_tempdir
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import AuditLogEntry, BackupRecord
from polysec_tui.errors import CheckFailed, InputError, RefusedError
from polysec_tui.services.officers import sessions
from polysec_tui.services.operations import backups
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.backups import backup_options, backup_toml, contents, new_database_url, trust_of
from tests.support.helpers import account, ingest
from tests.support.officers import MovableClock, make_staff


def test_create_verify_restore_round_trip(staff, identity, tmp_path):
    rt = staff.rt
    before = contents(rt.engine)
    made = backups.create_backup(rt, staff.actors["cron"])  # automation may back up
    assert made.path.is_file() and made.path.suffix == ".psbk"
    assert made.path.stat().st_mode & 0o777 == 0o600
    assert made.field_key_ids == [1]
    assert made.row_counts["accounts"] == 3 and made.row_counts["alembic_version"] == 1
    assert not list(made.path.parent.glob("*.partial"))

    listed = backups.list_backups(rt, staff.actors["cron"])
    assert [(v.id, v.status, v.file_present) for v in listed] == [(made.id, "complete", True)]

    report = backups.verify_backup(rt, staff.actors["cron"], made.path, identity,
                                   restore_test=True)
    assert report.ok and report.catalogue == "matches"
    assert report.restore_test is not None
    assert report.restore_test["problems"] == []
    assert report.restore_test["sampled_fields"] >= 3 * 4
    with rt.sessions() as s:
        record = s.get(BackupRecord, made.id)
        assert record is not None and record.status == "verified" and record.verified_at

    target = new_database_url(rt.settings.db_url, tmp_path)
    try:
        result = backups.restore_backup(rt, staff.actors["root"], made.path, identity,
                                        to_url=target)
        assert result.check["problems"] == []
        restored = make_engine(target)
        try:
            assert contents(restored) == before
        finally:
            restored.dispose()
    finally:
        drop_database(parse_url(target))
    with rt.sessions() as s:
        actions = [a for (a,) in s.execute(select(AuditLogEntry.action).order_by(AuditLogEntry.seq))
                   if "backup" in a]
    assert actions == ["backup.create", "backup.verify", "backup.restore"]


def test_verify_names_the_damage(staff, identity, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("format checks do not depend on the engine")
    rt = staff.rt
    made = backups.create_backup(rt, staff.actors["root"])
    blob = bytearray(made.path.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    made.path.write_bytes(bytes(blob))
    with pytest.raises(CheckFailed, match=r"failed verification: chunk \d+ at byte \d+ failed "
                                          "authentication"):
        backups.verify_backup(rt, staff.actors["cron"], made.path, identity)
    # These bytes are not the catalogued backup's (its SHA-256 is recorded): the row is
    # left as it was (tests/operations/test_backup_signing.py has the forged copies).
    with rt.sessions() as s:
        assert s.get(BackupRecord, made.id).status == "complete"
    with pytest.raises(CheckFailed, match="wrong identity"):
        backups.verify_backup(rt, staff.actors["cron"], made.path, Identity.generate())
    # Restore refuses before writing anything.
    target = tmp_path / "never.db"
    with pytest.raises(CheckFailed, match="nothing restored"):
        backups.restore_backup(rt, staff.actors["root"], made.path, identity,
                               to_url=f"sqlite:///{target}")
    assert not target.exists() and not list(tmp_path.glob(".never.db*"))


def test_permissions(staff, identity, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("permissions do not depend on the engine")
    rt = staff.rt
    with pytest.raises(RefusedError, match=r"may not backup\.run"):
        backups.create_backup(rt, staff.actors["ann"])
    with pytest.raises(RefusedError, match=r"may not backup\.run"):
        backups.list_backups(rt, staff.actors["sue"])
    made = backups.create_backup(rt, staff.actors["cron"])
    with pytest.raises(RefusedError, match=r"may not backup\.restore"):
        backups.restore_backup(rt, staff.actors["cron"], made.path, identity,
                               to_url=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(RefusedError, match="fresh authenticator code"):
        backups.restore_backup(rt, staff.actors["root"], made.path, identity, replace=True)
    with pytest.raises(RefusedError, match="authentication failed"):
        backups.restore_backup(rt, staff.actors["root"], made.path, identity, replace=True,
                               code="000000")


def test_replace_keeps_the_old_sqlite_database(staff, identity, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("server replaces are covered in docs/backups.md; SQLite here")
    rt = staff.rt
    before = contents(rt.engine)
    made = backups.create_backup(rt, staff.actors["cron"])
    ingest(rt, "accounts", account("LATE"))  # written after the backup: goes away
    result = backups.restore_backup(rt, staff.actors["root"], made.path, identity,
                                    replace=True, code=staff.next_code("root"))
    assert result.replaced and result.old and Path(result.old).is_file()
    live = make_engine(db_url)
    try:
        now = contents(live)
    finally:
        live.dispose()
    assert now["accounts"] == before["accounts"]
    assert [e[3] for e in now["audit_log"][-1:]] == ["backup.restore"]
    old = make_engine(f"sqlite:///{result.old}")
    try:
        assert len(contents(old)["accounts"]) == 4  # the replaced database, LATE included
    finally:
        old.dispose()


def test_prune_keeps_daily_weekly_monthly(staff, tmp_path, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("retention does not depend on the engine")
    rt = staff.rt
    start = datetime(2026, 11, 20, 3, 0, tzinfo=FIXED_NOW.tzinfo)
    made: dict[str, uuid.UUID] = {}
    with rt.transaction() as s:
        # Two backups a day for 10 days, then one on the 1st of each of 3 earlier months.
        times = [start - timedelta(days=d, hours=h) for d in range(10) for h in (0, 12)]
        times += [datetime(2026, m, 1, 3, tzinfo=FIXED_NOW.tzinfo) for m in (8, 9, 10)]
        for at in times:
            path = tmp_path / f"{at:%Y%m%d%H}.psbk"
            path.write_bytes(b"x")
            rid = uuid.uuid4()
            made[f"{at:%m-%d %H}"] = rid
            s.add(BackupRecord(id=rid, created_at=at, path=str(path), engine="sqlite",
                               size_bytes=1, sha256="0" * 64, alembic_revision="x",
                               field_key_ids={}, status="complete"))
    plan = backups.prune_backups(rt, staff.actors["cron"], keep_daily=3, keep_weekly=2,
                                 keep_monthly=3, dry_run=True)
    kept = {made_key for made_key, rid in made.items()
            if str(rid) in {k["id"] for k in plan.keep}}
    # Newest of each bucket. daily: Nov 20 03:00, Nov 19 15:00, Nov 18 15:00; weekly: ISO
    # week 47 -> Nov 20, week 46 -> Nov 15 15:00; monthly: Nov 20, Oct 1, Sep 1.
    assert kept == {"11-20 03", "11-19 15", "11-18 15", "11-15 15", "10-01 03", "09-01 03"}
    assert all(Path(r["path"]).exists() for r in plan.remove)  # dry run deletes nothing
    done = backups.prune_backups(rt, staff.actors["cron"], keep_daily=3, keep_weekly=2,
                                 keep_monthly=3)
    assert len(done.remove) == len(times) - 6
    assert not any(Path(r["path"]).exists() for r in done.remove)
    assert all(Path(k["path"]).exists() for k in done.keep)
    with rt.sessions() as s:
        statuses = {r.status for r in s.scalars(select(BackupRecord))}
    assert statuses == {"complete", "pruned"}


KILLER = """
import os, signal, sys
from polysec_tui.backup import envelope
from polysec_tui.services.operations import backups
where = sys.argv[1]
if where == "chunk":
    real = envelope.EnvelopeWriter._seal
    def seal(self, plain, last):
        if self.chunks == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, plain, last)
    envelope.EnvelopeWriter._seal = seal
else:
    def link(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)
    os.link = link  # the commit of the new file: killed just before it
from polysec_tui.cli import main
main(["backup", "create"])
"""


@pytest.mark.parametrize("where", ["chunk", "before_rename"])
def test_a_killed_create_leaves_nothing_taken_for_a_backup(staff, identity, tmp_path, db_url,
                                                           where, capsys, monkeypatch):
    if not db_url.startswith("sqlite"):
        pytest.skip("the interruption does not depend on the engine")
    rt = staff.rt
    token, _ = sessions.create_token(rt, staff.actors["root"], "cron")
    config = tmp_path / "polysec.toml"
    directory = tmp_path / "backups"
    config.write_text(backup_toml(rt.settings.options))
    tmp = tmp_path / "tmp"  # the killed process's TMPDIR
    tmp.mkdir()
    env = {**os.environ, "POLYSEC_DB_URL": db_url,
           "POLYSEC_KEYRING": str(rt.settings.keyring_path), "POLYSEC_CONFIG": str(config),
           "POLYSEC_TOKEN": token, "TMPDIR": str(tmp)}
    proc = subprocess.run([sys.executable, "-c", KILLER, where], env=env, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    files = list(directory.iterdir())
    assert len(files) == 1 and files[0].name.endswith(".psbk.partial"), files
    assert backups.list_backups(rt, staff.actors["cron"]) == []
    assert backups.stale_partials(rt) == files
    with pytest.raises(CheckFailed, match=r"unfinished backup \(\.partial\)"):
        backups.verify_backup(rt, staff.actors["cron"], files[0], identity)
    if where == "chunk":  # and its content is cut short, whatever its name
        with pytest.raises(EnvelopeError, match="truncated: the file ends after chunk 1"):
            open_file(files[0], identity, trust=trust_of(rt))
    # Killed while streaming, it left its plaintext snapshot (0600, in a 0700 directory);
    # the next create removes it, but not the directory of a create still running.
    left = list(tmp.iterdir())
    if where == "chunk":
        [stale] = left
        assert stale.name.startswith("polysec-snapshot-") and (stale / "snapshot.db").is_file()
        assert (stale / "snapshot.db").stat().st_mode & 0o777 == 0o600
    else:
        assert left == []  # the snapshot had been read to its end and removed
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    with private_tempdir(SNAPSHOT_KIND) as running:
        backups.create_backup(rt, staff.actors["cron"])
        assert list(tmp.iterdir()) == [running]


def test_no_recipient_is_a_usage_error(settings, runtime):
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, runtime.engine, runtime.keyring, clock=clock)
    made = make_staff(rt, clock)
    with pytest.raises(InputError, match="no backup recipients"):
        backups.create_backup(rt, made.actors["cron"], directory=Path("/nonexistent"))


def test_the_command_keygen_create_verify_list(staff, tmp_path, db_url, capsys, monkeypatch):
    if not db_url.startswith("sqlite"):
        pytest.skip("the command's wiring does not depend on the engine")
    from tests.support.cli import run_cli, run_process

    rt = staff.rt
    token, _ = sessions.create_token(rt, staff.actors["root"], "cron")
    key = tmp_path / "offline.key"
    made = run_process("backup", "keygen", "--out", str(key))
    assert made.code == 0, made.err
    recipient = made.out.strip()
    assert recipient.startswith("polysec-x25519:") and key.stat().st_mode & 0o777 == 0o600
    signing_key = tmp_path / "host-signing.key"
    signing = run_process("backup", "keygen", "--signing", "--out", str(signing_key))
    assert signing.code == 0, signing.err
    signer = signing.out.strip()
    assert signer.startswith("polysec-ed25519:")
    assert signing_key.stat().st_mode & 0o777 == 0o600
    config = tmp_path / "polysec.toml"
    config.write_text(backup_toml({"backup": {"signing_key": str(signing_key),
                                              "signers": [signer]}}))
    env = {"POLYSEC_DB_URL": db_url, "POLYSEC_KEYRING": str(rt.settings.keyring_path),
           "POLYSEC_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "POLYSEC_CONFIG": str(config)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    created = run_cli(capsys, "backup", "create", "--to", str(out), "--recipient",
                      recipient, "--json")
    assert created.code == 0, created.err

    doc = json.loads(created.out)
    assert doc["signer"] == signer
    path = doc["path"]
    ok = run_cli(capsys, "backup", "verify", path, "--identity", str(key),
                 "--restore-test")
    assert ok.code == 0, ok.err
    assert "restore test OK" in ok.out
    listed = json.loads(run_cli(capsys, "backup", "list", "--json").out)
    assert [b["status"] for b in listed["backups"]] == ["verified"]
    other = tmp_path / "other.key"
    Identity.generate().write_new(other)
    bad = run_cli(capsys, "backup", "verify", path, "--identity", str(other))
    assert bad.code == 1 and "wrong identity" in bad.err


def test_backup_modules_leave_paramiko_to_shipping():
    """Creating, verifying and restoring never load paramiko; only `backup ship` does.
    (`backup --help` is in tests/core/test_cli.py; that no backup module imports Textual is
    the import-linter contract.)"""
    code = ("import sys, polysec_tui.services.operations.backups, polysec_tui.backup.restore\n"
            "assert 'paramiko' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.fixture
def own_server_database(db_url, tmp_path) -> Iterator[str]:
    """A database of this test's own on the server of ``db_url`` (the shared per-run
    database keeps pooled connections, and PostgreSQL renames no database in use)."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite --replace: test_replace_keeps_the_old_sqlite_database")
    url = parse_url(db_url).set(database=f"polysec_rp_{uuid.uuid4().hex[:10]}")
    from polysec_tui.backup.restore import _admin_engine

    admin = _admin_engine(url)
    charset = " CHARACTER SET utf8mb4" if url.get_backend_name() != "postgresql" else ""
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {url.database}{charset}")
    admin.dispose()
    text_url = url.render_as_string(hide_password=False)
    engine = make_engine(text_url)
    from polysec_tui.db import migrate

    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield text_url
    finally:
        drop_database(url)


def test_replace_on_a_server_keeps_the_old_database(own_server_database, settings, identity,
                                                    tmp_path):
    url = parse_url(own_server_database)
    options = backup_options(tmp_path, identity)
    configured = dataclasses.replace(settings, db_url=own_server_database, options=options)
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(configured, make_engine(own_server_database),
                 load_keyring(settings.keyring_path), clock=clock)
    staff = make_staff(rt, clock)
    ingest(rt, "accounts", account("A1"), account("A2", full_name="Zoë O'Brien"))
    before = contents(rt.engine)
    made = backups.create_backup(rt, staff.actors["cron"])
    ingest(rt, "accounts", account("LATE"))  # after the backup
    leftovers: list[str] = []
    try:
        result = backups.restore_backup(rt, staff.actors["root"], made.path, identity,
                                        replace=True, code=staff.next_code("root"))
        assert result.replaced and result.check["problems"] == []
        if url.get_backend_name() == "postgresql":
            # The live name now holds the backup; the old database is kept, renamed.
            assert result.old and result.old.startswith(f"{url.database}_replaced_")
            leftovers.append(result.old)
            live = make_engine(own_server_database)
            old = make_engine(url.set(database=result.old).render_as_string(
                hide_password=False))
            try:
                now = contents(live)
                assert now["accounts"] == before["accounts"]
                assert now["audit_log"][-1][3] == "backup.restore"
                assert len(contents(old)["accounts"]) == 3  # LATE is in the replaced one
            finally:
                live.dispose()
                old.dispose()
        else:
            # MariaDB renames no database: the restored copy sits beside the live one,
            # which is untouched, and the note says which URL to switch to.
            restored_name = str(parse_url(result.target).database)
            assert restored_name.startswith(f"{url.database}_restored_")
            leftovers.append(restored_name)
            assert "switch the database URL" in result.note
            restored = make_engine(url.set(database=restored_name).render_as_string(
                hide_password=False))
            live = make_engine(own_server_database)
            try:
                assert contents(restored)["accounts"] == before["accounts"]
                assert len(contents(live)["accounts"]) == 3
            finally:
                restored.dispose()
                live.dispose()
    finally:
        rt.engine.dispose()
        for name in leftovers:
            drop_database(url.set(database=name))


def test_verify_reports_progress(staff, identity, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("progress does not depend on the engine")
    made = backups.create_backup(staff.rt, staff.actors["cron"], chunk_log2=12)
    seen: list[tuple[int, int | None]] = []
    backups.verify_backup(staff.rt, staff.actors["cron"], made.path, identity,
                          progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 3
    assert [d for d, _t in seen] == sorted(d for d, _t in seen)  # never goes back
    assert seen[-1] == (made.payload_bytes, made.size_bytes)
