"""The backup file format (PSBK v3): a public-key envelope around a streamed payload,
signed by the host that made it.

The host that makes backups holds only the recipients' X25519 public keys, so it cannot
read its own backups. Since those public keys are public by design, encryption alone
proves nothing about who wrote a file: v3 adds an Ed25519 signature by the backing-up
host's signing key over the header and the manifest (which covers every chunk), and
readers accept only signers they are told to trust (`Trust`). Every primitive comes from
`cryptography` (X25519, Ed25519, HKDF-SHA256, AES-256-GCM, SHA-256); nothing
cryptographic is written here.

Byte layout (all integers big-endian)::

    header
      magic        8   b"PSBK\\r\\n\\x1a\\n"
      version      1   0x03 (0x01 and 0x02, unsigned, are still read: see "Versions")
      chunk_log2   1   log2 of the plaintext chunk size (16: 64 KiB; 6..24 accepted)
      backup_id   16   random
      meta_len     2   length of meta
      meta         n   UTF-8 JSON, public (engine, created_at, tool): not secret, but
                       authenticated (the header digest is in every chunk's AAD)
      n_recip      1   1..16 recipient stanzas follow
      stanza       8 + 32 + 48 bytes each
        key_fp     8   SHA-256(recipient public key)[:8] (which key it is for)
        eph_pub   32   a fresh ephemeral X25519 public key
        wrapped   48   AES-256-GCM(wrap_key, nonce=0^12, data_key, aad=prefix) where
                       wrap_key = HKDF-SHA256(X25519(eph, recipient), salt=eph_pub |
                       recipient_pub, info="polysec backup wrap v1" | backup_id) and
                       prefix = magic | version | chunk_log2 | backup_id
      signer      32   v3 only: the Ed25519 public key that signs this backup
    frames
      kind         1   b"C" (payload chunk) or b"M" (manifest, exactly one, after the
                       last chunk)
      length       4   length of the sealed bytes that follow (plaintext + 16)
      sealed       n   AES-256-GCM ciphertext and tag
    signature (v3 only, the last bytes of the file)
      kind         1   b"S"
      length       4   64
      signature   64   Ed25519(signing key, "polysec backup signature v3" | 0x00 |
                       SHA-256(every byte before this frame: header, chunks, manifest))

    H            = SHA-256(header)
    payload_key  = HKDF-SHA256(data_key, salt=backup_id, info="polysec backup payload v1")
    manifest_key = HKDF-SHA256(data_key, salt=backup_id, info="polysec backup manifest v1")
    chunk i      : nonce = i as 11 bytes | last flag (0x00, or 0x01 on the final chunk),
                   aad = H. Every chunk but the last holds exactly chunk-size bytes of
                   plaintext; the last holds fewer (possibly none), so the reader knows
                   which nonce to expect and the flag makes "last" unforgeable.
    manifest     : nonce = 0^12 (the key seals one message), aad = H, plaintext =
                   canonical JSON with the backup id, chunk count, payload size, the size
                   and SHA-256 of every byte before the manifest frame, and what the
                   writer adds (engine, Alembic revision, field key ids, row counts).

Versions: v1 also put the SHA-256 of the plaintext (``payload_sha256``) in the manifest.
It added nothing the chunk tags do not already prove (each chunk is authenticated under
a key only this backup has, at its position, with the end marked) and it cost a second
SHA-256 pass over every byte, which bounded encryption at about 600 MB/s per core. v2
dropped it; v3 adds the signer to the header and the signature frame. v1 and v2 files
are still read, but only when the caller allows unsigned files (``Trust.allow_unsigned``,
the CLI's audited ``--allow-unsigned``): anyone who has a recipient public key can write
one. The SHA-256 of the file (which the catalogue and ``ship`` compare) runs on a second
thread, in parallel with reading and encrypting (hashlib releases the GIL).

Reading rejects: a wrong magic or version, an unsigned (v1/v2) file unless allowed, a
signer that is not trusted (checked from the header, before any decryption), an identity
that is not a recipient, any altered byte (some tag fails, or the signature), chunks
reordered or taken from elsewhere (the counter is in the nonce, the header digest in the
AAD), an end of file before the last chunk, a v3 file without its signature, data after
the last chunk, the manifest or the signature, and a manifest of another backup (other
data key).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import queue
import secrets
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from polysec_tui.errors import CheckFailed, InputError, RefusedError
from polysec_tui.files import atomic_write

MAGIC = b"PSBK\r\n\x1a\n"
VERSION = 3
UNSIGNED_VERSIONS = (1, 2)
READABLE_VERSIONS = (1, 2, 3)
CHUNK_LOG2 = 16
CHUNK_SIZE = 1 << CHUNK_LOG2  # 64 KiB
MIN_CHUNK_LOG2, MAX_CHUNK_LOG2 = 6, 24
TAG_LEN = 16
KEY_LEN = 32
FP_LEN = 8
STANZA_LEN = FP_LEN + 32 + KEY_LEN + TAG_LEN
MAX_RECIPIENTS = 16
MAX_META = 4096
MAX_MANIFEST = 1 << 20
READ_SIZE = 1 << 20  # write_stream's reads: 16 default chunks
KIND_CHUNK = b"C"
KIND_MANIFEST = b"M"
KIND_SIGNATURE = b"S"
SIGNATURE_LEN = 64
SIGNER_LEN = 32
SIGNATURE_CONTEXT = b"polysec backup signature v3\x00"
_FRAME = struct.Struct(">cI")
_PREFIX = struct.Struct(">8sBB16s")
ZERO_NONCE = bytes(12)

PUBLIC_PREFIX = "polysec-x25519:"
SECRET_PREFIX = "POLYSEC-X25519-SECRET:"  # noqa: S105 - a prefix, not a secret
SIGNER_PREFIX = "polysec-ed25519:"
SIGNING_SECRET_PREFIX = "POLYSEC-ED25519-SECRET:"  # noqa: S105 - a prefix, not a secret
MANIFEST_FORMAT = "polysec-backup-manifest"


class EnvelopeError(CheckFailed):
    """The file is not an intact backup for this identity; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReaderRefusal(EnvelopeError):
    """The reader's identity or trust does not accept the file, before its content was
    judged: says nothing about whether the file is intact."""


