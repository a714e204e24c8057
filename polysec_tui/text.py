"""Untrusted text made safe to show: the one place that decides what reaches a terminal.

Everything that comes from the platform (names, addresses, user agents, report text)
or from an input file is untrusted. A terminal acts on control characters (ESC starts
CSI and OSC sequences: clear the screen, write the clipboard with OSC 52, set the
title), on C1 controls (0x80-0x9f, the 8-bit forms of the same) and on a bare CR; and a
reader is misled by bidirectional overrides, zero-width and other invisible format
characters. None of these is removed: each is shown as its escape (``\\x1b``,
``\\u202e``), so that two values that differ by a hidden character are seen to differ,
and a backslash is doubled so that the escape of ESC and the four characters ``\\x1b``
never look the same.

`visible` is for one value (a line break inside it is shown as ``\\n``); the CLI's
output function passes whole lines through `visible_lines`, which keeps the line breaks
the program itself writes. `printable` is `visible` cut to a width, for tables.
"""

from __future__ import annotations

import re
import unicodedata

# Unicode categories a terminal or a reader could act on: controls, format characters
# (bidi marks, overrides and isolates, zero-width characters, BOM), surrogates (a lone
# one cannot even be encoded), line and paragraph separators, unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Cn"})
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}
# A fast test for the common case: printable ASCII without a backslash.
_PLAIN = re.compile(r"[ -\[\]-~]*")


def _escape(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    if ch == " " or unicodedata.category(ch) not in _HIDDEN_CATEGORIES:
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_hidden(ch: str) -> bool:
    """True for one character that `visible` would show as an escape."""
    return _escape(ch) != ch


def visible(value: object) -> str:
    """``value`` as one line in which every control, C1, bidi, invisible or unassigned
    character is shown as its escape and a backslash is doubled."""
    text = "" if value is None else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "".join(map(_escape, text))


def visible_lines(text: str) -> str:
    """Like `visible`, but the line breaks stay line breaks: for whole blocks of output
    the program composed (fields inside them went through `visible` already)."""
    return "\n".join(visible(line) for line in text.split("\n"))


def printable(value: object, *, limit: int = 512) -> str:
    """`visible` text of at most ``limit`` characters (an ellipsis marks the cut). The
    result is still untrusted: render it as literal text, never as markup."""
    text = visible(value)
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
