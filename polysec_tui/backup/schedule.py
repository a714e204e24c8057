"""The daily backup job as a systemd service + timer pair or an /etc/cron.d line.

The job runs, in order and stopping at the first failure: ``backup create``, ``backup
verify --latest``, ``backup ship --latest`` (when an SFTP target is given) and ``backup
prune``, as the automation account: ``POLYSEC_TOKEN`` (and ``POLYSEC_DB_URL``,
``POLYSEC_KEYRING``, ``POLYSEC_CONFIG``) come from an environment file readable only by
the service user, never from the command line (which ``ps`` shows to everyone).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from polysec_tui.text import is_hidden

_SAFE_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Job:
    polysec: str = "/usr/local/bin/polysec"
    user: str = "polysec"
    env_file: str = "/etc/polysec/backup.env"
    at: str = "02:30"  # UTC
    ship_to: str | None = None
    known_hosts: str | None = None
    ssh_identity: str | None = None
    verify: bool = True
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12
    writable: tuple[str, ...] = ("/var/backups/polysec", "/var/lib/polysec")

    def check(self) -> None:
        """Raise ValueError for values that cannot go into a unit or crontab safely."""
        if not _SAFE_USER.match(self.user):
            raise ValueError(f"not a valid user name: {self.user!r}")
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.at):
            raise ValueError(f"--at wants HH:MM (UTC), not {self.at!r}")
        for value in (self.polysec, self.env_file, *self.writable):
            if not value.startswith("/"):
                raise ValueError(f"give an absolute path, not {value!r}")
        for value in self._values():
            # Controls, C1, bidi and invisible characters: nothing a unit or crontab
            # needs, and what a reader of the printed file would not see.
            if any(is_hidden(c) and c != "\\" for c in value):
                raise ValueError("control or invisible characters are not allowed in the "
                                 "schedule")
        if self.ship_to is not None and not (self.known_hosts and self.ssh_identity):
            raise ValueError("shipping needs --known-hosts and --ssh-identity")

    def _values(self) -> list[str]:
        return [v for v in (self.polysec, self.env_file, self.ship_to, self.known_hosts,
                            self.ssh_identity, *self.writable) if v is not None]

    def steps(self) -> list[list[str]]:
        """The commands of one run, in order."""
        steps = [[self.polysec, "backup", "create"]]
        if self.verify:
            steps.append([self.polysec, "backup", "verify", "--latest"])
        if self.ship_to is not None:
            assert self.known_hosts and self.ssh_identity
            steps.append([self.polysec, "backup", "ship", "--latest", "--to", self.ship_to,
                          "--known-hosts", self.known_hosts, "--identity", self.ssh_identity])
        steps.append([self.polysec, "backup", "prune", "--keep-daily", str(self.keep_daily),
                      "--keep-weekly", str(self.keep_weekly),
                      "--keep-monthly", str(self.keep_monthly)])
        return steps


def _systemd_word(word: str) -> str:
    """One argument of an Exec line: quoted, with systemd's specifiers (%) and variable
    expansion ($) neutralised."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    escaped = escaped.replace("$", "$$")
    return f'"{escaped}"' if re.search(r'[\s"\'\\;]', word) or not word else escaped


def _systemd_path(path: str) -> str:
    if re.search(r"[\s\"'\\%$]", path):
        raise ValueError(f"path {path!r}: use a path without spaces, quotes, % or $")
    return path


def systemd_units(job: Job, name: str = "polysec-backup") -> dict[str, str]:
    """``{"NAME.service": text, "NAME.timer": text}``."""
    job.check()
    execs = "\n".join("ExecStart=" + " ".join(_systemd_word(w) for w in step)
                      for step in job.steps())
    writable = " ".join(_systemd_path(p) for p in job.writable)
    offsite = "" if job.ship_to else (
        "# No --ship-to was given: this job keeps backups on this host only.\n")
    service = f"""\
# polysec daily backup: create, verify, ship offsite, prune (docs/backups.md).
# Install: this file and {name}.timer in /etc/systemd/system, then
#   systemctl daemon-reload && systemctl enable --now {name}.timer
# {job.env_file} (owner {job.user}, mode 0600) holds POLYSEC_TOKEN of the automation
# account and POLYSEC_DB_URL, POLYSEC_KEYRING, POLYSEC_CONFIG.
{offsite}[Unit]
Description=polysec daily encrypted backup (create, verify, ship, prune)
Documentation=file:///usr/share/doc/polysec/backups.md
Wants=network-online.target
After=network-online.target postgresql.service mariadb.service

[Service]
Type=oneshot
User={job.user}
Group={job.user}
EnvironmentFile={_systemd_path(job.env_file)}
{execs}
TimeoutStartSec=6h
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths={writable}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
"""
    timer = f"""\
# polysec daily backup timer: runs {name}.service every day at {job.at} UTC; a run
# missed while the machine was off happens at the next boot (Persistent=true).
[Unit]
Description=Daily polysec encrypted backup

[Timer]
OnCalendar=*-*-* {job.at}:00 UTC
Persistent=true
RandomizedDelaySec=15min
AccuracySec=1min
Unit={name}.service

[Install]
WantedBy=timers.target
"""
    return {f"{name}.service": service, f"{name}.timer": timer}


def cron_entry(job: Job) -> str:
    """An /etc/cron.d file: one line, run as ``job.user`` at ``job.at`` in the host's time
    zone (cron has no portable per-line zone; backup hosts run on UTC)."""
    job.check()
    hour, minute = job.at.split(":")
    chain = " && ".join(shlex.join(step) for step in job.steps())
    script = (f"set -a && . {shlex.quote(job.env_file)} && set +a && umask 077 && {chain}")
    # The lock (on the environment file itself: no new file in a shared directory) keeps
    # a slow run and the next day's from overlapping.
    command = (f"/usr/bin/flock -n {shlex.quote(job.env_file)} "
               f"/bin/sh -c {shlex.quote(script)}")
    command = command.replace("%", "\\%")  # cron turns a bare % into a newline
    return (
        "# polysec daily backup (docs/backups.md): /etc/cron.d/polysec-backup\n"
        f"# {job.env_file} (owner {job.user}, mode 0600) holds POLYSEC_TOKEN of the\n"
        "# automation account and POLYSEC_DB_URL, POLYSEC_KEYRING, POLYSEC_CONFIG.\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/local/bin:/usr/bin:/bin\n"
        f"{int(minute)} {int(hour)} * * * {job.user} {command}\n"
    )
