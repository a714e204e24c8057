"""No terminal escape from platform data, anywhere in the CLI (issue 16): every text
line and JSON document a command writes carries control characters, C1 controls, bidi
overrides and invisible characters only as escapes, while the values stay exact (JSON
decodes to the stored value; an address typed as shown blocklists exactly that address).
On every engine."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import BlockedAddress
from polysec_tui.services.clients import incidents, protection
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import is_hidden, visible
from tests.support import FIXED_NOW, ROOT
from tests.support.cli import run_cli
from tests.support.helpers import account, ingest, login, withdrawal
from tests.support.officers import MovableClock, Staff, commands_use_clock, make_staff

# An OSC 52 clipboard write, a screen clear, a bare CR, a bidi override, a C1 control
# (NEL), a zero-width space, a backspace.
HOSTILE = "Eve\x1b]52;c;cHduZWQ=\x07\x1b[2J\rX\u202egnp.exe\u0085\u200bZ\x08"
ADDRESS = "bc1qevil\x1b[2J\u202e\u200b"
AGENT = "Mozilla\x1b]0;title\x07\x9b31m"


@pytest.fixture
def staff(settings, cli_env, monkeypatch) -> Iterator[Staff]:
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    ingest(rt, "accounts", account("A1", full_name=HOSTILE, address=HOSTILE))
    ingest(rt, "logins", login("L1", at="2026-11-20T10:00:00Z", user_agent=AGENT,
                               city=HOSTILE))
    ingest(rt, "withdrawals", withdrawal("W1", address=ADDRESS, address_label=HOSTILE))
    protection.report(rt, made.actors["sue"], "A1", "phone", HOSTILE)
    incidents.open_incident(rt, made.actors["sue"], title=HOSTILE, severity="high",
                            accounts=["A1"], note=HOSTILE)
    token, _ = made.login("sue")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    commands_use_clock(monkeypatch, clock)
    yield made
    rt.engine.dispose()


def assert_inert(output: str, where: str) -> None:
    hidden = sorted({repr(ch) for ch in output if ch != "\n" and is_hidden(ch)})
    assert not hidden, f"{where} wrote {', '.join(hidden)} to the terminal"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    result = run_cli(capsys, *args)
    assert result.code == 0, (args, result.err)
    where = "polysec " + " ".join(args)
    assert_inert(result.out, where)
    assert_inert(result.err, where + " (stderr)")
    return result.out


TEXT_COMMANDS = [
    ("accounts", "show", "A1"),
    ("accounts", "show", "A1", "--reveal", "full_name", "--reason", "client on the phone"),
    ("accounts", "show", "A1", "--reveal", "address", "--reason", "client on the phone"),
    ("logins", "timeline", "A1"),
    ("withdrawals", "list", "--status", "pending"),
    ("withdrawals", "show", "W1"),
    ("incidents", "list"),
    ("status",),
    ("alerts", "list"),
    ("twofa", "status", "A1"),
    ("auditlog", "tail", "-n", "50"),
]


def commands(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, ...]]:
    """TEXT_COMMANDS and `incidents show` of each incident (ids differ by engine)."""
    found = json.loads(run(capsys, "incidents", "list", "--json"))
    assert len(found) == 2
    return [*TEXT_COMMANDS, *(("incidents", "show", str(i["id"])) for i in found)]


def test_text_output_shows_every_hidden_character_as_an_escape(staff, capsys):
    shown = "\n".join(run(capsys, *args) for args in commands(capsys))
    # A table or aligned text for a person: never a Python dict or list printed raw.
    assert "{'" not in shown and "['" not in shown and "Decimal(" not in shown
    assert visible(HOSTILE) in shown  # the revealed name, exactly, escapes visible
    assert visible(ADDRESS) in shown  # the destination, never silently stripped


def test_json_output_escapes_them_and_decodes_to_the_stored_values(staff, capsys):
    for args in commands(capsys):
        if args[0] in ("auditlog",):
            continue
        out = run(capsys, *args, "--json")
        json.loads(out)
        assert "\u202e" not in out and "\x85" not in out and "\u200b" not in out
    revealed = json.loads(run(capsys, "accounts", "show", "A1", "--reveal", "full_name",
                              "--reason", "client on the phone", "--json"))
    assert revealed["value"] == HOSTILE
    shown = json.loads(run(capsys, "withdrawals", "show", "W1", "--json"))
    assert shown["address"] == ADDRESS


def test_an_address_typed_as_shown_blocklists_exactly_that_address(staff, capsys):
    added = run(capsys, "blocklist", "add", visible(ADDRESS), "--reason", "scam")
    assert added.startswith(visible(ADDRESS) + " blocklisted")
    with staff.rt.sessions() as s:
        assert s.scalars(select(BlockedAddress.address)).all() == [ADDRESS]
    # Another address that differs only by a hidden character is another entry.
    twin = ADDRESS.replace("\u200b", "")
    run(capsys, "blocklist", "add", twin, "--reason", "scam")
    listed = run(capsys, "blocklist", "list")
    assert visible(ADDRESS) in listed and f"{visible(twin)} " in listed
    assert {e["address"] for e in json.loads(run(capsys, "blocklist", "list", "--json"))} == {
        ADDRESS, twin}
    run(capsys, "blocklist", "add", " " + twin, "--reason", "a leading space is not trimmed")
    assert len(json.loads(run(capsys, "blocklist", "list", "--json"))) == 3


def test_error_lines_show_what_they_quote_inert(staff, capsys):
    result = run_cli(capsys, "withdrawals", "show", HOSTILE)
    assert result.code == 2
    assert_inert(result.err, "an error line")
    assert result.err.count("\n") == 1


def test_commands_write_through_the_one_output_function():
    """No command module writes to the terminal except through commands.common.echo,
    emit_json and prompt_secret (a confirmation's text goes through printable)."""
    commands = ROOT / "polysec_tui" / "commands"
    offenders = []
    for path in sorted(commands.glob("*.py")):
        if path.name == "common.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            direct = name in ("click.echo", "click.secho", "print", "sys.stdout.write",
                              "sys.stderr.write", "click.prompt")
            bare_confirm = name == "click.confirm" and not (
                node.args and ast.unparse(node.args[0]).startswith("printable("))
            if direct or bare_confirm:
                offenders.append(f"{path.name}:{node.lineno} {name}")
    assert not offenders, offenders


