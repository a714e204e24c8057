"""Audit-check benchmark: `encryption_coverage` (and `blind_index_consistency`) over N
accounts with five encrypted fields each, then a full key rotation of the same rows.

Per engine, on a fresh database (SQLite file in a temp dir; PostgreSQL / MariaDB
database ``polysec_bench_keys_<random>`` created and dropped here). Accounts are written
directly as F1 ciphertexts (the benchmark measures the checks, not ingest).

    .venv/bin/python bench/audit.py                          # 1,000,000 accounts, sqlite
    .venv/bin/python bench/audit.py --engines sqlite,postgresql --accounts 200000

Aim (issue 8): at least 100,000 field decryptions per second. See docs/PERFORMANCE.md.
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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
import auditlog as audit_bench  # bench/auditlog.py: its scratch Database

from polysec_tui.config import Settings
from polysec_tui.crypto.blind_index import normalise_email
from polysec_tui.crypto.fields import HEADER_LEN, NONCE_LEN, associated_data
from polysec_tui.crypto.keyring import KEY_BYTES, FieldKey, Keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Account
from polysec_tui.services.operations import audit_checks, keys
from polysec_tui.services.runtime import Runtime

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FIELDS = ("email", "full_name", "phone", "date_of_birth", "address")


@dataclass
class Result:
    engine: str
    accounts: int
    values: int
    fill_s: float
    coverage_s: float
    decryptions_per_s: float
    blind_index_s: float
    rotate_s: float
    rotated_per_s: float
    rss_peak_mib: float
    floor_decrypt_per_s: float = 0.0  # a bare AESGCM.decrypt loop, same ciphertexts
    floor_rotate_per_s: float = 0.0  # bare AESGCM decrypt + urandom + encrypt per value


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(rt: Runtime, n: int) -> None:
    batch: list[dict[str, Any]] = []
    for i in range(n):
        row_id = uuid.uuid4()
        plain = {"email": f"client{i}@example.com", "full_name": f"Client Number {i}",
                 "phone": f"+4917{i:09d}", "date_of_birth": "1985-04-12",
                 "address": f"Hauptstrasse {i % 300}, 10115 Berlin"}
        row: dict[str, Any] = {"id": row_id, "external_id": f"C{i}", "created_at": NOW,
                               "country": "DE", "status": "active", "ingested_at": NOW,
                               "email_bidx": rt.blind_index.email(
                                   normalise_email(plain["email"]))}
        for field in FIELDS:
            row[f"{field}_enc"] = rt.cipher.encrypt(plain[field], table="accounts",
                                                    column=field, row_id=row_id)
        batch.append(row)
        if len(batch) == 5_000 or i == n - 1:
            with rt.transaction() as session:
                session.execute(insert(Account), batch)
            batch = []


FLOOR_ROWS = 100_000


def floors(rt: Runtime) -> tuple[float, float]:
    """The AES-GCM floor of the same run: values per second of a bare ``decrypt`` loop,
    and of ``decrypt`` + nonce + ``encrypt`` (what rotation must do at the least), over
    the ciphertexts of the first FLOOR_ROWS accounts, read beforehand (not timed)."""
    items = []
    with rt.engine.connect() as conn:
        rows = conn.execute(select(Account.id, *(Account.__table__.c[f"{f}_enc"]
                                                 for f in FIELDS))
                            .order_by(Account.id).limit(FLOOR_ROWS)).all()
    aeads = {key_id: AESGCM(key.material) for key_id, key in rt.keyring.field_keys.items()}
    for row_id, *blobs in rows:
        for field, blob in zip(FIELDS, blobs, strict=True):
            header = blob[:HEADER_LEN]
            items.append((aeads[int.from_bytes(blob[1:HEADER_LEN])],
                          blob[HEADER_LEN:HEADER_LEN + NONCE_LEN], blob[HEADER_LEN + NONCE_LEN:],
                          associated_data(header, "accounts", field, row_id)))
    t = time.perf_counter()
    for aead, nonce, sealed, aad in items:
        aead.decrypt(nonce, sealed, aad)
    decrypt_s = time.perf_counter() - t
    t = time.perf_counter()
    for aead, nonce, sealed, aad in items:
        aead.encrypt(os.urandom(NONCE_LEN), aead.decrypt(nonce, sealed, aad), aad)
    rotate_s = time.perf_counter() - t
    return round(len(items) / decrypt_s), round(len(items) / rotate_s)


def run(engine_name: str, args: argparse.Namespace, tmp: Path) -> Result:
    db = audit_bench.Database(engine_name, args.pg, args.mysql, tmp)
    url = db.url
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        rt = Runtime(Settings(db_url=url, keyring_path=tmp / "unused"), engine,
                     Keyring.generate(now=NOW), clock=lambda: NOW)
        t = time.perf_counter()
        fill(rt, args.accounts)
        fill_s = time.perf_counter() - t
        print(f"  {engine_name}: {args.accounts:,} accounts written in {fill_s:.0f} s",
              file=sys.stderr)
        floor_decrypt, floor_rotate = floors(rt)
        ctx = audit_checks.CheckContext(rt, NOW, None, dict(audit_checks.DEFAULTS))
        t = time.perf_counter()
        finding = audit_checks.encryption_coverage(ctx)
        coverage_s = time.perf_counter() - t
        values = int(finding.evidence["values_checked"])
        if finding.status != "pass" or values != args.accounts * len(FIELDS):
            raise SystemExit(f"encryption_coverage: {finding.summary}")
        t = time.perf_counter()
        blind = audit_checks.blind_index_consistency(ctx)
        blind_s = time.perf_counter() - t
        if blind.status != "pass":
            raise SystemExit(f"blind_index_consistency: {blind.summary}")
        second = FieldKey(2, NOW, "active", os.urandom(KEY_BYTES))
        ring = replace(rt.keyring, primary_id=2,
                       field_keys={**rt.keyring.field_keys, 2: second})
        t = time.perf_counter()
        report = keys.reencrypt(rt, ring, "bench", batch=args.batch)
        rotate_s = time.perf_counter() - t
        if report.remaining or report.reencrypted != values:
            raise SystemExit(f"rotation incomplete: {report.to_dict()}")
        engine.dispose()
        return Result(engine_name, args.accounts, values, round(fill_s, 1),
                      round(coverage_s, 1), round(values / coverage_s),
                      round(blind_s, 1), round(rotate_s, 1), round(values / rotate_s),
                      round(rss_mib()), floor_decrypt, floor_rotate)
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite",
                        help="comma-separated: sqlite, postgresql, mariadb")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=keys.DEFAULT_BATCH,
                        help="rows per rotation transaction")
    parser.add_argument("--pg", default=os.environ.get(
        "POLYSEC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--mysql", default=os.environ.get(
        "POLYSEC_TEST_MYSQL_URL", "mariadb://root@127.0.0.1:3306/"))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="polysec-bench-keys-") as tmp:
        for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
            print(f"{name}: {args.accounts:,} accounts", file=sys.stderr)
            results.append(run(name, args, Path(tmp)))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return
    print("| engine | accounts | values | encryption_coverage s | decryptions/s "
          "| AES-GCM floor /s | ratio | blind_index_consistency s | rotation s "
          "| values rotated/s | floor /s | ratio | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.engine} | {r.accounts:,} | {r.values:,} | {r.coverage_s} | "
              f"{r.decryptions_per_s:,.0f} | {r.floor_decrypt_per_s:,.0f} | "
              f"{r.decryptions_per_s / r.floor_decrypt_per_s:.2f} | {r.blind_index_s} | "
              f"{r.rotate_s} | {r.rotated_per_s:,.0f} | {r.floor_rotate_per_s:,.0f} | "
              f"{r.rotated_per_s / r.floor_rotate_per_s:.2f} | {r.rss_peak_mib:.0f} |")


if __name__ == "__main__":
    main()
