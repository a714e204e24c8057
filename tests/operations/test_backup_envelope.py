"""The backup file format on its own: round trips and every kind of tampering (the
signature's own tests: tests/operations/test_backup_signing.py)."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import tracemalloc
from pathlib import Path

import pytest

from polysec_tui.backup import envelope as env
from polysec_tui.backup.envelope import EnvelopeError, Identity, SigningKey, Trust
from tests.support import DATA

SMALL = 6  # 64-byte chunks keep files small enough to flip every byte
HOST = SigningKey.generate()  # the backing-up host's signing key
TRUST = Trust((HOST.signer,))


def make(payload: bytes, *recipients: Identity, chunk_log2: int = SMALL,
         meta: dict[str, object] | None = None) -> bytes:
    out = io.BytesIO()
    env.write_stream(io.BytesIO(payload), out, [r.recipient for r in recipients],
                     meta or {"engine": "test"}, {"alembic_revision": "0001"},
                     signing_key=HOST, chunk_log2=chunk_log2)
    return out.getvalue()


def open_bytes(blob: bytes, identity: Identity,
               trust: Trust = TRUST) -> tuple[bytes, dict[str, object]]:
    got = bytearray()
    opened = env.read_envelope(io.BytesIO(blob), identity, got.extend, trust=trust)
    return bytes(got), opened.manifest


def frames(blob: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of every chunk and manifest frame after the header (the
    signature frame of a v3 file left out)."""
    pos = len(env.read_header(io.BytesIO(blob)).raw)
    found = []
    while pos < len(blob):
        kind, length = struct.unpack(">cI", blob[pos:pos + 5])
        if kind != env.KIND_SIGNATURE:
            found.append((pos, 5 + length))
        pos += 5 + length
    return found


def reason(blob: bytes, identity: Identity, trust: Trust = TRUST) -> str:
    with pytest.raises(EnvelopeError) as info:
        env.read_envelope(io.BytesIO(blob), identity, trust=trust)
    return info.value.reason


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate()


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 200, 1000])
def test_round_trip_at_every_chunk_edge(alice, size):
    payload = os.urandom(size)
    blob = make(payload, alice)
    got, manifest = open_bytes(blob, alice)
    assert got == payload
    assert manifest["payload_bytes"] == size
    assert manifest["alembic_revision"] == "0001"
    # Every chunk but the last is full; the last is short (possibly empty).
    sizes = [length - 5 - 16 for _o, length in frames(blob)[:-1]]
    assert all(s == 64 for s in sizes[:-1]) and sizes[-1] < 64
    assert manifest["chunks"] == len(sizes)


def test_default_chunk_size_round_trip_and_several_recipients(alice):
    bob = Identity.generate()
    payload = os.urandom(3 * env.CHUNK_SIZE + 5)
    blob = make(payload, alice, bob, chunk_log2=env.CHUNK_LOG2)
    assert open_bytes(blob, alice)[0] == payload
    assert open_bytes(blob, bob)[0] == payload
    assert payload[:4096] not in blob  # nothing in clear


def test_identity_and_recipient_text_round_trip(tmp_path: Path, alice):
    path = tmp_path / "id.key"
    alice.write_new(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = Identity.load(path)
    assert loaded.recipient == alice.recipient
    assert env.Recipient.parse(str(alice.recipient)) == alice.recipient
    with pytest.raises(Exception, match="never overwritten"):
        alice.write_new(path)
    path.chmod(0o644)
    with pytest.raises(Exception, match="group or others"):
        Identity.load(path)


def test_a_flipped_byte_anywhere_is_rejected(alice):
    blob = make(os.urandom(150), alice)
    reasons = set()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        reasons.add(reason(bytes(bad), alice).split(" at byte")[0])
    assert len(blob) > 300
    # Header, wrapped key, chunk and manifest damage each have their own words.
    assert "not a polysec backup (bad magic bytes)" in reasons
    assert {"chunk 0", "chunk 1", "chunk 2"} <= reasons  # "chunk N at byte B failed..."
    assert any("manifest failed authentication" in r for r in reasons)
    assert any("unwrap" in r or "wrong identity" in r for r in reasons)


def test_truncation_anywhere_is_rejected(alice):
    blob = make(os.urandom(150), alice)
    for cut in range(len(blob)):
        assert reason(blob[:cut], alice)


def test_truncation_at_a_chunk_boundary_says_so(alice):
    blob = make(os.urandom(150), alice)  # chunks: 64, 64, 22, then the manifest
    (c0, _l0), (c1, l1), (c2, l2), (m, _lm) = frames(blob)
    assert reason(blob[:c1 + l1], alice) == (
        f"truncated: the file ends after chunk 1 at byte {c1 + l1}, before the last chunk"
    )
    assert reason(blob[:c2 + l2], alice) == (
        "truncated: the manifest is missing after the last chunk (the backup never finished)"
    )
    assert reason(blob[:c0], alice).startswith("truncated: the file ends after the header")
    # The last chunk removed, the manifest kept.
    assert reason(blob[:c2] + blob[m:], alice) == (
        "manifest found where chunk 2 should be: the end of the payload (chunks after it) "
        "was cut off"
    )


def test_an_appended_chunk_is_rejected(alice):
    blob = make(os.urandom(150), alice)
    (c0, l0), _c1, (_c2, _l2), (m, _lm) = frames(blob)
    chunk = blob[c0:c0 + l0]
    assert reason(blob + chunk, alice) == (
        f"{len(chunk)} unexpected bytes after the signature (appended data)"
    )
    assert reason(blob[:m] + chunk + blob[m:], alice) == (
        f"data after the last chunk: an extra chunk at byte {m}"
    )


def test_two_swapped_chunks_are_rejected(alice):
    blob = make(os.urandom(150), alice)
    (c0, l0), (c1, l1), _c2, _m = frames(blob)
    swapped = blob[:c0] + blob[c1:c1 + l1] + blob[c0:c0 + l0] + blob[c1 + l1:]
    assert reason(swapped, alice) == (
        f"chunk 0 at byte {c0} failed authentication (bytes altered, chunks reordered or "
        "taken from another backup)"
    )


def test_a_chunk_from_another_backup_is_rejected(alice):
    one, two = make(os.urandom(150), alice), make(os.urandom(150), alice)
    (c0, l0), *_ = frames(one)
    spliced = one[:c0] + two[c0:c0 + l0] + one[c0 + l0:]
    assert "chunk 0" in reason(spliced, alice)


def test_a_wrong_identity_is_rejected(alice):
    blob = make(b"secret rows", alice)
    eve = Identity.generate()
    assert reason(blob, eve) == (
        f"wrong identity: key {eve.recipient.fingerprint.hex()} is not a recipient of this "
        f"backup (recipients: {alice.recipient.fingerprint.hex()})"
    )


def test_a_manifest_from_another_backup_is_rejected(alice):
    one, two = make(os.urandom(150), alice), make(os.urandom(150), alice)
    m1 = frames(one)[-1][0]
    m2 = frames(two)[-1][0]
    assert reason(one[:m1] + two[m2:], alice) == (
        "the manifest failed authentication: it belongs to another backup or was altered"
    )


def test_a_header_of_another_backup_is_rejected(alice):
    one, two = make(os.urandom(150), alice), make(os.urandom(150), alice)
    h = len(env.read_header(io.BytesIO(one)).raw)
    assert "chunk 0" in reason(two[:h] + one[h:], alice)


class Zeros(io.RawIOBase):
    def __init__(self, total: int) -> None:
        self.left = total

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, n if n >= 0 else self.left)
        self.left -= n
        return bytes(n)


