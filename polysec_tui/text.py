"""Untrusted text made safe to show: the one place that decides what reaches a terminal.

Everything that comes from the platform (names, addresses, user agents, report text)
or from an input file is untrusted. A terminal acts on control characters (ESC starts
CSI and OSC sequences: clear the screen, write the clipboard with OSC 52, set the
title), on C1 controls (0x80-0x9f, the 8-bit forms of the same) and on a bare CR; and a
reader is misled by bidirectional overrides, zero-width and other invisible format
characters. None of these is removed: each is shown as its escape (``\\x1b``,
``\\u202e``), so that two values that differ by a hidden character are seen to differ.

- `printable` (the console, and text the services prepare for it) escapes the hidden
  characters, a line break included, and cuts to a width. It is idempotent: text that
  passed it once passes again unchanged, so a value sanitised by a service and again by
  a widget is not escaped twice.
- `visible` (a value the CLI prints) also doubles a backslash, so that the escape of ESC
  and the four characters ``\\x1b`` never look the same and `unvisible` reads the exact
  value back (an address typed as polysec showed it).
- `visible_lines` is the CLI's last pass over all it writes: like `printable`, but the
  line breaks the program wrote stay.

Amounts are shown by `fmt_amount`: the exact decimal, without NUMERIC(38,18)'s padding
and never in exponent notation.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Context, Decimal

# Unicode categories a terminal or a reader could act on: controls, format characters
# (bidi marks, overrides and isolates, zero-width characters, BOM), surrogates (a lone
# one cannot even be encoded), line and paragraph separators, unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})
# Unicode's Default_Ignorable_Code_Point characters that are not format characters
# (combining grapheme joiner, variation selectors, Hangul fillers...), which render as
# nothing, and the spaces other than U+0020, which look like it: shown as escapes too.
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U000e0100-\U000e01ef"
    "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}
_WHITESPACE = "\t\n\r"
# A fast test for the common case: printable ASCII without a backslash.
_PLAIN = re.compile(r"[ -\[\]-~]*")


def _escape(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    return _escape_hidden(ch)


def _escape_hidden(ch: str) -> str:
    if ch in _WHITESPACE:
        return _SHORT[ch]
    if ch == " " or (unicodedata.category(ch) not in _HIDDEN_CATEGORIES
                     and not _IGNORABLE.match(ch)):
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_hidden(ch: str) -> bool:
    """True for one character a terminal could act on or a reader could miss: one that
    `printable` shows as an escape (a backslash is not hidden)."""
    return _escape_hidden(ch) != ch


def visible(value: object) -> str:
    """``value`` as one line in which every control, C1, bidi, invisible or unassigned
    character is shown as its escape and a backslash is doubled."""
    text = "" if value is None else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "".join(map(_escape, text))


_PLAIN_LINES = re.compile(r"[ -~\n]*")
_PLAIN_ANY = re.compile(r"[ -~]*")


def visible_lines(text: str) -> str:
    """The CLI's last pass over everything it writes: every hidden character shown as
    its escape, but the line breaks the program wrote stay, and a backslash stays single
    (values inside may have been through `visible` already)."""
    if _PLAIN_LINES.fullmatch(text):
        return text
    return "".join(ch if ch == "\n" else _escape_hidden(ch) for ch in text)


_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([tnr\\]))")
_SHORT_BACK = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def unvisible(text: str) -> str:
    """The value `visible` showed as ``text``: what an officer copies from the console
    or the CLI types back into a command (``\\x1b`` is ESC, ``\\\\`` a backslash)."""
    if "\\" not in text:
        return text

    def back(match: re.Match[str]) -> str:
        hex_ = match.group(1) or match.group(2) or match.group(3)
        if hex_:
            code = int(hex_, 16)
            return chr(code) if code <= 0x10FFFF else match.group()
        return _SHORT_BACK[match.group(4)]

    return _ESCAPE.sub(back, text)


def printable(value: object, *, limit: int = 512) -> str:
    """``value`` on one line with every hidden character as its escape, at most
    ``limit`` characters (an ellipsis marks the cut); idempotent. The result is still
    untrusted: render it as literal text, never as markup."""
    text = "" if value is None else str(value)
    if not _PLAIN_ANY.fullmatch(text):
        text = "".join(map(_escape_hidden, text))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


_NON_ASCII = re.compile(r"[^\x00-\x7e]")


def _json_escape(match: re.Match[str]) -> str:
    ch = match.group()
    if not is_hidden(ch):
        return ch
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes an astral character as its UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_escape_hidden(document: str) -> str:
    """A JSON text (from ``json.dumps(..., ensure_ascii=False)``) in which DEL, C1
    controls, bidi and invisible characters and lone surrogates are ASCII escapes. The
    encoder escapes C0 controls itself; every other non-ASCII character can only stand
    inside a JSON string, where ``\\uXXXX`` means the same character."""
    return _NON_ASCII.sub(_json_escape, document)


# Wide enough for NUMERIC(38, 18): the default context (28 digits) would round.
_EXACT = Context(prec=60)


def canonical_decimal(value: Decimal) -> Decimal:
    """Drop the zero padding of NUMERIC(38,18) without switching to exponent notation:
    1.500000000000000000 -> 1.5, 100.000 -> 100."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=_EXACT)
    return value.normalize(_EXACT)


def fmt_amount(value: Decimal) -> str:
    """An amount as an officer reads it: exact, no padding, no exponent."""
    return format(canonical_decimal(value), "f")


def fmt_money(value: Decimal, currency: str) -> str:
    """A value in a reference currency: ``12,621.00 USD``."""
    return f"{value:,.2f} {currency}"


def fmt_minute(at: datetime | None, *, utc: bool = False) -> str:
    """A time to the minute (``2026-12-03 14:05``, with `` UTC`` if asked), ``-`` for none."""
    if at is None:
        return "-"
    return f"{at:%Y-%m-%d %H:%M}" + (" UTC" if utc else "")


def fmt_duration(seconds: float) -> str:
    """A duration as a person says it: ``45 s``, ``7 min 31 s``, ``25 min``, ``2 h 5 min``,
    ``3 d 4 h``; rounded to what matters at its size, never a raw float."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes >= 10 or (minutes and not secs):
        return f"{minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def fmt_count(value: float) -> str:
    """A large ratio or score rounded to three significant digits: ``158,000``."""
    if value < 1000:
        return f"{value:,.3g}" if value < 100 else f"{value:,.0f}"
    digits = len(str(int(value))) - 3
    return f"{round(value, -digits):,.0f}"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
