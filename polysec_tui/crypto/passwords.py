"""Officer passwords: scrypt (memory-hard, from `cryptography`), a minimum length and a
shipped list of common passwords."""

from __future__ import annotations

import base64
import os
from functools import cache
from importlib import resources

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from polysec_tui.errors import InputError

MIN_LENGTH = 12
MAX_LENGTH = 1024
# 2**15 x 8 x 128 bytes = 32 MiB per hash, ~0.1 s here: slow for a guesser, fine for a login.
SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1


def _kdf(salt: bytes, log2_n: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p)


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _kdf(salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P).derive(password.encode("utf-8"))
    return "$".join(
        ("scrypt", str(SCRYPT_LOG2_N), str(SCRYPT_R), str(SCRYPT_P),
         base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    )


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        # Same cost as a real check, so timing does not tell which officers exist.
        _kdf(b"\0" * 16, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P).derive(password.encode("utf-8"))
        return False
    try:
        scheme, log2_n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        kdf = _kdf(base64.b64decode(salt_b64), int(log2_n), int(r), int(p))
        kdf.verify(password.encode("utf-8"), base64.b64decode(digest_b64))
    except (InvalidKey, ValueError):
        return False
    return True


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("polysec_tui.data").joinpath("common-passwords.txt").read_text()
    lines = (line.strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


def check_policy(password: str, *, name: str) -> None:
    """Raise InputError (one line, never echoing the password) if it is too weak."""
    if len(password) < MIN_LENGTH:
        raise InputError(f"password too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InputError(f"password too long: at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in common_passwords():
        raise InputError("password is on the list of common passwords")
    if name.lower() in lowered:
        raise InputError("password must not contain the officer name")
    if len(set(password)) < 5:
        raise InputError("password has too few different characters")
