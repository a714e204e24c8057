"""Point-in-time recovery of a PostgreSQL database with pgBackRest (`polysec backup pitr`).

pgBackRest keeps base backups and the write-ahead log of the cluster in its own
repository, encrypted with its own cipher (`repo1-cipher-type`); the server-side set-up
(archive_command, stanza, retention) is in docs/backups.md. polysec drives it:

- ``status``: the stanza's backups, the archived WAL range and the repository cipher;
- ``check``: pgBackRest's own check (a WAL segment switched, archived and found);
- ``restore --to-time T --to DIR --port P``: the cluster as it was at T, restored into
  a new, empty data directory, never over the live one, with archiving off (a restored
  copy must not push its WAL into the live cluster's repository), started on
  127.0.0.1:P and waited for until it has replayed to T and been promoted.

pgBackRest runs as the cluster's owner: ``[pitr] run_as`` is the prefix that makes it so
(``["sudo", "-u", "postgres"]``). Every restore is audited. The daily encrypted logical
backup (`polysec backup create`) stays the portable, offline-verifiable copy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polysec_tui.config import Settings
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime

TIMEOUT_SECONDS = 3600.0


@dataclass(frozen=True)
class PitrConfig:
    """``[pitr]``: how to run pgBackRest for the stanza."""

    stanza: str
    config: str | None = None  # pgBackRest's configuration file (its default otherwise)
    run_as: tuple[str, ...] = ()  # a prefix: ("sudo", "-u", "postgres")
    pgbackrest: str = "pgbackrest"
    pg_ctl: str | None = None  # to start a restored cluster (--port)

    @classmethod
    def from_settings(cls, settings: Settings) -> PitrConfig:
        raw = settings.section("pitr")
        if not raw:
            raise InputError("no [pitr] in the configuration: point-in-time recovery needs "
                             "pgBackRest set up for the database (docs/backups.md)")
        unknown = sorted(set(raw) - {"stanza", "config", "run_as", "pgbackrest", "pg_ctl"})
        if unknown:
            raise InputError(f"config: [pitr] has no setting {unknown[0]!r}")
        stanza = raw.get("stanza")
        if not isinstance(stanza, str) or not stanza.replace("-", "").replace("_", "").isalnum():
            raise InputError("config: [pitr] stanza must be a name (letters, digits, - or _)")
        run_as = raw.get("run_as", [])
        if not isinstance(run_as, list) or not all(isinstance(p, str) and p for p in run_as):
            raise InputError("config: [pitr] run_as must be a list of strings, e.g. "
                             "[\"sudo\", \"-u\", \"postgres\"]")
        texts = {}
        for key in ("config", "pgbackrest", "pg_ctl"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"config: [pitr] {key} must be a path")
            texts[key] = value
        return cls(stanza, texts["config"], tuple(run_as), texts["pgbackrest"] or "pgbackrest",
                   texts["pg_ctl"])

    def command(self, *args: str) -> list[str]:
        base = [self.pgbackrest] + ([f"--config={self.config}"] if self.config else [])
        return [*self.run_as, *base, f"--stanza={self.stanza}", *args]


def _run(cfg: PitrConfig, *args: str, timeout: float = TIMEOUT_SECONDS) -> str:
    """pgBackRest's output; CheckFailed with its own first error line when it fails."""
    command = cfg.command(*args)
    if shutil.which(command[0]) is None:
        raise InputError(f"{command[0]} is not installed or not on PATH")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,  # noqa: S603
                              check=False)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"pgbackrest {args[-1]} did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines()
                 if "ERROR" in line] or (done.stderr or done.stdout).strip().splitlines()
        raise CheckFailed(f"pgbackrest {args[-1]} failed: "
                          f"{(lines[0] if lines else f'exit {done.returncode}')[:300]}")
    return done.stdout


