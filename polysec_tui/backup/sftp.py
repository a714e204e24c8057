"""Ship a finished backup file to an SFTP server (paramiko), safely.

- **Pinned host key.** The server's key must be in the given ``known_hosts`` file
  (``RejectPolicy``; never ``AutoAddPolicy``, and the user's or system's known_hosts are
  not read). An unknown host or a changed key is refused with one line that names the
  offered key's SHA-256 fingerprint.
- **Key authentication only**: the given private key; no password, no agent, no keys
  found in ``~/.ssh``.
- **Atomic arrival.** The file is written to ``NAME.partial``, read back and its SHA-256
  compared with the local file's, and only then renamed to ``NAME`` (SFTP rename never
  replaces an existing file). A remote ``NAME`` that already exists is accepted when its
  SHA-256 matches (shipping twice is harmless) and refused otherwise.
- **Resume.** A ``NAME.partial`` left by an interrupted upload is continued from its
  size. Its bytes are not trusted: the read-back covers the whole file, and a resumed
  upload that does not match is started again from zero, once.
- **Append-only targets** (``append_only``: an SFTP account that may create files and
  read them, but not remove, rename, overwrite, truncate or re-mode them; the
  sshd_config block is in docs/backups.md). Renaming is refused too (a renamed backup
  could be replaced by a forged one under its name), so the file is written straight to
  ``NAME`` and read back; the manifest, written last, still marks a complete, verified
  backup. Nothing written there can be reopened: an interrupted upload leaves a short
  ``NAME`` that only the server's operator can remove (the next ship says so). No mode
  is set (the server's umask makes files read-only). ``check_target`` proves with a
  canary file that a target refuses all of that before it is trusted.
- **Manifest last.** ``NAME.manifest.json`` (public facts only: backup id, size,
  SHA-256, engine, creation time) is written after ``NAME`` has arrived, also through a
  ``.partial`` and a rename: a remote directory holding the manifest holds the complete,
  verified backup.

This module is below the services: it knows files and servers, not officers. It never
imports ``textual``; paramiko is imported only by whoever ships.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import paramiko

from polysec_tui.errors import CheckFailed, ConflictError, InputError, RefusedError

PARTIAL = ".partial"
MANIFEST_SUFFIX = ".manifest.json"
BLOCK = 256 * 1024  # bytes per local read / remote write call (paramiko pipelines them)
TIMEOUT = 30.0
Progress = Callable[[int, int], None]  # (bytes sent so far, total)


@dataclass(frozen=True)
class SftpTarget:
    """``sftp://user@host[:port]/path``: ``path`` is the remote directory (absolute;
    ``sftp://u@h/~/dir`` or a relative path after ``/./`` is relative to the login
    directory)."""

    user: str
    host: str
    port: int
    directory: str

    @classmethod
    def parse(cls, url: str) -> SftpTarget:
        parts = urlsplit(url)
        if parts.scheme != "sftp":
            raise InputError(f"not an sftp:// URL: {url!r}")
        if parts.password is not None:
            raise InputError("no password in the sftp:// URL: key authentication only")
        if not parts.username or not parts.hostname:
            raise InputError("the sftp:// URL needs a user and a host: sftp://user@host/path")
        try:
            port = parts.port or 22
        except ValueError:
            raise InputError(f"bad port in {url!r}") from None
        path = unquote(parts.path) or "/"
        if path.startswith(("/~/", "/./")) or path == "/~":
            path = path[3:] or "."
        return cls(unquote(parts.username), parts.hostname, port, path)

    @property
    def host_label(self) -> str:
        """The host as known_hosts names it."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def url(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        path = self.directory if self.directory.startswith("/") else f"/./{self.directory}"
        return f"sftp://{self.user}@{self.host}{port}{path}"


@dataclass(frozen=True)
class Shipped:
    remote_path: str
    size: int
    sha256: str
    sent_bytes: int  # bytes sent in this run (less than size after a resume)
    resumed_from: int  # 0 when the upload started from the beginning
    already_there: bool  # the remote file existed with the same SHA-256
    manifest_path: str


