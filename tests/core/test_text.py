"""The one sanitiser of untrusted text (polysec_tui.text): every control, C1, bidi,
invisible or unassigned character is shown as its escape, never acted on and never
silently removed; JSON output carries the same characters as ASCII escapes."""

from __future__ import annotations

import json
import random

import pytest

from polysec_tui.text import json_escape_hidden, printable, unvisible, visible, visible_lines


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain", "plain"),
    ("a\x1b[1;31mb\x1b[0m", "a\\x1b[1;31mb\\x1b[0m"),
    ("t\ttab\nline\rcr", "t\\ttab\\nline\\rcr"),
    ("bell\x07nul\x00del\x7fc1\x9bx", "bell\\x07nul\\x00del\\x7fc1\\x9bx"),
    ("osc52\x1b]52;c;cHduZWQ=\x07", "osc52\\x1b]52;c;cHduZWQ=\\x07"),
    ("bidi\u202egnp.exe", "bidi\\u202egnp.exe"),
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("cgj\u034fvs\ufe0ffill\u3164", "cgj\\u034fvs\\ufe0ffill\\u3164"),  # render as nothing
    ("nb\u00a0sp\u2009thin\u3000wide", "nb\\xa0sp\\u2009thin\\u3000wide"),  # look like a space
    ("tag\U000e0041s", "tag\\U000e0041s"),
    ("lone\ud800", "lone\\ud800"),
    ("back\\slash \\x1b", "back\\\\slash \\\\x1b"),  # never mistaken for an escape
    ("José Ñandú 北京 🚀", "José Ñandú 北京 🚀"),  # ordinary letters and symbols stay
    (None, ""),
])
def test_visible(raw: object, shown: str) -> None:
    assert visible(raw) == shown
    # The console's printable: the same escapes, a backslash left single, idempotent.
    once = printable(raw)
    assert once == shown.replace("\\\\", "\\") and printable(once) == once


def test_two_values_that_differ_by_a_hidden_character_are_seen_to_differ() -> None:
    rng = random.Random(16)
    alphabet = [chr(c) for c in (*range(0, 0x80), 0x85, 0x9b, 0xa0, 0xad, 0x34f, 0x200b,
                                 0x200e, 0x202e, 0x2066, 0x3000, 0xfe0f, 0xfeff, 0xd800,
                                 0xe0041, 0xe0100)] + ["é", "\\"]
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 10)))
        shown = visible(value)
        assert shown.isprintable() and unvisible(shown) == value, repr(value)


def test_visible_lines_keeps_line_breaks_and_single_backslashes() -> None:
    field = visible("evil\nline \\ ")
    assert visible_lines(f"a {field}\nb\x1b[2J\u202e") == "a evil\\nline \\\\ \nb\\x1b[2J\\u202e"


def test_printable_cuts_to_a_width() -> None:
    assert printable("x" * 10, limit=5) == "xxxx…"


def test_json_escapes_what_a_terminal_could_act_on() -> None:
    doc = {"name": "a\x1b]52;c;x\x07\u0085\u202e\U000e0041 é\ud800"}
    text = json_escape_hidden(json.dumps(doc, ensure_ascii=False))
    assert text.isascii() or all(ch.isprintable() for ch in text)
    assert "\\u001b" in text and "\\u0085" in text and "\\u202e" in text
    assert "\\udb40\\udc41" in text and "\\ud800" in text and "é" in text
    assert json.loads(text) == doc
    text.encode("utf-8")  # a lone surrogate can no longer stop the output


def test_durations_and_counts_read_as_a_person_writes_them() -> None:
    from polysec_tui.text import fmt_count, fmt_duration

    assert [fmt_duration(s) for s in (0, 45, 180, 451.0002, 1500, 7500, 90000)] == [
        "0 s", "45 s", "3 min", "7 min 31 s", "25 min", "2 h 5 min", "1 d 1 h"]
    assert [fmt_count(v) for v in (1.5, 158489.3, 1000, 12345678)] == [
        "1.5", "158,000", "1,000", "12,300,000"]


def test_an_empty_map_says_so_and_no_latitude_passes_a_pole() -> None:
    from polysec_tui.screens.charts import location_map

    empty = location_map([], 40, 8).plain.splitlines()[-1]
    assert "no login with a known place" in empty and "°" not in empty
