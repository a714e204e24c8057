"""False holds and missed attacks of withdrawal screening on the demo's clients.

Builds the demo (`polysec demo --accounts 2000 --seed 7`, 30 days, anchor fixed at
2026-11-20T12:00Z so the figures are reproducible; the demo analyses the logins and
screens the withdrawals as it always does), then compares the withdrawals' statuses
with the demo's ground truth (`demo_scenarios`, `demo_scenario_events`):

* every attack withdrawal: held or not, its score and rules (a miss is reported, never
  left out);
* the normal withdrawals held (false holds), as a share of all normal withdrawals, by the
  combination of rules that held them, and for `security_change_hold` by where the
  change was made from (the client's usual device and network, ...);
* every normal withdrawal by the client's behaviour behind it (a trip, a VPN session, a
  new phone, a sweep to the client's own wallet, salary day, ...), from the generator's
  own knowledge of each client, with how many of each were held.

    .venv/bin/python bench/screening_quality.py [--accounts 2000] [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
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
    LoginEvent,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.services.runtime import open_runtime

try:
    from polysec_tui.services.withdrawals.screening import TRUST_FACTORS
except ImportError:  # code from before the origins of security changes (a "before" run)
    TRUST_FACTORS = {}
from polysec_tui.synthetic.demo import build_demo
from polysec_tui.synthetic.generator import DAY, DemoGenerator, DemoSpec

ANCHOR = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WARM_DAYS = 14  # the clients' first days in the demo, reported apart


def measure(accounts: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db_url=f"sqlite:///{Path(tmp) / 'demo.db'}",
                            keyring_path=Path(tmp) / "keyring.json")
        build_demo(settings, DemoSpec(accounts=accounts, seed=seed, anchor=ANCHOR))
        rt = open_runtime(settings)
        try:
            with rt.sessions() as s:
                attacks = {ext: kind for ext, kind in s.execute(
                    select(DemoScenarioEvent.external_id, DemoScenario.kind)
                    .join(DemoScenario, DemoScenario.id == DemoScenarioEvent.scenario_id)
                    .where(DemoScenarioEvent.event_type == "withdrawal"))}
                rows = s.execute(select(Withdrawal.id, Withdrawal.external_id,
                                        Withdrawal.status, WithdrawalScreening.risk_score)
                                 .outerjoin(WithdrawalScreening, WithdrawalScreening.withdrawal_id
                                            == Withdrawal.id)).all()
                behind = {wid: (acct, at, asn) for wid, acct, at, asn in s.execute(
                    select(Withdrawal.id, Account.external_id, Withdrawal.requested_at,
                           LoginEvent.asn)
                    .join(Account, Account.id == Withdrawal.account_id)
                    .outerjoin(LoginEvent,
                               LoginEvent.external_id == Withdrawal.login_external_id))}
                flags: dict[int, dict[str, str]] = defaultdict(dict)
                for wid, rule, explanation in s.execute(
                        select(WithdrawalFlag.withdrawal_id, WithdrawalFlag.rule,
                               WithdrawalFlag.explanation)):
                    flags[wid][rule] = explanation
        finally:
            rt.engine.dispose()
    attack_rows = [{"withdrawal": ext, "scenario": attacks[ext], "status": status,
                    "score": score, "rules": sorted(flags[wid])}
                   for wid, ext, status, score in rows if ext in attacks]
    normal = [(wid, status) for wid, ext, status, _score in rows if ext not in attacks]
    false_holds = [wid for wid, status in normal if status == "held"]
    by_rules = Counter(" + ".join(sorted(flags[wid])) for wid in false_holds)
    origins: Counter[str] = Counter()
    for wid in false_holds:
        text = flags[wid].get("security_change_hold", "")
        for where in TRUST_FACTORS:
            origins[where] += text.count(f"from {where}")
    spec = DemoSpec(accounts=accounts, seed=seed, anchor=ANCHOR)
    profiles = {p.ext_id: p for p in DemoGenerator(spec).profiles}  # the same seed
    behaviours: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [withdrawals, held]
    # The demo's logins and withdrawals start on its first day: until the clients have
    # some history in it, every one of them is new to the console.
    warm = spec.start + timedelta(days=WARM_DAYS)
    by_period: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for wid, status in normal:
        acct, at, asn = behind[wid]
        kind = _behaviour(spec, profiles.get(acct), at, asn, flags[wid])
        behaviours[kind][0] += 1
        behaviours[kind][1] += status == "held"
        period = by_period["first" if at < warm else "after"]
        period[0] += 1
        period[1] += status == "held"
    return {
        "accounts": accounts, "seed": seed, "anchor": ANCHOR.isoformat(),
        "normal_withdrawals_by_behaviour": {
            k: {"withdrawals": n, "held": held}
            for k, (n, held) in sorted(behaviours.items(), key=lambda kv: -kv[1][0])},
        "withdrawals": len(rows), "attack_withdrawals": attack_rows,
        "attacks_held": sum(1 for a in attack_rows if a["status"] == "held"),
        "normal_withdrawals": len(normal), "false_holds": len(false_holds),
        "false_hold_share": round(len(false_holds) / len(normal), 4) if normal else None,
        "false_holds_by_rules": dict(by_rules.most_common()),
        "warm_up_days": WARM_DAYS,
        "normal_withdrawals_by_period": {
            k: {"withdrawals": n, "held": held} for k, (n, held) in sorted(by_period.items())},
        "security_changes_in_false_holds_by_origin": {k: v for k, v in origins.items() if v},
        "false_hold_security_changes": [flags[wid]["security_change_hold"]
                                        for wid in false_holds
                                        if "security_change_hold" in flags[wid]],
        "false_hold_recent_anomalies": [flags[wid]["recent_anomalies"] for wid in false_holds
                                        if "recent_anomalies" in flags[wid]],
    }


def _behaviour(spec: DemoSpec, profile: Any, at: datetime, asn: int | None,
               rules: dict[str, str]) -> str:
    """What the client was doing, from the generator's knowledge (first match wins)."""
    if profile is None:
        return "unknown account"
    day = int((at - spec.start) // DAY)
    trip = profile.trip
    if profile.vpn is not None and asn == profile.vpn.network.asn:
        return "VPN session"
    if trip is not None and trip.first_day <= day <= trip.last_day:
        return ("on a trip, roaming on the home SIM" if asn == profile.country.mobile.asn
                else "on a trip")
    if profile.payday == at.day and "velocity" in rules:
        return "salary-day burst"
    if profile.sweeper and "drains_balance" in rules:
        return "sweep to their own wallet"
    if "security_change_hold" in rules:
        return "after a security change or a new address saved"
    if profile.new_device is not None and day >= profile.new_device[0]:
        return "new phone or laptop"
    if asn == profile.country.mobile.asn:
        return "on the mobile network"
    return "at home"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.accounts, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"demo: {result['accounts']} accounts, seed {result['seed']}, anchor "
          f"{result['anchor']}: {result['withdrawals']:,} withdrawals")
    print(f"attacks: {result['attacks_held']} of {len(result['attack_withdrawals'])} held")
    for a in result["attack_withdrawals"]:
        print(f"  {a['scenario']} {a['withdrawal']}: {a['status']}, score {a['score']}, "
              f"{', '.join(a['rules'])}")
    print(f"false holds: {result['false_holds']} of {result['normal_withdrawals']:,} normal "
          f"withdrawals ({100 * (result['false_hold_share'] or 0):.2f} %)")
    for rules, n in result["false_holds_by_rules"].items():
        print(f"  {n:>3}  {rules}")
    period = result["normal_withdrawals_by_period"]
    for key, label in (("first", f"in the demo's first {WARM_DAYS} days (clients new to "
                                 "the console)"), ("after", "after them")):
        n = period.get(key, {"withdrawals": 0, "held": 0})
        share = 100 * n["held"] / n["withdrawals"] if n["withdrawals"] else 0.0
        print(f"  {label}: {n['held']} of {n['withdrawals']:,} ({share:.2f} %)")
    print("normal withdrawals by the client's behaviour (held / all):")
    for kind, n in result["normal_withdrawals_by_behaviour"].items():
        print(f"  {n['held']:>3} / {n['withdrawals']:>5}  {kind}")
    if result["security_changes_in_false_holds_by_origin"]:
        print("  security changes behind them, by where they were made from:")
        for where, n in result["security_changes_in_false_holds_by_origin"].items():
            print(f"  {n:>3}  {where}")


if __name__ == "__main__":
    main()