def key_fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _load_known_hosts(path: Path) -> paramiko.HostKeys:
    if not path.is_file():
        raise InputError(f"known_hosts file {path} does not exist")
    try:
        return paramiko.HostKeys(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise InputError(f"cannot read known_hosts {path}: {exc}") from None


def _load_identity(path: Path) -> paramiko.PKey:
    if not path.is_file():
        raise InputError(f"SSH identity {path} does not exist")
    try:
        return paramiko.PKey.from_path(str(path))
    except paramiko.PasswordRequiredException:
        raise InputError(f"SSH identity {path} is passphrase-protected: use a key without "
                         "passphrase kept readable only by the backup account") from None
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise InputError(f"cannot read SSH identity {path}: {exc}") from None


def connect(target: SftpTarget, known_hosts: Path, identity: Path, *,
            timeout: float = TIMEOUT) -> paramiko.SSHClient:
    """An SSH connection whose host key is pinned by ``known_hosts`` and whose only
    authentication is ``identity``."""
    pinned = _load_known_hosts(known_hosts)
    pkey = _load_identity(identity)
    if pinned.lookup(target.host_label) is None:
        raise RefusedError(
            f"unknown host {target.host_label}: no key for it in {known_hosts}; refusing to "
            "connect (check the server's key out of band and add it)")
    client = paramiko.SSHClient()
    for hostname, keys in pinned.items():
        for keytype, key in keys.items():
            client.get_host_keys().add(hostname, keytype, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(target.host, port=target.port, username=target.user, pkey=pkey,
                       allow_agent=False, look_for_keys=False, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise RefusedError(
            f"host key of {target.host_label} CHANGED: the server offered "
            f"{exc.key.get_name()} {key_fingerprint(exc.key)}, {known_hosts} pins "
            f"{exc.expected_key.get_name()} {key_fingerprint(exc.expected_key)}; refusing "
            "to connect (possible man-in-the-middle)") from None
    except paramiko.AuthenticationException:
        client.close()
        raise RefusedError(
            f"{target.user}@{target.host_label} refused the key {identity} "
            f"({pkey.get_name()} {key_fingerprint(pkey)})") from None
    except paramiko.SSHException as exc:
        client.close()
        # RejectPolicy: the server offered a key type that known_hosts does not pin.
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "not found in known_hosts" in text:
            raise RefusedError(
                f"unknown host key of {target.host_label}: {known_hosts} has no matching "
                "key; refusing to connect") from None
        raise CheckFailed(f"SSH connection to {target.host_label} failed: {text}") from None
    except OSError as exc:
        client.close()
        raise CheckFailed(f"cannot reach {target.host_label}: {exc.strerror or exc}") from None
    return client


def _require_directory(sftp: paramiko.SFTPClient, directory: PurePosixPath,
                       target: SftpTarget) -> None:
    try:
        sftp.stat(str(directory))
    except FileNotFoundError:
        raise InputError(f"remote directory {directory} does not exist on "
                         f"{target.host_label}") from None


def _remote_size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        attrs = sftp.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckFailed(f"cannot stat remote {path}: {exc}") from None
    if attrs.st_mode is not None and not stat.S_ISREG(attrs.st_mode):
        raise ConflictError(f"remote {path} exists and is not a regular file")
    return attrs.st_size or 0


def _remote_sha256(sftp: paramiko.SFTPClient, path: str, size: int) -> str:
    digest = hashlib.sha256()
    with sftp.open(path, "rb") as remote:
        remote.prefetch(size)
        while True:
            data = remote.read(BLOCK)
            if not data:
                break
            digest.update(data)
    return digest.hexdigest()


def local_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while data := src.read(1 << 20):
            digest.update(data)
    return digest.hexdigest()


def _upload(sftp: paramiko.SFTPClient, local: Path, remote: str, offset: int, size: int,
            progress: Progress | None, *, chmod: bool = True) -> int:
    """Write ``local[offset:]`` to ``remote`` at ``offset``; returns the bytes sent."""
    sent = 0
    mode = "r+b" if offset else "wb"
    with local.open("rb") as src, sftp.open(remote, mode) as out:
        if chmod and not offset:
            out.chmod(0o600)
        out.set_pipelined(True)
        out.seek(offset)
        src.seek(offset)
        while data := src.read(BLOCK):
            out.write(data)
            sent += len(data)
            if progress is not None:
                progress(offset + sent, size)
    return sent


def _put_small(sftp: paramiko.SFTPClient, remote: str, data: bytes, append_only: bool) -> None:
    existing = _remote_size(sftp, remote)
    if append_only:
        if existing is not None:
            if (existing == len(data) and _remote_sha256(sftp, remote, existing)
                    == hashlib.sha256(data).hexdigest()):
                return  # the same manifest, from an earlier ship of this backup
            raise ConflictError(f"remote {remote} already exists with other content, and "
                                "the append-only target keeps it")
        with sftp.open(remote, "wb") as out:
            out.write(data)
        return
    partial = remote + PARTIAL
    with sftp.open(partial, "wb") as out:
        out.chmod(0o600)
        out.write(data)
    if existing is not None:
        sftp.remove(remote)  # our own manifest of the same, verified backup
    sftp.rename(partial, remote)


def _interrupted(sftp: paramiko.SFTPClient, remote: str, existing: int, local: Path) -> bool:
    """Whether the remote file is a prefix of the local one (an upload cut short)."""
    if existing >= local.stat().st_size:
        return False
    digest = hashlib.sha256()
    with local.open("rb") as src:
        left = existing
        while left and (data := src.read(min(BLOCK, left))):
            digest.update(data)
            left -= len(data)
    return _remote_sha256(sftp, remote, existing) == digest.hexdigest()


def ship_file(local: Path, target: SftpTarget, known_hosts: Path, identity: Path, *,
              manifest: dict[str, Any], progress: Progress | None = None,
              append_only: bool = False) -> Shipped:
    """Upload ``local`` into ``target.directory`` (see the module docstring)."""
    size = local.stat().st_size
    sha = local_sha256(local)
    name = local.name
    directory = PurePosixPath(target.directory)
    remote = str(directory / name)
    partial = remote + PARTIAL
    manifest_path = str(directory / (name + MANIFEST_SUFFIX))
    client = connect(target, known_hosts, identity)
    try:
        sftp = client.open_sftp()
        try:
            _require_directory(sftp, directory, target)
            existing = _remote_size(sftp, remote)
            sent, resumed_from, already = 0, 0, False
            if existing is not None:
                if existing != size or _remote_sha256(sftp, remote, existing) != sha:
                    if append_only and _interrupted(sftp, remote, existing, local):
                        raise ConflictError(
                            f"remote {remote} is an upload cut short ({existing} of {size} "
                            "bytes) and the append-only target keeps it: have the "
                            "server's operator remove it, then ship again")
                    raise ConflictError(
                        f"remote {remote} already exists with other content; refusing to "
                        "replace it")
                already = True
            elif append_only:
                # Straight to NAME: the target refuses renames. The manifest, written
                # after the read-back, marks the file complete and verified.
                sent = _upload(sftp, local, remote, 0, size, progress, chmod=False)
                remote_sha = _remote_sha256(sftp, remote, size)
                if remote_sha != sha:
                    raise CheckFailed(
                        f"read-back of {remote} on {target.host_label} gave SHA-256 "
                        f"{remote_sha}, expected {sha}; no manifest was written (the "
                        "append-only target keeps the bad file for its operator)")
            else:
                offset = _remote_size(sftp, partial) or 0
                if offset > size:
                    offset = 0  # not a prefix of this file: start again
                resumed_from = offset
                sent = _upload(sftp, local, partial, offset, size, progress)
                remote_sha = _remote_sha256(sftp, partial, size)
                if remote_sha != sha and offset:
                    # The old partial was not a prefix of this file: once more from zero.
                    resumed_from = 0
                    sent += _upload(sftp, local, partial, 0, size, progress)
                    remote_sha = _remote_sha256(sftp, partial, size)
                if remote_sha != sha:
                    raise CheckFailed(
                        f"read-back of {partial} on {target.host_label} gave SHA-256 "
                        f"{remote_sha}, expected {sha}; the remote file was not committed")
                sftp.rename(partial, remote)
            doc = {**manifest, "file": name, "size_bytes": size, "sha256": sha}
            _put_small(sftp, manifest_path,
                       json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n", append_only)
        except OSError as exc:  # SFTP status errors (permission denied, no space...)
            raise CheckFailed(f"SFTP on {target.host_label} failed: {exc}") from None
        finally:
            sftp.close()
    finally:
        client.close()
    return Shipped(remote, size, sha, sent, resumed_from, already, manifest_path)


CANARY = (b"polysec append-only check: the target was asked to change and remove this file "
          b"and had to refuse. It cannot be removed over SFTP; the server's operator may.\n")


@dataclass(frozen=True)
class TargetCheck:
    """What an append-only check asked of the target and whether it refused."""

    canary: str
    refused: dict[str, bool]  # operation -> refused
    intact: bool  # the canary still holds exactly what was written

    @property
    def allowed(self) -> list[str]:
        return [op for op, refused in self.refused.items() if not refused]

    @property
    def append_only(self) -> bool:
        return self.intact and not self.allowed


def _refuses(operation: Callable[[], object]) -> bool:
    """Whether the server answers the operation with an SFTP error status."""
    try:
        operation()
    except OSError:  # paramiko maps every SFTP status error to IOError/OSError
        return True
    return False


def _write_in(sftp: paramiko.SFTPClient, path: str, mode: str) -> None:
    with sftp.open(path, mode) as out:
        out.write(b"X")


def _rename_and_back(sftp: paramiko.SFTPClient, path: str) -> None:
    """Rename ``path`` away; where the server allows it, back again, so that the next
    probes still find the canary."""
    sftp.rename(path, path + ".moved")
    sftp.rename(path + ".moved", path)


def check_target(target: SftpTarget, known_hosts: Path, identity: Path) -> TargetCheck:
    """Write a canary file (and a second file to rename over it) into the target
    directory, then ask the server to change its mode, rename it away, write into it,
    append to it, truncate it, rename the other file over it (both SFTP renames) and
    remove it. An append-only target refuses every one and the canary reads back
    unchanged. Both files stay behind on an append-only target (it refuses their
    removal)."""
    directory = PurePosixPath(target.directory)
    name = f".polysec-canary-{secrets.token_hex(8)}"
    canary = str(directory / name)
    other = canary + ".replacement"
    client = connect(target, known_hosts, identity)
    try:
        sftp = client.open_sftp()
        try:
            _require_directory(sftp, directory, target)
            for path, data in ((canary, CANARY), (other, b"replacement\n")):
                with sftp.open(path, "wb") as out:  # creating files must work
                    out.write(data)
            refused = {
                "change mode": _refuses(lambda: sftp.chmod(canary, 0o666)),
                "rename away": _refuses(lambda: _rename_and_back(sftp, canary)),
                "write in place": _refuses(lambda: _write_in(sftp, canary, "r+b")),
                "append": _refuses(lambda: _write_in(sftp, canary, "ab")),
                "truncate": _refuses(lambda: _write_in(sftp, canary, "wb")),
                "rename over": _refuses(lambda: sftp.rename(other, canary)),
                "posix-rename over": _refuses(lambda: sftp.posix_rename(other, canary)),
                "remove": _refuses(lambda: sftp.remove(canary)),
            }
            intact = (_remote_size(sftp, canary) == len(CANARY) and
                      _remote_sha256(sftp, canary, len(CANARY))
                      == hashlib.sha256(CANARY).hexdigest())
        except OSError as exc:
            raise CheckFailed(f"SFTP on {target.host_label} failed: {exc}") from None
        finally:
            sftp.close()
    finally:
        client.close()
    return TargetCheck(canary, refused, intact)
