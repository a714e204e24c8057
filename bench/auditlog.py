"""Audit log benchmark: append entries through `AuditLog.append`, then verify them all.

Per engine, on a fresh database (SQLite file in a temp dir; PostgreSQL / MariaDB database
``polysec_bench_audit_<random>`` created and dropped here):

1. ``--single`` entries appended one per transaction (what a console action costs);
2. the rest, up to ``--entries`` in all, appended ``--batch`` per transaction;
3. `services.officers.auditlog.verify` over the whole log (one read snapshot, keyset pages of
   10,000 entries), timed, with the process's peak RSS before and after.

    .venv/bin/python bench/auditlog.py                        # 1,000,000 entries, sqlite+pg
    .venv/bin/python bench/auditlog.py --engines sqlite --entries 200000
    .venv/bin/python bench/auditlog.py --engines mariadb --entries 100000 --json

See docs/PERFORMANCE.md ("Audit log").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.services.officers import auditlog
from polysec_tui.services.runtime import Runtime

START = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = ["withdrawal.approve", "withdrawal.reject", "account.freeze", "pii.reveal",
           "twofa.reset.request", "auditlog.verify"]


@dataclass
class Result:
    engine: str
    entries: int
    single: int
    single_per_s: float
    batch: int
    batched: int
    batched_per_s: float
    verify_s: float
    verify_per_s: float
    verify_cpu_s: float
    rss_before_verify_mib: float
    rss_peak_mib: float
    load_before: float


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def entry(i: int) -> dict[str, object]:
    return {
        "officer": f"officer{i % 17}",
        "action": ACTIONS[i % len(ACTIONS)],
        "at": START + timedelta(seconds=i, microseconds=i % 1_000_000),
        "target": f"wd-{i:08d}" if i % 5 else None,
        "details": {"amount": f"{i % 9973}.25", "asset": "BTC", "reason": "review", "n": i},
    }


class Database:
    """A fresh database for one engine, dropped on exit."""

    def __init__(self, engine: str, pg: str, mysql: str, tmp: Path) -> None:
        self.name = engine
        self.admin_url: str | None = None
        self.db_name = f"polysec_bench_audit_{uuid.uuid4().hex[:8]}"
        if engine == "sqlite":
            self.url = f"sqlite:///{tmp / 'audit.db'}"
        else:
            base = parse_url(pg if engine == "postgresql" else mysql)
            self.admin_url = base.render_as_string(hide_password=False)
            admin = make_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                charset = " CHARACTER SET utf8mb4" if engine == "mariadb" else ""
                conn.execute(text(f"CREATE DATABASE {self.db_name}{charset}"))
            admin.dispose()
            self.url = base.set(database=self.db_name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin_url is None:
            return
        admin = make_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            force = " WITH (FORCE)" if self.name == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {self.db_name}{force}"))
        admin.dispose()


def run(engine_name: str, args: argparse.Namespace, tmp: Path) -> Result:
    db = Database(engine_name, args.pg, args.mysql, tmp)
    try:
        engine = make_engine(db.url)
        migrate.upgrade(engine)
        rt = Runtime(Settings(db_url=db.url, keyring_path=tmp / "unused"), engine,
                     Keyring.generate())
        single = min(args.single, args.entries)
        t = time.perf_counter()
        for i in range(1, single + 1):
            with rt.transaction() as s:
                rt.audit.append(s, **entry(i))  # type: ignore[arg-type]
        single_s = time.perf_counter() - t
        print(f"  {engine_name}: {single:,} single-entry transactions in {single_s:.1f} s",
              file=sys.stderr)
        t = time.perf_counter()
        i = single
        while i < args.entries:
            with rt.transaction() as s:
                for _ in range(min(args.batch, args.entries - i)):
                    i += 1
                    rt.audit.append(s, **entry(i))  # type: ignore[arg-type]
            if i % 100_000 < args.batch:
                print(f"  {engine_name}: {i:,} appended", file=sys.stderr)
        batched = args.entries - single
        batched_s = time.perf_counter() - t
        if engine_name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE audit_log"))  # as autovacuum would
        load = os.getloadavg()[0]
        rss_before = rss_mib()
        cpu = time.process_time()
        t = time.perf_counter()
        report = auditlog.verify(rt)
        verify_s = time.perf_counter() - t
        verify_cpu = time.process_time() - cpu
        if not report.ok or report.entries_checked != args.entries:
            raise SystemExit(f"verify failed: {report.message()}")
        engine.dispose()
        return Result(
            engine=engine_name, entries=args.entries, single=single,
            single_per_s=round(single / single_s) if single else 0,
            batch=args.batch, batched=batched,
            batched_per_s=round(batched / batched_s) if batched else 0,
            verify_s=round(verify_s, 2), verify_per_s=round(args.entries / verify_s),
            verify_cpu_s=round(verify_cpu, 2), rss_before_verify_mib=round(rss_before),
            rss_peak_mib=round(rss_mib()), load_before=round(load, 2),
        )
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql, mariadb")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=10_000,
                        help="how many of them are appended one per transaction")
    parser.add_argument("--batch", type=int, default=1_000,
                        help="appends per transaction for the rest")
    parser.add_argument("--pg", default=os.environ.get(
        "POLYSEC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--mysql", default=os.environ.get(
        "POLYSEC_TEST_MYSQL_URL", "mariadb://root@127.0.0.1:3306/"))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="polysec-bench-audit-") as tmp:
        for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
            print(f"{name}: {args.entries:,} entries", file=sys.stderr)
            results.append(run(name, args, Path(tmp)))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return
    print("| engine | entries | single-entry tx appends/s | appends/s (1,000 per tx) "
          "| verify s | verify entries/s | verify CPU s | peak RSS MiB | load before |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.engine} | {r.entries:,} | {r.single_per_s:,.0f} ({r.single:,}) | "
              f"{r.batched_per_s:,.0f} | {r.verify_s} | {r.verify_per_s:,.0f} | "
              f"{r.verify_cpu_s} | {r.rss_before_verify_mib:.0f} -> {r.rss_peak_mib:.0f} | "
              f"{r.load_before} |")


if __name__ == "__main__":
    main()