BAD_INPUT = [
    ("incidents", "show", "99999999999999999999"),
    ("auditlog", "show", "99999999999999999999999999"),
    ("withdrawals", "show", "99999999999999999999"),
    ("withdrawals", "list", "--offset", "9223372036854775808"),
    ("alerts", "ack", "anomaly:99999999999999999999"),
    ("alerts", "ack", "anomaly:²"),
    ("audit", "history", "--limit", "1" + "0" * 30),
    ("keys", "rotate", "--batch", "1" + "0" * 30),
    ("logins", "anomalies", "--since", "0001-01-01T00:00:00+01:00"),
    ("logins", "anomalies", "--since", "99999999999999999d"),
    ("--db", "postgresql://u@h:abc/db", "status"),
    ("--db", "sqlite:////proc/nope/x.db", "status"),
]


@pytest.mark.parametrize("args", BAD_INPUT, ids=lambda a: " ".join(a)[:40])
def test_bad_input_is_one_line_and_exit_2(staff, capsys, args):
    result = run_cli(capsys, *args)
    assert result.code == 2, (args, result.err)
    lines = result.err.strip().splitlines()
    assert lines and "internal error" not in result.err, result.err
    assert_inert(result.err, " ".join(args))


def test_a_blocklist_file_that_is_not_utf8_names_the_line(staff, capsys, tmp_path):
    feed = tmp_path / "list.txt"
    feed.write_bytes(b"bc1qfine\n\xff\xfe secret bytes\n")
    result = run_cli(capsys, "blocklist", "import", str(feed), "--reason", "feed")
    assert result.code == 2 and result.err.strip() == "polysec: error: line 2: not UTF-8"
