"""Calibration of the login risk score (`risky_login`) on the demo.

Builds the demo as bench/detection_quality.py does (`polysec demo --accounts 2000 --seed
7`, anchor fixed), scores every successful login (a full analysis with the threshold
out of the way) and prints the distribution of the log10 risk score of the normal
clients' logins (percentiles) beside the score of every injected attack login, and for
each candidate threshold the share of normal logins above it and the attack logins
still above it. docs/anomalies.md quotes its output.

    .venv/bin/python bench/risk_calibration.py [--accounts 2000] [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from detection_quality import ANCHOR  # bench/: the same demo
from sqlalchemy import select

from polysec_tui.config import Settings
from polysec_tui.db.models import DemoScenario, DemoScenarioEvent, LoginAnomaly, LoginEvent
from polysec_tui.services.logins import anomalies
from polysec_tui.services.logins.rules import DEFAULTS
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import open_runtime
from polysec_tui.synthetic.demo import build_demo
from polysec_tui.synthetic.generator import DemoSpec

PERCENTILES = (50, 90, 99, 99.5, 99.8, 99.9, 99.95)
THRESHOLDS = (2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)


def measure(accounts: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(db_url=f"sqlite:///{Path(tmp) / 'demo.db'}",
                            keyring_path=Path(tmp) / "keyring.json")
        build_demo(settings, DemoSpec(accounts=accounts, seed=seed, anchor=ANCHOR))
        rt = open_runtime(settings)
        try:
            # Every successful login becomes a finding with its score.
            everything = replace(DEFAULTS, risk_log10_threshold=-1e9)
            anomalies.analyze(rt, Actor(uuid.uuid4(), "calibration", "automation"),
                              full=True, thresholds=everything)
            with rt.sessions() as session:
                attacks: dict[str, str] = {}
                for ext, kind in session.execute(
                        select(DemoScenarioEvent.external_id, DemoScenario.kind)
                        .join(DemoScenario, DemoScenario.id == DemoScenarioEvent.scenario_id)
                        .where(DemoScenarioEvent.event_type == "login")):
                    attacks[ext] = kind
                scored = [(ext, float(details["log10_score"])) for ext, details in
                          session.execute(select(LoginEvent.external_id, LoginAnomaly.details)
                                          .join(LoginEvent,
                                                LoginEvent.id == LoginAnomaly.login_event_id)
                                          .where(LoginAnomaly.kind == "risky_login"))]
        finally:
            rt.engine.dispose()
    normal = sorted(score for ext, score in scored if ext not in attacks)
    attack = sorted(((score, attacks[ext], ext) for ext, score in scored if ext in attacks),
                    reverse=True)

    def percentile(q: float) -> float:
        return round(normal[min(len(normal) - 1, int(len(normal) * q / 100))], 3)

    return {
        "accounts": accounts, "seed": seed, "normal_logins": len(normal),
        "percentiles": {str(q): percentile(q) for q in PERCENTILES},
        "thresholds": {str(t): {
            "normal_above": sum(1 for s in normal if s >= t),
            "normal_share": round(sum(1 for s in normal if s >= t) / len(normal), 5),
            "attacks_above": sum(1 for s, _k, _e in attack if s >= t),
        } for t in THRESHOLDS},
        "attack_logins": [{"login": e, "scenario": k, "log10_score": s}
                          for s, k, e in attack],
        "default_threshold": DEFAULTS.risk_log10_threshold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = measure(args.accounts, args.seed)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"Demo: {args.accounts} accounts, seed {args.seed}; {out['normal_logins']:,} "
          "successful logins of normal clients")
    print("| percentile of normal logins | log10 score |\n|---:|---:|")
    for q, v in out["percentiles"].items():
        print(f"| {q} | {v} |")
    print("\n| threshold (log10) | normal logins above | share | attack logins above |"
          "\n|---:|---:|---:|---:|")
    for t, row in out["thresholds"].items():
        print(f"| {t} | {row['normal_above']:,} | {row['normal_share']:.3%} | "
              f"{row['attacks_above']} of {len(out['attack_logins'])} |")
    print("\n| attack login | scenario | log10 score |\n|---|---|---:|")
    for row in out["attack_logins"]:
        print(f"| {row['login']} | {row['scenario']} | {row['log10_score']} |")


if __name__ == "__main__":
    main()
