"""Validation of one ingested record: each function returns a clean value or raises
`BadRecord` with a reason that names the field. Kept free of I/O so it is cheap per line."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


class BadRecord(ValueError):
    """A record that cannot be ingested; the message is the reason shown to the user."""


_ASSET = re.compile(r"[A-Z0-9]{2,16}\Z")
_COUNTRY = re.compile(r"[A-Z]{2}\Z")
MAX_DECIMAL_DIGITS = 38
MAX_FRACTION_DIGITS = 18


def _get(obj: dict[str, Any], name: str, required: bool) -> Any:
    value = obj.get(name)
    if value is None and required:
        raise BadRecord(f"field {name!r} is required")
    return value


def text(obj: dict[str, Any], name: str, max_len: int, *, required: bool = True) -> str | None:
    value = _get(obj, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRecord(f"field {name!r} must be a string")
    if required and not value.strip():
        raise BadRecord(f"field {name!r} must not be empty")
    if len(value) > max_len:
        raise BadRecord(f"field {name!r} is longer than {max_len} characters ({len(value)})")
    if "\x00" in value:
        raise BadRecord(f"field {name!r} contains a NUL character")
    return value


def req_text(obj: dict[str, Any], name: str, max_len: int) -> str:
    value = text(obj, name, max_len)
    assert value is not None
    return value


def timestamp(obj: dict[str, Any], name: str, *, required: bool = True) -> datetime | None:
    value = _get(obj, name, required)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise BadRecord(f"field {name!r} must be an ISO 8601 time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRecord(f"field {name!r} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise BadRecord(f"field {name!r} has no time zone (add Z or +00:00): {value!r}")
    return parsed.astimezone(UTC)


def req_timestamp(obj: dict[str, Any], name: str) -> datetime:
    value = timestamp(obj, name)
    assert value is not None
    return value


def boolean(obj: dict[str, Any], name: str) -> bool:
    value = _get(obj, name, True)
    if not isinstance(value, bool):
        raise BadRecord(f"field {name!r} must be true or false")
    return value


def integer(obj: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = _get(obj, name, False)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRecord(f"field {name!r} must be an integer from {lo} to {hi}")
    return value


def number(obj: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = _get(obj, name, False)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRecord(f"field {name!r} must be a number from {lo} to {hi}")
    return float(value)


def decimal_value(raw: Any, name: str, *, positive: bool) -> Decimal:
    if not isinstance(raw, str):
        raise BadRecord(f"field {name!r} must be a decimal string such as \"0.25\"")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BadRecord(f"field {name!r} is not a decimal number: {raw[:40]!r}") from None
    if not value.is_finite():
        raise BadRecord(f"field {name!r} must be finite")
    if value < 0 or (positive and value == 0):
        raise BadRecord(f"field {name!r} must be {'positive' if positive else 'zero or more'}")
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    fraction = max(0, -exponent)
    whole = max(0, len(digits) + exponent)
    if fraction > MAX_FRACTION_DIGITS or whole > MAX_DECIMAL_DIGITS - MAX_FRACTION_DIGITS:
        raise BadRecord(
            f"field {name!r} exceeds {MAX_DECIMAL_DIGITS - MAX_FRACTION_DIGITS} integer or "
            f"{MAX_FRACTION_DIGITS} fractional digits"
        )
    return value


def amount(obj: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    raw = _get(obj, name, required)
    if raw is None:
        return None
    return decimal_value(raw, name, positive=required)


def ip_address(obj: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = _get(obj, name, required)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 45:
        raise BadRecord(f"field {name!r} must be an IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadRecord(f"field {name!r} is not an IP address: {value!r}") from None


def req_ip(obj: dict[str, Any], name: str) -> str:
    value = ip_address(obj, name)
    assert value is not None
    return value


def country(obj: dict[str, Any], name: str) -> str | None:
    value = _get(obj, name, False)
    if value is None:
        return None
    if not isinstance(value, str) or not _COUNTRY.match(value.upper()):
        raise BadRecord(f"field {name!r} must be a two-letter ISO 3166 country code")
    return value.upper()


def asset(obj: dict[str, Any], name: str) -> str:
    value = _get(obj, name, True)
    if not isinstance(value, str) or not _ASSET.match(value):
        raise BadRecord(f"field {name!r} must be an asset code such as BTC (2-16 A-Z/0-9)")
    return value


def iso_date(obj: dict[str, Any], name: str) -> str | None:
    value = text(obj, name, 10, required=False)
    if value is None:
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        raise BadRecord(f"field {name!r} must be a date YYYY-MM-DD") from None
    return value


def email(obj: dict[str, Any], name: str) -> str:
    value = req_text(obj, name, 254)
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise BadRecord(f"field {name!r} is not an email address")
    return value


def totp_secret(obj: dict[str, Any], name: str) -> str | None:
    value = text(obj, name, 128, required=False)
    if value is None:
        return None
    cleaned = value.replace(" ", "").upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise BadRecord(f"field {name!r} must be a base32 TOTP secret") from None
    if len(raw) * 8 < 160:
        raise BadRecord(f"field {name!r} must carry at least 160 bits (RFC 4226)")
    return cleaned


def choice(obj: dict[str, Any], name: str, allowed: frozenset[str]) -> str:
    value = _get(obj, name, True)
    if value not in allowed:
        raise BadRecord(f"field {name!r} must be one of {', '.join(sorted(allowed))}")
    assert isinstance(value, str)
    return value


def json_object(obj: dict[str, Any], name: str, max_keys: int = 32) -> dict[str, Any] | None:
    value = _get(obj, name, False)
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > max_keys:
        raise BadRecord(f"field {name!r} must be an object of at most {max_keys} entries")
    return value
