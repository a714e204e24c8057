"""Outcomes: whether a hold or an alert was right, and what that says of each rule.

Every decision that closes a held withdrawal (approve, reject, a four-eyes approval) and
every alert acknowledgement records an outcome in its own transaction (`record`):
``confirmed_fraud``, ``false_positive`` (the rule fired on ordinary activity) or
``benign`` (the activity was real but harmless, with a reason such as "client
travelling"), with the rules that had fired: ``screening:<rule>`` for a withdrawal's hits,
``detector:<kind>`` for login anomalies, ``alert:<what>`` for what only alerts judge (a
large held withdrawal, a takeover chain).

`report` gives each rule and detector its figures over a period: hits (flags or
findings), holds (withdrawals it flagged that screening held), and the outcomes recorded
for subjects it fired on, with precision = confirmed / (confirmed + false positives +
benign), or none while nothing was decided.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from polysec_tui.db.models import CaseOutcome, LoginAnomaly, Withdrawal, WithdrawalFlag
from polysec_tui.errors import InputError
from polysec_tui.services.logins.anomalies import KINDS as DETECTORS
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.screening import RULES

OUTCOMES = ("confirmed_fraud", "false_positive", "benign")
MAX_REASON = 500
# What only alerts judge (services.monitoring.alerts).
ALERT_RULES = ("alert:large_held_withdrawal", "alert:takeover_chain")


def checked(outcome: str, reason: str | None) -> tuple[str, str | None]:
    """The outcome and its reason, or a one-line input error."""
    if outcome not in OUTCOMES:
        raise InputError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
    text = (reason or "").strip() or None
    if text is not None and len(text) > MAX_REASON:
        raise InputError(f"the outcome's reason is longer than {MAX_REASON} characters")
    return outcome, text


def record(session: Session, officer_id: uuid.UUID, at: datetime, subject: str,
           outcome: str, reason: str | None, fired: list[str]) -> None:
    """In the caller's transaction: ``subject`` (``withdrawal:<id>``, ``alert:<key>``)
    turned out ``outcome``; ``fired``: the rules that had fired on it."""
    outcome, reason = checked(outcome, reason)
    session.add(CaseOutcome(at=at, officer_id=officer_id, subject=subject[:160],
                            outcome=outcome, reason=reason,
                            rules={"fired": sorted(set(fired))}))


def screening_rules(session: Session, withdrawal_id: int) -> list[str]:
    """What screening fired on the withdrawal, as rule names for `record`."""
    return [f"screening:{rule}" for rule in session.scalars(
        select(WithdrawalFlag.rule).where(WithdrawalFlag.withdrawal_id == withdrawal_id))]


@dataclass(frozen=True)
class RuleFigures:
    rule: str  # screening:<rule> | detector:<kind> | alert:<what>
    hits: int
    holds: int | None  # screening rules only
    confirmed: int
    false_positives: int
    benign: int

    @property
    def decided(self) -> int:
        return self.confirmed + self.false_positives + self.benign

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.decided if self.decided else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decided": self.decided, "precision": self.precision}


def report(rt: Runtime, actor: Actor, since: datetime) -> list[RuleFigures]:
    """Every rule and detector with its figures since ``since`` (hits and holds by the
    time of the event, outcomes by the time they were recorded)."""
    require(actor, "read")
    with rt.sessions() as session:
        hits: Counter[str] = Counter()
        holds: Counter[str] = Counter()
        f, w = WithdrawalFlag, Withdrawal
        for rule, n in session.execute(
                select(f.rule, func.count()).join(w, w.id == f.withdrawal_id)
                .where(w.requested_at >= since).group_by(f.rule)):
            hits[f"screening:{rule}"] = int(n)
        for rule, n in session.execute(
                select(f.rule, func.count()).join(w, w.id == f.withdrawal_id)
                .where(w.requested_at >= since, w.status != "pending").group_by(f.rule)):
            holds[f"screening:{rule}"] = int(n)
        for kind, n in session.execute(
                select(LoginAnomaly.kind, func.count()).where(LoginAnomaly.at >= since)
                .group_by(LoginAnomaly.kind)):
            hits[f"detector:{kind}"] = int(n)
        outcomes: dict[str, Counter[str]] = {}
        for fired, outcome in session.execute(
                select(CaseOutcome.rules, CaseOutcome.outcome)
                .where(CaseOutcome.at >= since)):
            for rule in (fired or {}).get("fired", []):
                outcomes.setdefault(str(rule), Counter())[outcome] += 1
    names = [*(f"screening:{r}" for r in RULES), *(f"detector:{k}" for k in DETECTORS),
             *ALERT_RULES]
    names += sorted(set(outcomes) - set(names))
    return [RuleFigures(name, hits[name],
                        holds[name] if name.startswith("screening:") else None,
                        outcomes.get(name, Counter())["confirmed_fraud"],
                        outcomes.get(name, Counter())["false_positive"],
                        outcomes.get(name, Counter())["benign"])
            for name in names]
