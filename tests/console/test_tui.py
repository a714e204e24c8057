"""The Textual console, driven by Pilot on a temporary database with a pinned clock.

Snapshot tests run on SQLite only (fast and deterministic): their runtime shows a fixed
database label, because the temporary path changes on every run.
"""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.screen import Screen
from textual.widgets import DataTable

from polysec_tui.app import DESTINATIONS, PolysecApp, ScreenCommands
from polysec_tui.config import Settings
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import DatabaseInfo
from polysec_tui.screens.account import AccountScreen, RevealScreen
from polysec_tui.screens.auditlog import AuditLogScreen
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.screens.widgets import safe_text
from polysec_tui.services.monitoring.dashboard import DashboardService
from polysec_tui.services.runtime import Runtime
from tests.support.dashboard import account, ago, ingest, load_sample, login
from tests.support.tui import (
    Session,
    card_text,
    log_in,
    settle,
    sync,
)

HOSTILE_ACCOUNT = "acc-[@click=app.quit]x[/]"
HOSTILE_AGENT = "[link=http://x]y[/link] \x1b[31mred\x1b[0m [@click=app.bell]b[/] \x07\x01\x9b2J"


@pytest.fixture
def officer(runtime: Runtime) -> Session:
    return log_in(runtime)


def table_rows(app: PolysecApp) -> list[list[Text]]:
    table = app.screen.query_one("#events", DataTable)
    return [list(table.get_row_at(i)) for i in range(table.row_count)]


@sync
async def test_dashboard_shows_the_figures(runtime: Runtime, officer: Session) -> None:
    load_sample(runtime)
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert card_text(app, "#card-accounts") == "5\n2FA 60.0 %"
        assert card_text(app, "#card-logins") == "2 ok\n4 failed"
        assert card_text(app, "#card-ips") == "3\nin 24 h"
        assert card_text(app, "#card-withdrawals") == "1 held\n2 pending"
        rows = table_rows(app)
        assert len(rows) == 10
        assert [c.plain for c in rows[0]] == [
            "11-20 12:00", "login failed", "acc-004", "bad_password from 192.0.2.1"]
        assert [c.plain for c in rows[3][:3]] == ["11-20 11:30", "new device", "acc-002"]
        assert (app.screen.query_one("#events", DataTable).border_subtitle or "").endswith(
            "of 10 · as of 2026-11-20 12:00:00 UTC")
        assert app.demo is False
        assert not app.screen.query_one("TopBar").has_class("-demo")


@sync
async def test_demo_badge(runtime: Runtime, officer: Session) -> None:
    with runtime.transaction() as session:
        session.add(DatabaseInfo(key="demo", value="true"))
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.demo is True
        badge = app.screen.query_one("#demo-badge")
        assert badge.display and str(badge.render()) == "DEMO DATABASE"


@sync
async def test_refresh_key_reloads(runtime: Runtime, officer: Session) -> None:
    load_sample(runtime)
    messages: list[Any] = []
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        ingest(runtime, "logins", [login("new", "acc-005", ago(minutes=1), False, "192.0.2.99")])
        await pilot.press("r")
        await settle(pilot)
        assert card_text(app, "#card-logins") == "2 ok\n5 failed"
        assert card_text(app, "#card-ips") == "4\nin 24 h"
        assert table_rows(app)[1][2].plain == "acc-005"
        loads = [m for m in messages if isinstance(m, DashboardScreen.Loaded)]
        assert len(loads) == 2


@sync
async def test_same_figures_keep_the_cursor(runtime: Runtime, officer: Session) -> None:
    load_sample(runtime)
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down")
        await pilot.press("r")
        await settle(pilot)
        assert app.screen.query_one("#events", DataTable).cursor_row == 2


@sync
async def test_timer_paused_when_screen_is_hidden(runtime: Runtime, officer: Session) -> None:
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        timer = screen._timer
        assert timer is not None and timer._interval == 30.0
        assert timer._active.is_set()
        await app.push_screen(Screen())
        await pilot.pause()
        assert not timer._active.is_set()
        app.pop_screen()
        await settle(pilot)
        assert timer._active.is_set()