@dataclass(frozen=True)
class PitrStatus:
    stanza: str
    status: str  # pgBackRest's word for the stanza: ok, ...
    cipher: str
    backups: list[dict[str, Any]]  # label, type, started, stopped, size
    wal_min: str | None
    wal_max: str | None
    recoverable_from: str | None  # the oldest good backup's end: the earliest target
    # (later where WAL retention expired older segments)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def status(rt: Runtime, actor: Actor) -> PitrStatus:
    require(actor, "backup.run")
    cfg = PitrConfig.from_settings(rt.settings)
    try:
        (info,) = json.loads(_run(cfg, "--output=json", "info"))
    except (ValueError, TypeError):
        raise CheckFailed("pgbackrest info gave no readable answer for the stanza") from None
    state = info.get("status", {})
    if state.get("code") not in (0, None):
        raise CheckFailed(f"pgbackrest: stanza {cfg.stanza}: "
                          f"{str(state.get('message', 'unknown'))[:200]}")
    backups = [{"label": b.get("label"), "type": b.get("type"),
                "started": _time(b.get("timestamp", {}).get("start")),
                "stopped": _time(b.get("timestamp", {}).get("stop")),
                "size": b.get("info", {}).get("size")}
               for b in info.get("backup", []) if not b.get("error")]
    archive = (info.get("archive") or [{}])[-1]
    stops = [b["stopped"] for b in backups if b["stopped"]]
    return PitrStatus(cfg.stanza, str(state.get("message", "unknown")),
                      str(info.get("cipher", "unknown")), backups, archive.get("min"),
                      archive.get("max"), min(stops) if stops else None)


def _time(value: Any) -> str | None:
    return datetime.fromtimestamp(value, UTC).isoformat() if isinstance(value, int) else None


def check(rt: Runtime, actor: Actor) -> None:
    """pgBackRest's check: the archive command works (exit 1 otherwise). Audited."""
    require(actor, "backup.run")
    cfg = PitrConfig.from_settings(rt.settings)
    result = "fail"
    try:
        _run(cfg, "check", timeout=300)
        result = "pass"
    finally:
        with rt.transaction() as session:
            rt.audit.append(session, officer=actor.name, action="backup.pitr.check",
                            at=rt.clock(), target=f"stanza:{cfg.stanza}",
                            details={"result": result})


@dataclass(frozen=True)
class Restored:
    directory: str
    target: datetime
    url: str  # where the started copy listens


# A data directory's path goes into shell commands pgBackRest and pg_ctl write
# (restore_command, the postmaster's start): only these characters.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]+")
MINIMAL_HBA = ("# polysec backup pitr restore: the restored copy, on loopback\n"
               "local all postgres peer\n"
               "host all all 127.0.0.1/32 scram-sha-256\n")


def restore(rt: Runtime, actor: Actor, target: datetime, directory: Path, *,
            port: int) -> Restored:
    """The cluster as it was at ``target`` in a new data directory, started on
    127.0.0.1:``port`` and its socket in the directory, and waited for until it has
    replayed to ``target`` and been promoted (module docstring). Audited, before and
    after (with the result)."""
    require(actor, "backup.restore")
    cfg = PitrConfig.from_settings(rt.settings)
    if cfg.pg_ctl is None:
        raise InputError("restore needs [pitr] pg_ctl (the cluster's pg_ctl binary)")
    if target.tzinfo is None:
        raise InputError("--to-time needs a time zone (e.g. 2026-12-05T03:36:27Z)")
    if target > rt.clock():
        raise InputError("--to-time is in the future")
    directory = directory.expanduser().absolute()
    if not _SAFE_PATH.fullmatch(str(directory)) or ".." in directory.parts:
        raise InputError("--to must be a path of letters, digits, '.', '_', '-' and '/' "
                         "(it goes into commands PostgreSQL runs)")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"{directory} is not an empty directory: a point-in-time restore "
                         "goes to a new one, never over a cluster")
    stamp = target.astimezone(UTC).isoformat(sep=" ")
    details = {"to_time": target.isoformat(), "to": str(directory), "port": port}
    with rt.transaction() as session:
        rt.audit.append(session, officer=actor.name, action="backup.pitr.restore",
                        at=rt.clock(), target=f"stanza:{cfg.stanza}", details=details)
    try:
        _restore(cfg, stamp, directory, port)
    except Exception as exc:
        with rt.transaction() as session:
            rt.audit.append(session, officer=actor.name, action="backup.pitr.restored",
                            at=rt.clock(), target=f"stanza:{cfg.stanza}",
                            details={**details, "result": "fail",
                                     "error": str(exc).splitlines()[0][:300] if str(exc)
                                     else exc.__class__.__name__})
        raise
    url = f"postgresql://127.0.0.1:{port}/"
    with rt.transaction() as session:
        rt.audit.append(session, officer=actor.name, action="backup.pitr.restored",
                        at=rt.clock(), target=f"stanza:{cfg.stanza}",
                        details={**details, "result": "pass", "url": url})
    return Restored(str(directory), target, url)


