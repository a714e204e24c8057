"""Login anomaly benchmark: full analysis, incremental pass, timeline query (SQLite).

Builds a fresh SQLite database (temp dir) with ``--accounts`` accounts (real encrypted
e-mails) and ``--logins`` logins written straight into ``login_events`` (a raw
``executemany``; ingest has its own benchmark, bench/ingest.py): each account has a home
IP, ASN, city and one or two devices, 3 % of attempts fail, 1 % of logins come from
somewhere else, and one brute-force burst per 100,000 logins. Then it times:

1. ``analyze --full`` over all of them, in a fresh interpreter (its peak RSS is the
   analysis's own),
2. an incremental ``analyze`` after ``--new`` further logins, then the watcher's passes
   (`polysec watch`) over ``--new`` more twice: the first builds its windows from the
   look-back, the second reads only what arrived,
3. ``account_timeline`` for one account after the table has grown to
   ``--timeline-logins`` (older logins are added; median of 20 calls, warm cache).

    .venv/bin/python bench/anomalies.py                            # 5M / 10k / 10M
    .venv/bin/python bench/anomalies.py --logins 500000 --timeline-logins 1000000
    .venv/bin/python bench/anomalies.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/anomalies.py --cache /tmp/bench-cache   # load once, then reuse
    .venv/bin/python bench/anomalies.py --cache /tmp/bench-cache --iplists   # with IP lists

With ``--iplists`` the runs judge with IP reputation lists of a real deployment's sizes
imported first (not timed): a FireHOL level1-sized netset (4,500 networks, /24 to /16),
Tor's exit list (1,500 addresses), a CrowdSec blocklist (15,000 addresses) and an ASN
table (3,000 networks, the benchmark's own ISPs among them as residential).

With ``--shadow`` a proposal of login thresholds is pending (four-eyes request open)
from before the incremental pass on: every pass judges the new logins twice, under the
thresholds in force and in shadow under the proposal's (issue 21, `polysec rules`).

With ``--postgres URL`` the same runs on a fresh PostgreSQL database
(``polysec_bench_<random>``, created on that server and dropped at the end); rows are
then inserted through SQLAlchemy Core instead of SQLite's raw ``executemany``, and
``VACUUM ANALYZE`` runs after each bulk load (not timed). Progress lines with the
figures so far go to stderr, so a run stopped early still reports what it measured.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import multiprocessing
import os
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy import insert as sa_insert

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import (
    Account,
    ApprovalRequest,
    LoginEvent,
    Officer,
    RuleSet,
    RuleSetLoginShadow,
)
from polysec_tui.services.logins import anomalies, timeline
from polysec_tui.services.logins import thresholds as login_thresholds
from polysec_tui.services.logins.rules import DEFAULTS
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime

END = datetime(2026, 11, 20, tzinfo=UTC)
CITIES = [("DE", "Berlin", 52.52, 13.40, 3320), ("FR", "Paris", 48.86, 2.35, 3215),
          ("GB", "London", 51.51, -0.13, 2856), ("US", "New York", 40.71, -74.0, 7922),
          ("NL", "Amsterdam", 52.37, 4.90, 1136), ("ES", "Madrid", 40.42, -3.70, 3352),
          ("IT", "Roma", 41.90, 12.50, 3269), ("PL", "Warszawa", 52.23, 21.01, 5617),
          ("TR", "Istanbul", 41.01, 28.98, 9121), ("BR", "Sao Paulo", -23.55, -46.63, 28573)]
BROWSERS = ["Chrome 124", "Firefox 125", "Safari 17", "Edge 124", "Chrome Mobile 124"]
OSES = ["Windows 11", "macOS 14", "iOS 17", "Android 14", "Linux"]
COLUMNS = ("external_id", "account_id", "at", "success", "failure_reason", "ip", "asn",
           "country", "city", "latitude", "longitude", "user_agent", "browser", "os",
           "device_type", "device_id", "rtt_ms")
INSERT = (f"INSERT INTO login_events ({', '.join(COLUMNS)}) "
          f"VALUES ({', '.join('?' for _ in COLUMNS)})")


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class Population:
    def __init__(self, rng: random.Random, accounts: list[uuid.UUID]) -> None:
        self.rng = rng
        self.accounts = accounts
        self.home = {}
        for acc in accounts:
            city = rng.choice(CITIES)
            devices = [(f"{rng.getrandbits(64):016x}", rng.choice(BROWSERS), rng.choice(OSES))
                       for _ in range(rng.choice((1, 1, 2)))]
            ip = f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}." \
                 f"{rng.randint(1, 254)}"
            self.home[acc] = (city, ip, devices)
        self.seq = 0

    def rows(self, n: int, start: datetime, end: datetime, prefix: str) -> list[tuple[Any, ...]]:
        rng = self.rng
        span = (end - start).total_seconds()
        out = []
        times = sorted(rng.random() * span for _ in range(n))
        i = 0
        while i < n:
            at = start + timedelta(seconds=times[i])
            if rng.random() < 1e-5:  # a brute-force burst: 20 failures in 3 minutes
                acc = rng.choice(self.accounts)
                for k in range(min(20, n - i)):
                    out.append(self._row(prefix, acc, at + timedelta(seconds=9 * k), False,
                                         "45.9.20.7", ("RU", "Moscow", 55.75, 37.62, 209588),
                                         ("botdevice", "HeadlessChrome 124", "Linux")))
                    i += 1
                continue
            acc = rng.choice(self.accounts)
            city, ip, devices = self.home[acc]
            device = rng.choice(devices)
            if rng.random() < 0.01:  # somewhere else
                city = rng.choice(CITIES)
                ip = f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.0.{rng.randint(1, 254)}"
            out.append(self._row(prefix, acc, at, rng.random() >= 0.03, ip, city, device))
            i += 1
        return out

    def _row(self, prefix: str, acc: uuid.UUID, at: datetime, ok: bool, ip: str,
             city: tuple[str, str, float, float, int], device: tuple[str, str, str]
             ) -> tuple[Any, ...]:
        self.seq += 1
        return (f"{prefix}{self.seq}", acc.hex, _stamp(at), int(ok),
                None if ok else "bad_password", ip, city[4], city[0], city[1], city[2],
                city[3], "Mozilla/5.0", device[1], device[2], "desktop", device[0], 40)


ACCOUNT_COLUMNS = ("id", "external_id", "created_at", "country", "status", "email_enc",
                   "email_bidx", "ingested_at")


def _typed(columns: tuple[str, ...], row: tuple[Any, ...]) -> dict[str, Any]:
    """A raw SQLite row as Python values, for SQLAlchemy Core on a server."""
    out = dict(zip(columns, row, strict=True))
    for key in ("id", "account_id"):
        if key in out and isinstance(out[key], str):
            out[key] = uuid.UUID(hex=out[key])
    for key in ("at", "created_at", "ingested_at"):
        if key in out:
            out[key] = datetime.fromisoformat(out[key]).replace(tzinfo=UTC)
    if "success" in out:
        out["success"] = bool(out["success"])
    return out


def build(rt: Runtime, n_accounts: int) -> list[uuid.UUID]:
    now = END
    ids = [uuid.uuid4() for _ in range(n_accounts)]
    rows = []
    for i, acc in enumerate(ids):
        email = f"user{i}@example.com"
        rows.append((acc.hex, f"U{i}", _stamp(now), "DE", "active",
                     rt.cipher.encrypt(email, table="accounts", column="email", row_id=acc),
                     rt.blind_index.email(email), _stamp(now)))
    with rt.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"INSERT INTO accounts ({', '.join(ACCOUNT_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in ACCOUNT_COLUMNS)})", rows)
        else:
            conn.execute(sa_insert(cast_table(Account)),
                         [_typed(ACCOUNT_COLUMNS, r) for r in rows])
    return ids


def cast_table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def insert(rt: Runtime, rows: list[tuple[Any, ...]]) -> None:
    with rt.engine.begin() as conn:
        for start in range(0, len(rows), 100_000):
            chunk = rows[start : start + 100_000]
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql(INSERT, chunk)
            else:
                conn.execute(sa_insert(cast_table(LoginEvent)),
                             [_typed(COLUMNS, r) for r in chunk])


def insert_generated(rt: Runtime | None, pop: Population, n: int, start: datetime,
                     end: datetime, prefix: str) -> None:
    """Generate and insert (with ``rt`` None: generate only, to bring the random
    generator to where a loaded run's is)."""
    chunk = 500_000
    days = (end - start) / max(1, n // chunk + (n % chunk > 0))
    t = start
    left = n
    while left > 0:
        k = min(chunk, left)
        rows = pop.rows(k, t, t + days, prefix)
        if rt is not None:
            insert(rt, rows)
        t += days
        left -= k


def _progress(out: dict[str, Any]) -> None:
    """Print the figures so far on stderr, so a run stopped early still reports."""
    print(time.strftime("%H:%M:%S"), json.dumps(out), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    out: dict[str, Any] = {"engine": "postgresql" if args.postgres else "sqlite",
                           "accounts": args.accounts,
                           "logins": args.logins, "new": args.new,
                           "timeline_logins": args.timeline_logins,
                           "iplists": args.iplists, "shadow": args.shadow}
    with tempfile.TemporaryDirectory() as tmp:
        keyring_path = Path(tmp) / "keyring.json"
        db_path = Path(tmp) / "bench.db"
        cached = None
        if args.cache and not args.postgres:
            cached = Path(args.cache) / f"anomalies-{args.accounts}-{args.logins}-{args.seed}"
            if cached.is_dir():  # the loaded rows of an earlier run: a copy, not timed
                shutil.copy(cached / "keyring.json", keyring_path)
                shutil.copy(cached / "bench.db", db_path)
        if not keyring_path.exists():
            write_new_keyring(keyring_path, Keyring.generate())
        url = f"sqlite:///{db_path}"
        if args.postgres:
            url = _create_database(args.postgres)
        engine = make_engine(url)
        migrate.upgrade(engine)
        rt = Runtime(Settings(url, keyring_path), engine, load_keyring(keyring_path),
                     clock=lambda: END)
        actor = Actor(uuid.uuid4(), "bench", "automation")
        reader = Actor(uuid.uuid4(), "bench-reader", "analyst")
        began = time.monotonic()
        days = args.logins / 80_000  # about 80,000 logins a day
        start = END - timedelta(days=days + 1)
        if cached is not None and cached.is_dir():
            with rt.engine.connect() as conn:  # the same accounts, in the same order
                ids = [uuid.UUID(hex=h) for (h,) in conn.exec_driver_sql(
                    "SELECT id FROM accounts ORDER BY CAST(substr(external_id, 2) AS INTEGER)")]
            pop = Population(rng, ids)
            insert_generated(None, pop, args.logins, start, END - timedelta(days=1), "b")
            out["load_s"] = "cached"
        else:
            ids = build(rt, args.accounts)
            pop = Population(rng, ids)
            insert_generated(rt, pop, args.logins, start, END - timedelta(days=1), "b")
            out["load_s"] = round(time.monotonic() - began, 1)
            if cached is not None:
                engine.dispose()
                partial = cached.with_name(f".partial-{cached.name}")
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                shutil.copy(keyring_path, partial / "keyring.json")
                shutil.copy(db_path, partial / "bench.db")
                partial.rename(cached)
        if args.iplists:
            out["iplists_entries"] = _import_iplists(rt, actor, random.Random(args.seed + 7))
        _statistics(rt)
        _progress(out)

        # In a fresh interpreter, as `polysec logins analyze --full` runs: its peak memory
        # is the analysis's, not this process's (which generated the rows).
        engine.dispose()
        # Not a Pool: its workers are daemons, which may not start the second process
        # that reads half the logins.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            seconds, new_anomalies, rss, helper_rss, together = pool.submit(
                _full_run, url, str(keyring_path)).result()
        out["full_s"] = round(seconds, 1)
        out["full_logins_per_s"] = round(args.logins / seconds)
        out["full_new_anomalies"] = new_anomalies
        out["full_peak_rss_mib"] = rss
        out["full_reader_peak_rss_mib"] = helper_rss
        out["full_together_peak_rss_mib"] = together
        _progress(out)

        if args.shadow:
            _propose_logins(rt)
        insert(rt, pop.rows(args.new, END - timedelta(days=1), END - timedelta(hours=12), "n"))
        if args.floor and not args.postgres:
            out["incremental_floor_ms"] = _history_floor(db_path)
        began = time.monotonic()
        inc = anomalies.analyze(rt, actor)
        out["incremental_s"] = round(time.monotonic() - began, 2)
        out["incremental_logins"] = inc.logins
        out["incremental_new_anomalies"] = inc.new_anomalies
        _progress(out)

        # The watcher's passes (`polysec watch`): its first pass reads the look-back once
        # to build the windows; the next ones read only what arrived.
        windows = anomalies.WindowState()
        insert(rt, pop.rows(args.new, END - timedelta(hours=12), END - timedelta(hours=6), "w"))
        began = time.monotonic()
        anomalies.analyze_new(rt, windows, 10 * args.new)
        out["watcher_first_pass_s"] = round(time.monotonic() - began, 2)
        insert(rt, pop.rows(args.new, END - timedelta(hours=6), END - timedelta(hours=1), "x"))
        began = time.monotonic()
        kept = anomalies.analyze_new(rt, windows, 10 * args.new)
        out["watcher_pass_s"] = round(time.monotonic() - began, 2)
        out["watcher_pass_logins"] = kept.logins
        out["watcher_rebuilds"] = windows.rebuilds
        if args.shadow:
            with rt.sessions() as session:
                out["shadow_login_disagreements"] = session.query(RuleSetLoginShadow).count()
        _progress(out)

        extra = args.timeline_logins - args.logins - args.new
        if extra > 0:
            began = time.monotonic()
            old_start = start - timedelta(days=extra / 80_000)
            insert_generated(rt, pop, extra, old_start, start, "o")
            out["timeline_load_s"] = round(time.monotonic() - began, 1)
        _statistics(rt)
        with rt.engine.connect() as conn:
            out["total_logins"] = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM login_events").scalar()
        samples = []
        events = 0
        for i in range(21):
            acc = f"U{rng.randrange(args.accounts)}" if i else "U0"
            began = time.perf_counter()
            view = timeline.account_timeline(rt, reader, acc)
            samples.append((time.perf_counter() - began) * 1000)
            events = max(events, len(view.events))
        out["timeline_ms_median"] = round(statistics.median(samples[1:]), 1)
        out["timeline_ms_max"] = round(max(samples[1:]), 1)
        out["timeline_events_max"] = events
        out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        engine.dispose()
        if args.postgres:
            _drop_database(args.postgres, url)
    return out


def _history_floor(db_path: Path) -> dict[str, float]:
    """The least the incremental pass's history store costs, whatever the code around
    it: the stored histories of the accounts with new successful logins read, decoded,
    encoded and written back with nothing but sqlite3 and json (then rolled back, so
    the pass that follows finds them as they were). In milliseconds."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    gc.disable()  # as the pass runs (`rules.no_cycle_collection`)
    try:
        (done,) = conn.execute(
            "SELECT login_id FROM analysis_checkpoints WHERE name = 'logins'").fetchone()
        accounts = [a for (a,) in conn.execute(
            "SELECT DISTINCT account_id FROM login_events WHERE id > ? AND success = 1",
            (done,))]
        began = time.perf_counter()
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(accounts), 500):
            chunk = accounts[start : start + 500]
            rows += conn.execute(
                "SELECT account_id, logins, features, last_login_at, last_located "
                f"FROM login_histories WHERE account_id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall()
        read = time.perf_counter()
        decoded = [(a, n, json.loads(f), at, None if last is None else json.loads(last))
                   for a, n, f, at, last in rows]
        decode = time.perf_counter()
        encoded = [(a, n + 1, json.dumps(f), at, json.dumps(last))
                   for a, n, f, at, last in decoded]
        encode = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO login_histories (account_id, logins, features, last_login_at, "
            "last_located) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
            "logins = excluded.logins, features = excluded.features, "
            "last_login_at = excluded.last_login_at, last_located = excluded.last_located",
            encoded)
        write = time.perf_counter()
        conn.execute("ROLLBACK")
    finally:
        gc.enable()
        conn.close()
    return {"accounts": len(rows), "read": round(1000 * (read - began), 1),
            "json_decode": round(1000 * (decode - read), 1),
            "json_encode": round(1000 * (encode - decode), 1),
            "write": round(1000 * (write - encode), 1)}


def _propose_logins(rt: Runtime) -> None:
    """A pending proposal (as `polysec rules propose` leaves it) of a lower brute-force
    count and a lower risk threshold: both make the shadow find more than the live
    thresholds."""
    t = login_thresholds.parse_section(
        {"brute_force_failures": 4, "risk_log10_threshold": 2.5}, DEFAULTS, "bench")
    with rt.transaction() as session:
        officer = Officer(id=uuid.uuid4(), name=f"bench-{uuid.uuid4().hex[:6]}",
                          role="senior", created_at=END)
        session.add(officer)
        session.flush()
        request = ApprovalRequest(id=uuid.uuid4(), kind="rule_set", requester_id=officer.id,
                                  reason="bench", payload={}, created_at=END,
                                  expires_at=END + timedelta(days=14), status="pending")
        session.add(request)
        session.flush()
        session.add(RuleSet(based_on=None, parameters={"logins": login_thresholds.parameters_of(t)},
                            changes={}, reason="bench", proposed_by=officer.id, proposed_at=END,
                            request_id=request.id, shadow_judged=0))


def _import_iplists(rt: Runtime, actor: Actor, rng: random.Random) -> int:
    """Lists of real sizes over random global address space (see the module's text),
    imported by an automation officer (the lists name who imported them)."""
    from sqlalchemy import select

    from polysec_tui.db.models import Officer
    from polysec_tui.services.networks import reputation
    from polysec_tui.services.officers import registry

    registry.seed_officers(rt, [("bench-lists", "automation", None)], rt.clock())
    with rt.sessions() as session:
        officer_id = session.scalars(select(Officer.id).where(Officer.name == "bench-lists")).one()
    actor = Actor(officer_id, "bench-lists", "automation")

    def address() -> str:
        return f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}." \
               f"{rng.randint(1, 254)}"

    prefixes = (16, 20, 22, 24, 24, 24)
    netset = "\n".join(f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.0.0/{rng.choice(prefixes)}"
                       for _ in range(4_500))
    files = [("firehol_level1", "netset", None, netset),
             ("tor-exits", "netset", "tor", "\n".join(address() for _ in range(1_500))),
             ("crowdsec", "netset", None, "\n".join(address() for _ in range(15_000))),
             ("asn-types", "asn", None, "asn,category\n" + "\n".join(
                 f"{asn},{rng.choice(('hosting', 'vpn', 'proxy', 'mobile', 'business'))}"
                 for asn in rng.sample(range(10_000, 400_000), 3_000 - len(CITIES)))
              + "\n" + "\n".join(f"{c[4]},residential" for c in CITIES))]
    entries = 0
    for name, fmt, category, body in files:
        fmt, parsed, sha = reputation.read_file(io.BytesIO(body.encode()), fmt)
        entries += reputation.import_list(rt, actor, fmt, parsed, sha, name=name,
                                          category=category).entries
    return entries


class _TreePeak(threading.Thread):
    """The peak of this process's resident memory plus its children's (the second
    reader of a full run), sampled every 50 ms from /proc."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self.done = threading.Event()

    @staticmethod
    def _rss_kib(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self) -> None:
        me = os.getpid()
        while not self.done.wait(0.05):
            children = []
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        stat = Path(f"/proc/{entry}/stat").read_text()
                    except OSError:
                        continue
                    if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                        children.append(int(entry))
            total = self._rss_kib(me) + sum(self._rss_kib(pid) for pid in children)
            self.peak_kib = max(self.peak_kib, total)


def _full_run(url: str, keyring_path: str) -> tuple[float, dict[str, int], int, int, int]:
    """``analyze --full`` in a child process: (seconds, findings per kind, peak RSS MiB,
    peak RSS MiB of the process that read half the logins (0 if none), and the peak of
    both together, sampled)."""
    engine = make_engine(url)
    rt = Runtime(Settings(url, Path(keyring_path)), engine, load_keyring(Path(keyring_path)),
                 clock=lambda: END)
    tree = _TreePeak()
    tree.start()
    began = time.monotonic()
    report = anomalies.analyze(rt, Actor(uuid.uuid4(), "bench", "automation"), full=True)
    seconds = time.monotonic() - began
    tree.done.set()
    tree.join()
    engine.dispose()
    rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    helper = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return seconds, report.new_anomalies, rss, helper, round(tree.peak_kib / 1024)


def _statistics(rt: Runtime) -> None:
    """PostgreSQL: ``VACUUM ANALYZE`` after a bulk load (not timed), as autovacuum would
    have done on a live database; without statistics the planner misjudges the freshly
    loaded tables (the test server here runs with autovacuum off)."""
    if rt.engine.dialect.name != "postgresql":
        return
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def _create_database(server: str) -> str:
    name = f"polysec_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return parse_url(server).set(database=name).render_as_string(hide_password=False)


def _drop_database(server: str, url: str) -> None:
    name = parse_url(url).database
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--logins", type=int, default=5_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--timeline-logins", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="run on a fresh database on this PostgreSQL server instead")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="SQLite: keep the loaded database in DIR and reuse it next time")
    parser.add_argument("--iplists", action="store_true",
                        help="import IP reputation lists of real sizes before the runs")
    parser.add_argument("--shadow", action="store_true",
                        help="a proposal of login thresholds pending: the passes judge in "
                             "shadow too")
    parser.add_argument("--floor", action="store_true",
                        help="SQLite: before the incremental pass, time the least its "
                             "history store can cost (raw sqlite3 and json, rolled back)")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