class WrongIdentity(ReaderRefusal):
    """The identity given is not a recipient."""


class UnsignedBackup(ReaderRefusal):
    """A v1/v2 file (made before backups were signed) and the caller did not allow it."""


class UntrustedSigner(ReaderRefusal):
    """Signed (so it claims), by a key that is not in the trusted list."""


# ------------------------------------------------------------------------------ keys


def fingerprint(public: bytes) -> bytes:
    return hashlib.sha256(public).digest()[:FP_LEN]


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Recipient:
    """An X25519 public key that backups are encrypted to: ``polysec-x25519:<base64>``."""

    public: bytes

    @classmethod
    def parse(cls, text: str) -> Recipient:
        text = text.strip()
        if not text.startswith(PUBLIC_PREFIX):
            raise InputError(f"backup recipient must start with {PUBLIC_PREFIX!r}")
        try:
            raw = base64.b64decode(text[len(PUBLIC_PREFIX):], validate=True)
        except ValueError:
            raise InputError("backup recipient is not valid base64") from None
        if len(raw) != 32:
            raise InputError(f"backup recipient must be 32 bytes, found {len(raw)}")
        return cls(raw)

    @property
    def fingerprint(self) -> bytes:
        return fingerprint(self.public)

    def __str__(self) -> str:
        return PUBLIC_PREFIX + base64.b64encode(self.public).decode("ascii")


@dataclass(frozen=True)
class Identity:
    """The private half, kept offline; needed to verify and restore, never to create."""

    private: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> Identity:
        return cls(X25519PrivateKey.generate())

    @property
    def recipient(self) -> Recipient:
        return Recipient(_raw_public(self.private.public_key()))

    def to_text(self) -> str:
        raw = self.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return (
            "# polysec backup identity (X25519 private key). Keep it offline: it is needed\n"
            "# to verify and restore backups, never to create them.\n"
            f"# recipient: {self.recipient}\n"
            f"{SECRET_PREFIX}{base64.b64encode(raw).decode('ascii')}\n"
        )

    @classmethod
    def from_text(cls, text: str, source: str) -> Identity:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(SECRET_PREFIX):
                try:
                    raw = base64.b64decode(line[len(SECRET_PREFIX):], validate=True)
                except ValueError:
                    break
                if len(raw) != 32:
                    break
                return cls(X25519PrivateKey.from_private_bytes(raw))
        raise InputError(f"identity {source} holds no polysec X25519 secret key")

    @classmethod
    def load(cls, path: Path) -> Identity:
        return cls.from_text(_read_private_text(path, "identity"), str(path))

    def write_new(self, path: Path, *, note: str = "") -> None:
        """Write once (mode 0600, O_EXCL): an existing identity is never overwritten.
        ``note``: comment lines put first (a demo key says it is one)."""
        _write_private_once(path, note + self.to_text(), "an identity")


