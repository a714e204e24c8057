"""The backup catalogue: age, size, verified-or-not, shipped-or-not of every backup, and
the actions create, verify, ship and restore.

Everything goes through `services.backups` (which checks ``backup.run`` /
``backup.restore`` and audits) in thread workers, so the screen never blocks: a create
or a verify of a large database runs while the officer keeps reading. The status line
turns red when the newest good backup is older than 26 hours (a daily job missed) or
when there is none.

Verify and restore accept only backups signed by a key of [backup] signers and, for a
backup in the catalogue, only its catalogued file (same SHA-256); unsigned (v1/v2) files
are refused here (the CLI's audited ``--allow-unsigned`` is the only way to accept one).
A failed verify of a file that is not the catalogued one leaves its row's status alone.

Restore is the dangerous action: it needs the confirmation modal, a recipient identity
(the private key, usually on removable media) and a fresh authenticator code, checked by
`sessions.step_up` (for a restore into a new database) or by `restore_backup` itself
(when replacing the live database). Paths and URLs typed here are shown back as inert
text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, ProgressBar, Static
from textual.worker import get_current_worker

from polysec_tui.db.engine import redact
from polysec_tui.errors import PolysecError
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    fill_table,
    move_cursor_to,
    safe_text,
)
from polysec_tui.services.officers import sessions
from polysec_tui.services.operations import backups
from polysec_tui.services.operations.backups import BackupView
from polysec_tui.text import printable

STALE_AFTER = timedelta(hours=26)
COLUMNS: list[tuple[str, str, int | None]] = [
    ("created", "Created (UTC)", None), ("age", "Age", None), ("engine", "Engine", None),
    ("size", "Size", None), ("status", "Status", None), ("verified", "Verified", None),
    ("shipped", "Shipped", None), ("file", "File", None),
]


def human_age(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins:02d}m"
    return f"{mins}m"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def last_good(views: list[BackupView]) -> BackupView | None:
    good = [v for v in views if v.status in backups.GOOD]
    return max(good, key=lambda v: v.created_at, default=None)


@dataclass(frozen=True)
class RestoreRequest:
    identity: str
    target: str  # a database URL; "" when ``replace``
    code: str
    replace: bool = False  # replace the live database (its own action and wording)

    def __repr__(self) -> str:  # the code, and a password in the URL, never reach a log
        return (f"RestoreRequest(identity={self.identity!r}, target={redact(self.target)!r}, "
                f"replace={self.replace!r})")


class IdentityPrompt(ModalScreen[str | None]):
    """Ask for the private key file that verify (or a restore drill) needs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="backups.identity.cancel",
                tooltip="Close without opening the backup"),
    ]
    # action -> (title, what enter does, the sentence's verb)
    ACTIONS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "verify": ("Verify a backup", "enter verifies", "Verify"),
        "drill": ("Restore drill", "enter runs the drill", "Restore into a scratch "
                  "database and check"),
    }
    DEFAULT_CSS = """
    IdentityPrompt { align: center middle; }
    IdentityPrompt #identity-box { width: 72; max-width: 100%; height: auto; padding: 0 1;
                                   border: thick $primary; background: $surface; }
    """

    def __init__(self, what: str, default: str, action: str = "verify") -> None:
        super().__init__()
        self.what = what
        self.default = default
        self.action = action

    def compose(self) -> ComposeResult:
        title, enter, verb = self.ACTIONS[self.action]
        with Vertical(id="identity-box") as box:
            box.border_title = title
            box.border_subtitle = f"{enter} · esc cancels"
            yield Static(Text.assemble(f"{verb} ", safe_text(self.what, limit=80),
                                       " with the private key (identity) file:"))
            yield Input(value=self.default, placeholder="/media/offline/polysec-backup.key",
                        id="identity-path", max_length=1024)

    def on_mount(self) -> None:
        self.query_one("#identity-path", Input).focus()

    @on(Input.Submitted, "#identity-path")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


REPLACE_WORD = "replace"


