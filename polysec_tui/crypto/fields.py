"""F1 field ciphertext: AES-256-GCM bound to its table, column and row.

Layout: ``0x01 | key_id:u32 | nonce:12 | ciphertext | tag:16``. The associated data is
the 5-byte header followed by the length-prefixed table name, column name and the row's
UUID (16 bytes), so a ciphertext copied to another row or column fails to authenticate.
"""

from __future__ import annotations

import functools
import os
import struct
import uuid
from collections import Counter
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from polysec_tui.crypto.keyring import Keyring
from polysec_tui.errors import CheckFailed

F1 = 0x01
_HEADER = struct.Struct(">BI")
HEADER_LEN = _HEADER.size  # 5
NONCE_LEN = 12
TAG_LEN = 16
MIN_LEN = HEADER_LEN + NONCE_LEN + TAG_LEN
# Random 96-bit nonces: NIST SP 800-38D caps one key at 2**32 encryptions. Warn far
# earlier so that rotation happens in good time.
NONCE_LIMIT = 2**32
USAGE_WARN = 2**30


class DecryptionError(CheckFailed):
    """A field that cannot be decrypted; names the table, column and row."""

    def __init__(self, table: str, column: str, row_id: uuid.UUID, reason: str) -> None:
        super().__init__(f"cannot decrypt {table}.{column} of row {row_id}: {reason}")
        self.table = table
        self.column = column
        self.row_id = row_id
        self.reason = reason


@functools.lru_cache(maxsize=64)
def _binding_prefix(table: str, column: str) -> bytes:
    """The length-prefixed table and column names (the same for every row of a column)."""
    parts = []
    for value in (table.encode(), column.encode()):
        parts.append(struct.pack(">H", len(value)))
        parts.append(value)
    return b"".join(parts)


_UUID_LEN = struct.pack(">H", 16)

Opener = Callable[[bytes, bytes], str]


def associated_data(header: bytes, table: str, column: str, row_id: uuid.UUID) -> bytes:
    return header + _binding_prefix(table, column) + _UUID_LEN + row_id.bytes


def key_id_of(blob: bytes) -> int | None:
    """The key id of a well-formed F1 ciphertext, or None."""
    if len(blob) < MIN_LEN or blob[0] != F1:
        return None
    return int(_HEADER.unpack_from(blob)[1])


class FieldCipher:
    """Encrypts with the primary key, decrypts with any key of the keyring.

    ``usage`` counts encryptions per key id since the last ``take_usage()``; the caller
    adds them to the database's per-key counter in the same transaction.
    """

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._aead = {kid: AESGCM(key.material) for kid, key in keyring.field_keys.items()}
        # The 5-byte F1 header of each key: one dictionary look-up checks the format
        # byte and finds the key.
        self._by_header = {_HEADER.pack(F1, kid): aead for kid, aead in self._aead.items()}
        self._openers: dict[tuple[str, str], Opener] = {}
        self.usage: Counter[int] = Counter()

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: uuid.UUID) -> bytes:
        key_id = self.keyring.primary_id
        header = _HEADER.pack(F1, key_id)
        nonce = os.urandom(NONCE_LEN)
        aad = associated_data(header, table, column, row_id)
        sealed = self._aead[key_id].encrypt(nonce, plaintext.encode("utf-8"), aad)
        self.usage[key_id] += 1
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: uuid.UUID) -> str:
        return self.opener(table, column)(row_id.bytes, blob)

    def opener(self, table: str, column: str) -> Opener:
        """``open(row_id_bytes, blob) -> plaintext`` for the values of one column, raising
        DecryptionError: the bulk path (audit checks, rotation) calls it per value with
        the row id's 16 bytes, so the column's part of the binding is built once."""
        found = self._openers.get((table, column))
        if found is not None:
            return found
        binding = _binding_prefix(table, column) + _UUID_LEN
        by_header = self._by_header

        def open_value(row_key: bytes, blob: bytes) -> str:
            try:
                header = blob[:HEADER_LEN]
                # A blob shorter than MIN_LEN leaves fewer than 16 bytes for the tag (or
                # a shorter nonce and nothing else): AES-GCM refuses it.
                return by_header[header].decrypt(
                    blob[HEADER_LEN:HEADER_LEN + NONCE_LEN], blob[HEADER_LEN + NONCE_LEN:],
                    header + binding + row_key).decode("utf-8")
            except (KeyError, TypeError, ValueError, InvalidTag):
                # UnicodeDecodeError is a ValueError. The checked path says which.
                return self._decrypt_checked(blob, table=table, column=column,
                                             row_id=uuid.UUID(bytes=bytes(row_key)))

        self._openers[(table, column)] = open_value
        return open_value

    def _decrypt_checked(self, blob: bytes, *, table: str, column: str,
                         row_id: uuid.UUID) -> str:
        def fail(reason: str) -> DecryptionError:
            return DecryptionError(table, column, row_id, reason)

        if not isinstance(blob, bytes | bytearray | memoryview):
            raise fail("value is not a ciphertext (plaintext stored in an encrypted column?)")
        blob = bytes(blob)
        if len(blob) < MIN_LEN:
            raise fail(f"ciphertext too short ({len(blob)} bytes)")
        version, key_id = _HEADER.unpack_from(blob)
        if version != F1:
            raise fail(f"unknown ciphertext format 0x{version:02x}")
        aead = self._aead.get(key_id)
        if aead is None:
            raise fail(f"key id {key_id} is not in the keyring {self.keyring.source}")
        header = blob[:HEADER_LEN]
        nonce = blob[HEADER_LEN : HEADER_LEN + NONCE_LEN]
        try:
            aad = associated_data(header, table, column, row_id)
            plain = aead.decrypt(nonce, blob[HEADER_LEN + NONCE_LEN :], aad)
        except InvalidTag:
            raise fail(
                f"authentication failed under key {key_id} (altered bytes, a ciphertext "
                "from another row or column, or a different keyring)"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise fail("plaintext is not UTF-8") from None

    def take_usage(self) -> dict[int, int]:
        taken = dict(self.usage)
        self.usage.clear()
        return taken