def test_memory_stays_flat_whatever_the_size(alice, tmp_path: Path):
    total = 48 * 1024 * 1024
    path = tmp_path / "big.psbk"
    tracemalloc.start()
    try:
        with path.open("wb") as out:
            env.write_stream(Zeros(total), out, [alice.recipient], {"engine": "test"},
                             signing_key=HOST)
        _cur, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        seen = 0

        def sink(data: bytes) -> None:
            nonlocal seen
            seen += len(data)

        opened = env.open_file(path, alice, sink, trust=TRUST)
        _cur, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == total == opened.manifest["payload_bytes"]
    # Reads of 1 MiB, and up to six 1 MiB batches of sealed chunks on their way to the
    # hashing thread: about 8 MiB measured, whatever the size (the payload here is 48 MiB).
    assert write_peak < 16 * 1024 * 1024, write_peak
    assert read_peak < 16 * 1024 * 1024, read_peak


def test_a_version_1_backup_still_opens_and_its_payload_digest_is_checked():
    # Written by polysec before v2 (tests/data/backup-v1.*): v1 manifests also carry the
    # plaintext's SHA-256, which the reader still checks for them.
    identity = Identity.from_text((DATA / "backup-v1.identity").read_text(), "fixture")
    blob = (DATA / "backup-v1.psbk").read_bytes()
    legacy = Trust((HOST.signer,), allow_unsigned=True)  # v1 is unsigned
    got, manifest = open_bytes(blob, identity, legacy)
    assert got == bytes(range(256)) * 2 + b"polysec v1 fixture\n"
    assert env.read_header(io.BytesIO(blob)).version == 1
    assert manifest["payload_sha256"] == hashlib.sha256(got).hexdigest()
    # A v1 manifest whose plaintext digest is wrong, sealed with the backup's own key
    # (only a recipient could do it): the digest is really checked.
    header = env.read_header(io.BytesIO(blob))
    _payload, manifest_key = env._payload_keys(env._unwrap(header, identity), header.backup_id)
    forged = dict(manifest, payload_sha256="00" * 32)
    sealed = manifest_key.encrypt(env.ZERO_NONCE, env.canonical_json(forged), header.digest)
    at = frames(blob)[-1][0]
    bad = blob[:at] + struct.pack(">cI", env.KIND_MANIFEST, len(sealed)) + sealed
    assert reason(bad, identity, legacy).startswith("the manifest's payload_sha256 '0000")


def test_new_backups_are_version_3_without_a_plaintext_digest(alice):
    blob = make(b"x" * 100, alice)
    assert env.read_header(io.BytesIO(blob)).version == 3
    _got, manifest = open_bytes(blob, alice)
    assert "payload_sha256" not in manifest and manifest["version"] == 3
    assert manifest["encrypted_sha256"] == hashlib.sha256(
        blob[:frames(blob)[-1][0]]).hexdigest()


def test_an_unknown_version_is_refused(alice):
    blob = bytearray(make(b"x", alice))
    blob[8] = 4
    assert reason(bytes(blob), alice) == "unsupported backup format version 4"


class Failing(io.RawIOBase):
    def readinto(self, b: object) -> int:
        raise OSError("disk gone")


def test_a_failed_write_leaves_no_hashing_thread_behind(alice):
    def hashing() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "polysec-sha256"]

    before = len(hashing())
    with pytest.raises(OSError, match="disk gone"):
        env.write_stream(Failing(), io.BytesIO(), [alice.recipient], {"engine": "test"},
                         signing_key=HOST)
    assert len(hashing()) == before
    with pytest.raises(EnvelopeError):
        env.read_envelope(io.BytesIO(make(b"y" * 100, alice)[:-3]), alice, trust=TRUST)
    assert len(hashing()) == before
