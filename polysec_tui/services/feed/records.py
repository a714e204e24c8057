"""Validation of one ingested record: each function returns a clean value or raises
`BadRecord` with a one-line reason that names the field. Kept free of I/O so it is cheap
per line.

The input is a hostile platform feed, so validation is total: every function first
checks the JSON type of its field (`_present`, one place), then its content, and accepts
only what every supported database stores as given (no NUL or lone surrogate in text,
lengths within the column, numbers within NUMERIC(38,18), times within a window around
the runtime's clock, JSON that MariaDB's and PostgreSQL's JSON types accept). Nothing
else may be raised for any value a JSON parser can produce. A reason quotes input only
through `quote`: cut short, with control and invisible characters shown as escapes.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from polysec_tui.text import visible


class BadRecord(ValueError):
    """A record that cannot be ingested; the message is the reason shown to the user."""


# Times: nothing before 2000 (no platform event is that old; a zero or epoch default is
# a bug upstream), nothing more than a day after the runtime's clock (clock skew allowed).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)

MAX_ID = 64
MAX_INTEGER_DIGITS = 20  # NUMERIC(38, 18): 20 integer and 18 fractional digits
MAX_FRACTION_DIGITS = 18
MAX_DECIMAL_DIGITS = MAX_INTEGER_DIGITS + MAX_FRACTION_DIGITS
# JSON objects stored in a JSON column (security-event details). MariaDB's JSON
# functions refuse nesting deeper than 32; PostgreSQL's jsonb refuses NUL and lone
# surrogates; neither accepts NaN or Infinity.
MAX_JSON_DEPTH = 8
QUOTE_LIMIT = 40

_ASSET = re.compile(r"[A-Z0-9]{2,16}\Z")
_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]+))?\Z")  # ASCII digits only: [0-9] is a range
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_FINITE = frozenset({"nan", "snan", "inf", "infinity"})


def _country_codes() -> frozenset[str]:
    listing = resources.files("polysec_tui.data").joinpath("iso3166-1-alpha2.txt")
    codes = {
        line.split("\t", 1)[0]
        for line in listing.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    # XK: Kosovo, user-assigned but what the EU and the IP geolocation databases use.
    return frozenset(codes | {"XK"})


COUNTRY_CODES = _country_codes()
UNKNOWN_COUNTRY = "ZZ"  # "unknown or unspecified": stored as no country (NULL)


@dataclass(frozen=True, slots=True)
class Window:
    """What the present is for one ingest run: the earliest and latest acceptable time
    and the last acceptable date of birth."""

    earliest: datetime
    latest: datetime
    today: date

    @classmethod
    def around(cls, now: datetime) -> Window:
        now = now.astimezone(UTC)
        return cls(EARLIEST, now + FUTURE_SLACK, now.date())


# ------------------------------------------------------------------------------ helpers

_JSON_TYPES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               list: "a list", dict: "an object", type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON type of a value, for a reason: "a list", "an object"..."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def quote(value: str, limit: int = QUOTE_LIMIT) -> str:
    """Input quoted in a reason: at most `limit` characters, every control, bidi or
    invisible character shown as an escape (`text.visible`), the cut marked."""
    shown = f"'{visible(value[:limit])}'"
    if len(value) > limit:
        shown += f"... ({len(value)} characters)"
    return shown


def _present(obj: dict[str, Any], name: str, required: bool, kind: type | tuple[type, ...],
             expected: str) -> Any:
    """The field's value if present and of the JSON type `kind` (exactly: a bool is not
    an integer), None if absent or null and not required; else BadRecord. The one place
    where every field's JSON type is checked before its content is looked at."""
    value = obj.get(name)
    if value is None:
        if required:
            raise BadRecord(f"field {name!r} is required")
        return None
    if not (type(value) in kind if isinstance(kind, tuple) else type(value) is kind):
        raise BadRecord(f"field {name!r} must be {expected}, not {json_type(value)}")
    return value


def check_text(name: str, value: str, max_len: int) -> str:
    """Content checks of a string the databases must store unchanged."""
    if len(value) > max_len:
        raise BadRecord(f"field {name!r} is longer than {max_len} characters ({len(value)})")
    if "\x00" in value:
        raise BadRecord(f"field {name!r} contains a NUL character")
    if not value.isascii() and _SURROGATE.search(value):
        raise BadRecord(f"field {name!r} is not valid Unicode (a lone surrogate)")
    return value


# ------------------------------------------------------------------------------ fields


def text(obj: dict[str, Any], name: str, max_len: int, *, required: bool = True) -> str | None:
    value = _present(obj, name, required, str, "a string")
    if value is None:
        return None
    if required and not value.strip():
        raise BadRecord(f"field {name!r} must not be empty")
    return check_text(name, value, max_len)


def req_text(obj: dict[str, Any], name: str, max_len: int) -> str:
    value = text(obj, name, max_len)
    assert value is not None
    return value


def is_ident(value: Any) -> bool:
    """1-64 printable ASCII characters, no space: what an id must be."""
    return (type(value) is str and 0 < len(value) <= MAX_ID and value.isascii()
            and value.isprintable() and " " not in value)