@sync
async def test_palette_lists_screen_actions(runtime: Runtime, officer: Session) -> None:
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        provider = ScreenCommands(app.screen)
        names = [str(hit.prompt) async for hit in provider.discover()]
        assert "Refresh" in names
        assert "Dashboard" in names
        assert names.count("Quit") == 0  # the system command "Quit" covers it
        system = [c.title for c in app.get_system_commands(app.screen)]
        assert "Screenshot" not in system
        assert "Quit" in system


@sync
async def test_palette_runs_a_screen_action(runtime: Runtime, officer: Session) -> None:
    messages: list[Any] = []
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"refresh")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert len([m for m in messages if isinstance(m, DashboardScreen.Loaded)]) == 2


@sync
async def test_palette_has_no_screenshot(runtime: Runtime, officer: Session) -> None:
    from textual.command import CommandPalette

    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"screensh")
        await pilot.pause(0.3)
        palette = app.screen
        assert isinstance(palette, CommandPalette)
        options = palette.query_one("CommandList")
        texts = [str(options.get_option_at_index(i).prompt)  # type: ignore[attr-defined]
                 for i in range(options.option_count)]  # type: ignore[attr-defined]
        assert not any("Screenshot" in t for t in texts)


@sync
async def test_screenshot_action_is_refused(runtime: Runtime, officer: Session,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    app = PolysecApp(runtime, session=officer)
    delivered: list[Any] = []
    monkeypatch.setattr(app, "deliver_screenshot", lambda *a, **k: delivered.append(a))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await app.run_action("screenshot")
        await pilot.pause(0.2)
        assert delivered == []
        assert [n.message for n in app._notifications] == [
            "Screenshots are disabled in polysec."]


@sync
async def test_untrusted_text_is_literal(runtime: Runtime, officer: Session) -> None:
    ingest(runtime, "accounts", [account(HOSTILE_ACCOUNT, totp=False)])
    ingest(runtime, "logins", [
        login("h1", HOSTILE_ACCOUNT, ago(minutes=1), False, "192.0.2.7",
              user_agent=HOSTILE_AGENT, city="[b]Bold[/b]"),
    ])
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(200, 30)) as pilot:
        await settle(pilot)
        (row,) = table_rows(app)
        assert row[2].plain == HOSTILE_ACCOUNT
        assert row[3].plain == ("failed from 192.0.2.7 ([b]Bold[/b]) "
                                "[link=http://x]y[/link] \\x1b[31mred\\x1b[0m "
                                "[@click=app.bell]b[/] \\x07\\x01\\x9b2J")
        assert all(not cell.spans for cell in row)
        table = app.screen.query_one("#events", DataTable)
        rendered = []
        for y in range(table.size.height):
            for segment in table.render_line(y):
                style = segment.style
                assert style is None or (not style.link and "@click" not in style.meta)
                rendered.append(segment.text)
        screen_text = "".join(rendered)
        assert HOSTILE_ACCOUNT in screen_text
        assert "[link=http://x]y[/link]" in screen_text
        assert "\x1b" not in screen_text and "\x07" not in screen_text
        # clicking the account cell runs no action; the app keeps running
        await pilot.click("#events", offset=(30, 2))
        await pilot.pause()
        assert app.is_running


def test_safe_text() -> None:
    text = safe_text("[@click=app.quit]x[/] \x1b[2J\x1b]52;c;ZXZpbA==\x07\u202e")
    assert text.plain == "[@click=app.quit]x[/] \\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\u202e"
    assert text.spans == []


@sync
async def test_worker_error_is_shown_without_markup(runtime: Runtime, officer: Session,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: DashboardService) -> Any:
        raise RuntimeError("database on fire [@click=app.quit]x[/]\nsecond line")

    monkeypatch.setattr(DashboardService, "summary", broken)
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(50):
            await pilot.pause()
            if list(app._notifications):
                break
        (note,) = list(app._notifications)
        assert note.severity == "error" and note.markup is False
        assert note.title == "dashboard failed"
        assert note.message == "RuntimeError: database on fire [@click=app.quit]x[/]"
        table = app.screen.query_one("#events", DataTable)
        assert (table.border_subtitle or "").endswith("load failed: figures may be stale")
        assert app.is_running


