"""Detection quality of `polysec logins analyze` on the demo's injected attacks.

Builds the demo (services.demo, the same generator as `polysec demo --no-tui --accounts
2000 --seed 7`, with a fixed anchor so the figures are reproducible) into a temporary
SQLite database, runs a full analysis and compares the findings with the ground truth in
demo_scenarios / demo_scenario_events:

* per scenario kind: how many scenarios had at least one of their logins flagged
  (found), and login-level recall (flagged scenario logins / scenario logins), by any
  detector and by the detector(s) meant for that kind;
* per anomaly kind: findings, how many are on a scenario login (true positives),
  precision, and the false positives classified with the generator's own knowledge of
  each client (a planned trip, a new device, a first login from the mobile network...).

    .venv/bin/python bench/detection_quality.py [--accounts 2000] [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from polysec_tui.config import Settings
from polysec_tui.db.models import (
    Account,
    DemoScenario,
    DemoScenarioEvent,
    LoginAnomaly,
    LoginEvent,
    SecurityEvent,
)
from polysec_tui.services.logins import anomalies
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import open_runtime
from polysec_tui.synthetic.demo import build_demo
from polysec_tui.synthetic.generator import DAY, DemoGenerator, DemoSpec

ANCHOR = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# Which detectors are "meant" for each scenario kind (any detector counts for "found").
EXPECTED = {
    "brute_force": {"brute_force"},
    "credential_stuffing": {"credential_stuffing"},
    "password_spraying": {"password_spraying"},
    "impossible_travel": {"impossible_travel"},
    "account_takeover": {"new_device", "new_country", "new_asn", "risky_login",
                         "success_after_failures", "ip_reputation", "anonymizing_network"},
    # Patterns of attackers who know the usual thresholds (generated apart, see the
    # generator's _plan_scenarios): what should find them.
    "sim_swap": {"new_device", "risky_login", "success_after_failures"},
    "patient_intruder": {"new_device", "new_country", "new_asn", "risky_login"},
    "distributed_stuffing": {"credential_stuffing", "password_spraying", "distributed_attack"},
}


def measure(accounts: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db_url=f"sqlite:///{Path(tmp) / 'demo.db'}",
                            keyring_path=Path(tmp) / "keyring.json")
        spec = DemoSpec(accounts=accounts, seed=seed, anchor=ANCHOR)
        began = time.monotonic()
        build_demo(settings, spec)
        built = time.monotonic() - began
        rt = open_runtime(settings)
        try:
            actor = Actor(uuid.uuid4(), "quality-bench", "automation")
            report = anomalies.analyze(rt, actor, full=True)
            with rt.sessions() as session:
                truth: dict[str, set[tuple[int, str]]] = defaultdict(set)
                kinds: dict[int, str] = {}
                for sid, kind in session.execute(select(DemoScenario.id, DemoScenario.kind)):
                    kinds[sid] = kind
                for sid, ext in session.execute(
                    select(DemoScenarioEvent.scenario_id, DemoScenarioEvent.external_id)
                    .where(DemoScenarioEvent.event_type == "login")
                ):
                    truth[ext].add((sid, kinds[sid]))
                found = [
                    (kind, ext, acct, at, asn)
                    for kind, ext, acct, at, asn in session.execute(
                        select(LoginAnomaly.kind, LoginEvent.external_id, Account.external_id,
                               LoginEvent.at, LoginEvent.asn)
                        .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
                        .join(Account, Account.id == LoginAnomaly.account_id)
                    )
                ]
                logins = session.query(LoginEvent).count()
                resets: dict[str, list[datetime]] = defaultdict(list)
                for acct, at in session.execute(
                    select(Account.external_id, SecurityEvent.at)
                    .join(Account, Account.id == SecurityEvent.account_id)
                    .where(SecurityEvent.kind == "password_reset")
                ):
                    resets[acct].append(at)
        finally:
            rt.engine.dispose()
    return _score(spec, kinds, truth, found, logins, report.seconds, built, resets)


def _score(spec: DemoSpec, kinds: dict[int, str], truth: dict[str, set[tuple[int, str]]],
           found: list[tuple[str, str, str, datetime, int | None]], logins: int, seconds: float,
           built: float, resets: dict[str, list[datetime]]) -> dict[str, Any]:
    flagged: dict[str, set[str]] = defaultdict(set)  # login ext -> detector kinds
    for kind, ext, _acct, _at, _asn in found:
        flagged[ext].add(kind)
    scenario_logins: dict[int, set[str]] = defaultdict(set)
    for ext, memberships in truth.items():
        for sid, _kind in memberships:
            scenario_logins[sid].add(ext)
    per_scenario: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kinds.values())):
        sids = [s for s, k in kinds.items() if k == kind]
        expected = EXPECTED.get(kind, set(anomalies.KINDS))
        total = sum(len(scenario_logins[s]) for s in sids)
        any_hit = sum(1 for s in sids for e in scenario_logins[s] if flagged.get(e))
        exp_hit = sum(1 for s in sids for e in scenario_logins[s] if flagged.get(e, set()) & expected)  # noqa: E501
        per_scenario[kind] = {
            "scenarios": len(sids),
            "found": sum(1 for s in sids if any(flagged.get(e) for e in scenario_logins[s])),
            "found_by_expected": sum(
                1 for s in sids if any(flagged.get(e, set()) & expected for e in scenario_logins[s])),  # noqa: E501
            "logins": total,
            "recall_any": round(any_hit / total, 3) if total else None,
            "recall_expected": round(exp_hit / total, 3) if total else None,
            "expected_detectors": sorted(expected),
        }
    gen = DemoGenerator(spec)  # the same seed: each client's trip and new device
    profiles = {p.ext_id: p for p in gen.profiles}
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in anomalies.KINDS:
        rows = [r for r in found if r[0] == kind]
        tp = [r for r in rows if r[1] in truth]
        tp_expected = [r for r in rows if any(kind in EXPECTED.get(k, set()) for _s, k in truth.get(r[1], ()))]  # noqa: E501
        reasons: Counter[str] = Counter()
        for _k, ext, acct, at, asn in rows:
            if ext in truth:
                continue
            if any(timedelta(0) <= r - at <= timedelta(hours=1) for r in resets[acct]):
                reasons["forgotten password (a reset followed)"] += 1
                continue
            reasons[_reason(spec, profiles.get(acct), at, kind, asn)] += 1
        per_kind[kind] = {
            "findings": len(rows), "on_attack_logins": len(tp),
            "precision": round(len(tp) / len(rows), 3) if rows else None,
            "precision_expected_kind": round(len(tp_expected) / len(rows), 3) if rows else None,
            "false_positives": len(rows) - len(tp),
            "false_positive_reasons": dict(reasons.most_common()),
        }
    return {"accounts": spec.accounts, "seed": spec.seed, "days": spec.days,
            "anchor": spec.anchor.isoformat(), "logins": logins,
            "demo_build_s": round(built, 1), "analysis_s": round(seconds, 2),
            "scenarios": per_scenario, "detectors": per_kind}


def _reason(spec: DemoSpec, profile: Any, at: datetime, kind: str, asn: int | None) -> str:
    if profile is None:
        return "unknown account"
    if profile.vpn is not None and asn == profile.vpn.network.asn:
        return "client's VPN (its exit abroad)"
    if asn == profile.country.mobile.asn and kind == "impossible_travel":
        return "client's phone, located at its carrier's gateway or roaming"
    if kind == "impossible_travel" and len({h.city.name for h in profile.homes}) > 1:
        return "client's second home city, first seen"
    day = int((at - spec.start) // DAY)
    if profile.trip is not None and profile.trip.first_day - 1 <= day <= profile.trip.last_day + 1:
        return "client on a trip"
    if profile.new_device is not None and day >= profile.new_device[0]:
        return "client's new phone or laptop"
    if len(profile.devices) > 1:
        return "client's second device / mobile network"
    if len({h.isp.asn for h in profile.homes}) > 1:
        return "client's second home on another ISP"
    if any(d.mobile for d in profile.devices):
        return "client's phone, first time on the mobile network"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.accounts, args.seed)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"demo: {result['accounts']} accounts, seed {result['seed']}, {result['days']} days "
          f"to {result['anchor']}, {result['logins']:,} logins; full analysis "
          f"{result['analysis_s']} s")
    print()
    print("| scenario kind | scenarios | found | found by its detector | attack logins "
          "| recall (any detector) | recall (its detector) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, s in result["scenarios"].items():
        print(f"| {kind} | {s['scenarios']} | {s['found']} | {s['found_by_expected']} | "
              f"{s['logins']} | {s['recall_any']} | {s['recall_expected']} |")
    print()
    print("| detector | findings | on attack logins | precision | false positives | "
          "false positives by cause |")
    print("|---|---:|---:|---:|---:|---|")
    for kind, d in result["detectors"].items():
        if kind == anomalies.FORGOTTEN:
            continue  # not a detection: a brute-force burst a client's reset explained
        reasons = ", ".join(f"{r}: {n}" for r, n in d["false_positive_reasons"].items()) or "-"
        print(f"| {kind} | {d['findings']} | {d['on_attack_logins']} | "
              f"{d['precision'] if d['precision'] is not None else '-'} | "
              f"{d['false_positives']} | {reasons} |")
    told = result["detectors"][anomalies.FORGOTTEN]
    print()
    print(f"{told['findings']} brute-force findings became {anomalies.FORGOTTEN}, "
          f"{told['on_attack_logins']} of them on attack logins (every one there would be "
          "an attack the reset rule hid).")


if __name__ == "__main__":
    main()
