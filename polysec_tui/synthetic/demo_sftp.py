"""The demo's offsite copy: a private OpenSSH server on loopback while the console is
open, so that `polysec demo` ships backups the way an exchange does (sftp://, the host
key pinned, key login), without touching the machine's own sshd.

It runs as the user who runs the demo, listens on 127.0.0.1 only, on a free port, and
serves nothing but SFTP, to nothing but the demo's own key (``restrict``). Its keys are
made once in ``demo-sftp/`` beside the demo keyring (demo-only, like the backup keys),
and shipped backups land in ``demo-offsite/`` there. Where OpenSSH's server is not
installed, or will not start, the demo runs without it and says why.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from polysec_tui.config import Settings, demo_backup
from polysec_tui.files import atomic_write

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
SERVER_DIR = "demo-sftp"
OFFSITE_DIR = "demo-offsite"
START_SECONDS = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class DemoSftp:
    settings: Settings  # the demo's, with [backup] ship_to, known_hosts, ssh_identity
    url: str | None  # where backups are shipped, or None
    unavailable: str | None  # why shipping cannot be tried, or None


def find_sshd() -> str | None:
    found = next((p for p in SSHD_PATHS if os.access(p, os.X_OK)), None)
    return found or shutil.which("sshd")


@contextmanager
def demo_sftp(settings: Settings) -> Iterator[DemoSftp]:
    """Run the demo's SFTP server for the duration of the block. Only for the demo's own
    [backup] table (a configured one is the user's: left alone)."""
    backup = settings.options.get("backup")
    if not settings.demo or not backup or backup != demo_backup(settings.keyring_path):
        yield DemoSftp(settings, None, None)
        return
    sshd = find_sshd()
    if sshd is None:
        yield DemoSftp(settings, None, "shipping needs OpenSSH's server (sshd), which is "
                                       "not installed (Debian: apt install openssh-server)")
        return
    root = settings.keyring_path.with_name(SERVER_DIR)
    offsite = settings.keyring_path.with_name(OFFSITE_DIR)
    for directory in (root, offsite):
        directory.mkdir(mode=0o700, exist_ok=True)
    host_public = _key(root / "host_ed25519")
    client_public = _key(root / "client_ed25519")
    user = pwd.getpwuid(os.geteuid()).pw_name  # not $USER: it survives `su`
    atomic_write(root / "authorized_keys",
                 f"restrict {client_public} polysec-demo\n".encode())
    port = free_port()
    # Files of this run (two demos on one keyring each run their own server).
    run = root / f"run-{os.getpid()}"
    run.mkdir(mode=0o700, exist_ok=True)
    config, known_hosts, log_path = run / "sshd_config", run / "known_hosts", run / "sshd.log"
    atomic_write(config, _sshd_config(root, run, port, user, offsite).encode())
    atomic_write(known_hosts, f"[127.0.0.1]:{port} {host_public}\n".encode())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation dir
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)],  # noqa: S603
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, preexec_fn=_dying_with_parent())
    try:
        if not answers(port, proc, START_SECONDS):
            reason = _last_line(log_path) or "it did not answer"
            yield DemoSftp(settings, None, f"the demo's SFTP server did not start: {reason}")
            return
        url = f"sftp://{quote(user)}@127.0.0.1:{port}{quote(str(offsite))}"
        options = {**settings.options, "backup": {
            **backup, "ship_to": url, "known_hosts": str(known_hosts),
            "ssh_identity": str(root / "client_ed25519")}}
        yield DemoSftp(Settings(settings.db_url, settings.keyring_path,
                                settings.config_path, True, options), url, None)
    finally:
        stop(proc)
        shutil.rmtree(run, ignore_errors=True)


def _dying_with_parent() -> Callable[[], None] | None:
    """What the sshd child runs before exec so that the kernel ends it when the demo's
    process ends, however that ends (SIGKILL, a closed terminal), instead of leaving it
    listening: Linux's prctl, looked up here (the child, forked from a process with
    threads, only calls it). None where there is no prctl."""
    prctl = getattr(ctypes.CDLL(None), "prctl", None)
    if prctl is None:
        return None

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return die_with_parent


def _key(path: Path) -> str:
    """An Ed25519 key in OpenSSH's format, made once; its public half."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        atomic_write(path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.OpenSSH,
                                             serialization.NoEncryption()))
    private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()


def _sshd_config(root: Path, run: Path, port: int, user: str, offsite: Path) -> str:
    """Values quoted, ``%`` doubled (sshd expands tokens in some of them)."""
    def q(value: object) -> str:
        return '"' + str(value).replace("%", "%%") + '"'

    return f"""\
# The demo's private SFTP server (polysec demo). DEMO ONLY.
Port {port}
ListenAddress 127.0.0.1
HostKey {q(root / "host_ed25519")}
PidFile {q(run / "sshd.pid")}
AuthorizedKeysFile {q(root / "authorized_keys")}
AllowUsers {q(user)}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
ForceCommand internal-sftp -d {q(offsite)}
DisableForwarding yes
PermitTTY no
LogLevel ERROR
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether the sshd ``proc`` answers on ``port`` (its banner) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""
