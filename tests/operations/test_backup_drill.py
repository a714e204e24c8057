"""Restore drills: the newest backup restored into a scratch database and checked
there, a signed record, the failures recorded too, the listing with each signature
checked, and the command. All three databases (the scratch database is a new one on the
live server for PostgreSQL and MariaDB)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from polysec_tui.backup import restore as restore_module
from polysec_tui.backup.envelope import Signer
from polysec_tui.backup.restore import database_exists
from polysec_tui.db.models import AuditLogEntry, BackupDrill, BackupRecord
from polysec_tui.errors import CheckFailed, InputError, RefusedError
from polysec_tui.services.operations import backups
from tests.support.officers import Staff


def test_a_drill_restores_checks_and_signs_its_record(staff: Staff, identity,
                                                      monkeypatch) -> None:
    rt = staff.rt
    made = backups.create_backup(rt, staff.actors["cron"])
    scratches = []
    real_scratch_url = backups._scratch_url

    def scratch_url(*args: object) -> object:
        scratches.append(real_scratch_url(*args))  # type: ignore[arg-type]
        return scratches[-1]

    monkeypatch.setattr(backups, "_scratch_url", scratch_url)
    report = backups.drill_backup(rt, staff.actors["cron"], identity)
    assert report.result == "pass" and report.problems == []
    assert report.path == str(made.path) and report.backup_id == str(made.id)
    assert report.checks == {"encryption_coverage": "pass",
                             "blind_index_consistency": "pass", "auditlog_chain": "pass"}
    assert report.rows == sum(made.row_counts.values())
    assert report.restore_seconds is not None and report.restore_seconds > 0
    assert report.total_seconds >= report.restore_seconds
    # The record: in the table and in a file beside the backups, signed by this host's
    # signing key over the canonical JSON.
    saved = json.loads(Path(report.record_file).read_text())
    assert Path(report.record_file).stat().st_mode & 0o777 == 0o600
    record = saved["record"]
    assert (record["result"], record["officer"], record["role"], record["backup_id"]) == (
        "pass", "cron", "automation", str(made.id))
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    signer = Signer.parse(saved["signer"])
    assert signer.verify(base64.b64decode(saved["signature"]),
                         hashlib.sha256(canonical).digest())
    with rt.sessions() as s:
        row = s.get(BackupDrill, uuid.UUID(report.id))
        assert row is not None and row.record == canonical.decode()
        audited = s.scalars(select(AuditLogEntry.details)
                            .where(AuditLogEntry.action == "backup.drill")).all()
    assert [json.loads(d)["result"] for d in audited] == ["pass"]
    [view] = backups.list_drills(rt, staff.actors["cron"])
    assert (view.result, view.signature, view.officer) == ("pass", "valid", "cron")
    with rt.sessions() as s:  # the drill verified the catalogued file, and more
        catalogued = s.get(BackupRecord, made.id)
        assert catalogued is not None and catalogued.status == "verified"
    # The scratch database was a new one, not the live one, and is gone (SQLite: a
    # private temporary file; servers: the drill's own database, dropped).
    [scratch] = scratches
    assert scratch.database != rt.engine.url.database
    if rt.engine.dialect.name == "sqlite":
        assert not Path(str(scratch.database)).parent.exists()
    else:
        assert not database_exists(scratch)


def test_a_changed_record_no_longer_verifies(staff: Staff, identity, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("signature checking does not depend on the engine")
    rt = staff.rt
    backups.create_backup(rt, staff.actors["cron"])
    report = backups.drill_backup(rt, staff.actors["cron"], identity)
    with rt.transaction() as s:
        row = s.get(BackupDrill, uuid.UUID(report.id))
        assert row is not None
        s.execute(update(BackupDrill).where(BackupDrill.id == row.id)
                  .values(record=row.record.replace('"pass"', '"PASS"')))
    assert backups.list_drills(rt, staff.actors["cron"])[0].signature == "invalid"


def test_shown_fields_come_from_the_signed_record(staff: Staff, identity,
                                                  db_url: str) -> None:
    """The row's columns are an index: a changed result column shows the record's result,
    and a valid record copied into another row is not that row's."""
    if not db_url.startswith("sqlite"):
        pytest.skip("signature checking does not depend on the engine")
    rt = staff.rt
    backups.create_backup(rt, staff.actors["cron"])
    report = backups.drill_backup(rt, staff.actors["cron"], identity)
    with rt.transaction() as s:
        s.execute(update(BackupDrill).values(result="fail"))
    [view] = backups.list_drills(rt, staff.actors["cron"])
    assert (view.result, view.signature) == ("pass", "valid")
    with rt.transaction() as s:
        row = s.get(BackupDrill, uuid.UUID(report.id))
        assert row is not None
        s.add(BackupDrill(id=uuid.uuid4(), backup_id=row.backup_id,
                          started_at=row.started_at + timedelta(days=7),
                          finished_at=row.finished_at, officer="cron", result="pass",
                          restore_seconds=1.0, total_seconds=1.0, record=row.record,
                          signature=row.signature, signer=row.signer))
    newest = backups.list_drills(rt, staff.actors["cron"])[0]
    assert newest.signature == "invalid"


