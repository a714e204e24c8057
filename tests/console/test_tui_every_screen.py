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
async def test_f1_shows_the_key_bindings(snapshot_runtime: Runtime,
                                         snapshot_officer: Session) -> None:
    from textual.widgets import HelpPanel

    app = PolysecApp(snapshot_runtime, session=snapshot_officer)
    async with app.run_test(size=(120, 36)) as pilot:
        await idle(pilot)
        await pilot.press(DESTINATIONS["withdrawals"].key)
        await idle(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.query(HelpPanel)