@pytest.mark.parametrize("debug", ["", "1"])
@sync
async def test_crash_report_has_no_locals(runtime: Runtime, officer: Session,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          debug: str) -> None:
    def crash_in_handler(self: DashboardScreen, message: Any) -> None:
        totp_seed = "SEED-" + "".join(reversed("TERCES"))  # not in the source as shown
        raise ValueError(f"boom {len(totp_seed)}")

    monkeypatch.setattr(DashboardScreen, "on_dashboard_screen_loaded", crash_in_handler)
    monkeypatch.setenv("POLYSEC_DEBUG", debug)
    app = PolysecApp(runtime, session=officer)
    with pytest.raises(ValueError, match="boom"):
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(50):
                await pilot.pause()
    report = capsys.readouterr().err
    assert "SEED-SECRET" not in report
    assert "ValueError" in report
    if debug:
        assert "crash_in_handler" in report  # a traceback, without the locals
    else:
        assert "internal error: ValueError (set POLYSEC_DEBUG=1 for details)" in report


@sync
async def test_no_color_is_honoured(runtime: Runtime, officer: Session,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.filter import Monochrome

    monkeypatch.setenv("NO_COLOR", "1")
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.no_color
        assert any(isinstance(f, Monochrome) for f in app._filters)


@sync
async def test_quit_key(runtime: Runtime, officer: Session) -> None:
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


def test_bindings_have_ids_and_descriptions() -> None:
    from textual.binding import Binding

    for owner in (PolysecApp, DashboardScreen, AuditLogScreen, AccountScreen, RevealScreen):
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding)
            assert binding.id and binding.description, binding
    assert next(iter(DESTINATIONS)) == "dashboard"


def test_open_console_builds_the_runtime(settings: Settings,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import polysec_tui.app
    from polysec_tui.commands.tui import open_console

    seen: list[Runtime] = []
    monkeypatch.setattr(polysec_tui.app, "run_app", seen.append)
    open_console(settings)
    (rt,) = seen
    assert rt.database_label == make_engine(settings.db_url).url.render_as_string(
        hide_password=True)


# ------------------------------------------------------------------------------ snapshots


def test_snapshot_80x24(snap_compare: Any, snapshot_runtime: Runtime,
                        snapshot_officer: Session) -> None:
    assert snap_compare(PolysecApp(snapshot_runtime, session=snapshot_officer),
                        terminal_size=(80, 24), run_before=settle)


def test_snapshot_160x48(snap_compare: Any, snapshot_runtime: Runtime,
                        snapshot_officer: Session) -> None:
    assert snap_compare(PolysecApp(snapshot_runtime, session=snapshot_officer),
                        terminal_size=(160, 48), run_before=settle)


def test_snapshot_demo_no_color(snap_compare: Any, snapshot_runtime: Runtime,
                                snapshot_officer: Session,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    with snapshot_runtime.transaction() as session:
        session.add(DatabaseInfo(key="demo", value="true"))
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(PolysecApp(snapshot_runtime, session=snapshot_officer),
                        terminal_size=(80, 24), run_before=settle)


@sync
async def test_the_console_s_own_process_collects_between_key_presses(
        runtime: Runtime, officer: Session) -> None:
    """`polysec tui` (own_gc): once every screen's module is loaded, they are frozen out
    of the cyclic collector's sight and Python's own full collections (30 to 130 ms, in
    the middle of a repaint) give way to the console's, run when no key was pressed for
    a moment. An app in a shared process (the tests) leaves the collector alone."""
    import gc

    saved = gc.get_threshold()
    shared = PolysecApp(runtime, session=officer)
    async with shared.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert shared._preloading is not None
        shared._preloading.join(timeout=30)
        await pilot.pause()
        assert gc.get_threshold() == saved
    app = PolysecApp(runtime, session=officer, own_gc=True)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app._preloading is not None
            app._preloading.join(timeout=30)
            for _ in range(50):
                await pilot.pause()
                if gc.get_freeze_count():
                    break
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold()[2] == 1_000_000
            collected = app._last_collect
            await pilot.press("down")  # a key: not now
            app._collect_when_idle()
            assert app._last_collect == collected
            app._last_key -= 10  # no key for a while: now
            app._collect_when_idle()
            assert app._last_collect > collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
