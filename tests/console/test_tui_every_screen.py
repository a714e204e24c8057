"""Every top-level screen at 80x24 and at 160x48, reached from the dashboard by its key,
on the same sample data (the snapshot database of tests.support.tui). The pictures are the
contract for the console's look; regenerate with --snapshot-update and look at them."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from polysec_tui.app import DESTINATIONS, PolysecApp
from polysec_tui.services.clients import incidents
from polysec_tui.services.logins import anomalies
from polysec_tui.services.runtime import Runtime
from tests.support.tui import Session, idle, quiet, sync

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}


@pytest.fixture
def case_data(snapshot_runtime: Runtime, snapshot_officer: Session) -> Session:
    """The sample analysed for anomalies, with an open incident, so those screens show
    rows."""
    actor = snapshot_officer[1]
    anomalies.analyze(snapshot_runtime, actor, full=True)
    incidents.open_incident(snapshot_runtime, actor, title="New device and withdrawal",
                            severity="high", accounts=["acc-002"], note="client called")
    return snapshot_officer


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(DESTINATIONS))
def test_every_screen(snap_compare: Any, snapshot_runtime: Runtime, case_data: Session,
                      name: str, size: str) -> None:
    async def open_screen(pilot: Pilot[Any]) -> None:
        await idle(pilot)
        await pilot.press(DESTINATIONS[name].key)
        await idle(pilot)
        if name == "auditlog":  # session entries name random session ids: filter them out
            action = pilot.app.screen.query_one("#audit-action", Input)
            action.value = "incident.open"
            action.focus()
            await pilot.press("enter")
            await idle(pilot)
        await quiet(pilot)

    assert snap_compare(PolysecApp(snapshot_runtime, session=case_data),
                        terminal_size=SIZES[size], run_before=open_screen)


@sync
async def test_key_help_toggles_and_lists_every_key(snapshot_runtime: Runtime,
                                                    snapshot_officer: Session) -> None:
    """? opens the key help of the screen shown, in groups, hidden keys included; ? and
    F1 toggle it, Esc closes it; typed into a field, ? is text."""
    from polysec_tui.screens.keyhelp import KeyHelpScreen
    from polysec_tui.screens.withdrawals import WithdrawalQueueScreen

    app = PolysecApp(snapshot_runtime, session=snapshot_officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS["withdrawals"].key)
        await idle(pilot)
        queue = app.screen
        assert isinstance(queue, WithdrawalQueueScreen)
        for key, close in (("question_mark", "question_mark"), ("f1", "f1"),
                           ("question_mark", "escape"), ("f1", "question_mark")):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, KeyHelpScreen), key
            await pilot.press(close)
            await pilot.pause()
            shown: object = app.screen
            assert shown is queue, close
        await pilot.press("question_mark")
        await pilot.pause()
        help_screen = app.screen
        assert isinstance(help_screen, KeyHelpScreen)
        groups = dict(help_screen.groups)
        assert list(groups) == ["Withdrawals", "Table or field", "Go to", "Everywhere"]
        table_keys = {line.description: line.keys for line in groups["Table or field"]}
        assert table_keys.get("Copy id") == "y", table_keys
        assert table_keys["Bottom"].endswith("G") and table_keys["Cursor down"].endswith("j")
        assert "Sort" not in table_keys  # the queue sorts in its query: its own s
        mine = {line.description: line.keys for line in groups["Withdrawals"]}
        assert mine["Reject marked"] == "X" and mine["Back"] == "esc"
        assert mine["Mark down"] == "shift+↓"  # hidden from the footer, listed here
        assert [line.keys for line in groups["Go to"]] == [d.key for d in DESTINATIONS.values()]
        assert {"Quit", "Keys"} <= {line.description for line in groups["Everywhere"]}
        await pilot.press("escape")
        await pilot.press("slash")  # the filter line: ? is a character there
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen is queue
        assert queue.query_one("#queue-filter", Input).value == "?"


@pytest.mark.parametrize("size", list(SIZES))
def test_snapshot_key_help(snap_compare: Any, snapshot_runtime: Runtime, case_data: Session,
                           size: str) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await idle(pilot)
        await pilot.press(DESTINATIONS["withdrawals"].key)
        await idle(pilot)
        await pilot.press("question_mark")
        await quiet(pilot)

    assert snap_compare(PolysecApp(snapshot_runtime, session=case_data),
                        terminal_size=SIZES[size], run_before=open_help)


@pytest.mark.parametrize("width", [80, 120, 200])
@sync
async def test_the_footer_shows_what_fits_then_more(snapshot_runtime: Runtime,
                                                    snapshot_officer: Session,
                                                    width: int) -> None:
    """Every key shown is whole; when not all fit, "? more" ends the line; the screen's
    own keys come first."""
    from textual.widgets import Footer

    app = PolysecApp(snapshot_runtime, session=snapshot_officer)
    async with app.run_test(size=(width, 30)) as pilot:
        await idle(pilot)
        for name in DESTINATIONS:
            await pilot.press(DESTINATIONS[name].key)
            await idle(pilot)
            await pilot.pause()
            footer = app.screen.query_one(Footer)
            keys = [k for k in footer.children if not k.has_class("-command-palette")]
            assert keys, name
            for key in footer.children:
                assert key.region.right <= width, (name, key.region)
            shown = [getattr(k, "description", "") for k in keys]
            everything = {b.action for _n, b, _e, _t in app.screen.active_bindings.values()
                          if b.show}
            if len(keys) - (shown[-1] == "more") < len(everything):
                assert shown[-1] == "more", (name, shown)
            else:
                assert "more" not in shown, (name, shown)


@pytest.mark.parametrize("name", [n for n in DESTINATIONS if n != "dashboard"])
@sync
async def test_escape_goes_back_to_the_dashboard(snapshot_runtime: Runtime,
                                                 snapshot_officer: Session,
                                                 name: str) -> None:
    from polysec_tui.screens.dashboard import DashboardScreen

    app = PolysecApp(snapshot_runtime, session=snapshot_officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS[name].key)
        await idle(pilot)
        assert not isinstance(app.screen, DashboardScreen)
        app.screen.set_focus(None)  # from anywhere on the screen, a field included
        await pilot.press("escape")
        await idle(pilot)
        assert isinstance(app.screen, DashboardScreen), name
        await pilot.press("escape")  # home: nothing happens
        await idle(pilot)
        assert isinstance(app.screen, DashboardScreen)


# The audit log and the queue filter in their queries (/ is theirs): tests/console/test_tmux.py
# and tests/withdrawals/test_tui_withdrawals.py.
TABLES = [("dashboard", "", "events", "account"), ("incidents", "", "incidents-table", "id"),
          ("dashboard", "o", "rules-table", None), ("timeline", "acc-002", "tl-events", None)]


@pytest.mark.parametrize(("name", "then", "table_id", "copied"), TABLES,
                         ids=[t[2] for t in TABLES])
@sync
async def test_every_table_filters_sorts_and_copies(snapshot_runtime: Runtime,
                                                     case_data: Session, name: str, then: str,
                                                     table_id: str, copied: str | None) -> None:
    from rich.text import Text
    from textual.widgets import DataTable

    from polysec_tui.screens.widgets import ConsoleTable, _sort_key

    def plain() -> list[list[str]]:
        return [[c.plain for c in table.get_row_at(i)] for i in range(table.row_count)]

    app = PolysecApp(snapshot_runtime, session=case_data)
    async with app.run_test(size=(160, 48)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS[name].key)
        await idle(pilot)
        if name == "timeline":
            await pilot.press(*then, "enter")
        elif then:
            await pilot.press(then)
        for _ in range(100):
            await idle(pilot)
            found = app.screen.query(f"#{table_id}")
            if found and found.first(DataTable).row_count:
                break
        table = app.screen.query_one(f"#{table_id}", ConsoleTable)
        table.focus()
        before = plain()
        assert len(before) >= 1
        word = next(w for cell in reversed(before[0]) for w in cell.split() if len(w) > 3)
        await pilot.press("slash", *word, "enter")
        await idle(pilot)
        after = plain()
        assert after and all(word.casefold() in " ".join(r).casefold() for r in after)
        assert f'filter "{word}"' in (table.border_subtitle or "")
        await pilot.press("slash", "ctrl+u", "enter")
        await idle(pilot)
        assert len(plain()) == len(before)
        await pilot.press("s")
        firsts = [Text(r[0]) for r in plain()]
        assert firsts == sorted(firsts, key=_sort_key)
        await pilot.press("y")
        row = plain()[table.cursor_row]
        keys = [c.key.value for c in table.ordered_columns]
        expected = row[keys.index(copied)] if copied else row[0]
        assert app.clipboard == expected.strip()


@sync
async def test_demo_scenarios_are_no_key_outside_the_demo(snapshot_runtime: Runtime,
                                                          snapshot_officer: Session) -> None:
    from polysec_tui.screens.dashboard import DashboardScreen

    app = PolysecApp(snapshot_runtime, session=snapshot_officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await idle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert "D" not in app.screen.active_bindings
        await pilot.press("D")
        await idle(pilot)
        assert isinstance(app.screen, DashboardScreen)
