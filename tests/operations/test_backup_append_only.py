"""`backup ship` to an append-only SFTP account and `backup ship --check-target`, against
a real OpenSSH server configured as docs/backups.md says (internal-sftp with removal,
renames over a file and attribute changes denied, files created read-only), logged in
as an unprivileged account: root would write through read-only modes. .ci/run creates
that account (`polysec-offsite`); without it, or not as root, these tests skip."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import select

from polysec_tui.backup import sftp
from polysec_tui.backup.envelope import Identity
from polysec_tui.db.models import AuditLogEntry, BackupRecord
from polysec_tui.errors import CheckFailed, ConflictError
from polysec_tui.services.operations import backups
from tests.operations.test_backup_ship import staff  # noqa: F401  (the fixture)
from tests.support.sftp import Server, server  # noqa: F401  (the fixture)
from tests.support.sshd import needs_sshd, running_sshd

OFFSITE_USER = "polysec-offsite"
# The sshd_config lines of docs/backups.md ("Offsite copies an intruder cannot erase").
APPEND_ONLY = ("internal-sftp -u 0277 -P remove,rmdir,rename,posix-rename,setstat,"
               "fsetstat,lsetstat,symlink,hardlink")


def _offsite_uid() -> int | None:
    try:
        return pwd.getpwnam(OFFSITE_USER).pw_uid
    except KeyError:
        return None


pytestmark = [
    needs_sshd,
    pytest.mark.skipif(os.geteuid() != 0 or _offsite_uid() is None,
                       reason=f"needs root and the system account {OFFSITE_USER} "
                              "(.ci/run creates it)"),
]


@pytest.fixture(scope="module")
def append_only_server() -> Iterator[Server]:
    # Not under pytest's tmp dirs (mode 0700): sshd reads authorized_keys as the account.
    root = Path(tempfile.mkdtemp(prefix="polysec-offsite-"))
    try:
        root.chmod(0o755)
        remote = root / "offsite"
        remote.mkdir()
        uid = _offsite_uid()
        assert uid is not None
        os.chown(remote, uid, pwd.getpwnam(OFFSITE_USER).pw_gid)
        match = (f"Match User {OFFSITE_USER}\n    ForceCommand {APPEND_ONLY}\n"
                 "    AllowTcpForwarding no\n    PermitTTY no\n")
        with running_sshd(root / "sshd", match=match) as sshd:
            for path in (root / "sshd", root / "sshd" / "authorized_keys"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            yield Server(sshd.host, sshd.port, OFFSITE_USER, remote, sshd.known_hosts,
                         sshd.identity, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_actions(rt) -> list[dict[str, object]]:
    with rt.sessions() as s:
        rows = s.scalars(select(AuditLogEntry.details)
                         .where(AuditLogEntry.action == "backup.ship.check_target")
                         .order_by(AuditLogEntry.seq)).all()
    return [json.loads(d) for d in rows]


def test_the_append_only_target_passes_the_check_and_keeps_every_copy(staff,  # noqa: F811
                                                                     append_only_server):
    target = append_only_server
    rt, cron = staff.rt, staff.actors["cron"]
    checked = backups.check_ship_target(rt, cron, target.url, known_hosts=target.known_hosts,
                                        identity=target.identity)
    assert checked.append_only and checked.canary_intact
    assert all(checked.refused.values()) and {
        "remove", "rename away", "truncate", "write in place", "change mode",
        "posix-rename over"} <= set(checked.refused)
    canary = target.remote / Path(checked.canary).name
    assert canary.read_bytes() == sftp.CANARY  # unchanged, and still there
    assert check_actions(rt)[-1]["result"] == "ok"

    made = backups.create_backup(rt, cron)
    result = backups.ship_backup(rt, cron, made.path, target.url,
                                 known_hosts=target.known_hosts, identity=target.identity,
                                 append_only=True)
    arrived = target.remote / made.path.name
    assert arrived.read_bytes() == made.path.read_bytes() and result.sha256 == made.sha256
    assert arrived.stat().st_mode & 0o777 == 0o400  # the server's umask: read-only, own
    assert not list(target.remote.glob("*.partial"))
    manifest = target.remote / (made.path.name + ".manifest.json")
    assert json.loads(manifest.read_text())["sha256"] == made.sha256
    with rt.sessions() as s:
        assert s.get(BackupRecord, made.id).shipped_at is not None

    # Shipping again changes nothing (the same file and manifest are there).
    again = backups.ship_backup(rt, cron, made.path, target.url,
                                known_hosts=target.known_hosts, identity=target.identity,
                                append_only=True)
    assert again.already_there

    # What an intruder with the shipping key would try: every attempt is refused.
    client = sftp.connect(sftp.SftpTarget.parse(target.url), target.known_hosts,
                          target.identity)
    try:
        remote = client.open_sftp()
        path = f"{target.remote}/{made.path.name}"
        attempts: list[Callable[[], object]] = [
            lambda: remote.remove(path), lambda: remote.chmod(path, 0o644),
            lambda: sftp._write_in(remote, path, "wb"),
            lambda: remote.rename(path, path + ".hidden"),
            lambda: remote.posix_rename(str(manifest), path)]
        for attempt in attempts:
            with pytest.raises(OSError):
                attempt()
        remote.close()
    finally:
        client.close()
    assert arrived.read_bytes() == made.path.read_bytes()


def test_an_upload_cut_short_is_named_and_kept(staff, append_only_server):  # noqa: F811
    target = append_only_server
    rt, cron = staff.rt, staff.actors["cron"]
    made = backups.create_backup(rt, cron)
    cut = target.remote / made.path.name
    cut.write_bytes(made.path.read_bytes()[:1000])  # as a killed upload leaves it
    with pytest.raises(ConflictError, match=r"cut short \(1000 of \d+ bytes\)"):
        backups.ship_backup(rt, cron, made.path, target.url,
                            known_hosts=target.known_hosts, identity=target.identity,
                            append_only=True)
    assert cut.read_bytes() == made.path.read_bytes()[:1000]
    assert not (target.remote / (made.path.name + ".manifest.json")).exists()


def test_a_manifest_with_other_content_is_a_conflict(staff, append_only_server):  # noqa: F811
    target = append_only_server
    rt, cron = staff.rt, staff.actors["cron"]
    made = backups.create_backup(rt, cron)
    (target.remote / (made.path.name + ".manifest.json")).write_text("{}\n")
    with pytest.raises(ConflictError, match="append-only target keeps it"):
        backups.ship_backup(rt, cron, made.path, target.url,
                            known_hosts=target.known_hosts, identity=target.identity,
                            append_only=True)


def test_a_target_that_allows_removal_fails_the_check(staff, server, tmp_path,  # noqa: F811
                                                     db_url):
    """The usual test server: root, no restrictions. The check names what it allowed;
    the service audits and refuses it."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SFTP behaviour does not depend on the engine")
    remote = server.remote / tmp_path.name
    remote.mkdir()
    url = f"sftp://{server.user}@{server.host}:{server.port}{remote}"
    with pytest.raises(CheckFailed) as failed:
        backups.check_ship_target(staff.rt, staff.actors["cron"], url,
                                  known_hosts=server.known_hosts, identity=server.identity)
    message = failed.value.message
    assert "is not append-only" in message and "remove" in message and "\n" not in message
    entry = check_actions(staff.rt)[-1]
    assert entry["result"] == "failed"
    # Every request is tried on the canary itself (renamed away and back where allowed);
    # only a plain rename over a file is refused by OpenSSH itself.
    assert set(cast(list[str], entry["allowed"])) == {
        "change mode", "rename away", "write in place", "append", "truncate",
        "posix-rename over", "remove"}


