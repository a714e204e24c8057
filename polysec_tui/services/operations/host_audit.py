"""`polysec audit hosts`: judge the exchange's servers over SSH, read-only.

For each host of the inventory (TOML, docs/audit.md), in parallel: connect with paramiko
(host key pinned by the inventory's known_hosts, key authentication only, a timeout),
run read-only commands and judge:

- ``sshd``: effective settings from ``sshd -T``: password and keyboard-interactive
  authentication, root login, weak ciphers, MACs, key exchanges and host-key algorithms;
- ``firewall``: the input policy of nftables or iptables is default-deny;
- ``security_updates``: no pending security updates (apt or dnf, simulated);
- ``time_sync``: the clock is NTP-synchronised;
- ``listening_ports``: TCP listeners (from /proc/net/tcp*) within the host's allow-list.

An unreachable host or a refused host key is a failed ``ssh`` finding for that host,
never a crash of the run.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from polysec_tui.backup.sftp import SftpTarget, connect
from polysec_tui.errors import CheckFailed, InputError, RefusedError
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.operations.audit_checks import AuditRunReport, Finding, store_run
from polysec_tui.services.runtime import Runtime

DEFAULT_TIMEOUT = 15.0
MAX_PARALLEL = 8
HOST_CHECKS = ("sshd", "firewall", "security_updates", "time_sync", "listening_ports")

# Anything here in `sshd -T` output is weak (RFC 9142, OpenSSH release notes).
WEAK = {
    "ciphers": re.compile(r"cbc|3des|arcfour|blowfish|cast128"),
    "macs": re.compile(r"md5|ripemd|umac-64(?!-etm)|^hmac-sha1$|^hmac-sha1-96"),
    "kexalgorithms": re.compile(r"diffie-hellman-group1-sha1|diffie-hellman-group14-sha1|"
                                r"diffie-hellman-group-exchange-sha1|gss-.*-sha1"),
    "hostkeyalgorithms": re.compile(r"^ssh-dss|^ssh-rsa$|^ssh-rsa-cert"),
}


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int
    user: str
    identity: Path
    known_hosts: Path
    allowed_ports: frozenset[int]
    sshd_config: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    sudo: bool = False
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Inventory:
    hosts: list[Host] = field(default_factory=list)


def _path(value: Any, base: Path, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"inventory: {what} must be a path")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def load_inventory(path: Path) -> Inventory:
    """Parse the inventory; relative paths are relative to the inventory file."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"inventory {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"inventory {path} is not valid TOML: {exc}") from None
    defaults = doc.get("defaults", {})
    entries = doc.get("hosts")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"inventory {path}: no [[hosts]] entries")
    hosts = []
    base = path.parent
    for i, entry in enumerate(entries, 1):
        merged = {**defaults, **entry}
        name = merged.get("name") or merged.get("address")
        where = f"host {i} ({name})" if name else f"host {i}"
        try:
            ports = frozenset(int(p) for p in merged.get("allowed_ports", [22]))
            skip = frozenset(str(c) for c in merged.get("skip", []))
            if skip - set(HOST_CHECKS):
                raise ValueError(f"unknown check in skip: {sorted(skip - set(HOST_CHECKS))}; "
                                 f"known: {', '.join(HOST_CHECKS)}")
            hosts.append(Host(
                name=str(name), address=str(merged["address"]),
                port=int(merged.get("port", 22)), user=str(merged["user"]),
                identity=_path(merged.get("identity"), base, f"{where}: identity"),
                known_hosts=_path(merged.get("known_hosts"), base, f"{where}: known_hosts"),
                allowed_ports=ports, sshd_config=merged.get("sshd_config"),
                timeout=float(merged.get("timeout", DEFAULT_TIMEOUT)),
                sudo=bool(merged.get("sudo", False)), skip=skip,
            ))
        except KeyError as exc:
            raise InputError(f"inventory {path}: {where} has no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"inventory {path}: {where}: {exc}") from None
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InputError(f"inventory {path}: host names must be unique")
    return Inventory(hosts)


# --------------------------------------------------------------------------- judging


def parse_sshd_t(output: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in output.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            settings.setdefault(key.lower(), value.strip())
    return settings


def judge_sshd(host: str, settings: dict[str, str]) -> Finding:
    name = f"{host}/sshd"
    fails: list[str] = []
    warns: list[str] = []
    if settings.get("passwordauthentication") == "yes":
        fails.append("PasswordAuthentication yes")
    if settings.get("kbdinteractiveauthentication",
                    settings.get("challengeresponseauthentication")) == "yes":
        warns.append("KbdInteractiveAuthentication yes (passwords through PAM)")
    root = settings.get("permitrootlogin", "")
    if root == "yes":
        fails.append("PermitRootLogin yes")
    elif root in ("prohibit-password", "without-password", "forced-commands-only"):
        warns.append(f"PermitRootLogin {root}")
    if settings.get("permitemptypasswords") == "yes":
        fails.append("PermitEmptyPasswords yes")
    weak = {}
    for option, pattern in WEAK.items():
        found = [a for a in settings.get(option, "").split(",") if a and pattern.search(a)]
        if found:
            weak[option] = found
            fails.append(f"weak {option}: {', '.join(found)}")
    evidence = {"passwordauthentication": settings.get("passwordauthentication"),
                "permitrootlogin": root, "weak": weak}
    remediation = ("in sshd_config: PasswordAuthentication no, KbdInteractiveAuthentication "
                   "no, PermitRootLogin no, and only modern Ciphers/MACs/KexAlgorithms; "
                   "then `sshd -t` and reload")
    if fails:
        return Finding(name, "fail", "; ".join(fails + warns), remediation, evidence)
    if warns:
        return Finding(name, "warn", "; ".join(warns), remediation, evidence)
    return Finding(name, "pass", "key-only authentication, no root login, no weak "
                   "algorithms", "none needed", evidence)


_NFT_INPUT = re.compile(r"hook\s+input\b[^;]*;\s*policy\s+(\w+)")


def judge_firewall(host: str, nft: str | None, iptables: str | None) -> Finding:
    name = f"{host}/firewall"
    remediation = ("set the input chain's policy to drop (nftables: `policy drop;` on the "
                   "filter input hook) and allow only the services in the inventory")
    if nft:
        policies = _NFT_INPUT.findall(nft)
        if policies and all(p == "drop" for p in policies):
            return Finding(name, "pass", "nftables input policy drop", "none needed",
                           {"tool": "nftables", "input_policies": policies})
        if policies:
            return Finding(name, "fail", f"nftables input policy {', '.join(policies)}",
                           remediation, {"tool": "nftables", "input_policies": policies})
    if iptables:
        match = re.search(r"^-P INPUT (\w+)", iptables, re.M)
        if match and match.group(1) == "DROP":
            return Finding(name, "pass", "iptables INPUT policy DROP", "none needed",
                           {"tool": "iptables"})
        if match:
            return Finding(name, "fail", f"iptables INPUT policy {match.group(1)}",
                           remediation, {"tool": "iptables"})
    return Finding(name, "fail", "no default-deny input policy found (nftables and "
                   "iptables empty or unreadable)", remediation, {"tool": None})


def judge_updates(host: str, output: str | None, tool: str | None) -> Finding:
    name = f"{host}/security_updates"
    if tool is None or output is None:
        return Finding(name, "warn", "could not list pending updates (no apt-get or dnf)",
                       "check the host's package manager by hand", {})
    if tool == "apt":
        pending = sorted({m.group(1) for m in re.finditer(r"^Inst (\S+) .*securit", output,
                                                           re.M | re.I)})
    else:
        pending = sorted({ln.split()[-1] for ln in output.splitlines() if ln.strip()})
    evidence = {"tool": tool, "pending": len(pending), "packages": pending[:20]}
    if pending:
        return Finding(name, "fail", f"{len(pending)} security updates pending",
                       "install them (unattended-upgrades or dnf-automatic) and reboot "
                       "where the kernel or libc changed", evidence)
    return Finding(name, "pass", "no security updates pending", "none needed", evidence)


def judge_time(host: str, output: str | None) -> Finding:
    name = f"{host}/time_sync"
    value = (output or "").strip().lower()
    if value == "yes":
        return Finding(name, "pass", "clock synchronised (NTP)", "none needed",
                       {"ntp_synchronized": True})
    if value == "no":
        return Finding(name, "fail", "clock not synchronised", "enable systemd-timesyncd "
                       "or chrony", {"ntp_synchronized": False})
    return Finding(name, "warn", "could not read the time synchronisation state",
                   "check `timedatectl` or `chronyc tracking` by hand", {})


def listening_ports(proc_net: str) -> set[int]:
    """TCP ports in state LISTEN (0A) from /proc/net/tcp and tcp6, excluding loopback."""
    ports = set()
    for line in proc_net.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A" or ":" not in fields[1]:
            continue
        address, port = fields[1].rsplit(":", 1)
        if address in ("0100007F", "00000000000000000000000001000000"):
            continue  # 127.0.0.1 and ::1 are not reachable from the network
        ports.add(int(port, 16))
    return ports


def judge_ports(host: str, ports: set[int], allowed: frozenset[int]) -> Finding:
    name = f"{host}/listening_ports"
    extra = sorted(ports - allowed)
    evidence = {"listening": sorted(ports), "allowed": sorted(allowed), "unexpected": extra}
    if extra:
        return Finding(name, "fail", f"unexpected listening ports: "
                       f"{', '.join(map(str, extra))}", "stop the services or add the ports "
                       "to the host's allowed_ports in the inventory", evidence)
    return Finding(name, "pass", f"{len(ports)} listening ports, all allowed", "none needed",
                   evidence)


# --------------------------------------------------------------------------- collecting


Run = Callable[[str], tuple[int, str]]


def _runner(client: paramiko.SSHClient, timeout: float) -> Run:
    def run(command: str) -> tuple[int, str]:
        _stdin, stdout, _stderr = client.exec_command(command, timeout=timeout)
        out = stdout.read().decode("utf-8", "replace")
        return stdout.channel.recv_exit_status(), out
    return run


def _first(run: Run, *commands: str) -> str | None:
    for command in commands:
        status, out = run(command)
        if status == 0 and out.strip():
            return out
    return None


def collect(host: Host, run: Run) -> list[Finding]:
    """The read-only commands and their judgement (``run`` executes on the host)."""
    sudo = "sudo -n " if host.sudo else ""
    checks: dict[str, Callable[[], Finding]] = {
        "sshd": lambda: _sshd(host, run, sudo),
        "firewall": lambda: judge_firewall(
            host.name, _first(run, f"{sudo}nft list ruleset 2>/dev/null"),
            _first(run, f"{sudo}iptables -S INPUT 2>/dev/null")),
        "security_updates": lambda: _updates(host, run),
        "time_sync": lambda: judge_time(host.name, _first(
            run, "timedatectl show -p NTPSynchronized --value 2>/dev/null")),
        "listening_ports": lambda: judge_ports(
            host.name, listening_ports(run("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")[1]),
            host.allowed_ports),
    }
    return [check() for name, check in checks.items() if name not in host.skip]


def _sshd(host: Host, run: Run, sudo: str) -> Finding:
    # The inventory's path goes to a remote shell: quoted, it stays one argument.
    config = f" -f {shlex.quote(host.sshd_config)}" if host.sshd_config else ""
    output = _first(run, f"{sudo}sshd -T{config} 2>/dev/null",
                    f"{sudo}/usr/sbin/sshd -T{config} 2>/dev/null")
    if output:
        return judge_sshd(host.name, parse_sshd_t(output))
    return Finding(f"{host.name}/sshd", "fail", "could not read `sshd -T` (needs root: set "
                   "sudo = true with a NOPASSWD rule for this command)",
                   "allow the audit account to run sshd -T", {})


def _updates(host: Host, run: Run) -> Finding:
    if _first(run, "command -v apt-get"):
        # a simulation: reads the package lists, changes nothing, takes no lock
        _status, out = run("LC_ALL=C apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null")
        return judge_updates(host.name, out, "apt")
    if _first(run, "command -v dnf"):
        _status, out = run("dnf -q updateinfo list --security 2>/dev/null")
        return judge_updates(host.name, out, "dnf")
    return judge_updates(host.name, None, None)


def audit_host(host: Host) -> list[Finding]:
    target = SftpTarget(host.user, host.address, host.port, "/")
    try:
        client = connect(target, host.known_hosts, host.identity, timeout=host.timeout)
    except (RefusedError, CheckFailed, InputError) as exc:
        return [Finding(f"{host.name}/ssh", "fail", str(exc),
                        "check the host is up, its pinned key in known_hosts and the audit "
                        "account's key", {"address": host.address, "port": host.port})]
    try:
        return collect(host, _runner(client, host.timeout))
    except (OSError, paramiko.SSHException) as exc:
        return [Finding(f"{host.name}/ssh", "fail", f"connection lost: {exc}",
                        "run the audit again; check the host's load and network",
                        {"address": host.address})]
    finally:
        client.close()


def audit_hosts(inventory: Inventory) -> list[Finding]:
    """Every host in parallel; findings in inventory order."""
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(inventory.hosts))) as pool:
        results = list(pool.map(audit_host, inventory.hosts))
    return [f for found in results for f in found]


def run(rt: Runtime, actor: Actor, inventory_path: Path) -> AuditRunReport:
    """Audit every host of the inventory; the run is stored like `audit run`'s."""
    require(actor, "audit.run")
    inventory = load_inventory(inventory_path)
    started = rt.clock()
    findings = audit_hosts(inventory)
    return store_run(rt, actor, findings, started,
                     {"hosts": [h.name for h in inventory.hosts]})
