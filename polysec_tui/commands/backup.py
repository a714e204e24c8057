"""`polysec backup keygen | create | verify | restore | drill | drills | list | prune | ship |
schedule`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from polysec_tui.commands.common import (
    actor_of,
    echo,
    emit_json,
    prompt_secret,
    runtime_of,
    settings_of,
)
from polysec_tui.errors import InputError
from polysec_tui.text import visible

ALLOW_UNSIGNED_HELP = ("Accept an unsigned backup (format v1/v2, made before backups were "
                       "signed) that the catalogue recorded, or whose SHA-256 --sha256 "
                       "names. Anyone with a recipient public key can make such a file. "
                       "Audited.")
SHA256_HELP = ("With --allow-unsigned: the file's SHA-256 as recorded elsewhere (the offsite "
               "copy's .sha256, a restore on a machine without the catalogue).")


@click.group()
def backup() -> None:
    """Encrypted backups (docs/backups.md). Backups are encrypted to X25519 recipient
    keys (the host that makes them cannot read them) and signed with the host's Ed25519
    signing key (verify and restore accept only trusted signers)."""


def _identity(ctx: click.Context, given: str | None) -> Any:
    from polysec_tui.services.operations.backups import BackupConfig

    return BackupConfig.from_settings(settings_of(ctx)).load_identity(given)


@backup.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the private key (created, never overwritten, mode 0600).")
@click.option("--signing", is_flag=True,
              help="Make the backup host's Ed25519 signing key instead of a recipient key.")
def keygen(out: str, signing: bool) -> None:
    """Make a key pair; the private key goes to --out once (mode 0600), the public key
    is printed. By default an X25519 recipient key: keep the private key offline (it is
    needed to verify and restore, never to create backups) and add the printed
    recipient to [backup] recipients. With --signing, the backup host's Ed25519 signing
    key: set [backup] signing_key to --out on that host, and add the printed public key
    to [backup] signers wherever backups are verified or restored."""
    from polysec_tui.backup.envelope import Identity, SigningKey

    path = Path(out).expanduser()
    if signing:
        key = SigningKey.generate()
        key.write_new(path)
        echo(f"signing key written to {visible(out)} (mode 0600): keep it on the backup "
             "host only; set [backup] signing_key to it", err=True)
        echo(str(key.signer))
        return
    identity = Identity.generate()
    identity.write_new(path)
    echo(f"private key written to {visible(out)} (mode 0600): move it offline", err=True)
    echo(str(identity.recipient))


class _Bar:
    """A progress bar on stderr when it is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.done = 0

    def __call__(self, done: int, estimate: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=max(estimate or 0, done, 1),
                                         label="snapshot", file=sys.stderr,
                                         show_eta=False, show_percent=True)
            self.bar.__enter__()
        if done > self.bar.length:
            self.bar.length = done
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@backup.command()
@click.option("--to", "to_dir", metavar="DIRECTORY",
              help="Directory for the backup (default: [backup] dir, or backups/ under "
                   "the application directory).")
@click.option("--recipient", "recipients", multiple=True, metavar="polysec-x25519:...",
              help="Also encrypt to this public key (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def create(ctx: click.Context, to_dir: str | None, recipients: tuple[str, ...],
           as_json: bool) -> None:
    """Snapshot the live database consistently, encrypted as it streams, and record it
    in the catalogue."""
    from polysec_tui.backup.envelope import Recipient
    from polysec_tui.services.operations import backups

    actor = actor_of(ctx, "backup.run")
    bar = _Bar(not as_json and sys.stderr.isatty())
    try:
        made = backups.create_backup(
            runtime_of(ctx), actor, directory=Path(to_dir) if to_dir else None,
            recipients=[Recipient.parse(r) for r in recipients], progress=bar)
    finally:
        bar.close()
    if as_json:
        emit_json(made.as_dict())
        return
    echo(f"backup {made.id} written: {visible(made.path)}")
    echo(f"  {made.size_bytes} bytes, sha256 {made.sha256}, schema "
         f"{visible(made.alembic_revision)}, field keys {made.field_key_ids}, signed by "
         f"{made.signer}")


