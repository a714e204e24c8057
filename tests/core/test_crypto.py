"""F1 field encryption, the keyring file and the blind index (no database needed)."""

from __future__ import annotations

import json
import os
import struct
import uuid

import pytest

from polysec_tui.crypto.blind_index import BlindIndex
from polysec_tui.crypto.fields import (
    F1,
    HEADER_LEN,
    NONCE_LEN,
    TAG_LEN,
    DecryptionError,
    FieldCipher,
    associated_data,
    key_id_of,
)
from polysec_tui.crypto.keyring import (
    KEYRING_DATA_ENV,
    FieldKey,
    Keyring,
    load_keyring,
    write_new_keyring,
)
from polysec_tui.errors import EXIT_CHECK_FAILED, EXIT_REFUSED, InputError, RefusedError

ROW = uuid.UUID("3f2a0000-0000-4000-8000-000000000001")
OTHER_ROW = uuid.UUID("3f2a0000-0000-4000-8000-000000000002")


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher(Keyring.generate())


def test_f1_layout_and_round_trip(cipher):
    blob = cipher.encrypt("jane@example.com", table="accounts", column="email", row_id=ROW)
    version, key_id = struct.unpack(">BI", blob[:HEADER_LEN])
    assert version == F1 == 0x01
    assert key_id == cipher.keyring.primary_id == key_id_of(blob)
    assert len(blob) == HEADER_LEN + NONCE_LEN + len("jane@example.com") + TAG_LEN
    assert b"jane" not in blob
    assert cipher.decrypt(blob, table="accounts", column="email", row_id=ROW) == "jane@example.com"


def test_nonces_are_random(cipher):
    a = cipher.encrypt("x", table="accounts", column="email", row_id=ROW)
    b = cipher.encrypt("x", table="accounts", column="email", row_id=ROW)
    assert a != b and a[HEADER_LEN:HEADER_LEN + NONCE_LEN] != b[HEADER_LEN:HEADER_LEN + NONCE_LEN]


def test_usage_is_counted_per_key(cipher):
    for _ in range(3):
        cipher.encrypt("x", table="accounts", column="email", row_id=ROW)
    assert cipher.take_usage() == {cipher.keyring.primary_id: 3}
    assert cipher.take_usage() == {}


def test_associated_data_is_length_prefixed():
    # ("ab", "c") and ("a", "bc") must not produce the same associated data.
    header = bytes([F1, 0, 0, 0, 1])
    assert associated_data(header, "ab", "c", ROW) != associated_data(header, "a", "bc", ROW)


@pytest.mark.parametrize(
    ("table", "column", "row_id"),
    [("accounts", "email", OTHER_ROW), ("accounts", "phone", ROW), ("officers", "email", ROW)],
)
def test_ciphertext_is_bound_to_its_place(cipher, table, column, row_id):
    blob = cipher.encrypt("jane@example.com", table="accounts", column="email", row_id=ROW)
    with pytest.raises(DecryptionError) as err:
        cipher.decrypt(blob, table=table, column=column, row_id=row_id)
    message = str(err.value)
    assert f"{table}.{column}" in message and str(row_id) in message
    assert "authentication failed" in message
    assert err.value.exit_code == EXIT_CHECK_FAILED


def test_every_flipped_byte_is_detected(cipher):
    blob = cipher.encrypt("+49 170 1234512", table="accounts", column="phone", row_id=ROW)
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError, match=f"accounts.phone of row {ROW}"):
            cipher.decrypt(bytes(tampered), table="accounts", column="phone", row_id=ROW)


def test_missing_key_id_is_named(cipher):
    blob = bytearray(cipher.encrypt("x", table="accounts", column="email", row_id=ROW))
    blob[1:5] = struct.pack(">I", 77)
    with pytest.raises(DecryptionError, match="key id 77 is not in the keyring"):
        cipher.decrypt(bytes(blob), table="accounts", column="email", row_id=ROW)