def _restore(cfg: PitrConfig, stamp: str, directory: Path, port: int) -> None:
    assert cfg.pg_ctl is not None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = _owner(cfg)
    if owner is not None:
        shutil.chown(directory, owner)
    _run(cfg, f"--pg1-path={directory}", "--type=time", f"--target={stamp}",
         "--target-action=promote", "restore")
    # Where the cluster keeps its configuration outside the data directory (Debian's
    # /etc/postgresql), the copy gets a minimal one of its own.
    for name, text in (("postgresql.conf", "# polysec backup pitr restore\n"),
                       ("pg_hba.conf", MINIMAL_HBA)):
        if not (directory / name).exists():
            (directory / name).write_text(text)
            if owner is not None:
                shutil.chown(directory / name, owner)
    # Never archive into the live cluster's repository, never take the live cluster's
    # port, socket or pid file; loopback only.
    with (directory / "postgresql.auto.conf").open("a", encoding="utf-8") as handle:
        handle.write("\n# polysec backup pitr restore\narchive_mode = off\n"
                     f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                     f"unix_socket_directories = '{directory}'\nexternal_pid_file = ''\n")
    log_file = directory / "polysec-restore.log"
    try:
        started = subprocess.run(  # noqa: S603
            [*cfg.run_as, cfg.pg_ctl, "-D", str(directory), "-l", str(log_file), "-w",
             "-t", "600", "start"], capture_output=True, text=True, timeout=660, check=False)
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise CheckFailed(f"the restored cluster did not start: {exc.__class__.__name__} "
                          f"(see {log_file})") from None
    if started.returncode != 0:
        raise CheckFailed(f"the restored cluster did not start: {_fatal(log_file)}")
    _wait_promoted(cfg, directory, port, log_file)


def _owner(cfg: PitrConfig) -> str | None:
    """The user ``run_as`` switches to (the word after -u), if it says."""
    parts = list(cfg.run_as)
    return parts[parts.index("-u") + 1] if "-u" in parts[:-1] else None


def _fatal(log_file: Path) -> str:
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return f"see {log_file}"
    fatal = [line for line in lines if "FATAL" in line or "PANIC" in line]
    return (fatal[-1] if fatal else f"see {log_file}")[-300:]


def _wait_promoted(cfg: PitrConfig, directory: Path, port: int, log_file: Path) -> None:
    """Until the copy answers that it is out of recovery (it replayed to the target and
    was promoted), at most ten minutes; a copy that stops meanwhile (a target past the
    last archived commit ends recovery early) is reported with its log's FATAL line."""
    assert cfg.pg_ctl is not None
    psql = str(Path(cfg.pg_ctl).with_name("psql"))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if not (directory / "postmaster.pid").exists():
            raise CheckFailed(f"the restored cluster stopped: {_fatal(log_file)}")
        try:
            asked = subprocess.run(  # noqa: S603
                [*cfg.run_as, psql, "-h", str(directory), "-p", str(port), "-U", "postgres",
                 "-Atq", "-c", "select pg_is_in_recovery()"], capture_output=True, text=True,
                timeout=30, check=False)
        except (subprocess.TimeoutExpired, OSError):
            asked = None
        if asked is not None and asked.returncode == 0 and asked.stdout.strip() == "f":
            return
        time.sleep(0.5)
    raise CheckFailed(f"the restored cluster on port {port} did not finish recovery in ten "
                      "minutes")
