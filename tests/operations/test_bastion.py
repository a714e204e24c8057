"""The bastion setup of docs/bastion.md on a real OpenSSH server: officers land in the
console's login screen, whatever they ask for, and get no shell, forwarding or SFTP.

The sshd settings and the officer shell are read from docs/bastion.md, so the page and
the test cannot drift apart. Two substitutions only: the Match criterion names the
current user's group instead of polysec-officers (the test cannot create groups), and
the officer shell runs this checkout's `polysec tui` on the test's database and keyring
instead of `sudo -u polysec /opt/polysec/bin/polysec-console`."""

from __future__ import annotations

import grp
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.runtime import Runtime
from tests.support import ROOT
from tests.support.sshd import Sshd, needs_sshd, running_sshd

DOC = ROOT / "docs" / "bastion.md"
SUDO_LINE = "sudo -n -u polysec /opt/polysec/bin/polysec-console"
SHELL_PATH = "/opt/polysec/bin/polysec-officer-shell"
# CSI (colours, cursor moves, modes), OSC (titles), other two-byte escapes.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
LOGIN_TEXTS = ("Officer login", "officer name", "password", "6-digit authenticator code")

pytestmark = needs_sshd


def _fenced(first_line: str) -> str:
    """The fenced block of docs/bastion.md whose first line is `first_line`."""
    blocks = re.findall(r"```[a-z_]*\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    for block in blocks:
        if block.splitlines()[0].strip() == first_line:
            return str(block)
    raise AssertionError(f"docs/bastion.md has no block starting {first_line!r}")


def _sshd_settings(group: str, shell: Path) -> tuple[str, str]:
    """(global lines, Match block) of the documented drop-in file."""
    text = _fenced("# polysec bastion: /etc/ssh/sshd_config.d/10-polysec.conf")
    head, sep, match = text.partition("Match Group polysec-officers\n")
    assert sep and SHELL_PATH in match and "PermitUserEnvironment no" in head
    match = match.replace(SHELL_PATH, str(shell))
    return head, f"Match Group {group}\n{match}"


@pytest.fixture
def console_db(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'bastion.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    keyring = tmp_path / "keyring.json"
    write_new_keyring(keyring, Keyring.generate())
    settings = Settings(db_url=url, keyring_path=keyring)
    rt = Runtime(settings, engine, load_keyring(keyring))
    officers.bootstrap_admin(rt, "ada", "a long bastion test passphrase 42")
    engine.dispose()
    return settings


@pytest.fixture
def bastion(tmp_path: Path, console_db: Settings) -> Iterator[Sshd]:
    # The documented officer shell, with the sudo line pointing at a console script
    # that runs this checkout on the test database (what polysec-console does on the
    # bastion with /etc/polysec/polysec.toml).
    console = tmp_path / "polysec-console"
    env = {
        "POLYSEC_DB_URL": console_db.db_url,
        "POLYSEC_KEYRING": str(console_db.keyring_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    console.write_text(f"#!/bin/sh\n{exports}cd {shlex.quote(str(tmp_path))} || exit 2\n"
                       f"exec {shlex.quote(sys.executable)} -m polysec_tui tui\n")
    console.chmod(0o755)
    script = _fenced("#!/bin/sh").replace("\r", "")
    assert SUDO_LINE in script and "polysec bastion: the ForceCommand" in script
    shell = tmp_path / "polysec-officer-shell"
    shell.write_text(script.replace(SUDO_LINE, shlex.quote(str(console))))
    shell.chmod(0o755)
    group = grp.getgrgid(os.getgid()).gr_name
    head, match = _sshd_settings(group, shell)
    with running_sshd(tmp_path / "sshd", head, match=match) as server:
        yield server


def _connect(server: Sshd) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(server.host, port=server.port, username=server.user,
                   key_filename=str(server.identity), look_for_keys=False,
                   allow_agent=False, timeout=15)
    return client


def _read_until(channel: paramiko.Channel, needles: tuple[str, ...],
                seconds: float = 20.0) -> str:
    """Everything the channel printed (ANSI stripped) once all needles appeared."""
    raw = b""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        if channel.recv_ready():
            raw += channel.recv(65536)
            text = ANSI.sub("", raw.decode("utf-8", "replace"))
            if all(n in text for n in needles):
                return text
        elif channel.exit_status_ready():
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"never saw {needles}; got {text[-2000:]!r}")


def _quit(channel: paramiko.Channel) -> int:
    channel.send(b"\x11")  # ctrl+q: the console's quit key
    deadline = time.monotonic() + 15
    while not channel.exit_status_ready() and time.monotonic() < deadline:
        if channel.recv_ready():
            channel.recv(65536)
        time.sleep(0.05)
    assert channel.exit_status_ready(), "the console did not end after ctrl+q"
    return int(channel.recv_exit_status())


def test_officer_lands_in_the_login_screen(bastion: Sshd) -> None:
    client = _connect(bastion)
    try:
        channel = client.invoke_shell(term="xterm-256color", width=100, height=30)
        text = _read_until(channel, LOGIN_TEXTS)
        assert "$ " not in text.splitlines()[0] and "uid=" not in text
        assert _quit(channel) == 0
        channel.close()
    finally:
        client.close()


def test_a_requested_command_still_opens_the_console(bastion: Sshd) -> None:
    client = _connect(bastion)
    try:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        channel.get_pty(term="xterm-256color", width=100, height=30)
        channel.exec_command("id")
        text = _read_until(channel, LOGIN_TEXTS)
        assert "uid=" not in text and "gid=" not in text
        assert _quit(channel) == 0
        channel.close()
    finally:
        client.close()


def test_no_terminal_no_console_and_no_command(bastion: Sshd) -> None:
    client = _connect(bastion)
    try:
        _stdin, stdout, stderr = client.exec_command("id; cat /etc/passwd", timeout=20)
        status = stdout.channel.recv_exit_status()
        out, err = stdout.read().decode(), stderr.read().decode()
    finally:
        client.close()
    assert status == 2
    assert "uid=" not in out and "root:" not in out
    assert err.strip() == ("polysec: this account only opens the console; connect with a "
                           "terminal (ssh -t)")


def test_no_forwarding_and_no_sftp(bastion: Sshd) -> None:
    with socket.socket() as listener:  # something to forward to, if sshd allowed it
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        target = listener.getsockname()
        client = _connect(bastion)
        try:
            transport = client.get_transport()
            assert transport is not None
            with pytest.raises(paramiko.ChannelException):
                transport.open_channel("direct-tcpip", target, ("127.0.0.1", 0), timeout=10)
            with pytest.raises(paramiko.SSHException):
                transport.request_port_forward("127.0.0.1", 0)
            with pytest.raises(paramiko.SSHException):
                client.open_sftp()
        finally:
            client.close()
