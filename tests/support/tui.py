"""Driving the console with Pilot: an officer logged in, async tests, waiting for
workers and for a still screen, and the snapshot runtime on the sample data (fixtures
`snapshot_runtime` and `snapshot_officer`).

Snapshot tests run on SQLite only (fast and deterministic): their runtime shows a fixed
database label, because the temporary path changes on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from polysec_tui.app import HOME, PolysecApp
from polysec_tui.config import Settings
from polysec_tui.crypto import totp
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.screens.widgets import FigureCard
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.dashboard import load_sample

Session = tuple[str, Actor]  # a session token and its officer, from `sessions.login`


def log_in(rt: Runtime, name: str = "chief", role: str = "admin") -> Session:
    """An officer logged in at the runtime's (pinned) clock, for apps that start logged in
    (`PolysecApp(..., session=...)`); the login screen itself is tested in
    tests/officers/test_tui_login.py."""
    password = "a-long-Officer-passphrase"
    if officers.has_officers(rt):
        raise AssertionError("log_in bootstraps the first officer only")
    enrolment = officers.bootstrap_admin(rt, name, password)
    return sessions.login(rt, name, password, totp.code_at(enrolment.secret, rt.clock()))


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test with asyncio.run (the project has no asyncio pytest plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def idle(pilot: Pilot[Any]) -> None:
    """Wait until no worker runs and the messages they posted are handled."""
    for _ in range(300):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in pilot.app.workers):
            return
    raise AssertionError("workers did not finish")


async def quiet(pilot: Pilot[Any]) -> None:
    """Drop the dashboard's alert toasts (the home screen loads first and announces the
    high findings): a snapshot is of the screen under them. The dashboard first catches
    up with what the test wrote, so that no toast of it arrives after this."""
    await dashboard_caught_up(pilot)
    pilot.app.clear_notifications()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
    await until_painted(pilot)


async def dashboard_caught_up(pilot: Pilot[Any]) -> None:
    """The dashboard polls its change token every few seconds, also while another screen
    is shown, and announces a new alert with a toast over that screen. A test that wrote
    something that raises an alert (the audit screen running the checks) got that toast
    in its snapshot or not, depending on whether a poll fell before the picture: on a
    busy machine it often did. Poll now and wait until the dashboard has seen it all;
    later polls find the same token and show nothing."""
    with contextlib.suppress(KeyError):  # before a login: no dashboard
        for screen in pilot.app.get_screen_stack(HOME):
            if isinstance(screen, DashboardScreen):
                screen.poll()
    await idle(pilot)


async def until_painted(pilot: Pilot[Any]) -> None:
    """Until two screenshots 50 ms apart are the same: on a busy machine a fixed pause
    can catch a screen between two of its refreshes (a table scrolls to its cursor only
    after the next one)."""
    previous = pilot.app.export_screenshot()
    for _ in range(40):
        await pilot.pause(0.05)
        current = pilot.app.export_screenshot()
        if current == previous:
            return
        previous = current
    raise AssertionError("the screen was still changing after 2 s")


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until the dashboard has shown a load and no worker is running."""
    app = pilot.app
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        if (isinstance(screen, DashboardScreen) and screen.summary is not None
                and not any(w.is_running for w in app.workers)):
            return
    raise AssertionError("the dashboard did not load")


def card_text(app: PolysecApp, card_id: str) -> str:
    return str(app.screen.query_one(card_id, FigureCard).render())


class SnapshotRuntime(Runtime):
    """The label in the top bar must not show the temporary path."""

    @property
    def database_label(self) -> str:
        return "sqlite:///srv/polysec/polysec.db"


@pytest.fixture
def snapshot_runtime(tmp_path: Path, keyring_path: Path) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'snapshot.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = SnapshotRuntime(Settings(url, keyring_path), engine, load_keyring(keyring_path),
                         clock=lambda: FIXED_NOW)
    load_sample(rt)
    yield rt
    engine.dispose()


@pytest.fixture
def snapshot_officer(snapshot_runtime: Runtime) -> Session:
    return log_in(snapshot_runtime)
