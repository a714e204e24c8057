"""Withdrawal screening benchmark: screen 1,000,000 withdrawals over 5,000,000 logins,
then open the review queue.

Builds a fresh database (SQLite in a temporary directory, or with ``--postgres URL`` a
fresh ``polysec_bench_<random>`` database on that server, dropped at the end) with
``--accounts`` accounts, ``--logins`` logins (bench/anomalies.py's population: a home IP,
city and devices per account, 3 % failures, 1 % from elsewhere) and ``--withdrawals``
withdrawals spread over the same period, written straight into the tables (not timed).
Withdrawals name no login (``login_id``), so screening takes the slower path that looks
the request IP's country and network up in the logins. 80 % go to the account's usual
address, 10 % of requests come from an IP the account never used, 1 % drain the balance,
0.5 % are twenty times the usual amount.

Then it times:

1. ``withdrawals screen`` over all of them (withdrawals screened per second), with the
   CPU seconds of this process (which writes) and of the worker processes (which judge);
   then a second run, which finds nothing left to screen (what a cron run costs);
2. opening the queue: ``list_queue`` (median of 21 calls, warm) for the default view
   (open: held first, by risk), sorted by amount, and the ``pending`` view;
3. the queue screen in the real Textual app (headless, 160x48): from pressing ``4`` until
   the first page is on screen (``--tui-rounds`` fresh apps, median and max), timed by
   Pilot and by the frames the app writes (bench/tui.py's ``open_queue``: Pilot's
   waits add about 60 ms per step).

    .venv/bin/python bench/screening.py                      # SQLite, 1M / 5M / 100k accounts
    .venv/bin/python bench/screening.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/screening.py --withdrawals 100000 --logins 500000 --accounts 10000
    .venv/bin/python bench/screening.py --cache /tmp/bench-cache --no-tui   # build once, reuse

Building the data is most of a run (5M logins: about 7 minutes on SQLite on an idle
machine). With ``--cache DIR`` the unscreened database is built once and each run times a
fresh copy of it: on SQLite ``DIR/screening_a<accounts>_l<logins>_w<withdrawals>_s<seed>.db``
(with its keyring) is copied into the temporary directory; on PostgreSQL the cache is a
database ``polysec_benchcache_<same name>`` on the server (kept) and each run gets
``CREATE DATABASE ... TEMPLATE`` it (dropped at the end). The copy has never been
screened; migrations newer than the cache are applied to it before timing.
``--build-only`` stops after building or copying; ``--no-tui`` skips the Textual timing.
``--rule-sets`` then times a rule set proposal's backtest over every withdrawal, and
screening everything again with the proposal running in shadow (its cost beside the
first run's ``screen_s``).

Progress lines with the figures so far go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy import insert as sa_insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomalies as login_bench

from polysec_tui.config import Settings
from polysec_tui.crypto import totp
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import Withdrawal, WithdrawalFlag, WithdrawalScreening
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import review as queue
from polysec_tui.services.withdrawals import rulesets, screening

END = login_bench.END
ASSETS = (("BTC", 0.05), ("ETH", 1.5), ("USDT", 900.0), ("SOL", 12.0))
W_COLUMNS = ("external_id", "account_id", "requested_at", "asset", "amount",
             "available_balance", "address", "ip", "status")
W_INSERT = (f"INSERT INTO withdrawals ({', '.join(W_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in W_COLUMNS)})")


def withdrawal_rows(rng: random.Random, pop: login_bench.Population, n: int, start: datetime,
                    end: datetime, first: int) -> list[tuple[Any, ...]]:
    span = (end - start).total_seconds()
    rows = []
    for k, offset in enumerate(sorted(rng.random() * span for _ in range(n))):
        acc = rng.choice(pop.accounts)
        _city, ip, _devices = pop.home[acc]
        asset, typical = ASSETS[hash(acc) % len(ASSETS)]
        amount = typical * rng.uniform(0.5, 1.5)
        if rng.random() < 0.005:
            amount *= 20
        balance = amount * rng.uniform(1.5, 30)
        if rng.random() < 0.01:
            balance = amount * 1.02
        if rng.random() < 0.1:
            ip = f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.7.{rng.randint(1, 254)}"
        address = (f"addr-{acc.hex[:20]}" if rng.random() < 0.8
                   else f"addr-{rng.getrandbits(80):020x}")
        rows.append((f"w{first + k}", acc.hex,
                     login_bench._stamp(start + timedelta(seconds=offset)), asset,
                     format(Decimal(f"{amount:.6f}"), "f"),
                     format(Decimal(f"{balance:.6f}"), "f"), address, ip, "pending"))
    return rows


def insert_withdrawals(rt: Runtime, rows: list[tuple[Any, ...]]) -> None:
    with rt.engine.begin() as conn:
        for at in range(0, len(rows), 100_000):
            chunk = rows[at : at + 100_000]
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql(W_INSERT, chunk)
            else:
                typed = []
                for r in chunk:
                    d = dict(zip(W_COLUMNS, r, strict=True))
                    d["account_id"] = uuid.UUID(hex=d["account_id"])
                    d["requested_at"] = datetime.fromisoformat(d["requested_at"]).replace(
                        tzinfo=UTC)
                    d["amount"] = Decimal(d["amount"])
                    d["available_balance"] = Decimal(d["available_balance"])
                    typed.append(d)
                conn.execute(sa_insert(login_bench.cast_table(Withdrawal)), typed)


def _progress(out: dict[str, Any]) -> None:
    print(time.strftime("%H:%M:%S"), json.dumps(out), file=sys.stderr, flush=True)


def _median_ms(call: Any, n: int = 21) -> float:
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(samples[1:]), 1)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load(rt: Runtime, args: argparse.Namespace) -> None:
    """Write the accounts, logins and withdrawals straight into the tables."""
    rng = random.Random(args.seed)
    ids = login_bench.build(rt, args.accounts)
    pop = login_bench.Population(rng, ids)
    start = END - timedelta(days=args.logins / 80_000 + 1)
    login_bench.insert_generated(rt, pop, args.logins, start, END, "b")
    chunk = 200_000
    span = (END - start) / max(1, -(-args.withdrawals // chunk))
    t, left, first = start, args.withdrawals, 0
    while left > 0:
        k = min(chunk, left)
        insert_withdrawals(rt, withdrawal_rows(rng, pop, k, t, t + span, first))
        t, left, first = t + span, left - k, first + k
    if rt.engine.dialect.name == "postgresql":
        # As after any bulk load: statistics, and the visibility map index-only scans need.
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def _cache_name(args: argparse.Namespace) -> str:
    return (f"screening_a{args.accounts}_l{args.logins}_w{args.withdrawals}"
            f"_s{args.seed}")


def _runtime(url: str, keyring_path: Path) -> Runtime:
    engine = make_engine(url)
    migrate.upgrade(engine)
    return Runtime(Settings(url, keyring_path), engine, load_keyring(keyring_path),
                   clock=lambda: END)


def _fill_cache(args: argparse.Namespace, url: str, keyring_path: Path) -> None:
    """Build the unscreened database once at ``url`` (with its keyring)."""
    keyring_path.with_suffix(".part").unlink(missing_ok=True)
    write_new_keyring(keyring_path.with_suffix(".part"), Keyring.generate())
    keyring_path.with_suffix(".part").rename(keyring_path)
    rt = _runtime(url, keyring_path)
    try:
        _load(rt, args)
        if rt.engine.dialect.name == "sqlite":  # everything into the one file we copy
            with rt.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        rt.engine.dispose()


def _from_cache(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> tuple[str, Path]:
    """A fresh copy of the cached unscreened database (built first if missing).

    SQLite: ``DIR/<name>.db`` (keyring ``DIR/<name>.keyring.json``) is copied into the
    temporary directory. PostgreSQL: the cache is a database ``polysec_benchcache_<name>``
    on the server (keyring ``DIR/<name>.postgresql.keyring.json``), and each run gets
    ``CREATE DATABASE polysec_bench_<random> TEMPLATE`` it. Either way the copy has never
    been screened (every withdrawal ``pending``, no hits or scores), and migrations newer
    than the cache are applied to the copy.
    """
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    name = _cache_name(args)
    began = time.monotonic()
    if args.postgres:
        keyring_path = cache / f"{name}.postgresql.keyring.json"
        cached = f"polysec_benchcache_{name}"
        admin = make_engine(args.postgres, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                present = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                      {"n": cached})
                if not present or not keyring_path.exists():
                    conn.execute(text(f"DROP DATABASE IF EXISTS {cached} WITH (FORCE)"))
                    conn.execute(text(f"CREATE DATABASE {cached}"))
                    out["cache_built"] = True
                    _fill_cache(args, parse_url(args.postgres).set(database=cached)
                                .render_as_string(hide_password=False), keyring_path)
                copy = f"polysec_bench_{uuid.uuid4().hex[:10]}"
                conn.execute(text(f"CREATE DATABASE {copy} TEMPLATE {cached}"))
        finally:
            admin.dispose()
        url = (parse_url(args.postgres).set(database=copy)
               .render_as_string(hide_password=False))
    else:
        keyring_path = cache / f"{name}.keyring.json"
        cached_db = cache / f"{name}.db"
        if not cached_db.exists() or not keyring_path.exists():
            part = cached_db.with_suffix(".part")
            part.unlink(missing_ok=True)
            keyring_path.unlink(missing_ok=True)
            out["cache_built"] = True
            _fill_cache(args, f"sqlite:///{part}", keyring_path)
            part.rename(cached_db)
        if cached_db.with_name(cached_db.name + "-wal").exists():
            raise SystemExit(f"{cached_db} has a -wal file: in use, or a build was cut short")
        shutil.copyfile(cached_db, tmp / "bench.db")
        url = f"sqlite:///{tmp / 'bench.db'}"
    out["cache_s"] = round(time.monotonic() - began, 1)
    return url, keyring_path


def _rule_sets(rt: Runtime, actor: Any, tmp: Path, out: dict[str, Any]) -> None:
    """A proposal (a lower threshold, a lighter new_destination): its backtest over every
    withdrawal, then screening everything again with the proposal running in shadow."""
    proposal = tmp / "proposal.toml"
    proposal.write_text("[screening]\nhold_threshold = 45\n"
                        "[screening.weights]\nnew_destination = 10\n")
    done = rulesets.propose(rt, actor, proposal, "bench")
    with rt.engine.connect() as conn:
        since = conn.scalar(select(func.min(Withdrawal.requested_at)))
    assert since is not None
    began = time.monotonic()
    result = rulesets.backtest(rt, actor, done.version, since)
    seconds = time.monotonic() - began
    out["backtest_s"] = round(seconds, 1)
    out["backtested_per_s"] = round(result.judged / seconds)
    out["backtest_holds"] = [result.live.holds, result.proposed.holds]
    _progress(out)
    with rt.engine.begin() as conn:  # unscreened again, as before the first run
        conn.execute(delete(WithdrawalFlag))
        conn.execute(delete(WithdrawalScreening))
        conn.execute(update(Withdrawal).where(Withdrawal.status == "held")
                     .values(status="pending"))
    began = time.monotonic()
    report = screening.screen(rt, actor)
    out["screen_with_shadow_s"] = round(time.monotonic() - began, 1)
    out["shadow_disagreements"] = rulesets.shadow(rt, actor, done.version,
                                                  limit=0).disagreements
    assert report.screened == result.judged
    _progress(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": "postgresql" if args.postgres else "sqlite",
                           "accounts": args.accounts, "logins": args.logins,
                           "withdrawals": args.withdrawals, "cpus": os.cpu_count(),
                           "load_avg_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        began = time.monotonic()
        if args.cache:
            url, keyring_path = _from_cache(args, tmp, out)
            rt = _runtime(url, keyring_path)
        else:
            keyring_path = tmp / "keyring.json"
            write_new_keyring(keyring_path, Keyring.generate())
            url = f"sqlite:///{tmp / 'bench.db'}"
            if args.postgres:
                url = login_bench._create_database(args.postgres)
            rt = _runtime(url, keyring_path)
        engine = rt.engine
        try:
            if not args.cache:
                _load(rt, args)
            out["load_s"] = round(time.monotonic() - began, 1)
            out["load_avg_before_screen"] = round(os.getloadavg()[0], 2)
            _progress(out)
            if args.build_only:
                return out

            enrolment = officers.bootstrap_admin(rt, "bench", "a-long-Timing-passphrase")
            token, actor = sessions.login(rt, "bench", "a-long-Timing-passphrase",
                                          totp.code_at(enrolment.secret, rt.clock()))
            cpu = time.process_time()
            workers_cpu = _children_cpu()
            began = time.monotonic()
            report = screening.screen(rt, actor)
            seconds = time.monotonic() - began
            out["screen_s"] = round(seconds, 1)
            out["screen_cpu_s"] = round(time.process_time() - cpu, 1)
            # The worker processes that judged batches (reaped when the run ends).
            out["screen_workers_cpu_s"] = round(_children_cpu() - workers_cpu, 1)
            out["screened_per_s"] = round(report.screened / seconds)
            out["held"] = report.held
            out["hits"] = report.hits
            _progress(out)
            # A cron run with nothing left: the walk that finds the unscreened.
            began = time.monotonic()
            assert screening.screen(rt, actor).screened == 0
            out["screen_nothing_left_s"] = round(time.monotonic() - began, 2)

            with engine.connect() as conn:
                out["held_rows"] = conn.scalar(select(func.count()).select_from(Withdrawal)
                                               .where(Withdrawal.status == "held"))
            out["queue_open_ms"] = _median_ms(lambda: queue.list_queue(rt, actor, limit=50))
            out["queue_amount_sort_ms"] = _median_ms(
                lambda: queue.list_queue(rt, actor, sort="amount", limit=50))
            out["queue_pending_by_risk_ms"] = _median_ms(
                lambda: queue.list_queue(rt, actor, status="pending", limit=50), 5)
            out["queue_rule_filter_ms"] = _median_ms(
                lambda: queue.list_queue(rt, actor, rule="drains_balance", limit=50), 5)
            first_id = queue.list_queue(rt, actor, limit=1).items[0].external_id
            out["detail_ms"] = _median_ms(lambda: queue.show(rt, actor, first_id), 11)
            _progress(out)
            if not args.no_tui:
                import tui  # bench/tui.py: its frame-based timing of the same open

                opened = asyncio.run(tui.open_queue(rt, (token, actor), args.tui_rounds))
                for key, name in (("queue_open", "queue_screen_open_ms"),
                                  ("queue_open_frames", "queue_screen_open_frames_ms")):
                    out[f"{name}_median"] = round(statistics.median(opened[key]), 1)
                    out[f"{name}_max"] = round(max(opened[key]), 1)
            if args.rule_sets:
                _rule_sets(rt, actor, tmp, out)
            out["peak_rss_mib"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        finally:
            engine.dispose()
            if args.postgres:
                login_bench._drop_database(args.postgres, url)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--logins", type=int, default=5_000_000)
    parser.add_argument("--withdrawals", type=int, default=1_000_000)
    parser.add_argument("--tui-rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="run on a fresh database on this PostgreSQL server instead")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="build the unscreened database once (SQLite: a file in DIR; "
                             "PostgreSQL: a template database) and time a fresh copy of it")
    parser.add_argument("--build-only", action="store_true",
                        help="stop after building (or copying) the database")
    parser.add_argument("--no-tui", action="store_true",
                        help="skip the Textual queue screen timing")
    parser.add_argument("--rule-sets", action="store_true",
                        help="then time a rule set's backtest over every withdrawal and "
                             "screening again with the proposal running in shadow")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
