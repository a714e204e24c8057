"""IP reputation benchmark: importing lists, loading them, and the look-up every judged
login and withdrawal makes (`services/networks/reputation.py`).

Lists of a real deployment's sizes over random global address space: a FireHOL
level1-sized netset (4,500 networks), Tor's exit list (1,500 addresses), a CrowdSec
blocklist (15,000 addresses) and an ASN table (3,000 networks); then, to see how it
scales, one blocklist of ``--big`` addresses. It times, on a fresh SQLite database:

1. parsing and importing each list (one transaction each),
2. loading all of them into memory, cold (what a process does once per list change),
3. ``marks(ip, asn)`` over ``--lookups`` random addresses, each new (nothing cached: the
   full run's and a new IP's cost) and then again (the per-IP cache),
4. ``listed(ip)``, the full run's pre-filter.

    .venv/bin/python bench/reputation.py [--lookups 1000000] [--big 1000000]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Officer
from polysec_tui.services.networks import reputation
from polysec_tui.services.officers import registry
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime


def _address(rng: random.Random) -> str:
    return (f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
            f"{rng.randint(1, 254)}")


def lists(rng: random.Random, big: int) -> list[tuple[str, str | None, str]]:
    prefixes = (16, 20, 22, 24, 24, 24)
    asn_kinds = ("hosting", "vpn", "proxy", "mobile", "residential", "business")
    return [
        ("firehol_level1", None, "\n".join(
            f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.0.0/{rng.choice(prefixes)}"
            for _ in range(4_500))),
        ("tor-exits", "tor", "\n".join(_address(rng) for _ in range(1_500))),
        ("crowdsec", None, "\n".join(_address(rng) for _ in range(15_000))),
        ("asn-types", None, "asn,category\n" + "\n".join(
            f"{asn},{rng.choice(asn_kinds)}" for asn in rng.sample(range(1, 400_000), 3_000))),
        ("big-blocklist", None, "\n".join(_address(rng) for _ in range(big))),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    out: dict[str, Any] = {"lookups": args.lookups, "big": args.big}
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keyring.json"
        write_new_keyring(keys, Keyring.generate())
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        rt = Runtime(Settings(url, keys), engine, load_keyring(keys))
        registry.seed_officers(rt, [("bench-lists", "automation", None)], rt.clock())
        with rt.sessions() as session:
            officer = session.scalars(select(Officer.id)
                                      .where(Officer.name == "bench-lists")).one()
        actor = Actor(officer, "bench-lists", "automation")
        imports = {}
        for name, category, body in lists(rng, args.big):
            began = time.perf_counter()
            fmt, parsed, sha = reputation.read_file(io.BytesIO(body.encode()), None)
            report = reputation.import_list(rt, actor, fmt, parsed, sha, name=name,
                                            category=category)
            imports[name] = {"entries": report.entries,
                             "seconds": round(time.perf_counter() - began, 3)}
        out["imports"] = imports
        for label, names in (("real_sizes", ("big-blocklist",)), ("with_big", ())):
            reputation._built.clear()
            reputation._entries.clear()
            dropped = [n for n in names]
            for name in dropped:
                reputation.remove_list(rt, actor, name)
            began = time.perf_counter()
            with rt.sessions() as session:
                lookup = reputation.load(session)
            loaded = time.perf_counter() - began
            ips = [_address(rng) for _ in range(args.lookups)]
            asns = [rng.randrange(1, 400_000) for _ in range(args.lookups)]
            began = time.perf_counter()
            marked = sum(1 for ip, asn in zip(ips, asns, strict=True) if lookup.marks(ip, asn))
            cold = time.perf_counter() - began
            sample = ips[: min(len(ips), 100_000)]
            began = time.perf_counter()
            for ip in sample:
                lookup.marks(ip, None)
            warm = time.perf_counter() - began
            began = time.perf_counter()
            listed = sum(1 for ip in ips if lookup.listed(ip))
            prefilter = time.perf_counter() - began
            out[label] = {
                "load_s": round(loaded, 3),
                "marks_per_s_new_ips": round(args.lookups / cold),
                "marks_per_s_cached": round(len(sample) / warm),
                "listed_per_s": round(args.lookups / prefilter),
                "share_marked": round(marked / args.lookups, 4),
                "share_listed": round(listed / args.lookups, 4),
            }
            if names:  # the big list back for the second round
                body = lists(random.Random(args.seed), args.big)[-1][2]
                fmt, parsed, sha = reputation.read_file(io.BytesIO(body.encode()), None)
                reputation.import_list(rt, actor, fmt, parsed, sha, name="big-blocklist")
        engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lookups", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
