"""Console benchmark: start-up to an interactive login screen in a real terminal, and
key-press to repaint on the queue and timeline screens, with 1,000,000 withdrawals and
10,000,000 logins in the database.

Builds a fresh SQLite database (bench/anomalies.py's accounts and logins, bench/
screening.py's withdrawals, then ``withdrawals screen`` so the queue has held ones;
none of that is timed), then:

1. **start-up**: `polysec tui` in tmux (120x36), from starting the process until the
   login screen's name field is on the terminal (capture-pane polled every 10 ms);
   median of ``--rounds`` runs (the first one, with a cold cache, reported apart);
2. **queue repaint**: in the Textual app (headless, 160x48, logged in), from pressing
   ``r`` (load the page again: held first, by risk, over all withdrawals) until the new
   page is on screen;
3. **timeline repaint**: the timeline of the account with the most logins, from pressing
   ``r`` (reload: events, logins per day, the map) until it is on screen.

    .venv/bin/python bench/tui.py                                 # 10M logins, 1M withdrawals
    .venv/bin/python bench/tui.py --logins 500000 --withdrawals 50000 --accounts 10000

Aim (issue 9): start-up under 1 s, repaint under 50 ms. See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomalies as login_bench
import screening as withdrawal_bench

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.errors import RefusedError
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import screening

END = login_bench.END
PASSWORD = "a-long-bench-passphrase"


def _progress(out: dict[str, Any]) -> None:
    print(time.strftime("%H:%M:%S"), json.dumps(out), file=sys.stderr, flush=True)


def build(rt: Runtime, args: argparse.Namespace) -> str:
    """Fill the database; returns the external id of the account with most logins."""
    rng = random.Random(args.seed)
    ids = login_bench.build(rt, args.accounts)
    pop = login_bench.Population(rng, ids)
    start = END - timedelta(days=args.logins / 80_000 + 1)
    login_bench.insert_generated(rt, pop, args.logins, start, END, "b")
    rows = withdrawal_bench.withdrawal_rows(rng, pop, args.withdrawals, start, END, 0)
    withdrawal_bench.insert_withdrawals(rt, rows)
    screening.screen(rt, Actor(uuid.uuid4(), "bench", "automation"))
    with rt.engine.connect() as conn:
        busiest = conn.exec_driver_sql(
            "SELECT a.external_id FROM login_events l JOIN accounts a ON a.id = l.account_id "
            "GROUP BY a.external_id ORDER BY COUNT(*) DESC LIMIT 1").scalar()
    return str(busiest)


def startup(env: dict[str, str], rounds: int) -> list[float]:
    times = []
    # One idle session keeps our tmux server up between the rounds: a new session right
    # after the last one closed races with the server's exit ("server exited
    # unexpectedly").
    subprocess.run([*TMUX, "new-session", "-d", "-s", "keeper", "sleep 86400"], check=True)
    try:
        for _ in range(rounds):
            times.append(_startup_once(env))
    finally:  # our own tmux server (-L): nobody else's sessions are touched
        subprocess.run([*TMUX, "kill-server"], capture_output=True)
    return times


TMUX = ("tmux", "-L", f"polysec-bench-{os.getpid()}")


def _startup_once(env: dict[str, str]) -> float:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    began = time.perf_counter()
    subprocess.run([*TMUX, "new-session", "-d", "-s", name, "-x", "120", "-y", "36",
                    f"env {exports} {sys.executable} -m polysec_tui tui"], check=True)
    try:
        while time.perf_counter() - began < 60:
            shown = subprocess.run([*TMUX, "capture-pane", "-p", "-t", name],
                                   capture_output=True, text=True).stdout
            if "officer name" in shown:
                return (time.perf_counter() - began) * 1000
            time.sleep(0.01)
        raise SystemExit("the login screen did not appear within 60 s")
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", name], capture_output=True)


class Frames:
    """When the app wrote each frame (Textual's ``App._display``: what a terminal gets),
    and which of them were drawn once the result waited for (``showing``) was there."""

    def __init__(self, app: Any) -> None:
        self.times: list[float] = []
        self.showing: Any = None  # the result a key press waits for, while it waits
        self.shown: list[float] = []  # frames drawn with that result there
        display = app._display

        def timed(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            now = time.perf_counter()
            self.times.append(now)
            if self.showing is not None and self.showing():
                self.shown.append(now)

        app._display = timed


def _key_event(key: str) -> Any:
    """The Key event a terminal's key makes (as Textual's own `App._press_keys`)."""
    import unicodedata

    from textual import events
    from textual.keys import _get_unicode_name_from_key

    try:
        character: str | None = unicodedata.lookup(_get_unicode_name_from_key(key))
    except KeyError:
        character = key if len(key) == 1 else None
    return events.Key(key, character)


async def _press(app: Any, frames: Frames, key: str, changed: Any, what: str) -> float:
    """Key-press to the frame that shows its result, without Pilot's idle waits (each
    ``pilot.press`` and ``pilot.pause`` sleeps at least 20 ms until the process looks
    idle, which the Pilot figures include): the key event is posted, the result is
    polled every millisecond and the time is that of the first frame drawn with the
    result there (or of the result itself when no frame comes within 0.25 s: nothing on
    screen had to change). The frame is recognised as it is written, not after the poll
    noticed the result: the poll runs on the app's busy event loop, and it noticed some
    results only after their frame was written (the next frame, up to 30 ms later, was
    then taken for theirs: the figures before 2026-12-05's fifth session carry that)."""
    frames.showing, frames.shown = changed, []
    began = time.perf_counter()
    app._driver.send_message(_key_event(key))  # as Pilot does, without its idle waits
    deadline = began + 20
    while not changed():
        if time.perf_counter() > deadline:
            raise SystemExit(f"{what} did not happen within 60 s "
                             f"(focus {app.focused!r}, screen {app.screen!r}, "
                             f"search {getattr(app.screen, 'search', None)!r})")
        await asyncio.sleep(0.001)
    noticed = time.perf_counter()
    while not frames.shown and time.perf_counter() < noticed + 0.25:
        await asyncio.sleep(0.001)
    frames.showing = None
    return ((frames.shown[0] if frames.shown else noticed) - began) * 1000


def _app(rt: Runtime, session: tuple[str, Actor]) -> Any:
    """The console as `polysec tui` runs it (its own process: own_gc), logged in; a
    checkout from before own_gc (timed through PYTHONPATH) without it."""
    import inspect

    from polysec_tui.app import PolysecApp

    if "own_gc" in inspect.signature(PolysecApp).parameters:
        return PolysecApp(rt, session=session, own_gc=True)
    return PolysecApp(rt, session=session)


async def open_queue(rt: Runtime, session: tuple[str, Actor], rounds: int
                     ) -> dict[str, list[float]]:
    """From pressing ``4`` on the dashboard until the queue's first page is on screen,
    in a fresh app each round (the screen is composed the first time it is shown):
    ``rounds`` apps timed with Pilot (as bench/screening.py does), ``rounds`` by frames."""
    from polysec_tui.app import PolysecApp
    from polysec_tui.screens.withdrawals import WithdrawalQueueScreen

    async def once(app: PolysecApp, by_frames: bool) -> float:
        frames = Frames(app)
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.actor is not None, "the login")
            await pilot.pause(0.2)  # the dashboard is up (and its first load under way)

            def shown() -> bool:
                return (isinstance(app.screen, WithdrawalQueueScreen)
                        and app.screen.page is not None)

            if by_frames:
                return await _press(app, frames, "4", shown, "the queue")
            began = time.perf_counter()
            await pilot.press("4")
            await _until(pilot, shown, "the queue")
            await pilot.pause()  # the repaint of the first page
            return (time.perf_counter() - began) * 1000

    return {"queue_open": [await once(_app(rt, session), False)
                           for _ in range(rounds)],
            "queue_open_frames": [await once(_app(rt, session), True)
                                  for _ in range(rounds)]}