def test_an_unexpected_error_is_a_recorded_failure(staff: Staff, identity,
                                                   monkeypatch) -> None:
    rt = staff.rt
    backups.create_backup(rt, staff.actors["cron"])

    def broken(*args: object) -> None:
        raise RuntimeError("the scratch server went away\nsecond line")

    monkeypatch.setattr(restore_module, "check_restored", broken)
    with pytest.raises(CheckFailed, match="RuntimeError: the scratch server went away"):
        backups.drill_backup(rt, staff.actors["cron"], identity)
    [view] = backups.list_drills(rt, staff.actors["cron"])
    assert view.result == "fail" and view.signature == "valid"


def test_a_failing_drill_is_recorded_then_exits_1(staff: Staff, identity, tmp_path) -> None:
    rt = staff.rt
    made = backups.create_backup(rt, staff.actors["cron"])
    data = bytearray(made.path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of the ciphertext
    damaged = tmp_path / "damaged.psbk"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckFailed, match=r"restore drill of .* failed") as failed:
        backups.drill_backup(rt, staff.actors["cron"], identity, path=damaged)
    assert "\n" not in failed.value.message
    [view] = backups.list_drills(rt, staff.actors["cron"])
    assert view.result == "fail" and view.signature == "valid"
    assert view.restore_seconds is None  # it never got as far as a database


def test_who_may_drill_and_what_it_needs(staff: Staff, identity) -> None:
    rt = staff.rt
    with pytest.raises(RefusedError):
        backups.drill_backup(rt, staff.actors["ann"], identity)
    with pytest.raises(InputError, match="no complete or verified backup"):
        backups.drill_backup(rt, staff.actors["cron"], identity)


def test_the_commands(staff: Staff, identity, tmp_path: Path, db_url: str, capsys,
                      monkeypatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the command's wiring does not depend on the engine")
    from tests.support.backups import backup_toml
    from tests.support.cli import as_automation, run_cli

    rt = staff.rt
    backups.create_backup(rt, staff.actors["cron"])
    key_file = tmp_path / "offline.key"
    key_file.write_text(identity.to_text())
    key_file.chmod(0o600)
    config = tmp_path / "polysec.toml"
    config.write_text(backup_toml(rt.settings.options))
    as_automation(monkeypatch, rt, staff.actors["root"], db_url, config)
    done = run_cli(capsys, "backup", "drill", "--identity", str(key_file), "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["result"] == "pass"
    listed = run_cli(capsys, "backup", "drills", "--json")
    assert listed.code == 0 and json.loads(listed.out)[0]["signature"] == "valid"
    human = run_cli(capsys, "backup", "drills")
    assert "PASS" in human.out and "signature valid" in human.out


def test_the_dashboard_shows_the_last_drill_and_its_age(staff: Staff, identity) -> None:
    from polysec_tui.screens.dashboard import card_states, drill_state
    from polysec_tui.services.monitoring.dashboard import DashboardService

    rt, ann = staff.rt, staff.actors["ann"]
    backups.create_backup(rt, staff.actors["cron"])
    before = DashboardService(rt, ann).summary()
    # Backups that no drill has restored: nobody knows they restore.
    assert before.drill is None and drill_state(before) == ("no drill", True)
    backups.drill_backup(rt, staff.actors["cron"], identity)
    rt.clock.advance(hours=3)  # type: ignore[attr-defined]
    summary = DashboardService(rt, ann).summary()
    assert summary.drill is not None and summary.drill.result == "pass"
    assert summary.as_dict()["drill"]["age_hours"] == 3.0
    assert drill_state(summary) == ("drill 3 h ✓", False)
    # A week and a day later without a drill (daily backups still made), the backup
    # card calls for attention because of the drill alone.
    rt.clock.advance(days=8)  # type: ignore[attr-defined]
    backups.create_backup(rt, staff.actors["cron"])
    fresh = DashboardService(rt, ann).summary()
    assert fresh.backup is not None and fresh.backup.age_hours(fresh.as_of) < 1
    assert drill_state(fresh) == ("drill 8 d ✓", True)
    assert card_states(fresh)["card-backup"][2] is True
    # A drill record that does not verify is an alarm too.
    with rt.transaction() as s:
        s.execute(update(BackupDrill).values(signature="AAAA"))
    assert drill_state(DashboardService(rt, ann).summary()) == ("drill invalid", True)