def _read_private_text(path: Path, what: str) -> str:
    """The text of a private key file that only its owner can read (refused otherwise)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise RefusedError(
            f"{what} {path} is accessible to group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InputError(f"cannot read {what} file {path}: {reason}") from None


def _write_private_once(path: Path, text: str, what: str) -> None:
    """Write once, whole, mode 0600 from creation: never overwrites a key."""
    atomic_write(path, text.encode(), what=what, overwrite=False)


@dataclass(frozen=True)
class Signer:
    """An Ed25519 public key trusted to sign backups: ``polysec-ed25519:<base64>``."""

    public: bytes

    @classmethod
    def parse(cls, text: str) -> Signer:
        text = text.strip()
        if not text.startswith(SIGNER_PREFIX):
            raise InputError(f"backup signer must start with {SIGNER_PREFIX!r}")
        try:
            raw = base64.b64decode(text[len(SIGNER_PREFIX):], validate=True)
        except ValueError:
            raise InputError("backup signer is not valid base64") from None
        if len(raw) != SIGNER_LEN:
            raise InputError(f"backup signer must be {SIGNER_LEN} bytes, found {len(raw)}")
        try:
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise InputError("backup signer is not an Ed25519 public key") from None
        return cls(raw)

    @property
    def fingerprint(self) -> bytes:
        return fingerprint(self.public)

    def verify(self, signature: bytes, digest: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(
                signature, SIGNATURE_CONTEXT + digest)
        except (InvalidSignature, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return SIGNER_PREFIX + base64.b64encode(self.public).decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """The backing-up host's Ed25519 private key: it signs every backup the host makes.
    It stays on that host (it cannot decrypt anything); whoever holds it can make
    backups that verify and restore accept, so it is kept like the keyring (0600)."""

    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def signer(self) -> Signer:
        return Signer(self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def sign(self, digest: bytes) -> bytes:
        return self.private.sign(SIGNATURE_CONTEXT + digest)

    def to_text(self) -> str:
        raw = self.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return (
            "# polysec backup signing key (Ed25519 private key). It stays on the host that\n"
            "# makes backups; verify and restore trust the public key below when it is in\n"
            "# [backup] signers.\n"
            f"# signer: {self.signer}\n"
            f"{SIGNING_SECRET_PREFIX}{base64.b64encode(raw).decode('ascii')}\n"
        )

    @classmethod
    def from_text(cls, text: str, source: str) -> SigningKey:
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(SIGNING_SECRET_PREFIX):
                try:
                    raw = base64.b64decode(line[len(SIGNING_SECRET_PREFIX):], validate=True)
                except ValueError:
                    break
                if len(raw) != 32:
                    break
                return cls(Ed25519PrivateKey.from_private_bytes(raw))
        raise InputError(f"signing key {source} holds no polysec Ed25519 secret key")

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        return cls.from_text(_read_private_text(path, "signing key"), str(path))

    def write_new(self, path: Path, *, note: str = "") -> None:
        """Write once (mode 0600, O_EXCL): an existing key is never overwritten."""
        _write_private_once(path, note + self.to_text(), "a signing key")


@dataclass(frozen=True)
class Trust:
    """What a reader accepts: v3 files signed by one of ``signers``; v1/v2 (unsigned)
    files only with ``allow_unsigned``."""

    signers: tuple[Signer, ...] = ()
    allow_unsigned: bool = False

    def check(self, header: Header) -> Signer | None:
        """The trusted signer the header names (None for an allowed unsigned file);
        raises before anything is decrypted."""
        if header.version in UNSIGNED_VERSIONS:
            if not self.allow_unsigned:
                raise UnsignedBackup(
                    f"an unsigned backup (format version {header.version}, made before "
                    "backups were signed): anyone with the recipient public key can write "
                    "such a file; refused without --allow-unsigned"
                )
            return None
        assert header.signer is not None
        for signer in self.signers:
            if secrets.compare_digest(signer.public, header.signer):
                return signer
        trusted = ", ".join(s.fingerprint.hex() for s in self.signers) or "none configured"
        raise UntrustedSigner(
            f"signed by an untrusted key {fingerprint(header.signer).hex()} (trusted "
            f"signers: {trusted}): not made by a backup host this configuration trusts "
            "([backup] signers)"
        )


# ---------------------------------------------------------------------------- crypto


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=info).derive(ikm)


def _wrap_key(shared: bytes, eph_pub: bytes, recipient_pub: bytes, backup_id: bytes) -> bytes:
    return _hkdf(shared, eph_pub + recipient_pub, b"polysec backup wrap v1" + backup_id)


def _payload_keys(data_key: bytes, backup_id: bytes) -> tuple[AESGCM, AESGCM]:
    return (AESGCM(_hkdf(data_key, backup_id, b"polysec backup payload v1")),
            AESGCM(_hkdf(data_key, backup_id, b"polysec backup manifest v1")))


def chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# ---------------------------------------------------------------------------- header


@dataclass(frozen=True)
class Header:
    backup_id: bytes
    chunk_size: int
    meta: dict[str, Any]
    stanzas: tuple[tuple[bytes, bytes, bytes], ...]  # (key_fp, eph_pub, wrapped)
    raw: bytes
    version: int = VERSION
    signer: bytes | None = None  # v3: the Ed25519 public key that signed the file

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def recipient_fingerprints(self) -> list[str]:
        return [fp.hex() for fp, _e, _w in self.stanzas]

    @property
    def signer_fingerprint(self) -> str | None:
        return fingerprint(self.signer).hex() if self.signer is not None else None


def _build_header(backup_id: bytes, chunk_log2: int, meta: Mapping[str, Any],
                  recipients: Iterable[Recipient], data_key: bytes, version: int,
                  signer: Signer | None) -> bytes:
    prefix = _PREFIX.pack(MAGIC, version, chunk_log2, backup_id)
    meta_bytes = canonical_json(meta)
    if len(meta_bytes) > MAX_META:
        raise ValueError("backup meta too large")
    stanzas = []
    for recipient in recipients:
        eph = X25519PrivateKey.generate()
        eph_pub = _raw_public(eph.public_key())
        shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient.public))
        wrap = _wrap_key(shared, eph_pub, recipient.public, backup_id)
        wrapped = AESGCM(wrap).encrypt(ZERO_NONCE, data_key, prefix)
        stanzas.append(recipient.fingerprint + eph_pub + wrapped)
    if not 1 <= len(stanzas) <= MAX_RECIPIENTS:
        raise InputError(f"a backup needs 1 to {MAX_RECIPIENTS} recipients")
    tail = [signer.public] if signer is not None else []
    return b"".join([prefix, struct.pack(">H", len(meta_bytes)), meta_bytes,
                     bytes([len(stanzas)]), *stanzas, *tail])


def _read_exact(src: BinaryIO, n: int) -> bytes:
    parts = []
    while n:
        data = src.read(n)
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def read_header(src: BinaryIO) -> Header:
    """The public header: backup id, meta and recipient fingerprints (no key needed)."""
    prefix = _read_exact(src, _PREFIX.size)
    if len(prefix) < len(MAGIC) or prefix[: len(MAGIC)] != MAGIC:
        raise EnvelopeError("not a polysec backup (bad magic bytes)")
    if len(prefix) < _PREFIX.size:
        raise EnvelopeError("file ends inside the header")
    _magic, version, chunk_log2, backup_id = _PREFIX.unpack(prefix)
    if version not in READABLE_VERSIONS:
        raise EnvelopeError(f"unsupported backup format version {version}")
    if not MIN_CHUNK_LOG2 <= chunk_log2 <= MAX_CHUNK_LOG2:
        raise EnvelopeError(f"invalid chunk size 2**{chunk_log2} in the header")
    raw_len = _read_exact(src, 2)
    if len(raw_len) < 2:
        raise EnvelopeError("file ends inside the header")
    (meta_len,) = struct.unpack(">H", raw_len)
    if meta_len > MAX_META:
        raise EnvelopeError("header meta too large (altered header)")
    meta_bytes = _read_exact(src, meta_len)
    count = _read_exact(src, 1)
    if len(meta_bytes) < meta_len or not count:
        raise EnvelopeError("file ends inside the header")
    n = count[0]
    if not 1 <= n <= MAX_RECIPIENTS:
        raise EnvelopeError(f"invalid recipient count {n} in the header")
    body = _read_exact(src, n * STANZA_LEN)
    if len(body) < n * STANZA_LEN:
        raise EnvelopeError("file ends inside the header")
    try:
        meta = json.loads(meta_bytes)
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        raise EnvelopeError("header meta is not a JSON object (altered header)") from None
    stanzas = tuple(
        (body[i:i + FP_LEN], body[i + FP_LEN:i + FP_LEN + 32], body[i + FP_LEN + 32:i + STANZA_LEN])
        for i in range(0, len(body), STANZA_LEN)
    )
    signer: bytes | None = None
    if version not in UNSIGNED_VERSIONS:
        signer = _read_exact(src, SIGNER_LEN)
        if len(signer) < SIGNER_LEN:
            raise EnvelopeError("file ends inside the header")
    raw = prefix + raw_len + meta_bytes + count + body + (signer or b"")
    return Header(backup_id, 1 << chunk_log2, meta, stanzas, raw, version, signer)


def _unwrap(header: Header, identity: Identity) -> bytes:
    mine = identity.recipient
    prefix = header.raw[:_PREFIX.size]
    matched = False
    for fp, eph_pub, wrapped in header.stanzas:
        if fp != mine.fingerprint:
            continue
        matched = True
        shared = identity.private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        wrap = _wrap_key(shared, eph_pub, mine.public, header.backup_id)
        try:
            return AESGCM(wrap).decrypt(ZERO_NONCE, wrapped, prefix)
        except InvalidTag:
            continue
    if matched:
        raise EnvelopeError(
            "the data key does not unwrap for this identity: the header was altered"
        )
    raise WrongIdentity(
        f"wrong identity: key {mine.fingerprint.hex()} is not a recipient of this backup "
        f"(recipients: {', '.join(header.recipient_fingerprints)})"
    )


# ------------------------------------------------------------------------- hashing


class BackgroundSha256:
    """SHA-256 of a byte stream, computed on its own thread.

    hashlib releases the GIL for large updates, so hashing the ciphertext runs on the
    second core while this thread reads and encrypts: SHA-256 is the slowest step (about
    1.4 GB/s here against 9 GB/s for AES-256-GCM). Parts must be immutable (``bytes``).
    They go to the thread in batches of about 1 MiB (a hand-over per 64 KiB chunk cost a
    third more CPU) and at most 4 batches wait, so memory stays flat.
    """

    BATCH = 1 << 20

    def __init__(self, initial: bytes = b"") -> None:
        self._sha = hashlib.sha256(initial)
        self._parts: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=4)
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._thread = threading.Thread(target=self._run, name="polysec-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (parts := self._parts.get()) is not None:
            for part in parts:
                self._sha.update(part)
            self._parts.task_done()
        self._parts.task_done()

    def update(self, *parts: bytes) -> None:
        self._batch.extend(parts)
        self._batch_bytes += sum(map(len, parts))
        if self._batch_bytes >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._thread.is_alive():
            raise ValueError("hash already closed")
        self._parts.put(self._batch)
        self._batch, self._batch_bytes = [], 0

    def digest(self) -> bytes:
        """The digest of everything given so far (waits for the hashing thread)."""
        self._flush()
        self._parts.join()
        return self._sha.digest()

    def hexdigest(self) -> str:
        return self.digest().hex()

    def close(self) -> None:
        """Stop the thread; idempotent, and safe after an error halfway."""
        if self._thread.is_alive():
            self._parts.put(None)
            self._thread.join()


# ---------------------------------------------------------------------------- writer


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


class EnvelopeWriter:
    """Streams a payload into ``out``: header now, sealed chunks as data arrives (memory
    stays at a few chunks), the manifest and the signature on `finish`. Call `close` when
    giving up before `finish` (it stops the hashing thread).

    ``signing_key`` is required for the current version. ``version=2`` writes the old,
    unsigned format (no signing key): only tests and migration fixtures use it, since
    readers refuse such files unless told otherwise."""

    def __init__(self, out: Writable, recipients: Iterable[Recipient],
                 meta: Mapping[str, Any], *, signing_key: SigningKey | None,
                 chunk_log2: int = CHUNK_LOG2, backup_id: bytes | None = None,
                 version: int = VERSION) -> None:
        if not MIN_CHUNK_LOG2 <= chunk_log2 <= MAX_CHUNK_LOG2:
            raise ValueError("chunk size out of range")
        if version not in (2, VERSION):
            raise ValueError(f"cannot write format version {version}")
        if (signing_key is None) != (version == 2):
            raise ValueError("version 3 needs a signing key; version 2 takes none")
        self.out = out
        self.version = version
        self._signing_key = signing_key
        self.backup_id = backup_id or secrets.token_bytes(16)
        self.chunk_size = 1 << chunk_log2
        data_key = secrets.token_bytes(KEY_LEN)
        header = _build_header(self.backup_id, chunk_log2, meta, list(recipients), data_key,
                               version, signing_key.signer if signing_key else None)
        self._aad = hashlib.sha256(header).digest()
        self._payload, self._manifest = _payload_keys(data_key, self.backup_id)
        del data_key
        self._buf = bytearray()
        self.chunks = 0
        self.payload_bytes = 0
        self._file_sha = BackgroundSha256()  # every byte written, manifest included
        self.encrypted_bytes = 0
        self.finished = False
        self.file_sha256 = ""
        self._emit(header)

    def _emit(self, *parts: bytes) -> None:
        for part in parts:  # separate writes rather than a 64 KiB concatenation
            self.out.write(part)
            self.encrypted_bytes += len(part)
        self._file_sha.update(*parts)

    def _seal(self, plain: bytes | bytearray | memoryview, last: bool) -> None:
        sealed = self._payload.encrypt(chunk_nonce(self.chunks, last), plain, self._aad)
        self._emit(_FRAME.pack(KIND_CHUNK, len(sealed)), sealed)
        self.chunks += 1

    def write(self, data: bytes | bytearray) -> None:
        if self.finished:
            raise ValueError("backup already finished")
        size = self.chunk_size
        view = memoryview(data).cast("B")
        total = len(view)
        if not total:
            return
        self.payload_bytes += total
        # Keep a full chunk back until more arrives: the final chunk must be short.
        buf = self._buf
        pos = min(size - len(buf), total)
        buf += view[:pos]
        if pos == total:
            return
        self._seal(buf, last=False)  # full, and more follows
        while total - pos > size:  # whole chunks straight from the caller's buffer
            self._seal(view[pos:pos + size], last=False)
            pos += size
        self._buf = bytearray(view[pos:])

    def finish(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Seal the last chunk and write the manifest; returns the manifest."""
        try:
            return self._finish(extra)
        finally:
            self.close()

    def close(self) -> None:
        self._file_sha.close()

    def _finish(self, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        if len(self._buf) == self.chunk_size:
            self._seal(self._buf, last=False)
            self._buf = bytearray()
        self._seal(self._buf, last=True)
        self._buf = bytearray()
        manifest = dict(extra or {})
        manifest.update({
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "backup_id": self.backup_id.hex(),
            "chunks": self.chunks,
            "payload_bytes": self.payload_bytes,
            "encrypted_bytes": self.encrypted_bytes,
            "encrypted_sha256": self._file_sha.hexdigest(),
        })
        sealed = self._manifest.encrypt(ZERO_NONCE, canonical_json(manifest), self._aad)
        self._emit(_FRAME.pack(KIND_MANIFEST, len(sealed)), sealed)
        if self._signing_key is not None:
            # Header, every chunk and the manifest: all bytes so far.
            signature = self._signing_key.sign(self._file_sha.digest())
            self._emit(_FRAME.pack(KIND_SIGNATURE, len(signature)), signature)
        self.file_sha256 = self._file_sha.hexdigest()
        self.finished = True
        return manifest


# ---------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class Opened:
    header: Header
    manifest: dict[str, Any]
    file_bytes: int
    file_sha256: str
    signer: Signer | None = None  # None: an unsigned (v1/v2) file the caller allowed

    @property
    def signed(self) -> bool:
        return self.signer is not None


def read_envelope(src: BinaryIO, identity: Identity,
                  sink: Callable[[bytes], None] | None = None, *, trust: Trust) -> Opened:
    """Authenticate the whole file, passing each decrypted chunk to ``sink`` as soon as
    its tag checks. Raises `EnvelopeError` with the reason on the first problem.

    The signer (or the lack of one) is checked against ``trust`` from the header, before
    anything is decrypted; the signature itself when the manifest has been read. A sink
    receives authenticated chunks before the end is known: a caller that must not act on
    a possibly truncated or unsigned stream (restore) reads the file twice, the first
    time without a sink.
    """
    header = read_header(src)
    signer = trust.check(header)
    data_key = _unwrap(header, identity)
    file_sha = BackgroundSha256(header.raw)
    try:
        return _read_frames(src, header, data_key, file_sha, sink, signer)
    finally:
        file_sha.close()


def _read_frames(src: BinaryIO, header: Header, data_key: bytes, file_sha: BackgroundSha256,
                 sink: Callable[[bytes], None] | None, signer: Signer | None) -> Opened:
    payload, manifest_aead = _payload_keys(data_key, header.backup_id)
    aad = header.digest
    payload_sha = hashlib.sha256() if header.version == 1 else None
    offset = len(header.raw)
    payload_bytes = 0
    counter = 0
    full = header.chunk_size + TAG_LEN
    while True:  # payload chunks
        frame = _read_exact(src, _FRAME.size)
        if not frame:
            raise EnvelopeError(
                f"truncated: the file ends after chunk {counter - 1} at byte {offset}, "
                "before the last chunk" if counter else
                f"truncated: the file ends after the header at byte {offset}, before any chunk"
            )
        if len(frame) < _FRAME.size:
            raise EnvelopeError(f"truncated: the file ends inside the frame of chunk {counter}")
        kind, length = _FRAME.unpack(frame)
        if kind == KIND_MANIFEST:
            raise EnvelopeError(
                f"manifest found where chunk {counter} should be: the end of the payload "
                "(chunks after it) was cut off"
            )
        if kind != KIND_CHUNK:
            raise EnvelopeError(f"unknown frame type 0x{kind[0]:02x} at byte {offset}")
        if not TAG_LEN <= length <= full:
            raise EnvelopeError(f"chunk {counter} at byte {offset} has an impossible length "
                                f"{length} (altered)")
        sealed = _read_exact(src, length)
        if len(sealed) < length:
            raise EnvelopeError(f"truncated: the file ends inside chunk {counter}")
        last = length < full
        try:
            plain = payload.decrypt(chunk_nonce(counter, last), sealed, aad)
        except InvalidTag:
            raise EnvelopeError(
                f"chunk {counter} at byte {offset} failed authentication (bytes altered, "
                "chunks reordered or taken from another backup)"
            ) from None
        file_sha.update(frame, sealed)
        offset += len(frame) + length
        if payload_sha is not None:
            payload_sha.update(plain)
        payload_bytes += len(plain)
        counter += 1
        if sink is not None and plain:
            sink(plain)
        if last:
            break
    before_manifest = offset
    encrypted_sha = file_sha.hexdigest()
    frame = _read_exact(src, _FRAME.size)
    if not frame:
        raise EnvelopeError(
            "truncated: the manifest is missing after the last chunk (the backup never "
            "finished)"
        )
    if len(frame) < _FRAME.size:
        raise EnvelopeError("truncated: the file ends inside the manifest frame")
    kind, length = _FRAME.unpack(frame)
    if kind == KIND_CHUNK:
        raise EnvelopeError(f"data after the last chunk: an extra chunk at byte {offset}")
    if kind != KIND_MANIFEST:
        raise EnvelopeError(f"unknown frame type 0x{kind[0]:02x} at byte {offset}")
    if not TAG_LEN <= length <= MAX_MANIFEST:
        raise EnvelopeError(f"manifest has an impossible length {length} (altered)")
    sealed = _read_exact(src, length)
    if len(sealed) < length:
        raise EnvelopeError("truncated: the file ends inside the manifest")
    try:
        doc = json.loads(manifest_aead.decrypt(ZERO_NONCE, sealed, aad))
    except InvalidTag:
        raise EnvelopeError(
            "the manifest failed authentication: it belongs to another backup or was altered"
        ) from None
    file_sha.update(frame, sealed)
    offset += len(frame) + length
    if header.version not in UNSIGNED_VERSIONS:
        assert signer is not None  # Trust.check returned the header's trusted signer
        _check_signature(src, signer, file_sha, offset)
        offset += _FRAME.size + SIGNATURE_LEN
    trailing = 0
    while extra := src.read(CHUNK_SIZE):
        trailing += len(extra)
    if trailing:
        after = "the manifest" if header.version in UNSIGNED_VERSIONS else "the signature"
        raise EnvelopeError(f"{trailing} unexpected bytes after {after} (appended data)")
    expected: dict[str, object] = {
        "backup_id": header.backup_id.hex(),
        "chunks": counter,
        "payload_bytes": payload_bytes,
        "encrypted_bytes": before_manifest,
        "encrypted_sha256": encrypted_sha,
    }
    if payload_sha is not None:
        expected["payload_sha256"] = payload_sha.hexdigest()
    for key, value in expected.items():
        if doc.get(key) != value:
            raise EnvelopeError(f"the manifest's {key} {doc.get(key)!r} does not match the "
                                f"file ({value!r})")
    return Opened(header, doc, offset, file_sha.hexdigest(), signer)


def _check_signature(src: BinaryIO, signer: Signer, file_sha: BackgroundSha256,
                     offset: int) -> None:
    """The signature frame after the manifest, over every byte before it."""
    frame = _read_exact(src, _FRAME.size)
    if not frame:
        raise EnvelopeError("the signature is missing after the manifest (a version 3 "
                            "backup is always signed: removed or cut off)")
    if len(frame) < _FRAME.size:
        raise EnvelopeError("truncated: the file ends inside the signature frame")
    kind, length = _FRAME.unpack(frame)
    if kind in (KIND_CHUNK, KIND_MANIFEST):
        raise EnvelopeError(f"data after the manifest: a frame of type {kind.decode()} at "
                            f"byte {offset} where the signature should be")
    if kind != KIND_SIGNATURE:
        raise EnvelopeError(f"unknown frame type 0x{kind[0]:02x} at byte {offset}")
    if length != SIGNATURE_LEN:
        raise EnvelopeError(f"the signature frame has an impossible length {length} "
                            "(altered)")
    signature = _read_exact(src, SIGNATURE_LEN)
    if len(signature) < SIGNATURE_LEN:
        raise EnvelopeError("truncated: the file ends inside the signature")
    if not signer.verify(signature, file_sha.digest()):
        raise EnvelopeError(
            f"the signature does not verify with signer {signer.fingerprint.hex()}: the "
            "header, a chunk or the manifest was altered, or the file was not signed by "
            "that key"
        )
    file_sha.update(frame, signature)


def open_file(path: Path, identity: Identity,
              sink: Callable[[bytes], None] | None = None, *, trust: Trust) -> Opened:
    with open_backup(path) as src:
        return read_envelope(src, identity, sink, trust=trust)


def open_backup(path: Path) -> BinaryIO:
    """``path`` opened for reading, or a one-line InputError (missing, a directory...).
    Only a regular file: a FIFO or a device put in a backup's place (``/dev/zero``)
    would block or never end. Opened without blocking, checked on the descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"backup file {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read backup file {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "a special file"
            raise InputError(f"{path} is {what}, not a backup file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def write_stream(src: IO[bytes] | io.RawIOBase, out: Writable, recipients: Iterable[Recipient],
                 meta: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                 *, signing_key: SigningKey | None, chunk_log2: int = CHUNK_LOG2,
                 version: int = VERSION) -> tuple[EnvelopeWriter, dict[str, Any]]:
    """Encrypt (and sign) everything ``src`` yields, in fixed-size reads."""
    writer = EnvelopeWriter(out, recipients, meta, signing_key=signing_key,
                            chunk_log2=chunk_log2, version=version)
    try:
        while data := src.read(READ_SIZE):
            writer.write(data)
    except BaseException:
        writer.close()
        raise
    return writer, writer.finish(extra)
