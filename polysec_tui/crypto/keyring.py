"""The field keyring: versioned AES-256 keys with one primary, plus the blind-index and
audit-log MAC root keys.

The keyring is a JSON file that only its owner may read (anything looser is refused), or
the same JSON document in the environment variable POLYSEC_KEYRING_DATA. Key material
never comes from the database and is never derived from a passphrase.

File format (version 1)::

    {"format": "polysec-keyring", "version": 1, "primary": 2,
     "field_keys": [{"id": 1, "created_at": "...", "status": "active", "key": "<base64>"}],
     "blind_index_key": "<base64>", "audit_key": "<base64>"}
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polysec_tui.errors import InputError, RefusedError
from polysec_tui.files import AlreadyExists, atomic_write

KEYRING_DATA_ENV = "POLYSEC_KEYRING_DATA"
FORMAT = "polysec-keyring"
VERSION = 1
KEY_BYTES = 32


@dataclass(frozen=True)
class FieldKey:
    id: int
    created_at: datetime
    status: str  # "active" (may decrypt) or "retired" (kept only for the record)
    material: bytes = field(repr=False)


@dataclass(frozen=True)
class Keyring:
    primary_id: int
    field_keys: dict[int, FieldKey]
    blind_index_key: bytes = field(repr=False)
    audit_key: bytes = field(repr=False)
    source: str = "memory"

    @classmethod
    def generate(cls, *, now: datetime | None = None) -> Keyring:
        created = now or datetime.now(UTC)
        first = FieldKey(1, created, "active", secrets.token_bytes(KEY_BYTES))
        return cls(
            primary_id=1,
            field_keys={1: first},
            blind_index_key=secrets.token_bytes(KEY_BYTES),
            audit_key=secrets.token_bytes(KEY_BYTES),
        )

    @property
    def primary(self) -> FieldKey:
        return self.field_keys[self.primary_id]

    # -- serialisation -------------------------------------------------------------------

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "primary": self.primary_id,
            "field_keys": [
                {
                    "id": k.id,
                    "created_at": k.created_at.isoformat(),
                    "status": k.status,
                    "key": _b64(k.material),
                }
                for k in sorted(self.field_keys.values(), key=lambda k: k.id)
            ],
            "blind_index_key": _b64(self.blind_index_key),
            "audit_key": _b64(self.audit_key),
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> Keyring:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not a polysec keyring")
            if doc.get("version") != VERSION:
                raise ValueError(f"unsupported keyring version {doc.get('version')!r}")
            keys = {}
            for entry in doc["field_keys"]:
                key = FieldKey(
                    id=int(entry["id"]),
                    created_at=datetime.fromisoformat(entry["created_at"]),
                    status=str(entry["status"]),
                    material=_unb64(entry["key"]),
                )
                if not 0 < key.id < 2**32:
                    raise ValueError(f"key id {key.id} out of range")
                keys[key.id] = key
            primary = int(doc["primary"])
            if primary not in keys or keys[primary].status != "active":
                raise ValueError(f"primary key {primary} is missing or retired")
            return cls(
                primary_id=primary,
                field_keys=keys,
                blind_index_key=_unb64(doc["blind_index_key"]),
                audit_key=_unb64(doc["audit_key"]),
                source=source,
            )
        except (ValueError, KeyError, TypeError) as exc:
            # Never echo the document: it holds key material.
            reason = exc.args[0] if isinstance(exc, ValueError) and exc.args else type(exc).__name__
            if isinstance(exc, KeyError):
                reason = f"missing entry {exc.args[0]!r}"
            raise InputError(f"keyring {source} is malformed: {reason}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("key material must be a base64 string")
    data = base64.b64decode(text.encode("ascii"), validate=True)
    if len(data) != KEY_BYTES:
        raise ValueError(f"key material must be {KEY_BYTES} bytes, found {len(data)}")
    return data


def check_private(path: Path) -> None:
    """Refuse a keyring file that anyone but its owner can read or write."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise RefusedError(f"keyring {path} is not a regular file")
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        raise RefusedError(
            f"keyring {path} is accessible to group or others (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise RefusedError(f"keyring {path} belongs to another user (uid {st.st_uid})")


def load_keyring(path: Path) -> Keyring:
    """Load the keyring from the environment variable or from the owner-only file."""
    data = os.environ.get(KEYRING_DATA_ENV)
    if data:
        return Keyring.from_json(data, f"${KEYRING_DATA_ENV}")
    try:
        check_private(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"keyring {path} does not exist; create it with `polysec init`"
        ) from None
    except PermissionError:
        raise RefusedError(f"keyring {path} is not readable by this user") from None
    return Keyring.from_json(text, str(path))


def write_new_keyring(path: Path, keyring: Keyring) -> bool:
    """Write a keyring that does not exist yet (mode 0600). Returns False, writing
    nothing, when a file is already there: an existing keyring is never overwritten."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        atomic_write(path, keyring.to_json().encode(), what="keyring", overwrite=False)
    except AlreadyExists:
        return False
    return True
