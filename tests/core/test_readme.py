"""The README's short tour stays true: every command it names exists with every option
it shows, names every option its command requires, and the read-only ones run (exit 0)
against a demo database, logged in as the demo's admin."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from polysec_tui.cli import cli
from tests.support import ROOT
from tests.support.cli import run_cli

TOUR_HEADING = "## A short tour"
GLOBAL_OPTIONS = {"--db", "--keyring", "--config"}
# Read-only commands of the tour, run as they are written (placeholders need values).
SAFE = ["status --json", "alerts list", "alerts snoozes", "rules report",
        "withdrawals list", "approvals list", "incidents list", "logins anomalies",
        "blocklist list", "auditlog verify", "keys status", "backup list", "work",
        "officer list", "whoami", "keys-help --json", "db current"]


def tour_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(TOUR_HEADING, 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = []
    for raw in block.splitlines():
        line = raw.split("  #", 1)[0].strip()
        if line.startswith("polysec "):
            lines.append(line)
    return lines


def invocations(line: str) -> Iterator[tuple[list[str], list[str]]]:
    """(command path, the words after it) for each alternative a tour line names:
    ``polysec officer list | disable NAME`` is two, ``add|remove ADDR`` two more."""
    words = shlex.split(line.replace("<", " "))[1:]
    while words and words[0] in GLOBAL_OPTIONS:
        words = words[2:]
    group_name, rest = words[0], " ".join(words[1:])
    group = cli.get_command(click.Context(cli), group_name)
    assert group is not None, f"README names `polysec {group_name}`, which does not exist"
    if not isinstance(group, click.Group):
        yield [group_name], shlex.split(rest)
        return
    for alternative in re.split(r" \| ", rest):
        parts = alternative.split()
        if not parts:
            continue
        for name in parts[0].split("|"):
            yield [group_name, name], parts[1:]


def command_of(path: list[str]) -> click.Command:
    command: click.Command | None = cli
    for name in path:
        assert isinstance(command, click.Group), path
        command = command.get_command(click.Context(command), name)
        assert command is not None, f"README names `polysec {' '.join(path)}`"
    assert command is not None
    return command


@pytest.mark.parametrize("line", tour_lines())
def test_every_tour_command_and_option_exists(line: str) -> None:
    for path, words in invocations(line):
        command = command_of(path)
        known = {o for p in command.params for o in getattr(p, "opts", [])}
        named = {w.split("=", 1)[0] for w in words if w.startswith("--")}
        assert named <= known, (line, path, sorted(named - known))
        # Every option the command cannot run without is shown.
        required = {p.opts[0] for p in command.params
                    if isinstance(p, click.Option) and p.required}
        alternatives = {o for p in command.params if isinstance(p, click.Option)
                        and p.required for o in p.opts}
        shown = named & alternatives
        assert len(shown) >= len(required), (line, path, sorted(required))


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> None:
    """A small demo database as the configured one, ada logged in."""
    import pyotp

    from polysec_tui.config import resolve_settings
    from polysec_tui.db.models import Officer
    from polysec_tui.services.officers import sessions
    from polysec_tui.services.runtime import open_runtime
    from polysec_tui.synthetic.demo import DEMO_OFFICERS

    for name in ("POLYSEC_DB_URL", "POLYSEC_KEYRING", "POLYSEC_CONFIG", "POLYSEC_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    made = run_cli(capsys, "demo", "--no-tui", "--accounts", "50", "--days", "5")
    assert made.code == 0, made.err
    settings = resolve_settings(None, None, None).for_demo()
    monkeypatch.setenv("POLYSEC_DB_URL", settings.db_url)
    monkeypatch.setenv("POLYSEC_KEYRING", str(settings.keyring_path))
    rt = open_runtime(settings)
    try:
        name, _role, password = DEMO_OFFICERS[-1]
        with rt.sessions() as s:
            ada = s.query(Officer).filter(Officer.name == name).one()
            secret = sessions.officer_secret(rt, ada)
        assert secret is not None
        token, _ = sessions.login(rt, name, password, pyotp.TOTP(secret).now())
    finally:
        rt.engine.dispose()
    monkeypatch.setenv("POLYSEC_TOKEN", token)


def test_the_read_only_tour_commands_run_on_the_demo(demo_env: None,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    tour = " ".join(tour_lines())
    for command in SAFE:
        assert command.split()[0] in tour, f"{command} is not in the tour any more"
        result = run_cli(capsys, *command.split())
        assert result.code == 0, (command, result.err)
