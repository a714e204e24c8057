"""TOTP (RFC 6238) through pyotp: which time step a code belongs to, within +/-1 step.

The caller stores the accepted step and refuses any step at or below it, so each code
is accepted once."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended minimum
WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32(length=32)  # 32 base32 characters = 160 bits


def matching_step(secret: str, code: str, now: datetime, *, digits: int = 6,
                  window: int = WINDOW) -> int | None:
    """The time step whose code equals ``code`` among now-window..now+window, or None."""
    code = code.strip().replace(" ", "")
    if len(code) != digits or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=digits)
    current = totp.timecode(now)
    found = None
    for step in range(current - window, current + window + 1):
        # Compare every candidate (no early exit) in constant time.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def provisioning_uri(secret: str, name: str, issuer: str = "POLYCOIN polysec") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=issuer)


def code_at(secret: str, when: datetime) -> str:
    """The current code: for tests and for the demo database's login hint only."""
    return pyotp.TOTP(secret).at(when)
