"""A real OpenSSH server on 127.0.0.1 for tests: random port, its own host key,
sshd_config and authorized_keys, stopped when the context ends."""

from __future__ import annotations

import getpass
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from polysec_tui.synthetic.demo_sftp import answers, stop
from tests.support.ports import free_port

SSHD = Path("/usr/sbin/sshd")
needs_sshd = pytest.mark.skipif(not SSHD.exists(),
                                reason="OpenSSH server not installed (/usr/sbin/sshd); "
                                       ".ci/run installs openssh-server")


@dataclass(frozen=True)
class Sshd:
    host: str
    port: int
    user: str
    config: Path
    host_public_key: str
    known_hosts: Path  # pins this server's key
    identity: Path  # a key the server accepts
    root: Path


def keygen(path: Path, kind: str = "ed25519") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@contextmanager
def running_sshd(root: Path, settings: str = "", *, match: str = "") -> Iterator[Sshd]:
    """Start sshd with key-only login for the current user. ``settings`` are extra global
    sshd_config lines (they win over the defaults below: sshd keeps the first value);
    ``match`` is appended at the end (Match blocks)."""
    root.mkdir(parents=True, exist_ok=True)
    host_key = root / "host_ed25519"
    host_pub = keygen(host_key)
    user_key = root / "client_ed25519"
    authorized = root / "authorized_keys"
    authorized.write_text(keygen(user_key) + "\n")
    port = free_port()
    config = root / "sshd_config"
    config.write_text(f"""\
{settings}
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel VERBOSE
{match}
""")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not answers(port, proc, 20):
            err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
            raise RuntimeError(f"sshd did not answer: {err}")
        yield Sshd("127.0.0.1", port, getpass.getuser(), config, host_pub, known, user_key,
                   root)
    finally:
        stop(proc)
