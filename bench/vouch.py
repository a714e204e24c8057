"""Screening one withdrawal of an account that scripts logins with a fresh device id each
time: does a login vouch for its address (`vouch_hours`) stays one index seek per login
however many devices the account's history names.

The account has ``--old`` logins over the months before, each from its own device, and
``--recent`` logins in the two hours before the request from a new address, each from
its own new device (none of them vouches); then one withdrawal from that address. The
figure is the time of `screening.screen` (one process) on each engine.

    .venv/bin/python bench/vouch.py [--old 20000] [--recent 1000] \
        [--engines sqlite,postgresql,mariadb]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import screening
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, login, withdrawal
from tests.support.screening import CRON, iso

SERVERS = {"postgresql": "postgresql://postgres@127.0.0.1:5432/",
           "mariadb": "mariadb://root@127.0.0.1:3306/"}


def run(url: str, root: Path, old: int, recent: int) -> float:
    keyring = root / "keyring.json"
    write_new_keyring(keyring, Keyring.generate(now=FIXED_NOW))
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = Runtime(Settings(db_url=url, keyring_path=keyring), engine, load_keyring(keyring),
                 clock=lambda: FIXED_NOW)
    ingest(rt, "accounts", account("A1"))
    for start in range(0, old, 2000):
        ingest(rt, "logins", *(
            login(f"O{i}", at=iso(timedelta(days=2, seconds=i * 600)), device_id=f"d{i}",
                  ip="203.0.113.7") for i in range(start, min(old, start + 2000))))
    away: dict[str, Any] = {"ip": "198.51.100.9", "asn": 64999, "country": "PT"}
    ingest(rt, "logins", *(login(f"R{i}", at=iso(timedelta(hours=2, seconds=i)),
                                 device_id=f"r{i}", **away) for i in range(recent)))
    ingest(rt, "logins", login("B", at=iso(timedelta(minutes=65)), device_id="b", **away))
    ingest(rt, "withdrawals", withdrawal("T1", at=iso(timedelta(hours=1)), login_id="B",
                                         ip=away["ip"], amount="0.1", available_balance="5"))
    started = time.perf_counter()
    screening.screen(rt, CRON, workers=0)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--old", type=int, default=20_000)
    parser.add_argument("--recent", type=int, default=1_000)
    parser.add_argument("--engines", default="sqlite,postgresql,mariadb")
    args = parser.parse_args()
    results: dict[str, float] = {}
    for engine_name in args.engines.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            if engine_name == "sqlite":
                results[engine_name] = run(f"sqlite:///{root / 'bench.db'}", root,
                                           args.old, args.recent)
                continue
            name = f"polysec_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(SERVERS[engine_name].replace("mariadb://",
                                                               "mariadb+pymysql://"),
                                  isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
            try:
                results[engine_name] = run(SERVERS[engine_name] + name, root, args.old,
                                           args.recent)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE {name}"))
                admin.dispose()
    print(json.dumps({"old_logins": args.old, "recent_devices": args.recent,
                      "screen_s": {k: round(v, 2) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
