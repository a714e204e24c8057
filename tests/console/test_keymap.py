"""Remapped keys: `[keys]` in the configuration rebinds any console binding by its id
(for terminals that swallow a key); `polysec keys-help` lists the effective bindings."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from polysec_tui.app import DESTINATIONS, PolysecApp, binding_catalogue
from polysec_tui.errors import InputError
from polysec_tui.services.runtime import Runtime
from tests.support.cli import run_cli
from tests.support.tui import Session, idle, sync

REMAP = {"app.show.withdrawals": "f4", "app.keys": "f2", "queue.reject-marked": "ctrl+x"}


def remapped(runtime: Runtime, keys: Mapping[str, object]) -> Runtime:
    settings = dataclasses.replace(runtime.settings,
                                   options={**runtime.settings.options, "keys": keys})
    return Runtime(settings, runtime.engine, runtime.keyring, clock=runtime.clock)


@sync
async def test_a_remapped_key_moves_the_binding(snapshot_runtime: Runtime,
                                                snapshot_officer: Session) -> None:
    from polysec_tui.screens.keyhelp import KeyHelpScreen
    from polysec_tui.screens.withdrawals import WithdrawalQueueScreen

    app = PolysecApp(remapped(snapshot_runtime, REMAP), session=snapshot_officer)
    async with app.run_test(size=(160, 40)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS["withdrawals"].key)  # "4" no longer goes there
        await idle(pilot)
        assert not isinstance(app.screen, WithdrawalQueueScreen)
        await pilot.press("f4")
        await idle(pilot)
        assert isinstance(app.screen, WithdrawalQueueScreen)
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, KeyHelpScreen)
        keys = {line.description: line.keys for _t, lines in app.screen.groups
                for line in lines}
        assert keys["Reject marked"] == "^x" and keys["Withdrawals"] == "f4"


def test_every_binding_has_an_id_a_description_and_a_tooltip() -> None:
    catalogue = binding_catalogue(PolysecApp, {})
    assert len(catalogue) > 80
    for info in catalogue:
        assert info.description and info.tooltip, info
    assert {"app.show.withdrawals", "queue.reject-marked", "console.back"} <= {
        i.id for i in catalogue}


def test_keys_help_lists_the_effective_bindings(cli_env: dict[str, str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "polysec.toml"
    config.write_text('[keys]\n"app.show.withdrawals" = "f4"\n"queue.reject-marked" = '
                      '" ctrl+x , ctrl+r "\n')
    monkeypatch.setenv("POLYSEC_CONFIG", str(config))
    doc = json.loads(run_cli(capsys, "keys-help", "--json").out)
    by_id = {b["id"]: b for b in doc}
    assert (by_id["app.show.withdrawals"]["keys"], by_id["app.show.withdrawals"]["default"]) \
        == ("f4", "4")
    assert by_id["queue.reject-marked"]["keys"] == "ctrl+x,ctrl+r"
    assert by_id["console.back"]["where"] == "ConsoleScreen"
    text = run_cli(capsys, "keys-help").out
    assert any(line.startswith("app.show.withdrawals") and "(remapped)" in line
               for line in text.splitlines())
    config.write_text('[keys]\n"queue.nope" = "x"\n')
    unknown = run_cli(capsys, "keys-help")
    assert unknown.code == 2 and "queue.nope" in unknown.err
    assert unknown.err.count("\n") == 1
    config.write_text('[keys]\n"queue.sort" = 3\n')
    malformed = run_cli(capsys, "keys-help")
    assert malformed.code == 2 and "[keys] queue.sort must be keys" in malformed.err


def test_a_malformed_keymap_stops_the_console_with_one_line(snapshot_runtime: Runtime
                                                          ) -> None:
    with pytest.raises(InputError, match=r"\[keys\] app.keys must be keys"):
        PolysecApp(remapped(snapshot_runtime, {"app.keys": ",,"}))
