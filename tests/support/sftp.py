"""An SFTP destination for backups on a real OpenSSH server (tests.support.sshd): the
`server` fixture starts one per test module, `remote` gives each test a fresh remote
directory on it."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.sshd import running_sshd


@dataclass
class Server:
    host: str
    port: int
    user: str
    remote: Path  # the remote directory, as the server's file system sees it
    known_hosts: Path
    identity: Path
    root: Path

    @property
    def url(self) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{self.remote}"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("sshd")
    remote = root / "remote"
    remote.mkdir()
    with running_sshd(root) as sshd:
        yield Server(sshd.host, sshd.port, sshd.user, remote, sshd.known_hosts,
                     sshd.identity, root)


@pytest.fixture
def remote(server, tmp_path) -> Iterator[Server]:
    """A fresh remote directory per test."""
    directory = server.remote / tmp_path.name
    directory.mkdir()
    yield dataclasses.replace(server, remote=directory)
    shutil.rmtree(directory, ignore_errors=True)