class RestoreConfirm(ModalScreen[RestoreRequest | None]):
    """Confirmation of a restore: identity, target and a fresh authenticator code. A
    restore goes to the database URL typed (required: nothing defaults to the live
    database); with ``live`` set (its own key, ``X``) it replaces the live database
    instead, says so in words, and asks for the word "replace" besides the code."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="backups.restore.cancel",
                tooltip="Close without restoring"),
    ]
    DEFAULT_CSS = """
    RestoreConfirm { align: center middle; }
    RestoreConfirm #restore-box { width: 76; max-width: 100%; height: auto; padding: 0 1;
                                  border: thick $error; background: $surface; }
    RestoreConfirm #restore-error { color: $error; text-style: bold; }
    RestoreConfirm #restore-buttons { height: 3; align-horizontal: right; }
    RestoreConfirm .-empty { display: none; }
    """

    def __init__(self, what: str, default_identity: str, *, live: str | None = None) -> None:
        super().__init__()
        self.what = what
        self.default_identity = default_identity
        self.live = live  # the live database's label: this dialog replaces it

    def compose(self) -> ComposeResult:
        with Vertical(id="restore-box") as box:
            if self.live is None:
                box.border_title = "Restore a backup into another database"
                yield Static(Text.assemble(
                    "Restore ", safe_text(self.what, limit=80), " into the database named "
                    "below (a new one; the live database is not touched). The file is "
                    "verified before anything is written. Needs a fresh authenticator "
                    "code; audited."))
            else:
                box.border_title = "REPLACE THE LIVE DATABASE"
                yield Static(Text.assemble(
                    ("This replaces the live database of the exchange, ", "bold"),
                    (printable(self.live, limit=80), "bold"),
                    (", with ", "bold"), safe_text(self.what, limit=80),
                    ". Everything written since that backup is no longer live (the current "
                    "database is kept aside). Admins only. Type ", (REPLACE_WORD, "bold"),
                    " and a fresh authenticator code; audited."))
            box.border_subtitle = "esc cancels"
            yield Input(value=self.default_identity, placeholder="identity (private key) file",
                        id="restore-identity", max_length=1024)
            if self.live is None:
                yield Input(placeholder="target database URL (required), e.g. "
                            "sqlite:////tmp/restored.db", id="restore-target",
                            max_length=1024)
            else:
                yield Input(placeholder=f"type {REPLACE_WORD} to confirm",
                            id="restore-word", max_length=16)
            yield Input(placeholder="authenticator code", id="restore-code", max_length=8,
                        password=True, restrict=r"[0-9]*")
            yield Static(Text(""), id="restore-error", classes="-empty")
            with Horizontal(id="restore-buttons"):
                yield Button("Cancel", id="restore-cancel")
                yield Button("Restore" if self.live is None else "Replace the live database",
                             id="restore-go", variant="error")

    def on_mount(self) -> None:
        second = "#restore-target" if self.live is None else "#restore-word"
        self.query_one("#restore-identity" if not self.default_identity else second,
                       Input).focus()

    @on(Button.Pressed, "#restore-cancel")
    def _cancel(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#restore-code")
    @on(Button.Pressed, "#restore-go")
    def _confirm(self, event: Message) -> None:
        event.stop()
        identity = self.query_one("#restore-identity", Input).value.strip()
        code = self.query_one("#restore-code", Input).value.strip()
        if self.live is None:
            target = self.query_one("#restore-target", Input).value.strip()
            missing = "" if target else (
                "a target database URL is required (X replaces the live database)")
        else:
            target = ""
            word = self.query_one("#restore-word", Input).value.strip().casefold()
            missing = "" if word == REPLACE_WORD else f"type {REPLACE_WORD} to confirm"
        error = self.query_one("#restore-error", Static)
        problem = ("the identity file is required" if not identity else missing or (
            "a 6-digit authenticator code is required" if len(code) < 6 else ""))
        error.update(Text(problem))
        error.set_class(not problem, "-empty")
        if not problem:
            self.dismiss(RestoreRequest(identity, target, code, replace=self.live is not None))


class BackupsScreen(ConsoleScreen):
    TITLE_TEXT = "Backups"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh", id="backups.refresh",
                tooltip="Load the catalogue again"),
        Binding("c", "create", "Create", id="backups.create",
                tooltip="Make a new encrypted backup of the live database now"),
        Binding("v", "verify", "Verify", id="backups.verify",
                tooltip="Authenticate every chunk of the selected backup"),
        Binding("p", "ship", "Ship", id="backups.ship",
                tooltip="Copy the selected backup offsite over SFTP ([backup] ship_to)"),
        Binding("d", "drill", "Drill", id="backups.drill",
                tooltip="Restore drill: restore the selected backup into a scratch "
                        "database, check it there and sign the record"),
        Binding("R", "restore", "Restore to…", id="backups.restore",
                tooltip="Restore the selected backup into another database (its URL, a "
                        "fresh code)"),
        Binding("X", "replace_live", "Replace live…", id="backups.replace-live",
                tooltip="Replace the LIVE database with the selected backup (admins; the "
                        "word replace and a fresh code)"),
    ]
    DEFAULT_CSS = """
    BackupsScreen #backups-status { height: 1; padding: 0 1; }
    BackupsScreen #backups-status.-stale { color: $error; text-style: bold reverse; }
    BackupsScreen #backups-status.-refused { color: $error; text-style: bold; }
    BackupsScreen #backups-work { height: 1; padding: 0 1; }
    BackupsScreen #backups-work.-idle { display: none; }
    BackupsScreen #backups-result { height: auto; max-height: 3; padding: 0 1; }
    BackupsScreen #backups-result.-failed { color: $error; text-style: bold; }
    BackupsScreen #backups-table { height: 1fr; }
    """

    class Loaded(Message, bubble=False):
        def __init__(self, views: list[BackupView] | None, refusal: str = "") -> None:
            super().__init__()
            self.views = views
            self.refusal = refusal

    class Finished(Message, bubble=False):
        """An action (create, verify, restore) ended; ``ok`` False shows it in red."""

        def __init__(self, action: str, ok: bool, text: str) -> None:
            super().__init__()
            self.action = action
            self.ok = ok
            self.text = text

    def __init__(self) -> None:
        super().__init__()
        self.views: list[BackupView] = []
        self.busy: str | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(Text("loading…"), id="backups-status")
        with Horizontal(id="backups-work", classes="-idle"):
            yield Static(Text(""), id="backups-work-label")
            yield ProgressBar(id="backups-progress", show_eta=False)
        yield ConsoleTable(id="backups-table", cursor_type="row", zebra_stripes=True,
                           copy_column="file")
        yield Static(Text("c creates a backup; v verifies, p ships, d drills (restore into "
                          "a scratch database, checked and signed), R restores the "
                          "selected one into another database, X replaces the live one"),
                     id="backups-result")

    def on_mount(self) -> None:
        self.query_one("#backups-table", DataTable).focus()
        self.action_reload()

    # ----------------------------------------------------------------------- loading

    def action_reload(self) -> None:
        """Load the catalogue (in a worker)."""
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="backups")
    def load(self) -> None:
        assert self.actor is not None
        try:
            message = self.Loaded(backups.list_backups(self.runtime, self.actor))
        except PolysecError as refused:
            message = self.Loaded(None, str(refused))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def on_backups_screen_loaded(self, message: BackupsScreen.Loaded) -> None:
        status = self.query_one("#backups-status", Static)
        status.set_class(message.views is None, "-refused")
        if message.views is None:
            status.update(safe_text(message.refusal))
            status.set_class(False, "-stale")
            return
        self.views = message.views
        now = self.clock()
        table: DataTable[Text] = self.query_one("#backups-table", DataTable)
        cursor = table.cursor_row
        fill_table(table, COLUMNS, [self._row(v, now) for v in self.views])
        if self.views:
            move_cursor_to(table, min(cursor, len(self.views) - 1))
        newest = last_good(self.views)
        if newest is None:
            text, stale = "NO good backup in the catalogue", True
        else:
            age = now - newest.created_at
            stale = age > STALE_AFTER
            text = (f"last good backup {human_age(age)} ago"
                    f"{' — OLDER THAN 26 HOURS' if stale else ''}; "
                    f"{len(self.views)} in the catalogue")
        status.update(Text(text))
        status.set_class(stale, "-stale")

    @staticmethod
    def _row(view: BackupView, now: datetime) -> list[Text]:
        status_style = {"verified": "bold green", "failed": "bold red",
                        "pruned": "dim"}.get(view.status, "")
        missing = not view.file_present and view.status != "pruned"
        return [
            Text(f"{view.created_at:%Y-%m-%d %H:%M}"),
            Text(human_age(now - view.created_at)),
            safe_text(view.engine, limit=12),
            Text(human_size(view.size_bytes), justify="right"),
            Text(view.status, style=status_style),
            Text(f"{view.verified_at:%m-%d %H:%M}" if view.verified_at else "no"),
            Text(f"{view.shipped_at:%m-%d %H:%M}" if view.shipped_at else "no"),
            safe_text(("MISSING " if missing else "") + Path(view.path).name, limit=72,
                      style="bold red" if missing else ""),
        ]

    def selected(self) -> BackupView | None:
        view: BackupView | None = self.query_one("#backups-table", ConsoleTable).item(
            self.views)
        return view

    # ----------------------------------------------------------------------- actions

    def _start(self, action: str, label: str, total: float | None = None) -> bool:
        if self.busy is not None:
            self._result(f"{self.busy} is still running", ok=False)
            return False
        self.busy = action
        work_row = self.query_one("#backups-work", Horizontal)
        work_row.set_class(False, "-idle")
        self.query_one("#backups-work-label", Static).update(safe_text(label, limit=60))
        bar = self.query_one("#backups-progress", ProgressBar)
        bar.update(total=total, progress=0)
        return True

    def _progress(self, done: float, total: float | None) -> None:
        self.query_one("#backups-progress", ProgressBar).update(total=total, progress=done)

    def _default_identity(self) -> str:
        try:
            path = backups.BackupConfig.from_settings(self.runtime.settings).identity
        except PolysecError:
            return ""
        return str(path) if path else ""

    def action_create(self) -> None:
        """Make a backup now (in a worker, with a progress bar)."""
        if self._start("create", "creating a backup "):
            self.create()

    @work(thread=True, exclusive=True, exit_on_error=False, group="backup create")
    def create(self) -> None:
        assert self.actor is not None
        last = [0.0]

        def progress(done: int, estimate: int | None) -> None:
            total = float(max(estimate or 0, done, 1))
            if done - last[0] >= total / 100 or done == total:
                last[0] = done
                self.app.call_from_thread(self._progress, float(done), total)

        try:
            made = backups.create_backup(self.runtime, self.actor, progress=progress)
            message = self.Finished("create", True,
                                    f"backup {made.path.name} written: "
                                    f"{human_size(made.size_bytes)}, sha256 "
                                    f"{made.sha256[:16]}…")
        except PolysecError as failed:
            message = self.Finished("create", False, f"create failed: {failed}")
        self.post_message(message)

    def action_verify(self) -> None:
        """Verify the selected backup: asks for the identity file, then runs in a worker."""
        self._with_identity("verify", "verifying ", self.verify)

    def _with_identity(self, action: str, label: str,
                       run: Callable[[Path, Path], object]) -> None:
        """Ask for the identity file for ``action`` on the selected backup, then start
        ``run(backup, identity)`` (a worker) unless another action runs."""
        view = self.selected()
        if view is None:
            self._result("no backup selected", ok=False)
            return
        what = f"{view.created_at:%Y-%m-%d %H:%M} ({Path(view.path).name})"

        def chosen(identity: str | None) -> None:
            if identity and self._start(action, label):
                run(Path(view.path), Path(identity))

        self.app.push_screen(IdentityPrompt(what, self._default_identity(), action), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="backup verify")
    def verify(self, path: Path, identity_path: Path) -> None:

        assert self.actor is not None
        last = [0.0]

        def progress(done: int, total: int | None) -> None:
            size = float(total or 1)
            if done - last[0] >= size / 100:
                last[0] = done
                self.app.call_from_thread(self._progress, float(min(done, size)), size)

        try:
            identity = backups.BackupConfig.from_settings(
                self.runtime.settings).load_identity(identity_path)
            report = backups.verify_backup(self.runtime, self.actor, path, identity,
                                           progress=progress)
            manifest = report.manifest
            message = self.Finished(
                "verify", True,
                f"OK {path.name}: {manifest.get('chunks')} chunks authenticated, signed by "
                f"{report.signer}, schema {manifest.get('alembic_revision')}; catalogue "
                f"{report.catalogue}")
        except PolysecError as failed:
            message = self.Finished("verify", False, str(failed))
        self.post_message(message)

    def action_drill(self) -> None:
        """A restore drill of the selected backup: asks for the identity file, then runs
        in a worker (restore into a scratch database, checks, signed record)."""
        self._with_identity("drill", "restore drill ", self.drill)

    @work(thread=True, exclusive=True, exit_on_error=False, group="backup drill")
    def drill(self, path: Path, identity_path: Path) -> None:
        assert self.actor is not None
        try:
            identity = backups.BackupConfig.from_settings(
                self.runtime.settings).load_identity(identity_path)
            report = backups.drill_backup(self.runtime, self.actor, identity, path=path)
            message = self.Finished(
                "drill", True,
                f"drill PASSED: {path.name} restored in {report.restore_seconds or 0:.2f} s, "
                f"{report.rows:,} rows checked in {report.checks_seconds or 0:.2f} s; signed "
                f"record {Path(report.record_file).name}")
        except PolysecError as failed:
            message = self.Finished("drill", False, str(failed))
        self.post_message(message)

    def action_ship(self) -> None:
        """Ship the selected backup to the configured SFTP server (in a worker, with a
        progress bar)."""
        view = self.selected()
        if view is None:
            self._result("no backup selected", ok=False)
            return
        if self._start("ship", "shipping ", total=float(max(view.size_bytes, 1))):
            self.ship(Path(view.path))

    @work(thread=True, exclusive=True, exit_on_error=False, group="backup ship")
    def ship(self, path: Path) -> None:
        assert self.actor is not None
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if done - last[0] >= total / 100 or done == total:
                last[0] = done
                self.app.call_from_thread(self._progress, float(done), float(total))

        try:
            target, hosts, key = backups.BackupConfig.from_settings(
                self.runtime.settings).shipping()
            result = backups.ship_backup(self.runtime, self.actor, path, target,
                                         known_hosts=hosts, identity=key, progress=progress)
            how = ("already there" if result.already_there else
                   f"resumed at byte {result.resumed_from}" if result.resumed_from else
                   "uploaded")
            message = self.Finished("ship", True,
                                    f"shipped {path.name} to {result.to} ({how}; SHA-256 "
                                    "read back and matched)")
        except PolysecError as failed:
            message = self.Finished("ship", False, f"ship failed: {failed}")
        self.post_message(message)

    def action_restore(self) -> None:
        """Restore the selected backup into another database (confirmation, a code)."""
        self._restore(live=None)

    def action_replace_live(self) -> None:
        """Replace the live database with the selected backup (its own confirmation)."""
        self._restore(live=self.runtime.database_label)

    def _restore(self, *, live: str | None) -> None:
        view = self.selected()
        if view is None:
            self._result("no backup selected", ok=False)
            return
        what = f"the backup of {view.created_at:%Y-%m-%d %H:%M} ({Path(view.path).name})"

        def confirmed(request: RestoreRequest | None) -> None:
            if request is not None and self._start("restore", "restoring "):
                self.restore(Path(view.path), request)

        self.app.push_screen(RestoreConfirm(what, self._default_identity(), live=live),
                             confirmed)

    @work(thread=True, exclusive=True, exit_on_error=False, group="backup restore")
    def restore(self, path: Path, request: RestoreRequest) -> None:

        assert self.actor is not None
        try:
            identity = backups.BackupConfig.from_settings(
                self.runtime.settings).load_identity(request.identity)
            if not request.replace:
                # A restore into a new database also needs a fresh code on this screen.
                sessions.step_up(self.runtime, self.actor, request.code)
                result = backups.restore_backup(self.runtime, self.actor, path, identity,
                                                to_url=request.target)
            else:
                result = backups.restore_backup(self.runtime, self.actor, path, identity,
                                                replace=True, code=request.code)
            message = self.Finished("restore", True, result.note)
        except PolysecError as failed:
            message = self.Finished("restore", False, f"restore refused or failed: {failed}")
        self.post_message(message)

    def on_backups_screen_finished(self, message: BackupsScreen.Finished) -> None:
        self.busy = None
        self.query_one("#backups-work", Horizontal).set_class(True, "-idle")
        self._result(message.text, ok=message.ok)
        self.action_reload()

    def worker_failed(self, error: BaseException) -> None:
        if self.busy is not None:
            self.busy = None
            self.query_one("#backups-work", Horizontal).set_class(True, "-idle")

    def _result(self, text: str, *, ok: bool) -> None:
        result = self.query_one("#backups-result", Static)
        result.update(safe_text(text, limit=400))
        result.set_class(not ok, "-failed")