def test_wrong_keyring_fails_cleanly(cipher):
    blob = cipher.encrypt("x", table="accounts", column="email", row_id=ROW)
    stranger = FieldCipher(Keyring.generate())  # same key id 1, different material
    with pytest.raises(DecryptionError, match="authentication failed under key 1"):
        stranger.decrypt(blob, table="accounts", column="email", row_id=ROW)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"jane@example.com", "too short"),
        (b"\x02" + bytes(40), "unknown ciphertext format 0x02"),
        ("jane@example.com", "not a ciphertext"),
    ],
)
def test_malformed_values(cipher, value, reason):
    with pytest.raises(DecryptionError, match=reason):
        cipher.decrypt(value, table="accounts", column="email", row_id=ROW)


def test_old_keys_still_decrypt_after_a_new_primary():
    ring = Keyring.generate()
    old = FieldCipher(ring)
    blob = old.encrypt("x", table="accounts", column="email", row_id=ROW)
    second = FieldKey(2, ring.primary.created_at, "active", os.urandom(32))
    rotated = Keyring(2, {**ring.field_keys, 2: second}, ring.blind_index_key, ring.audit_key)
    new = FieldCipher(rotated)
    assert key_id_of(new.encrypt("y", table="accounts", column="email", row_id=ROW)) == 2
    assert new.decrypt(blob, table="accounts", column="email", row_id=ROW) == "x"


def test_blind_index_normalises_and_separates_columns():
    index = BlindIndex(os.urandom(32))
    assert index.email("Jane.Doe@Example.COM ") == index.email("jane.doe@example.com")
    assert len(index.email("a@b.c")) == 16
    assert index.email("a@b.c") != index.email("a@b.d")
    assert index.compute("accounts", "email", "x") != index.compute("accounts", "phone", "x")
    assert BlindIndex(os.urandom(32)).email("a@b.c") != index.email("a@b.c")


# ------------------------------------------------------------------------------ keyring


def test_keyring_is_written_owner_only_and_never_overwritten(tmp_path):
    path = tmp_path / "sub" / "keyring.json"
    first = Keyring.generate()
    assert write_new_keyring(path, first)
    assert (path.stat().st_mode & 0o777) == 0o600
    before = path.read_bytes()
    assert not write_new_keyring(path, Keyring.generate())
    assert path.read_bytes() == before
    loaded = load_keyring(path)
    assert loaded.primary.material == first.primary.material
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_loose_keyring_permissions_are_refused(tmp_path, mode):
    path = tmp_path / "keyring.json"
    write_new_keyring(path, Keyring.generate())
    path.chmod(mode)
    with pytest.raises(RefusedError, match="chmod 600") as err:
        load_keyring(path)
    assert err.value.exit_code == EXIT_REFUSED


def test_missing_keyring_says_how_to_create_it(tmp_path):
    with pytest.raises(InputError, match="polysec init"):
        load_keyring(tmp_path / "nope.json")


def test_malformed_keyring_never_echoes_material(tmp_path):
    path = tmp_path / "keyring.json"
    write_new_keyring(path, Keyring.generate())
    doc = json.loads(path.read_text())
    secret = doc["field_keys"][0]["key"]
    doc["field_keys"][0]["key"] = secret[:-8]  # truncated material
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        load_keyring(path)
    assert "malformed" in str(err.value)
    assert secret[:20] not in str(err.value)


def test_keyring_from_environment(tmp_path, monkeypatch):
    ring = Keyring.generate()
    monkeypatch.setenv(KEYRING_DATA_ENV, ring.to_json())
    loaded = load_keyring(tmp_path / "absent.json")
    assert loaded.primary.material == ring.primary.material
    assert loaded.source == f"${KEYRING_DATA_ENV}"


def test_keyring_repr_hides_material():
    ring = Keyring.generate()
    assert ring.primary.material.hex() not in repr(ring)
    assert "material" not in repr(ring.primary)
