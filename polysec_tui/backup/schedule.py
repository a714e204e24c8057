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
    drill: bool = True  # the weekly restore drill (Sundays at drill_at UTC)
    drill_at: str = "04:30"

    def check(self) -> None:
        """Raise ValueError for values that cannot go into a unit or crontab safely."""
        if not _SAFE_USER.match(self.user):
            raise ValueError(f"not a valid user name: {self.user!r}")
        for option, value in (("--at", self.at), ("--drill-at", self.drill_at)):
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
                raise ValueError(f"{option} wants HH:MM (UTC), not {value!r}")
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

    def drill_step(self) -> list[str]:
        """The weekly restore drill (the identity and scratch server from [backup] and
        the database URL of the environment file)."""
        return [self.polysec, "backup", "drill"]


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
    """``{"NAME.service": text, "NAME.timer": text}``, and with ``job.drill`` the weekly
    restore drill's ``NAME-drill.service`` and ``NAME-drill.timer``."""
    job.check()
    offsite = "" if job.ship_to else (
        "# No --ship-to was given: this job keeps backups on this host only.\n")
    units = {
        f"{name}.service": _service(
            job, name, job.steps(), "6h",
            "# polysec daily backup: create, verify, ship offsite, prune (docs/backups.md).\n"
            + offsite, "polysec daily encrypted backup (create, verify, ship, prune)"),
        f"{name}.timer": _timer(name, f"*-*-* {job.at}:00 UTC", f"every day at {job.at} UTC",
                                "Daily polysec encrypted backup"),
    }
    if job.drill:
        units[f"{name}-drill.service"] = _service(
            job, f"{name}-drill", [job.drill_step()], "6h",
            "# polysec weekly restore drill: the newest backup restored into a scratch\n"
            "# database and checked, a signed record (docs/backups.md). [backup] identity\n"
            "# must name a recipient key this host may hold (a drill key, on the segregated\n"
            "# host that runs the drills).\n",
            "polysec weekly restore drill of the newest backup")
        units[f"{name}-drill.timer"] = _timer(
            f"{name}-drill", f"Sun *-*-* {job.drill_at}:00 UTC",
            f"every Sunday at {job.drill_at} UTC", "Weekly polysec restore drill")
    return units


def _service(job: Job, name: str, steps: list[list[str]], timeout: str, head: str,
             description: str) -> str:
    execs = "\n".join("ExecStart=" + " ".join(_systemd_word(w) for w in step)
                      for step in steps)
    writable = " ".join(_systemd_path(p) for p in job.writable)
    return f"""\
{head}# Install: this file and {name}.timer in /etc/systemd/system, then
#   systemctl daemon-reload && systemctl enable --now {name}.timer
# {job.env_file} (owner {job.user}, mode 0600) holds POLYSEC_TOKEN of the automation
# account and POLYSEC_DB_URL, POLYSEC_KEYRING, POLYSEC_CONFIG.
[Unit]
Description={description}
Documentation=file:///usr/share/doc/polysec/backups.md
Wants=network-online.target
After=network-online.target postgresql.service mariadb.service

[Service]
Type=oneshot
User={job.user}
Group={job.user}
EnvironmentFile={_systemd_path(job.env_file)}
{execs}
TimeoutStartSec={timeout}
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


def _timer(name: str, calendar: str, when: str, description: str) -> str:
    return f"""\
# polysec timer: runs {name}.service {when}; a run missed while the machine
# was off happens at the next boot (Persistent=true).
[Unit]
Description={description}

[Timer]
OnCalendar={calendar}
Persistent=true
RandomizedDelaySec=15min
AccuracySec=1min
Unit={name}.service

[Install]
WantedBy=timers.target
"""


def cron_entry(job: Job) -> str:
    """An /etc/cron.d file: the daily line, run as ``job.user`` at ``job.at``, and with
    ``job.drill`` the weekly drill's line (Sundays at ``job.drill_at``), in the host's
    time zone (cron has no portable per-line zone; backup hosts run on UTC)."""
    job.check()
    lines = [_cron_line(job, job.at, "*", job.steps())]
    if job.drill:
        lines.append(_cron_line(job, job.drill_at, "0", [job.drill_step()]))
    return (
        "# polysec daily backup and weekly restore drill (docs/backups.md):\n"
        "# /etc/cron.d/polysec-backup\n"
        f"# {job.env_file} (owner {job.user}, mode 0600) holds POLYSEC_TOKEN of the\n"
        "# automation account and POLYSEC_DB_URL, POLYSEC_KEYRING, POLYSEC_CONFIG.\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/local/bin:/usr/bin:/bin\n"
        + "".join(lines)
    )


def _cron_line(job: Job, at: str, weekday: str, steps: list[list[str]]) -> str:
    hour, minute = at.split(":")
    chain = " && ".join(shlex.join(step) for step in steps)
    script = (f"set -a && . {shlex.quote(job.env_file)} && set +a && umask 077 && {chain}")
    # The lock (on the environment file itself: no new file in a shared directory) keeps
    # runs from overlapping: a daily run skips while one runs (-n); the drill waits for
    # the backup of its night to finish.
    wait = "" if weekday != "*" else "-n "
    command = (f"/usr/bin/flock {wait}{shlex.quote(job.env_file)} "
               f"/bin/sh -c {shlex.quote(script)}")
    command = command.replace("%", "\\%")  # cron turns a bare % into a newline
    return f"{int(minute)} {int(hour)} * * {weekday} {job.user} {command}\n"
