"""Blind index: HMAC-SHA256 over a normalised value, under a key derived per table and
column, truncated to 16 bytes. For equality lookups only (exact email search)."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BLIND_INDEX_LEN = 16


def normalise_email(value: str) -> str:
    return value.strip().lower()


class BlindIndex:
    def __init__(self, root_key: bytes) -> None:
        self._root = root_key
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, table: str, column: str) -> bytes:
        key = self._keys.get((table, column))
        if key is None:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=f"polysec blind index v1|{table}|{column}".encode(),
            ).derive(self._root)
            self._keys[(table, column)] = key
        return key

    def compute(self, table: str, column: str, normalised: str) -> bytes:
        digest = hmac.new(self._key(table, column), normalised.encode("utf-8"), hashlib.sha256)
        return digest.digest()[:BLIND_INDEX_LEN]

    def email(self, value: str) -> bytes:
        return self.compute("accounts", "email", normalise_email(value))
