"""`polysec audit hosts` against real OpenSSH servers started here on 127.0.0.1: one that
allows passwords (its sshd check fails), one hardened (passes), one whose key is not
pinned (refused), one that is down (a finding, not a crash)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import AuditFinding, AuditLogEntry
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.officers import sessions
from polysec_tui.services.operations import audit_checks, host_audit
from polysec_tui.services.operations.host_audit import (
    judge_firewall,
    judge_ports,
    judge_sshd,
    judge_time,
    judge_updates,
    listening_ports,
    load_inventory,
    parse_sshd_t,
)
from polysec_tui.services.runtime import Runtime
from polysec_tui.synthetic.demo_sftp import free_port
from tests.support import FIXED_NOW
from tests.support.cli import run_cli
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.sshd import Sshd, needs_sshd, running_sshd

MODERN = """\
Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
"""
# The audit logs in as this machine's root with a key; the judged global settings forbid
# root login, and a Match block lets only loopback in (as a bastion exception would).
HARDENED = MODERN + "PermitRootLogin no\n"
LOOPBACK_ROOT = "Match Address 127.0.0.1\n    PermitRootLogin prohibit-password\n"
WEAK = MODERN + "PasswordAuthentication yes\nPermitRootLogin no\n"


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict[str, Sshd]]:
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("OpenSSH server not installed; .ci/run installs openssh-server")
    root = tmp_path_factory.mktemp("hosts")
    with running_sshd(root / "hardened", HARDENED, match=LOOPBACK_ROOT) as hardened, \
            running_sshd(root / "weak", WEAK, match=LOOPBACK_ROOT) as weak:
        yield {"hardened": hardened, "weak": weak}


def inventory(tmp_path: Path, servers: dict[str, Sshd], *extra: str,
              skip: str = "security_updates") -> Path:
    """``skip``: apt-get's simulation takes ~10 s; one test runs it."""
    blocks = []
    for name, s in servers.items():
        blocks.append(f"""
[[hosts]]
name = "{name}"
address = "{s.host}"
port = {s.port}
user = "{s.user}"
identity = "{s.identity}"
known_hosts = "{s.known_hosts}"
sshd_config = "{s.config}"
allowed_ports = [22, 443]
timeout = 30
skip = [{", ".join(f'"{c}"' for c in skip.split(",") if c)}]
""")
    path = tmp_path / "inventory.toml"
    path.write_text("".join(blocks) + "".join(extra))
    return path


@pytest.fixture
def staff(settings) -> Iterator[Staff]:
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    yield make_staff(rt, clock)
    rt.engine.dispose()


def by_check(findings: list[audit_checks.Finding]) -> dict[str, audit_checks.Finding]:
    return {f.check: f for f in findings}


@needs_sshd
def test_password_authentication_fails_hardened_passes(servers, tmp_path):
    found = by_check(host_audit.audit_hosts(load_inventory(
        inventory(tmp_path, servers, skip=""))))
    weak = found["weak/sshd"]
    assert weak.status == "fail" and "PasswordAuthentication yes" in weak.summary
    hardened = found["hardened/sshd"]
    assert hardened.status == "pass", hardened.summary
    for host in ("weak", "hardened"):  # every check ran on each host, whatever the verdict
        for check in ("firewall", "security_updates", "time_sync", "listening_ports"):
            assert f"{host}/{check}" in found
    assert "hardened/ssh" not in found  # connected


@needs_sshd
def test_unknown_key_and_down_hosts_are_findings_not_crashes(servers, tmp_path):
    hardened = servers["hardened"]
    other_known = tmp_path / "known_hosts_other"
    other_known.write_text(f"[127.0.0.1]:{hardened.port} ssh-ed25519 "
                           "AAAAC3NzaC1lZDI1NTE5AAAAIGmZkSyk7WsPj4UA0eGMJJ2Bqcyt/UTXyTrDfbYy/FPo\n")
    unpinned = tmp_path / "known_hosts_empty"
    unpinned.write_text("")
    extra = [f"""
[[hosts]]
name = "{name}"
address = "127.0.0.1"
port = {port}
user = "{hardened.user}"
identity = "{hardened.identity}"
known_hosts = "{known}"
timeout = 3
""" for name, port, known in (("changed", hardened.port, other_known),
                              ("unknown", hardened.port, unpinned),
                              ("down", free_port(), hardened.known_hosts))]
    found = by_check(host_audit.audit_hosts(load_inventory(
        inventory(tmp_path, {"hardened": hardened}, *extra))))
    assert found["hardened/sshd"].status == "pass"
    assert found["changed/ssh"].status == "fail" and "CHANGED" in found["changed/ssh"].summary
    assert found["unknown/ssh"].status == "fail" and "unknown host" in found["unknown/ssh"].summary
    assert found["down/ssh"].status == "fail"
    assert not any(check.startswith(("changed/", "unknown/")) and check.endswith("sshd")
                   for check in found)