def test_the_command_checks_then_ships_and_ships_nothing_after_a_failed_check(
        staff, server, append_only_server, tmp_path, db_url, capsys, monkeypatch):  # noqa: F811
    if not db_url.startswith("sqlite"):
        pytest.skip("the command's wiring does not depend on the engine")
    from tests.support.cli import as_automation, run_cli

    rt = staff.rt
    made = backups.create_backup(rt, staff.actors["cron"])
    config = tmp_path / "polysec.toml"
    config.write_text(f'[backup]\ndir = "{made.path.parent}"\n'
                      f'recipients = ["{Identity.generate().recipient}"]\n')
    as_automation(monkeypatch, rt, staff.actors["root"], db_url, config)
    plain = server.remote / tmp_path.name
    plain.mkdir()
    refused = run_cli(capsys, "backup", "ship", "--latest", "--check-target", "--to",
                      f"sftp://{server.user}@{server.host}:{server.port}{plain}",
                      "--known-hosts", str(server.known_hosts),
                      "--identity", str(server.identity))
    assert refused.code == 1 and "is not append-only" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert not (plain / made.path.name).exists()

    target = append_only_server
    options = ["--to", target.url, "--known-hosts", str(target.known_hosts),
               "--identity", str(target.identity)]
    checked = run_cli(capsys, "backup", "ship", "--check-target", "--json", *options)
    assert checked.code == 0, checked.err
    assert json.loads(checked.out)["append_only"] is True
    assert not (target.remote / made.path.name).exists()  # only checked
    shipped = run_cli(capsys, "backup", "ship", "--latest", "--check-target", "--json",
                      *options)
    assert shipped.code == 0, shipped.err
    doc = json.loads(shipped.out)
    assert doc["target_check"]["append_only"] and doc["sha256"] == made.sha256
    assert (target.remote / made.path.name).read_bytes() == made.path.read_bytes()
    # Without the append-only way the server refuses the usual protocol (its mode change).
    newer = backups.create_backup(rt, staff.actors["cron"])
    usual = run_cli(capsys, "backup", "ship", str(newer.path), *options)
    assert usual.code == 1 and "Permission denied" in usual.err, usual.err
    # From the configuration: ship_append_only makes every ship take the append-only way.
    base = config.read_text()
    config.write_text(base + "ship_append_only = true\n")
    again = run_cli(capsys, "backup", "ship", str(newer.path), "--json", *options)
    assert again.code == 0, again.err
    assert (target.remote / newer.path.name).read_bytes() == newer.path.read_bytes()
    config.write_text(base + "ship_append_only = 1\n")
    wrong = run_cli(capsys, "backup", "ship", str(newer.path), *options)
    assert wrong.code == 2 and "ship_append_only must be true or false" in wrong.err