def _file_or_latest(ctx: click.Context, file: str | None, latest: bool, actor: Any) -> Path:
    if (file is None) == (not latest):
        raise InputError("give FILE or --latest (the newest good backup in the catalogue)")
    if latest:
        from polysec_tui.services.operations import backups

        return backups.latest_backup(runtime_of(ctx), actor)
    assert file is not None
    return Path(file)


@backup.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--latest", is_flag=True, help="The newest good backup in the catalogue.")
@click.option("--identity", metavar="KEYFILE", help="Private key of a recipient.")
@click.option("--restore-test", is_flag=True,
              help="Also restore into a scratch database and check it.")
@click.option("--scratch", metavar="URL",
              help="Server for the scratch database (default: the live database's server).")
@click.option("--allow-unsigned", is_flag=True, help=ALLOW_UNSIGNED_HELP)
@click.option("--sha256", "unsigned_sha256", metavar="HEX", help=SHA256_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def verify(ctx: click.Context, file: str | None, latest: bool, identity: str | None,
           restore_test: bool, scratch: str | None, allow_unsigned: bool,
           unsigned_sha256: str | None, as_json: bool) -> None:
    """Check the signer against [backup] signers, authenticate every chunk, the manifest
    and the signature of FILE, and compare it with the catalogue (exit 1 on any
    failure)."""
    from polysec_tui.errors import CheckFailed
    from polysec_tui.services.operations import backups

    actor = actor_of(ctx, "backup.run")
    path = _file_or_latest(ctx, file, latest, actor)
    file = str(path)
    key = _identity(ctx, identity)
    try:
        report = backups.verify_backup(runtime_of(ctx), actor, path, key,
                                       restore_test=restore_test, scratch=scratch,
                                       allow_unsigned=allow_unsigned,
                                       unsigned_sha256=unsigned_sha256)
    except CheckFailed as exc:
        if as_json:
            emit_json({"path": file, "ok": False, "reason": exc.message})
        raise
    if as_json:
        emit_json(report.as_dict())
        return
    m = report.manifest
    signed = (f"signed by {report.signer}" if report.signer else
              "UNSIGNED (accepted with --allow-unsigned; audited)")
    echo(f"OK {visible(file)}: backup {report.backup_id}, {visible(m.get('chunks'))} chunks, "
         f"{visible(m.get('payload_bytes'))} bytes of {visible(m.get('engine'))} snapshot, "
         f"schema {visible(m.get('alembic_revision'))}, field keys "
         f"{visible(m.get('field_key_ids'))}; {signed}; catalogue: {report.catalogue}")
    if report.restore_test is not None:
        rows = sum(report.restore_test["row_counts"].values())
        echo(f"restore test OK: {rows} rows in {len(report.restore_test['row_counts'])} "
             f"tables, {report.restore_test['sampled_fields']} encrypted fields decrypted")


@backup.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--identity", metavar="KEYFILE", help="Private key of a recipient.")
@click.option("--to", "to_url", metavar="URL", help="A new database to restore into.")
@click.option("--replace", is_flag=True,
              help="Replace the live database (admin, fresh code); the old one is kept.")
@click.option("--code", help="A fresh authenticator code for --replace (asked if not given).")
@click.option("--allow-unsigned", is_flag=True, help=ALLOW_UNSIGNED_HELP)
@click.option("--sha256", "unsigned_sha256", metavar="HEX", help=SHA256_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def restore(ctx: click.Context, file: str, identity: str | None, to_url: str | None,
            replace: bool, code: str | None, allow_unsigned: bool,
            unsigned_sha256: str | None, as_json: bool) -> None:
    """Restore FILE into a new database (--to URL) or in place of the live one
    (--replace). The whole file is verified (a trusted signer, every chunk, the manifest,
    the signature, the catalogue's SHA-256) before anything is written."""
    from polysec_tui.services.operations import backups

    actor = actor_of(ctx, "backup.restore")
    key = _identity(ctx, identity)
    if replace and code is None:
        code = prompt_secret("Authenticator code")
    result = backups.restore_backup(runtime_of(ctx), actor, Path(file), key, to_url=to_url,
                                    replace=replace, code=code,
                                    allow_unsigned=allow_unsigned,
                                    unsigned_sha256=unsigned_sha256)
    if as_json:
        emit_json(result.as_dict())
        return
    echo(visible(result.note))
    rows = sum(result.check["row_counts"].values())
    signed = (f"signed by {result.signer}" if result.signer else
              "UNSIGNED (accepted with --allow-unsigned; audited)")
    echo(f"checked: schema {visible(result.check['revision'])}, {rows} rows, "
         f"{result.check['sampled_fields']} encrypted fields decrypted; {signed}")



@backup.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--identity", metavar="KEYFILE",
              help="Private key of a recipient. Default: [backup] identity.")
@click.option("--scratch", metavar="URL",
              help="PostgreSQL/MariaDB: a server for the scratch database (a new database "
                   "there, dropped after). Default: the live server. SQLite: a private "
                   "temporary file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def drill(ctx: click.Context, file: str | None, identity: str | None, scratch: str | None,
          as_json: bool) -> None:
    """Restore drill: restore FILE (default: the newest good backup) into a segregated
    scratch database, check it against its manifest, run the data audit checks and the
    audit-log verification on it, drop it, and write a signed drill record (exit 1 if
    the drill fails; the record is written either way). Weekly by `backup schedule`."""
    from polysec_tui.errors import CheckFailed
    from polysec_tui.services.operations import backups

    actor = actor_of(ctx, "backup.run")
    key = _identity(ctx, identity)
    # systemctl stop (or its timeout) sends SIGTERM: leave through the drill's cleanup,
    # which drops the scratch database, instead of dying with it left on the server.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        report = backups.drill_backup(runtime_of(ctx), actor, key,
                                      path=Path(file) if file else None, scratch=scratch)
    except CheckFailed as exc:
        if as_json:
            emit_json({"result": "fail", "reason": exc.message})
        raise
    if as_json:
        emit_json(report.as_dict())
        return
    echo(f"drill PASSED: {visible(report.path)} restored in {report.restore_seconds:.1f} s, "
         f"{report.rows:,} rows checked in {report.checks_seconds:.1f} s "
         f"({', '.join(f'{k} {v}' for k, v in report.checks.items())}); "
         f"signed record {visible(report.record_file)}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@backup.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def drills(ctx: click.Context, as_json: bool) -> None:
    """The latest restore drills, newest first, each record's signature checked against
    [backup] signers."""
    from polysec_tui.services.operations import backups

    views = backups.list_drills(runtime_of(ctx), actor_of(ctx, "backup.run"))
    if as_json:
        emit_json([v.as_dict() for v in views])
        return
    if not views:
        echo("no restore drill yet (`polysec backup drill`)")
    for v in views:
        took = "" if v.restore_seconds is None else f"restore {v.restore_seconds:.1f} s, "
        echo(f"{v.started_at:%Y-%m-%d %H:%M}  {v.result.upper():<4}  {took}total "
             f"{v.total_seconds:.1f} s  by {visible(v.officer)}  backup {v.backup_id or '?'}  "
             f"signature {v.signature}")


@backup.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """The backup catalogue, newest first."""
    from polysec_tui.services.operations import backups

    actor = actor_of(ctx, "backup.run")
    rt = runtime_of(ctx)
    views = backups.list_backups(rt, actor)
    partials = backups.stale_partials(rt)
    if as_json:
        emit_json({"backups": [v.as_dict() for v in views],
                   "unfinished": [str(p) for p in partials]})
        return
    for v in views:
        present = "" if v.file_present or v.status == "pruned" else "  FILE MISSING"
        shipped = "shipped" if v.shipped_at else "local"
        echo(f"{v.created_at:%Y-%m-%d %H:%M:%S}  {v.id}  {visible(v.engine):<10} "
             f"{visible(v.status):<9} {shipped:<7} {v.size_bytes:>12}  {visible(v.path)}"
             f"{present}")
    if not views:
        echo("no backups")
    for p in partials:
        echo(f"unfinished (interrupted create, not a backup): {visible(p)}", err=True)


@backup.command()
@click.option("--keep-daily", type=click.IntRange(0, 100_000), default=7, show_default=True)
@click.option("--keep-weekly", type=click.IntRange(0, 100_000), default=4, show_default=True)
@click.option("--keep-monthly", type=click.IntRange(0, 100_000), default=12, show_default=True)
@click.option("--dry-run", is_flag=True, help="Show what would go; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def prune(ctx: click.Context, keep_daily: int, keep_weekly: int, keep_monthly: int,
          dry_run: bool, as_json: bool) -> None:
    """Delete backups the retention policy does not keep (newest of each of the last N
    days, ISO weeks and months that have one)."""
    from polysec_tui.services.operations import backups

    actor = actor_of(ctx, "backup.run")
    plan = backups.prune_backups(runtime_of(ctx), actor, keep_daily=keep_daily,
                                 keep_weekly=keep_weekly, keep_monthly=keep_monthly,
                                 dry_run=dry_run)
    if as_json:
        emit_json(plan.as_dict())
        return
    for item in plan.keep:
        echo(f"keep    {item['created_at']}  {item['id']}  ({', '.join(item['reasons'])})")
    verb = "would remove" if dry_run else "removed"
    for item in plan.remove:
        echo(f"{verb:<7} {item['created_at']}  {item['id']}  {visible(item['path'])}")


class _SendBar:
    """Upload progress on stderr when it is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=max(total, 1), label="upload", file=sys.stderr,
                                         show_eta=True, show_percent=True)
            self.bar.__enter__()
            self.done = 0
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@backup.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@click.option("--latest", is_flag=True, help="The newest good backup in the catalogue.")
@click.option("--to", "to", metavar="sftp://user@host[:port]/dir",
              help="Remote directory (it must exist). Default: [backup] ship_to.")
@click.option("--known-hosts", type=click.Path(dir_okay=False),
              help="known_hosts file that pins the server's host key (nothing else is "
                   "trusted; an unknown or changed key is refused). Default: [backup] "
                   "known_hosts.")
@click.option("--identity", "ssh_identity", type=click.Path(dir_okay=False),
              metavar="KEY", help="SSH private key (key authentication only). Default: "
                                  "[backup] ssh_identity.")
@click.option("--append-only", is_flag=True,
              help="The target refuses removal, renames and overwrite (docs/backups.md): "
                   "written straight to NAME, no resume, no mode change. Default: "
                   "[backup] ship_append_only.")
@click.option("--check-target", is_flag=True,
              help="First prove with a canary file that the target refuses removal, "
                   "renames, overwrite, truncation and mode changes (exit 1 if it allows "
                   "any); then ship FILE or --latest if given, append-only.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def ship(ctx: click.Context, file: str | None, latest: bool, to: str | None,
         known_hosts: str | None, ssh_identity: str | None, append_only: bool,
         check_target: bool, as_json: bool) -> None:
    """Copy a finished backup offsite over SFTP: uploaded to NAME.partial (resumed if an
    earlier upload was cut), read back and compared by SHA-256, renamed to NAME, then the
    manifest NAME.manifest.json; recorded in the catalogue. Remote copies are never
    pruned: `backup prune` applies to the local catalogue only."""
    from polysec_tui.services.operations import backups

    actor = actor_of(ctx, "backup.run")
    config = backups.BackupConfig.from_settings(settings_of(ctx))
    target, hosts, key = config.shipping(
        to, Path(known_hosts).expanduser() if known_hosts else None,
        Path(ssh_identity).expanduser() if ssh_identity else None)
    # The file first: a check leaves two files the target will not let us remove.
    path = None if check_target and file is None and not latest else _file_or_latest(
        ctx, file, latest, actor)
    checked = None
    if check_target:
        checked = backups.check_ship_target(runtime_of(ctx), actor, target,
                                            known_hosts=hosts, identity=key)
        if path is None:
            if as_json:
                emit_json(checked.as_dict())
            else:
                echo(f"{visible(checked.to)} is append-only: it refused "
                     f"{', '.join(checked.refused)}; the canary {visible(checked.canary)} "
                     "stays there (only the server's operator can remove it)")
            return
    assert path is not None
    bar = _SendBar(not as_json and sys.stderr.isatty())
    try:
        result = backups.ship_backup(
            runtime_of(ctx), actor, path, target, known_hosts=hosts, identity=key,
            progress=bar, append_only=append_only or check_target or config.ship_append_only)
    finally:
        bar.close()
    if as_json:
        emit_json(result.as_dict() | ({} if checked is None
                                      else {"target_check": checked.as_dict()}))
        return
    if checked is not None:
        echo(f"{visible(checked.to)} is append-only (canary {visible(checked.canary)})")
    how = ("already there, same SHA-256" if result.already_there else
           f"resumed at byte {result.resumed_from}" if result.resumed_from else "uploaded")
    echo(f"shipped {visible(result.path)} to {visible(result.to)} ({how}; "
         f"{result.size_bytes} bytes, sha256 {result.sha256} read back and matched); "
         f"catalogue: {result.catalogue}")


@backup.command()
@click.option("--print", "kind", required=True, type=click.Choice(["systemd", "cron"]),
              help="systemd: a service and a timer; cron: an /etc/cron.d file.")
@click.option("--polysec", "polysec", default="/usr/local/bin/polysec", show_default=True,
              help="Absolute path of the polysec program on the backup host.")
@click.option("--user", default="polysec", show_default=True,
              help="The system user that runs the job.")
@click.option("--env-file", default="/etc/polysec/backup.env", show_default=True,
              help="File (mode 0600) with POLYSEC_TOKEN of the automation account and "
                   "POLYSEC_DB_URL, POLYSEC_KEYRING, POLYSEC_CONFIG.")
@click.option("--at", "at", default="02:30", show_default=True, help="Time of day, HH:MM UTC.")
@click.option("--ship-to", metavar="sftp://user@host[:port]/dir",
              help="Ship each backup offsite (with --known-hosts and --ssh-identity).")
@click.option("--known-hosts", help="known_hosts file pinning the SFTP server's key.")
@click.option("--ssh-identity", help="SSH private key for the SFTP server.")
@click.option("--no-verify", is_flag=True,
              help="Leave out `verify --latest` (when no identity is kept on the host).")
@click.option("--keep-daily", type=click.IntRange(0, 100_000), default=7, show_default=True)
@click.option("--keep-weekly", type=click.IntRange(0, 100_000), default=4, show_default=True)
@click.option("--keep-monthly", type=click.IntRange(0, 100_000), default=12, show_default=True)
@click.option("--writable", multiple=True, metavar="DIR",
              help="Directories the service may write (repeatable; default "
                   "/var/backups/polysec and /var/lib/polysec).")
@click.option("--drill-at", default="04:30", show_default=True,
              help="The weekly restore drill (`backup drill`): Sundays at HH:MM UTC.")
@click.option("--no-drill", is_flag=True,
              help="Leave out the weekly restore drill (run it on the segregated host "
                   "that keeps a drill identity instead).")
def schedule(kind: str, polysec: str, user: str, env_file: str, at: str,
             ship_to: str | None, known_hosts: str | None, ssh_identity: str | None,
             no_verify: bool, keep_daily: int, keep_weekly: int, keep_monthly: int,
             writable: tuple[str, ...], drill_at: str, no_drill: bool) -> None:
    """Print the daily job (create, verify, ship, prune) and the weekly restore drill as
    systemd services + timers or crontab lines, run as the automation account. Nothing
    is installed."""
    from polysec_tui.backup.schedule import Job, cron_entry, systemd_units

    job = Job(polysec=polysec, user=user, env_file=env_file, at=at, ship_to=ship_to,
              known_hosts=known_hosts, ssh_identity=ssh_identity, verify=not no_verify,
              keep_daily=keep_daily, keep_weekly=keep_weekly, keep_monthly=keep_monthly,
              writable=writable or Job.writable, drill=not no_drill, drill_at=drill_at)
    try:
        if kind == "cron":
            _print_file(cron_entry(job))
            return
        units = systemd_units(job)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    _print_file("\n".join(f"### {name}\n{text}" for name, text in units.items()))


def _print_file(text: str) -> None:
    """A unit or crontab, byte for byte: `echo` leaves backslashes (systemd's and cron's
    own escapes) single, and `Job.check` has refused every value holding a character that
    `echo` would show as an escape."""
    echo(text, nl=False)


@backup.group()
def pitr() -> None:
    """Point-in-time recovery of PostgreSQL with pgBackRest ([pitr]; docs/backups.md):
    status, check, restore --to-time T --to DIR."""


@pitr.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def pitr_status(ctx: click.Context, as_json: bool) -> None:
    """The stanza's backups, archived WAL range and repository cipher (exit 1 when
    pgBackRest cannot tell, or the repository is not encrypted)."""
    from polysec_tui.errors import CheckFailed
    from polysec_tui.services.operations import pitr as service

    found = service.status(runtime_of(ctx), actor_of(ctx, "backup.run"))
    if as_json:
        emit_json(found.as_dict())
    else:
        echo(f"stanza {found.stanza}: {found.status}; repository cipher {found.cipher}")
        echo(f"archived WAL {found.wal_min or '-'} .. {found.wal_max or '-'}; recoverable "
             f"from {found.recoverable_from or 'nothing yet'} to the last archived WAL")
        for b in found.backups:
            echo(f"  {b['label']}  {b['type']:<5} {b['started']} .. {b['stopped']}  "
                 f"{b['size']} bytes")
    if found.cipher in ("none", "unknown"):
        raise CheckFailed("the pgBackRest repository is not encrypted (repo1-cipher-type)")
    if not found.backups:
        raise CheckFailed("the stanza has no backup yet: nothing to recover from")


@pitr.command("check")
@click.pass_context
def pitr_check(ctx: click.Context) -> None:
    """pgBackRest's check: a WAL segment switched, archived and found (exit 1 if not).
    Audited."""
    from polysec_tui.services.operations import pitr as service

    service.check(runtime_of(ctx), actor_of(ctx, "backup.run"))
    echo("pgbackrest check passed: WAL archiving works")


@pitr.command("restore")
@click.option("--to-time", "to_time", required=True,
              help="ISO 8601 with a time zone: 2026-12-05T03:36:27Z.")
@click.option("--to", "directory", required=True, type=click.Path(path_type=Path),
              help="A new, empty data directory for the restored cluster.")
@click.option("--port", type=click.IntRange(1024, 65535), required=True,
              help="The restored copy listens on 127.0.0.1:PORT (never the live port).")
@click.pass_context
def pitr_restore(ctx: click.Context, to_time: str, directory: Path, port: int) -> None:
    """The database as it was at --to-time, in a new data directory (never over a
    cluster), started on 127.0.0.1:PORT with archiving off, and waited for until it has
    replayed to --to-time. Admins; audited."""
    from datetime import datetime

    from polysec_tui.services.operations import pitr as service

    try:
        target = datetime.fromisoformat(to_time.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--to-time {to_time!r} is not an ISO 8601 time") from None
    done = service.restore(runtime_of(ctx), actor_of(ctx, "backup.restore"), target,
                           directory, port=port)
    echo(f"restored to {done.target.isoformat()} in {done.directory}; running at {done.url} "
         "(archiving off; stop it with pg_ctl -D DIR stop)")