@needs_sshd
def test_the_command_stores_and_audits_the_run(servers, tmp_path, staff, cli_env, capsys,
                                               monkeypatch):
    token, _ = sessions.create_token(staff.rt, staff.actors["root"], "cron")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    path = inventory(tmp_path, {"weak": servers["weak"]})
    result = run_cli(capsys, "audit", "hosts", "--inventory", str(path), "--format", "json")
    assert result.code == 1 and "weak/sshd" in result.err
    doc = json.loads(result.out)
    assert doc["result"] == "fail"
    with staff.rt.sessions() as s:
        stored = s.scalars(select(AuditFinding.check_name)
                           .where(AuditFinding.run_id == doc["run"])).all()
        entry = s.scalar(select(AuditLogEntry).where(AuditLogEntry.action == "audit.run"))
    assert "weak/sshd" in stored and entry is not None
    assert json.loads(entry.details)["hosts"] == ["weak"]
    bad = run_cli(capsys, "audit", "hosts", "--inventory", str(tmp_path / "missing.toml"))
    assert bad.code == 2 and "does not exist" in bad.err


def test_analysts_may_not_audit_hosts(staff, tmp_path):
    with pytest.raises(RefusedError):
        host_audit.run(staff.rt, staff.actors["ann"], tmp_path / "inventory.toml")


# ------------------------------------------------------------ judgements on known outputs


def test_inventory_errors_are_one_line(tmp_path):
    path = tmp_path / "inv.toml"
    path.write_text("[[hosts]]\nname = 'a'\naddress = '10.0.0.1'\n")
    with pytest.raises(InputError, match="has no 'user'"):
        load_inventory(path)
    path.write_text("hosts = [")
    with pytest.raises(InputError, match="not valid TOML"):
        load_inventory(path)


def test_sshd_judgement():
    weak = parse_sshd_t("passwordauthentication yes\npermitrootlogin yes\n"
                        "ciphers aes128-cbc,aes256-gcm@openssh.com\n"
                        "macs hmac-sha1,hmac-sha2-256-etm@openssh.com\n"
                        "kexalgorithms diffie-hellman-group1-sha1,curve25519-sha256\n")
    found = judge_sshd("h", weak)
    assert found.status == "fail"
    assert found.evidence["weak"] == {"ciphers": ["aes128-cbc"], "macs": ["hmac-sha1"],
                                      "kexalgorithms": ["diffie-hellman-group1-sha1"]}
    assert judge_sshd("h", parse_sshd_t("permitrootlogin prohibit-password\n")).status == "warn"
    assert judge_sshd("h", parse_sshd_t("permitrootlogin no\n"
                                        "passwordauthentication no\n")).status == "pass"


def test_firewall_updates_time_and_ports_judgement():
    drop = ("table inet filter {\n chain input {\n"
            "  type filter hook input priority 0; policy drop;\n }\n}")
    accept = drop.replace("policy drop", "policy accept")
    assert judge_firewall("h", drop, None).status == "pass"
    assert judge_firewall("h", accept, None).status == "fail"
    iptables = "-P INPUT DROP\n-A INPUT -p tcp --dport 22 -j ACCEPT"
    assert judge_firewall("h", None, iptables).status == "pass"
    assert judge_firewall("h", None, None).status == "fail"
    apt = ("Inst libssl3 [3.0.11-1] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])\n"
           "Inst tzdata [2024a-0] (2024b-0 Debian:12.7/stable [all])\n")
    updates = judge_updates("h", apt, "apt")
    assert updates.status == "fail" and updates.evidence["packages"] == ["libssl3"]
    assert judge_updates("h", "", "apt").status == "pass"
    assert judge_time("h", "yes\n").status == "pass"
    assert judge_time("h", "no\n").status == "fail"
    assert judge_time("h", None).status == "warn"
    proc = ("  sl  local_address rem_address   st\n"
            "   0: 0100007F:1538 00000000:0000 0A\n"  # 127.0.0.1:5432: not exposed
            "   1: 00000000:0016 00000000:0000 0A\n"  # 0.0.0.0:22
            "   2: 00000000:0CEA 00000000:0000 0A\n"  # 0.0.0.0:3306
            "   3: 0A00000F:0016 0A000010:D431 01\n")  # an established connection
    assert listening_ports(proc) == {22, 3306}
    ports = judge_ports("h", {22, 3306}, frozenset({22}))
    assert ports.status == "fail" and ports.evidence["unexpected"] == [3306]


def test_the_inventory_sshd_config_path_reaches_the_remote_shell_as_one_argument():
    commands: list[str] = []

    def run(command: str) -> tuple[int, str]:
        commands.append(command)
        return 0, "passwordauthentication no\npermitrootlogin no\n"

    host = host_audit.Host("h", "127.0.0.1", 22, "audit", Path("id"), Path("kh"),
                           frozenset(), sshd_config="/etc/ssh/x; touch /tmp/pwned")
    host_audit._sshd(host, run, "")
    assert commands == ["sshd -T -f '/etc/ssh/x; touch /tmp/pwned' 2>/dev/null"]