def ident(obj: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A platform identifier (`id`, `account`, `login_id`): 1-64 printable ASCII
    characters without spaces. Ids are keys and are shown to officers: no look-alike
    (invisible, bidi, other scripts) and none that a case- or accent-insensitive
    collation (MariaDB's default) would fold onto another in more than case."""
    value: str | None = _present(obj, name, required, str, "a string")
    if value is None or is_ident(value):
        return value
    if not value:
        raise BadRecord(f"field {name!r} must not be empty")
    if len(value) > MAX_ID:
        raise BadRecord(f"field {name!r} is longer than {MAX_ID} characters ({len(value)})")
    raise BadRecord(
        f"field {name!r} must be printable ASCII without spaces: {quote(value)}"
    )


def req_ident(obj: dict[str, Any], name: str) -> str:
    value = ident(obj, name)
    assert value is not None
    return value


def in_window(name: str, value: datetime, window: Window, raw: str) -> datetime:
    """An aware time within the window, in UTC. Compared before conversion: converting
    year 1 or 9999 with an offset would overflow."""
    if value < window.earliest:
        raise BadRecord(f"field {name!r} is before {window.earliest:%Y-%m-%d}: {quote(raw)}")
    if value > window.latest:
        raise BadRecord(f"field {name!r} is more than a day in the future: {quote(raw)}")
    return value.astimezone(UTC)


def timestamp(obj: dict[str, Any], name: str, window: Window, *,
              required: bool = True) -> datetime | None:
    value = _present(obj, name, required, str, "an ISO 8601 time string")
    if value is None:
        return None
    try:
        if len(value) > 40:
            raise ValueError
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRecord(f"field {name!r} is not an ISO 8601 time: {quote(value)}") from None
    if parsed.tzinfo is None:
        raise BadRecord(f"field {name!r} has no time zone (add Z or +00:00): {quote(value)}")
    return in_window(name, parsed, window, value)


def req_timestamp(obj: dict[str, Any], name: str, window: Window) -> datetime:
    value = timestamp(obj, name, window)
    assert value is not None
    return value


def boolean(obj: dict[str, Any], name: str) -> bool:
    value: bool = _present(obj, name, True, bool, "true or false")
    return value


def integer(obj: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value: int | None = _present(obj, name, False, int, f"an integer from {lo} to {hi}")
    if value is not None and not lo <= value <= hi:
        raise BadRecord(f"field {name!r} must be an integer from {lo} to {hi}")
    return value


def number(obj: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = _present(obj, name, False, (float, int), f"a number from {lo} to {hi}")
    if value is None:
        return None
    if not lo <= value <= hi:  # False for NaN; a huge integer compares without overflow
        raise BadRecord(f"field {name!r} must be a number from {lo} to {hi}")
    return float(value)


def decimal_value(raw: Any, name: str, *, positive: bool) -> Decimal:
    """A decimal string: ASCII digits with at most one '.', digits on both sides; no
    sign, exponent, '_', space or other script's digits. Within NUMERIC(38, 18)."""
    if type(raw) is not str:
        raise BadRecord(
            f"field {name!r} must be a decimal string such as \"0.25\", not {json_type(raw)}"
        )
    match = _DECIMAL.match(raw)
    if match is None:
        if raw[:1] == "-" and _DECIMAL.match(raw[1:]):
            raise BadRecord(f"field {name!r} must be {'positive' if positive else 'zero or more'}")
        if raw.lstrip("+-").lower() in _NON_FINITE:
            raise BadRecord(f"field {name!r} must be finite")
        raise BadRecord(
            f"field {name!r} is not a decimal number (ASCII digits and at most one '.'): "
            f"{quote(raw)}"
        )
    whole, fraction = match.group(1).lstrip("0"), match.group(2) or ""
    if len(fraction) > MAX_FRACTION_DIGITS or len(whole) > MAX_INTEGER_DIGITS:
        raise BadRecord(
            f"field {name!r} exceeds {MAX_INTEGER_DIGITS} integer or "
            f"{MAX_FRACTION_DIGITS} fractional digits"
        )
    value = Decimal(raw)
    if positive and not value:
        raise BadRecord(f"field {name!r} must be positive")
    return value


def amount(obj: dict[str, Any], name: str, *, required: bool = True) -> Decimal | None:
    raw = obj.get(name)
    if raw is None:
        if required:
            raise BadRecord(f"field {name!r} is required")
        return None
    return decimal_value(raw, name, positive=required)


def ip_address(obj: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """IPv4 or IPv6, stored in canonical form. No zone id (``fe80::1%eth0``): it names
    an interface of the platform's host, not where a client came from."""
    value = _present(obj, name, required, str, "an IP address string")
    if value is None:
        return None
    if "%" in value[:46]:
        raise BadRecord(f"field {name!r} is a scoped IPv6 address (no %zone allowed): "
                        f"{quote(value)}")
    try:
        if len(value) > 45:
            raise ValueError
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadRecord(f"field {name!r} is not an IP address: {quote(value)}") from None


def req_ip(obj: dict[str, Any], name: str) -> str:
    value = ip_address(obj, name)
    assert value is not None
    return value


def country(obj: dict[str, Any], name: str) -> str | None:
    """An ISO 3166-1 alpha-2 code (either case), stored upper-case; ZZ (unknown) is
    stored as no country, which is what the detectors read as unknown."""
    value = _present(obj, name, False, str, "a two-letter ISO 3166-1 country code")
    if value is None:
        return None
    code = value.upper() if value.isascii() else ""  # "ß".upper() is "SS"
    if code == UNKNOWN_COUNTRY:
        return None
    if code not in COUNTRY_CODES:
        raise BadRecord(f"field {name!r} must be a two-letter ISO 3166-1 country code: "
                        f"{quote(value)}")
    return code


def asset_code(value: Any, name: str) -> str:
    if type(value) is not str:
        raise BadRecord(f"field {name!r} must be an asset code string, not {json_type(value)}")
    if not _ASSET.match(value):
        raise BadRecord(f"field {name!r} must be an asset code such as BTC (2-16 A-Z/0-9): "
                        f"{quote(value)}")
    return value


def asset(obj: dict[str, Any], name: str) -> str:
    return asset_code(_present(obj, name, True, str, "an asset code string"), name)


def date_of_birth(obj: dict[str, Any], name: str, window: Window) -> str | None:
    value: str | None = _present(obj, name, False, str, "a date string YYYY-MM-DD")
    if value is None:
        return None
    try:
        if not _DATE.match(value):
            raise ValueError
        born = date.fromisoformat(value)
    except ValueError:
        raise BadRecord(f"field {name!r} must be a date YYYY-MM-DD: {quote(value)}") from None
    if born > window.today:
        raise BadRecord(f"field {name!r} is in the future: {quote(value)}")
    return value


def email(obj: dict[str, Any], name: str) -> str:
    value = req_text(obj, name, 254)
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise BadRecord(f"field {name!r} is not an email address: {quote(value)}")
    return value


def totp_secret(obj: dict[str, Any], name: str) -> str | None:
    value = text(obj, name, 128, required=False)
    if value is None:
        return None
    cleaned = value.replace(" ", "").upper()
    try:
        if not value.isascii():  # checked before upper(): "ß".upper() is "SS"
            raise ValueError
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise BadRecord(f"field {name!r} must be a base32 TOTP secret") from None
    if len(raw) * 8 < 160:
        raise BadRecord(f"field {name!r} must carry at least 160 bits (RFC 4226)")
    return cleaned


def choice(obj: dict[str, Any], name: str, allowed: frozenset[str]) -> str:
    value: str = _present(obj, name, True, str, "a string")
    if value not in allowed:
        raise BadRecord(f"field {name!r} is {quote(value)}, not one of "
                        f"{', '.join(sorted(allowed))}")
    return value


def json_object(obj: dict[str, Any], name: str, max_keys: int = 32) -> dict[str, Any] | None:
    value: dict[str, Any] | None = _present(obj, name, False, dict,
                                            f"an object of at most {max_keys} entries")
    if value is not None and len(value) > max_keys:
        raise BadRecord(f"field {name!r} must be an object of at most {max_keys} entries")
    return value


def json_document(obj: dict[str, Any], name: str, *, max_keys: int = 32,
                  max_bytes: int = 4096) -> dict[str, Any] | None:
    """An object stored as given in a JSON column: at most `max_keys` entries, nesting
    `MAX_JSON_DEPTH`, `max_bytes` serialised; strings without NUL or lone surrogates,
    finite numbers. Walked without recursion."""
    value = json_object(obj, name, max_keys)
    if value is None:
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth > MAX_JSON_DEPTH:
                raise BadRecord(f"field {name!r} is nested deeper than {MAX_JSON_DEPTH} levels")
            if kind is dict:
                for key, inner in item.items():
                    _json_string(name, key)
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)
        elif kind is str:
            _json_string(name, item)
        elif kind is float:
            if not math.isfinite(item):
                raise BadRecord(f"field {name!r} holds a number that is not finite")
        elif kind is int:
            if not -(2**63) <= item < 2**64:
                raise BadRecord(f"field {name!r} holds an integer beyond 64 bits")
        elif item is not None and kind is not bool:
            raise BadRecord(f"field {name!r} holds {json_type(item)}, which is not JSON")
        if len(stack) > max_bytes:  # every value takes at least a byte
            raise BadRecord(f"field {name!r} is larger than {max_bytes} bytes")
    if len(json.dumps(value)) > max_bytes:
        raise BadRecord(f"field {name!r} is larger than {max_bytes} bytes")
    return value


def _json_string(name: str, value: Any) -> None:
    if type(value) is not str:
        raise BadRecord(f"field {name!r} has a key that is {json_type(value)}, not a string")
    if "\x00" in value:
        raise BadRecord(f"field {name!r} contains a NUL character")
    if not value.isascii() and _SURROGATE.search(value):
        raise BadRecord(f"field {name!r} is not valid Unicode (a lone surrogate)")
