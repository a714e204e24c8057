"""Ingest benchmark: `polysec ingest logins FILE` on fresh databases.

Generates N login events over a set of accounts as JSON Lines (not timed), creates a fresh
database per engine (SQLite file in a temp dir; PostgreSQL / MariaDB database
``polysec_bench_<random>`` created and dropped here), runs ``polysec init``, ingests the
accounts, then times ``polysec ingest logins FILE`` as a subprocess. Peak memory is that
subprocess's maximum resident set size (``wait4`` rusage of the child).

    .venv/bin/python bench/ingest.py                       # 1,000,000 and 100,000 events
    .venv/bin/python bench/ingest.py --events 200000 --sizes-only
    .venv/bin/python bench/ingest.py --engines sqlite --json

See bench/README.md and docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import LoginEvent
from polysec_tui.services.feed.ingest import SQLITE_INGEST_CACHE_KIB

POLYSEC = [sys.executable, "-m", "polysec_tui"]
COUNTRIES = ["DE", "FR", "GB", "US", "NL", "CH", "SG", "JP", "BR", "NG", "IN", "CA"]
CITIES = ["Berlin", "Paris", "London", "New York", "Amsterdam", "Zurich", "Singapore"]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
]
START = datetime(2026, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------- generation


def write_accounts(path: Path, accounts: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(accounts):
            out.write(json.dumps({
                "id": f"acc-{i:07d}",
                "created_at": (START - timedelta(days=400 - i % 365)).isoformat(),
                "email": f"client{i}@example.com",
                "full_name": f"Client Number {i}",
                "country": COUNTRIES[i % len(COUNTRIES)],
            }) + "\n")


def write_logins(path: Path, events: int, accounts: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(events):
            success = rng.random() > 0.08
            at = START + timedelta(seconds=i * 3 + rng.randrange(3))
            ipv6 = rng.random() < 0.1
            ip = (
                f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}" if ipv6
                else f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
                     f"{rng.randrange(1, 255)}"
            )
            record: dict[str, Any] = {
                "id": f"login-{i:09d}",
                "account": f"acc-{rng.randrange(accounts):07d}",
                "at": at.isoformat().replace("+00:00", "Z"),
                "success": success,
                "ip": ip,
                "asn": rng.randrange(1, 400_000),
                "country": COUNTRIES[rng.randrange(len(COUNTRIES))],
                "city": CITIES[rng.randrange(len(CITIES))],
                "lat": round(rng.uniform(-60, 70), 4),
                "lon": round(rng.uniform(-170, 170), 4),
                "user_agent": AGENTS[rng.randrange(len(AGENTS))],
                "browser": "Chrome 131",
                "os": "Windows 10",
                "device_type": "desktop",
                "device_id": f"dev-{rng.randrange(accounts * 2):08x}",
                "rtt_ms": rng.randrange(5, 900),
            }
            if not success:
                record["failure_reason"] = "bad_password"
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


# ------------------------------------------------------------------------- databases


class Target:
    """One fresh database of one engine, created here and removed in `drop`."""

    def __init__(self, engine_name: str, workdir: Path, server_url: str | None) -> None:
        self.engine_name = engine_name
        self.workdir = workdir
        self.server_url = server_url
        self.db_name = f"polysec_bench_{uuid.uuid4().hex[:10]}"
        if engine_name == "sqlite":
            self.url = f"sqlite:///{workdir / (self.db_name + '.db')}"
        else:
            assert server_url is not None
            base = parse_url(server_url)
            self.url = base.set(database=self.db_name).render_as_string(hide_password=False)
        self.keyring = workdir / f"{self.db_name}-keyring.json"

    def _admin(self) -> Any:
        assert self.server_url is not None
        return make_engine(self.server_url, isolation_level="AUTOCOMMIT")

    def create(self) -> None:
        if self.engine_name == "sqlite":
            return
        admin = self._admin()
        charset = " CHARACTER SET utf8mb4" if self.engine_name == "mariadb" else ""
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {self.db_name}{charset}"))
        admin.dispose()

    def drop(self) -> None:
        if self.engine_name == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(str(make_url(self.url).database) + suffix).unlink(missing_ok=True)
            return
        admin = self._admin()
        with admin.connect() as conn:
            if self.engine_name == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {self.db_name}"))
        admin.dispose()

    def polysec(self, *args: str) -> tuple[float, float, int, str]:
        """Run polysec as a child; return (wall seconds, CPU seconds, its peak RSS in
        bytes, stdout).

        os.wait4 gives this one child's rusage; RUSAGE_CHILDREN would be the maximum over
        every child so far, so an earlier, bigger child would mask a later one."""
        env = dict(os.environ, POLYSEC_DB_URL=self.url, POLYSEC_KEYRING=str(self.keyring))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.perf_counter()
            proc = subprocess.Popen([*POLYSEC, *args], env=env, stdout=out, stderr=err)
            _pid, status, rusage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        if proc.returncode != 0:
            raise RuntimeError(
                f"polysec {' '.join(args)} failed ({proc.returncode}): {stderr[-2000:]}"
            )
        # ru_maxrss is in KiB on Linux, bytes on macOS.
        scale = 1 if sys.platform == "darwin" else 1024
        cpu = rusage.ru_utime + rusage.ru_stime
        return elapsed, cpu, rusage.ru_maxrss * scale, stdout


# ------------------------------------------------------------------------- running


@dataclass
class Result:
    engine: str
    events: int
    seconds: float
    events_per_s: float
    cpu_seconds: float
    peak_rss_mib: float
    load_before: float
    output: str
    floor_s: float = 0.0  # the engine alone inserting the same rows (see `floor`)
    floor_events_per_s: float = 0.0


FLOOR_BATCH = 5_000


def floor(engine_name: str, workdir: Path, server_url: str | None, source: Target,
          accounts_file: Path) -> float:
    """The engine's own floor in the same run: the rows `polysec ingest` stored, read
    back (not timed) and inserted into another fresh database with the same schema and
    accounts by the driver alone: SQLite an ``executemany`` of the same tuples per
    batch of 5,000 with the pragmas and page cache of ingest, PostgreSQL a ``COPY`` of
    them. One transaction, as ingest. Returns the seconds spent inserting."""
    target = Target(engine_name, workdir, server_url)
    target.create()
    try:
        target.polysec("init", "--no-admin")
        target.polysec("ingest", "accounts", str(accounts_file))
        src, dst = make_engine(source.url), make_engine(target.url)
        columns = [c.name for c in LoginEvent.__table__.c]
        names = ", ".join(columns)
        spent = 0.0
        with src.connect() as read, dst.connect() as write:
            raw = write.connection.dbapi_connection
            assert raw is not None
            cursor = raw.cursor()
            # The accounts have ids of their own in each database.
            theirs: dict[Any, str] = dict(
                read.exec_driver_sql("SELECT id, external_id FROM accounts").all())
            cursor.execute("SELECT external_id, id FROM accounts")
            ours = dict(cursor.fetchall())
            account = {their: ours[ext] for their, ext in theirs.items()}
            at = columns.index("account_id")
            if engine_name == "sqlite":
                cursor.execute(f"PRAGMA cache_size = -{SQLITE_INGEST_CACHE_KIB}")
                cursor.execute("BEGIN IMMEDIATE")
            rows = read.exec_driver_sql(f"SELECT {names} FROM login_events ORDER BY id")
            sql = (f"INSERT INTO login_events ({names}) "
                   f"VALUES ({', '.join('?' for _ in columns)})")
            with contextlib.ExitStack() as stack:
                copy = (stack.enter_context(cursor.copy(
                    f"COPY login_events ({names}) FROM STDIN"))
                    if engine_name == "postgresql" else None)
                while fetched := rows.fetchmany(FLOOR_BATCH):
                    batch = [(*row[:at], account[row[at]], *row[at + 1:]) for row in fetched]
                    t = time.perf_counter()
                    if copy is not None:
                        for row in batch:
                            copy.write_row(row)
                    else:
                        cursor.executemany(sql, batch)
                    spent += time.perf_counter() - t
                t = time.perf_counter()
            raw.commit()
            spent += time.perf_counter() - t
        src.dispose()
        dst.dispose()
        return spent
    finally:
        target.drop()
        target.keyring.unlink(missing_ok=True)


def run_one(engine_name: str, events: int, accounts: int, workdir: Path,
            server_url: str | None, data: dict[int, Path], accounts_file: Path,
            keep: bool, with_floor: bool) -> Result:
    target = Target(engine_name, workdir, server_url)
    target.create()
    try:
        target.polysec("init", "--no-admin")  # officers are not needed to ingest
        target.polysec("ingest", "accounts", str(accounts_file))
        load = os.getloadavg()[0]
        seconds, cpu, rss, out = target.polysec("ingest", "logins", str(data[events]))
        expected = f"logins: {events} new, 0 already present"
        if expected not in out:
            raise RuntimeError(f"unexpected ingest output: {out!r}")
        floor_s = (floor(engine_name, workdir, server_url, target, accounts_file)
                   if with_floor and engine_name != "mariadb" else 0.0)
        return Result(engine_name, events, seconds, events / seconds, cpu, rss / 2**20, load,
                      out.strip(), round(floor_s, 1),
                      round(events / floor_s) if floor_s else 0.0)
    finally:
        if not keep:
            target.drop()
            target.keyring.unlink(missing_ok=True)


def markdown(results: list[Result]) -> str:
    lines = [
        "| engine | events | wall s | events/s | CPU s (ingest process) | peak RSS (MiB) "
        "| load avg before | floor: the engine alone, rows/s | ingest / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.events_per_s / r.floor_events_per_s:.2f}" if r.floor_events_per_s else ""
        lines.append(
            f"| {r.engine} | {r.events:,} | {r.seconds:.1f} | {r.events_per_s:,.0f} "
            f"| {r.cpu_seconds:.1f} | {r.peak_rss_mib:.0f} | {r.load_before:.1f} "
            f"| {r.floor_events_per_s:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="events in the large run (default 1,000,000)")
    parser.add_argument("--small", type=int, default=100_000,
                        help="events in the small run, to show memory is flat (0: skip)")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--engines", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql, mariadb")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server URL (a user that may CREATE DATABASE)")
    parser.add_argument("--mysql", default=None,
                        help="MariaDB server URL; required for the mariadb engine, e.g. "
                             "mariadb://root@127.0.0.1:3306/")
    parser.add_argument("--workdir", default=None, help="where to put data and SQLite files")
    parser.add_argument("--keep", action="store_true", help="keep databases and data files")
    parser.add_argument("--json", action="store_true", help="also print results as JSON")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the engine-alone floor (SQLite executemany, "
                             "PostgreSQL COPY of the same rows)")
    args = parser.parse_args(argv)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.mysql and "mariadb" not in engines:
        engines.append("mariadb")
    servers = {"sqlite": None, "postgresql": args.postgres, "mariadb": args.mysql}
    for name in engines:
        if name not in servers:
            parser.error(f"unknown engine {name!r}")
        if name == "mariadb" and not args.mysql:
            parser.error("--mysql URL is required for mariadb")

    workdir = (Path(args.workdir) if args.workdir
               else Path(tempfile.mkdtemp(prefix="polysec-bench-")))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({args.events, *([args.small] if args.small else [])})
    try:
        t0 = time.perf_counter()
        accounts_file = workdir / "accounts.jsonl"
        write_accounts(accounts_file, args.accounts)
        data = {}
        for n in sizes:
            data[n] = workdir / f"logins-{n}.jsonl"
            write_logins(data[n], n, args.accounts)
        print(f"generated {', '.join(f'{n:,}' for n in sizes)} events in "
              f"{time.perf_counter() - t0:.1f} s ({workdir})", file=sys.stderr)
        results = []
        for name in engines:
            for n in sizes:
                result = run_one(name, n, args.accounts, workdir, servers[name], data,
                                 accounts_file, args.keep, not args.no_floor)
                print(f"{name:10} {n:>10,} events {result.seconds:7.1f} s "
                      f"{result.events_per_s:>9,.0f} ev/s  CPU {result.cpu_seconds:.1f} s  "
                      f"peak RSS {result.peak_rss_mib:.0f} MiB  load {result.load_before:.1f}"
                      f"  floor {result.floor_events_per_s:,.0f} rows/s",
                      file=sys.stderr, flush=True)
                results.append(result)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; accounts: {args.accounts:,}\n")
    print(markdown(results))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
