"""The backups screen, driven by Pilot: catalogue state and age, the 26-hour alarm,
verify in a worker (the UI keeps answering), restore behind confirmation and a fresh
code, and a snapshot."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, ProgressBar, Static

from polysec_tui.app import DESTINATIONS, PolysecApp
from polysec_tui.backup.envelope import Identity, SigningKey
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import AuditLogEntry, BackupRecord
from polysec_tui.screens.backups import BackupsScreen, IdentityPrompt, RestoreConfirm
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.operations import backups
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.backups import backup_options, forge
from tests.support.helpers import account, ingest
from tests.support.officers import MovableClock
from tests.support.sftp import Server
from tests.support.sshd import needs_sshd
from tests.support.tui import SnapshotRuntime, idle, quiet, sync

PASSWORD = "a-long-Officer-passphrase"
KEY = DESTINATIONS["backups"].key


@dataclasses.dataclass
class Console:
    rt: Runtime
    clock: MovableClock
    secret: str
    session: tuple[str, Actor]
    identity_path: Path

    def code(self) -> str:
        self.clock.advance(seconds=30)  # a code is accepted once per time step
        return pyotp.TOTP(self.secret).at(self.clock())


def _console(settings: Settings, tmp_path: Path, runtime_class: type[Runtime] = Runtime,
             configure_identity: bool = True, extra: dict[str, Any] | None = None) -> Console:
    identity = Identity.generate()
    identity_path = tmp_path / "offline.key"
    identity.write_new(identity_path)
    options: dict[str, Any] = backup_options(tmp_path, identity)
    if configure_identity:
        options["backup"]["identity"] = str(identity_path)
    options["backup"].update(extra or {})
    configured = dataclasses.replace(settings, options=options)
    clock = MovableClock(FIXED_NOW)
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    rt = runtime_class(configured, engine, load_keyring(settings.keyring_path), clock=clock)
    enrolment = officers.bootstrap_admin(rt, "chief", PASSWORD)
    session = sessions.login(rt, "chief", PASSWORD, pyotp.TOTP(enrolment.secret).at(clock()))
    return Console(rt, clock, enrolment.secret, session, identity_path)


@pytest.fixture
def console(settings: Settings, tmp_path: Path) -> Iterator[Console]:
    made = _console(settings, tmp_path)
    ingest(made.rt, "accounts", account("A1"), account("A2"))
    yield made
    made.rt.engine.dispose()


async def open_backups(pilot: Pilot[Any]) -> BackupsScreen:
    await idle(pilot)
    assert isinstance(pilot.app.screen, DashboardScreen)
    await pilot.press(KEY)  # from the dashboard, by its key
    await idle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, BackupsScreen)
    return screen


def top(app: PolysecApp) -> object:
    """The screen on top (a function, so that type narrowing does not stick)."""
    return app.screen


def rows(screen: BackupsScreen) -> list[list[str]]:
    table: DataTable[Text] = screen.query_one("#backups-table", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def status(screen: BackupsScreen, selector: str = "#backups-status") -> str:
    return str(screen.query_one(selector, Static).render())


@sync
async def test_catalogue_shows_age_verified_and_shipped(console: Console) -> None:
    rt, clock = console.rt, console.clock
    actor = console.session[1]
    clock.now = FIXED_NOW - timedelta(hours=30)
    old = backups.create_backup(rt, actor)
    clock.now = FIXED_NOW - timedelta(hours=2)
    new = backups.create_backup(rt, actor)
    backups.verify_backup(rt, actor, new.path, Identity.load(console.identity_path))
    with rt.transaction() as s:
        record = s.get(BackupRecord, old.id)
        assert record is not None
        record.shipped_at = FIXED_NOW - timedelta(hours=29)
        record.shipped_to = "sftp://bk@vault:2222/srv/x.psbk"
    clock.now = FIXED_NOW
    app = PolysecApp(rt, session=console.session)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_backups(pilot)
        shown = rows(screen)
        assert [r[1] for r in shown] == ["2h 00m", "1d 6h"]
        assert [r[4] for r in shown] == ["verified", "complete"]
        assert shown[0][5] == "11-20 10:00" and shown[1][5] == "no"  # verified at
        assert shown[0][6] == "no" and shown[1][6] == "11-19 07:00"  # shipped at
        assert shown[0][7] == new.path.name
        assert status(screen).startswith("last good backup 2h 00m ago")
        assert not screen.query_one("#backups-status").has_class("-stale")


@sync
async def test_red_when_the_last_good_backup_is_older_than_26_hours(console: Console) -> None:
    rt, clock = console.rt, console.clock
    clock.now = FIXED_NOW - timedelta(hours=26, minutes=1)
    backups.create_backup(rt, console.session[1])
    clock.now = FIXED_NOW
    app = PolysecApp(rt, session=console.session)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_backups(pilot)
        assert "OLDER THAN 26 HOURS" in status(screen)
        assert screen.query_one("#backups-status").has_class("-stale")
        # A fresh backup made from the screen clears the alarm.
        await pilot.press("c")
        await idle(pilot)
        assert status(screen, "#backups-result").startswith("backup polysec-")
        assert len(rows(screen)) == 2
        assert not screen.query_one("#backups-status").has_class("-stale")
        assert screen.query_one("#backups-work").has_class("-idle")


@sync
async def test_empty_catalogue_is_an_alarm(console: Console) -> None:
    app = PolysecApp(console.rt, session=console.session)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_backups(pilot)
        assert rows(screen) == []
        assert status(screen) == "NO good backup in the catalogue"
        assert screen.query_one("#backups-status").has_class("-stale")


@sync
async def test_verify_runs_in_a_worker_and_the_ui_keeps_answering(
        console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = console.rt
    made = backups.create_backup(rt, console.session[1])
    release = threading.Event()
    started = threading.Event()
    real = backups.verify_backup

    def slow_verify(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(backups, "verify_backup", slow_verify)
    app = PolysecApp(rt, session=console.session)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_backups(pilot)
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, IdentityPrompt)
        # The configured identity is offered; enter accepts it.
        assert app.screen.query_one(Input).value == str(console.identity_path)
        await pilot.press("enter")
        for _ in range(100):
            await pilot.pause(0.02)
            if started.is_set():
                break
        assert started.is_set() and top(app) is screen
        assert not screen.query_one("#backups-work").has_class("-idle")
        # While verify waits, the screen still handles keys: a second action is refused.
        await pilot.press("c")
        await pilot.pause()
        assert status(screen, "#backups-result") == "verify is still running"
        release.set()
        await idle(pilot)
        assert status(screen, "#backups-result").startswith(f"OK {made.path.name}")
        assert rows(screen)[0][4] == "verified"
        bar = screen.query_one("#backups-progress", ProgressBar)
        assert bar.total == made.size_bytes and bar.progress > made.size_bytes * 0.9


@sync
async def test_a_restore_drill_from_the_screen(console: Console) -> None:
    rt = console.rt
    made = backups.create_backup(rt, console.session[1])
    app = PolysecApp(rt, session=console.session)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_backups(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, IdentityPrompt)
        await pilot.press("enter")
        for _ in range(200):
            await pilot.pause(0.05)
            if status(screen, "#backups-result").startswith("drill"):
                break
        assert status(screen, "#backups-result").startswith(
            f"drill PASSED: {made.path.name} restored in "), status(screen, "#backups-result")
    [view] = backups.list_drills(rt, console.session[1])
    assert view.result == "pass" and view.signature == "valid"


@sync
async def test_verify_names_the_failure(console: Console, tmp_path: Path) -> None:
    rt = console.rt
    made = backups.create_backup(rt, console.session[1])
    other = tmp_path / "other.key"
    Identity.generate().write_new(other)
    app = PolysecApp(rt, session=console.session)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_backups(pilot)
        await pilot.press("v")
        await pilot.pause()
        field = app.screen.query_one(Input)
        field.value = str(other)
        await pilot.press("enter")
        await idle(pilot)
        text = status(screen, "#backups-result")
        assert "wrong identity" in text
        assert screen.query_one("#backups-result").has_class("-failed")
        # A wrong key says nothing about the backup: its status stays as it was.
        assert rows(screen)[0][4] == "complete"
    assert made.path.is_file()


@sync
async def test_a_forged_file_in_place_of_a_backup_is_refused_and_changes_nothing(
        console: Console, tmp_path: Path, db_url: str) -> None:
    """The attacker holds the recipient public key and the backup directory: they
    replace the newest backup's file with their own (same backup id, signed by their own
    key). Verify and restore from the screen refuse it; the catalogue keeps its word."""

    rt = console.rt
    made = backups.create_backup(rt, console.session[1])
    identity = Identity.load(console.identity_path)
    trust = backups.BackupConfig.from_settings(rt.settings).trust()
    forged = forge(made.path, identity, trust, tmp_path / "forged.psbk",
                   signing_key=SigningKey.generate(), backup_id=made.id.bytes)
    forged.replace(made.path)
    target = (f"sqlite:///{tmp_path / 'restored.db'}" if db_url.startswith("sqlite") else
              parse_url(db_url).set(database=f"polysec_tui_{uuid.uuid4().hex[:8]}")
              .render_as_string(hide_password=False))
    app = PolysecApp(rt, session=console.session)
    async with app.run_test(size=(140, 34)) as pilot:
        screen = await open_backups(pilot)
        await pilot.press("v")
        await pilot.pause()
        await pilot.press("enter")  # the configured identity
        await idle(pilot)
        text = status(screen, "#backups-result")
        assert "signed by an untrusted key" in text, text
        assert screen.query_one("#backups-result").has_class("-failed")
        assert rows(screen)[0][4] == "complete"  # not "failed": the row is not about it

        await pilot.press("R")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, RestoreConfirm)
        modal.query_one("#restore-target", Input).value = target
        modal.query_one("#restore-code", Input).value = console.code()
        await pilot.click("#restore-go")
        await idle(pilot)
        text = status(screen, "#backups-result")
        assert "nothing restored: signed by an untrusted key" in text, text
        assert rows(screen)[0][4] == "complete"
    assert not restoring_target_exists(target)


def restoring_target_exists(target: str) -> bool:
    from polysec_tui.backup.restore import database_exists

    url = parse_url(target)
    if url.get_backend_name() == "sqlite":
        return Path(url.database or "").exists()
    return database_exists(url)


@sync
async def test_replacing_the_live_database_is_its_own_action(console: Console) -> None:
    """X, not an empty field, replaces the live database: its dialog says so in words
    and wants the word "replace" besides the code; without it nothing happens."""
    rt = console.rt
    backups.create_backup(rt, console.session[1])
    app = PolysecApp(rt, session=console.session)
    async with app.run_test(size=(140, 34)) as pilot:
        screen = await open_backups(pilot)
        await pilot.press("X")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, RestoreConfirm) and modal.live == rt.database_label
        said = " ".join(str(w.render()) for w in modal.query(Static))
        assert "This replaces the live database of the exchange" in said
        assert not modal.query("#restore-target")
        modal.query_one("#restore-word", Input).value = "yes"
        modal.query_one("#restore-code", Input).value = console.code()
        await pilot.click("#restore-go")
        await pilot.pause()
        assert top(app) is modal
        assert "type replace to confirm" in str(modal.query_one("#restore-error",
                                                                Static).render())
        await pilot.press("escape")
        await idle(pilot)
        assert top(app) is screen
    with rt.sessions() as s:
        assert not [a for (a,) in s.query(AuditLogEntry.action)
                    if a.startswith("backup.restore")]


@sync
async def test_restore_needs_confirmation_and_a_fresh_code(console: Console,
                                                           tmp_path: Path, db_url: str) -> None:
    rt = console.rt
    made = backups.create_backup(rt, console.session[1])
    if db_url.startswith("sqlite"):
        target = f"sqlite:///{tmp_path / 'restored.db'}"
    else:
        from polysec_tui.db.engine import parse_url

        target = parse_url(db_url).set(database=f"polysec_tui_{uuid.uuid4().hex[:8]}") \
            .render_as_string(hide_password=False)
    app = PolysecApp(rt, session=console.session)
    try:
        async with app.run_test(size=(140, 34)) as pilot:
            screen = await open_backups(pilot)
            await pilot.press("R")
            await pilot.pause()
            assert isinstance(app.screen, RestoreConfirm)
            modal = app.screen
            modal.query_one("#restore-code", Input).value = console.code()
            await pilot.click("#restore-go")  # no target: nothing defaults to the live one
            await pilot.pause()
            assert top(app) is modal
            assert "a target database URL is required" in str(
                modal.query_one("#restore-error", Static).render())
            modal.query_one("#restore-code", Input).value = ""
            modal.query_one("#restore-target", Input).value = target
            modal.query_one("#restore-code", Input).focus()
            await pilot.press("enter")  # no code yet
            await pilot.pause()
            assert top(app) is modal
            assert "authenticator code is required" in str(
                modal.query_one("#restore-error", Static).render())
            await pilot.press("escape")  # cancel: nothing happens
            await idle(pilot)
            assert top(app) is screen

            await pilot.press("R")
            await pilot.pause()
            modal = app.screen
            modal.query_one("#restore-target", Input).value = target
            modal.query_one("#restore-code", Input).value = "000000"  # wrong code
            modal.query_one("#restore-code", Input).focus()
            await pilot.press("enter")
            await idle(pilot)
            assert "restore refused or failed" in status(screen, "#backups-result")
            assert "authentication failed" in status(screen, "#backups-result")
            if db_url.startswith("sqlite"):
                assert not (tmp_path / "restored.db").exists()

            await pilot.press("R")
            await pilot.pause()
            modal = app.screen
            modal.query_one("#restore-target", Input).value = target
            modal.query_one("#restore-code", Input).value = console.code()
            await pilot.click("#restore-go")
            await idle(pilot)
            assert status(screen, "#backups-result").startswith("restored into"), \
                status(screen, "#backups-result")
    finally:
        from polysec_tui.backup.restore import drop_database
        from polysec_tui.db.engine import parse_url

        drop_database(parse_url(target))
    with rt.sessions() as s:
        actions = [a for (a,) in s.query(AuditLogEntry.action)
                   .order_by(AuditLogEntry.seq)]
    assert actions.count("backup.restore") == 1
    assert made.path.is_file()


@sync
@needs_sshd
async def test_ship_from_the_screen(settings: Settings, tmp_path: Path, db_url: str,
                                    remote: Server) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("shipping does not depend on the engine (tests/operations/test_backup_ship.py)")
    made = _console(settings, tmp_path, extra={
        "ship_to": remote.url, "known_hosts": str(remote.known_hosts),
        "ssh_identity": str(remote.identity)})
    try:
        backup = backups.create_backup(made.rt, made.session[1])
        app = PolysecApp(made.rt, session=made.session)
        async with app.run_test(size=(140, 30)) as pilot:
            screen = await open_backups(pilot)
            assert rows(screen)[0][6] == "no"
            await pilot.press("p")
            await idle(pilot)
            text = status(screen, "#backups-result")
            assert text.startswith(f"shipped {backup.path.name} to {remote.url}/"), text
            assert rows(screen)[0][6] == f"{FIXED_NOW:%m-%d %H:%M}"
        assert (remote.remote / backup.path.name).read_bytes() == backup.path.read_bytes()
    finally:
        made.rt.engine.dispose()


@sync
async def test_ship_without_a_target_says_what_to_configure(console: Console) -> None:
    backups.create_backup(console.rt, console.session[1])
    app = PolysecApp(console.rt, session=console.session)
    async with app.run_test(size=(140, 30)) as pilot:
        screen = await open_backups(pilot)
        await pilot.press("p")
        await idle(pilot)
        assert "set [backup] ship_to, known_hosts and ssh_identity" in status(
            screen, "#backups-result")
        assert screen.query_one("#backups-result").has_class("-failed")


# ------------------------------------------------------------------------------ snapshot


@pytest.fixture
def snapshot_console(tmp_path: Path, keyring_path: Path) -> Iterator[Console]:
    settings = Settings(f"sqlite:///{tmp_path / 'snapshot.db'}", keyring_path)
    made = _console(settings, tmp_path, SnapshotRuntime)
    directory = tmp_path / "backups"
    directory.mkdir()
    with made.rt.transaction() as s:  # fixed rows: names and ids do not change per run
        for number, (hours, status_, verified, shipped) in enumerate([
                (3, "verified", True, True), (27, "complete", False, True),
                (51, "failed", False, False), (24 * 9, "pruned", True, True)]):
            at = FIXED_NOW - timedelta(hours=hours)
            path = directory / f"polysec-sqlite-{at:%Y%m%dT%H%M%SZ}-0000000{number}.psbk"
            if number < 2:  # the failed one has lost its file; the pruned one is gone
                path.write_bytes(b"x")
            s.add(BackupRecord(
                id=uuid.UUID(int=number + 1), created_at=at, path=str(path),
                engine="sqlite", size_bytes=1_234_567 * (number + 1), sha256="0" * 64,
                alembic_revision="0002", field_key_ids={},
                verified_at=at + timedelta(minutes=5) if verified else None,
                shipped_at=at + timedelta(minutes=9) if shipped else None,
                shipped_to="sftp://bk@vault/srv/x" if shipped else None, status=status_))
    made.clock.now = FIXED_NOW
    yield made
    made.rt.engine.dispose()


def test_snapshot_backups_screen(snap_compare: Any, snapshot_console: Console) -> None:
    async def show(pilot: Pilot[Any]) -> None:
        await open_backups(pilot)
        await quiet(pilot)

    assert snap_compare(PolysecApp(snapshot_console.rt, session=snapshot_console.session),
                        terminal_size=(90, 24), run_before=show)


def test_when_helpers() -> None:
    from polysec_tui.screens.backups import human_age, human_size

    assert human_age(timedelta(minutes=59)) == "59m"
    assert human_age(timedelta(hours=26, minutes=1)) == "1d 2h"
    assert human_size(1023) == "1023 B" and human_size(5 * 1024 * 1024) == "5.0 MiB"