async def _until(pilot: Any, done: Any, what: str) -> None:
    deadline = time.perf_counter() + 60
    while not done():
        if time.perf_counter() > deadline:
            raise SystemExit(f"{what} did not happen within 60 s")
        await pilot.pause(0.001)


async def repaint(rt: Runtime, session: tuple[str, Actor], account: str,
                  rounds: int) -> dict[str, list[float]]:
    """``r`` on the queue, then on the timeline: ``rounds`` times with Pilot (press,
    poll, pause: the method of the figures before 2026-11-24), ``rounds`` by frames;
    and by frames: ``]``/``[`` on the queue (a page of other rows each time, back and
    forth between two), ``]`` after half a second on each page (forward into pages
    not seen yet, as an officer reads them), the cursor moving (down/up) on both, the
    queue's filter line (enter: the page of an account, then every row again) and the
    timeline's (each character typed filters its rows)."""
    from textual.widgets import DataTable, Input

    from polysec_tui.screens.timeline import TimelineScreen
    from polysec_tui.screens.withdrawals import WithdrawalQueueScreen

    out: dict[str, list[float]] = {
        "queue_reload": [], "timeline_reload": [], "queue_reload_frames": [],
        "timeline_reload_frames": [], "queue_page_frames": [], "queue_move_frames": [],
        "queue_filter_frames": [], "queue_forward_frames": [], "timeline_move_frames": [],
        "timeline_filter_frames": []}
    app = _app(rt, session)
    frames = Frames(app)

    async def reload(name: str, current: Any) -> None:
        for _ in range(rounds):
            before = current()
            began = time.perf_counter()
            await pilot.press("r")
            await _until(pilot, lambda before=before: current() is not before, name)
            await pilot.pause()  # the repaint
            out[name].append((time.perf_counter() - began) * 1000)
        for _ in range(rounds):
            before = current()
            out[f"{name}_frames"].append(await _press(
                app, frames, "r", lambda before=before: current() is not before, name))
            await pilot.pause()

    async def move(name: str, table: Any) -> None:
        # Away from the row the cursor starts on (the first, or the timeline's last) and back.
        keys = ("up", "down") if table.cursor_row > 0 else ("down", "up")
        for step in range(rounds):
            before = table.cursor_row
            out[name].append(await _press(
                app, frames, keys[step % 2],
                lambda before=before: table.cursor_row != before, "the cursor"))
            await pilot.pause()

    async with app.run_test(size=(160, 48)) as pilot:
        await _until(pilot, lambda: app.actor is not None, "the login")
        await pilot.press("4")
        await _until(pilot, lambda: isinstance(app.screen, WithdrawalQueueScreen)
                     and app.screen.page, "the queue")
        queue = app.screen
        assert isinstance(queue, WithdrawalQueueScreen)
        await reload("queue_reload", lambda: queue.page)
        # Other rows on screen: the next page and back (every visible cell is new).
        for step in range(rounds):
            before = queue.page
            out["queue_page_frames"].append(await _press(
                app, frames, "right_square_bracket" if step % 2 == 0 else "left_square_bracket",
                lambda before=before: queue.page is not before, "the next page"))
            await pilot.pause()
        # Forward into pages not seen yet, as an officer reads: half a second on each
        # page (the next one is fetched meanwhile), then `]`.
        for _ in range(rounds):
            await asyncio.sleep(0.5)
            before = queue.page
            if before is None or before.offset + len(before.items) >= before.total:
                break  # the last page
            out["queue_forward_frames"].append(await _press(
                app, frames, "right_square_bracket",
                lambda before=before: queue.page is not before, "the next page"))
            await pilot.pause()
        await move("queue_move_frames", queue.query_one("#queue-table", DataTable))
        # The filter line: an account's withdrawals (the beginning of its id, as typed),
        # then every row again.
        accounts = [i.account for i in queue.page.items] if queue.page else []
        for step in range(rounds):
            typed = accounts[step % len(accounts)][:6] if step % 2 == 0 and accounts else ""
            await pilot.press("slash")
            queue.query_one("#queue-filter", Input).value = typed
            before = queue.page
            out["queue_filter_frames"].append(await _press(
                app, frames, "enter",
                lambda before=before, typed=typed: queue.search == typed
                and queue.page is not before, "the filtered page"))
            await pilot.pause()
        screen = TimelineScreen()
        screen.ident = account
        await app.push_screen(screen)
        await _until(pilot, lambda: screen.data is not None, "the timeline")
        await reload("timeline_reload", lambda: screen.data)
        events = screen.query_one("#tl-events", DataTable)
        await move("timeline_move_frames", events)
        # Live filtering as the officer types: "login", one character at a time, then
        # back to every row.
        for _ in range(max(1, rounds // 5)):
            await pilot.press("slash")
            for typed in ("l", "lo", "log", "logi", "login"):
                out["timeline_filter_frames"].append(await _press(
                    app, frames, typed[-1],
                    lambda typed=typed: getattr(events, "search", None) == typed,
                    "the filtered rows"))
                await pilot.pause()
            await pilot.press("escape")
    return out


async def screens(rt: Runtime, session: tuple[str, Actor], account: str,
                  args: argparse.Namespace) -> dict[str, list[float]]:
    found = await repaint(rt, session, account, args.rounds)
    if args.open_rounds:
        found.update(await open_queue(rt, session, args.open_rounds))
    return found


def _prepare(root: Path, args: argparse.Namespace, out: dict[str, Any]) -> dict[str, str]:
    """Build the database, keyring and officer into ``root``; returns what the timing
    needs (the officer's TOTP secret, the busiest account)."""
    keyring = root / "keyring.json"
    write_new_keyring(keyring, Keyring.generate())
    engine = make_engine(f"sqlite:///{root / 'bench.db'}")
    migrate.upgrade(engine)
    rt = Runtime(Settings(f"sqlite:///{root / 'bench.db'}", keyring), engine,
                 load_keyring(keyring))
    secret = officers.bootstrap_admin(rt, "chief", PASSWORD).secret
    began = time.monotonic()
    account = build(rt, args)
    out["build_s"] = round(time.monotonic() - began)
    _progress(out)
    engine.dispose()
    return {"secret": secret, "account": account}


def _cached(cache: Path, args: argparse.Namespace,
            out: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """The database for these sizes from ``cache``, built there first if it is not."""
    where = cache / f"tui-{args.accounts}-{args.logins}-{args.withdrawals}-{args.seed}"
    meta = where / "meta.json"
    if meta.exists():
        out["cached"] = str(where)
        return where, json.loads(meta.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=where.name + ".partial-", dir=cache))
    found = _prepare(partial, args, out)
    (partial / "meta.json").write_text(json.dumps(found))
    partial.rename(where)  # only a complete build gets the name
    return where, found


def _warm(database: Path) -> None:
    """Checkpoint the WAL a build leaves and read the file once: a console's database is
    in the page cache, and this machine's kernel drops idle pages of the cache (DAMON),
    which made the same query 10 or 100 ms from one run to the next."""
    import sqlite3

    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with database.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"accounts": args.accounts, "logins": args.logins,
                           "withdrawals": args.withdrawals, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="polysec-bench-tui-") as tmp:
        if args.cache is not None:
            root, found = _cached(args.cache, args, out)
            if args.build_only:
                return out
        else:
            root, found = Path(tmp), _prepare(Path(tmp), args, out)
        keyring = root / "keyring.json"
        url = f"sqlite:///{root / 'bench.db'}"
        _warm(root / "bench.db")
        engine = make_engine(url)
        migrate.upgrade(engine)
        rt = Runtime(Settings(url, keyring), engine, load_keyring(keyring))
        env = {"POLYSEC_DB_URL": url, "POLYSEC_KEYRING": str(keyring),
               "XDG_CONFIG_HOME": str(Path(tmp) / "xdg"), "TERM": "xterm-256color"}
        if os.environ.get("PYTHONPATH"):  # e.g. timing another checkout with this venv
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        out["load_avg_before"] = [round(x, 2) for x in os.getloadavg()]
        if not args.skip_startup:
            times = startup(env, args.rounds + 1)
            out["startup_cold_ms"] = round(times[0])
            out["startup_ms_median"] = round(statistics.median(times[1:]))
            out["startup_ms_max"] = round(max(times[1:]))
            _progress(out)
        from polysec_tui.crypto import totp

        try:
            session = sessions.login(rt, "chief", PASSWORD,
                                     totp.code_at(found["secret"], rt.clock()))
        except RefusedError:  # a cached database: this code was used by the last run
            time.sleep(31 - time.time() % 30)
            session = sessions.login(rt, "chief", PASSWORD,
                                     totp.code_at(found["secret"], rt.clock()))
        if args.profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        found_ms = asyncio.run(screens(rt, session, found["account"], args))
        if args.profile is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        for key, samples in found_ms.items():
            kept = samples if key.startswith("queue_open") else samples[1:]  # 1 warm-up
            out[f"{key}_ms_median"] = round(statistics.median(kept), 1)
            out[f"{key}_ms_max"] = round(max(kept), 1)
            out.setdefault("samples_ms", {})[key] = [round(x, 1) for x in samples]
        out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--logins", type=int, default=10_000_000)
    parser.add_argument("--withdrawals", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--open-rounds", type=int, default=5,
                        help="fresh apps in which to time opening the queue (0: none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path, default=None, metavar="FILE",
                        help="cProfile the screen measurements (not start-up) into FILE")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="keep the built database in DIR/tui-<sizes>-<seed> and reuse "
                             "it when it is there (e.g. /tmp/bench-cache); off by default")
    parser.add_argument("--build-only", action="store_true",
                        help="with --cache: build the database into the cache and stop")
    parser.add_argument("--skip-startup", action="store_true",
                        help="time only the screens, not `polysec tui` in tmux")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is needed (apt-get install tmux)")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
