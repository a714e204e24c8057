"""The login detectors' thresholds as rule parameters: read from a ``[logins]`` table,
written as JSON, and taken from the rule set in force (`polysec rules`,
services/withdrawals/rulesets.py keeps the versions). The defaults are
``rules.DEFAULTS``; docs/anomalies.md gives the source of each.

Windows are whole minutes in the table and the JSON (``brute_force_window = 10``),
counts whole numbers, the rest numbers; every value is bounded, so that no proposal can
make a pass read months of logins or a count overflow."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from polysec_tui.db.models import RuleSet
from polysec_tui.errors import InputError
from polysec_tui.services.logins.rules import DEFAULTS, Thresholds

PARAMETERS = tuple(f.name for f in fields(Thresholds))
# (lowest, highest) of each parameter; windows in minutes.
BOUNDS: dict[str, tuple[float, float]] = {
    "brute_force_failures": (2, 10_000), "brute_force_window": (1, 10_080),
    "stuffing_accounts": (2, 100_000), "stuffing_asn_accounts": (2, 100_000),
    "stuffing_window": (1, 10_080), "stuffing_failure_share": (0, 1),
    "source_daily_failures": (2, 10_000_000), "spraying_accounts": (2, 100_000),
    "spraying_window": (1, 10_080), "spraying_max_attempts": (1, 1_000),
    "saf_failures": (1, 10_000), "saf_window": (1, 10_080),
    "travel_kmh": (1, 100_000), "travel_min_km": (0, 20_000),
    "travel_mobile_km": (0, 20_000), "min_history": (0, 10_000),
    "campaign_min_failures": (1, 10_000_000), "campaign_ratio": (1, 10_000),
    "campaign_min_accounts": (1, 1_000_000), "campaign_max_per_source": (1, 10_000),
    "campaign_share": (0, 1), "campaign_baseline_hours": (1, 720),
    "campaign_min_history_hours": (0, 720), "campaign_lateness": (0, 1_440),
    "risk_log10_threshold": (0, 100),
}
assert set(BOUNDS) == set(PARAMETERS), "a threshold without bounds"


def parameters_of(t: Thresholds) -> dict[str, Any]:
    """``t`` as JSON values (windows in minutes)."""
    doc: dict[str, Any] = {}
    for name in PARAMETERS:
        value = getattr(t, name)
        if isinstance(value, timedelta):
            minutes = value.total_seconds() / 60
            value = int(minutes) if minutes.is_integer() else minutes
        doc[name] = value
    return doc


def parse_section(section: Mapping[str, Any], base: Thresholds, where: str) -> Thresholds:
    """``base`` with the parameters of ``section``; an unknown key or a value out of its
    bounds is an input error naming it (exit 2)."""
    changes: dict[str, Any] = {}
    for key, raw in section.items():
        if key not in BOUNDS:
            raise InputError(f"{where} unknown key {key}")
        low, high = BOUNDS[key]
        current = getattr(base, key)
        whole = isinstance(current, int) or key == "campaign_baseline_hours"
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not (
                math.isfinite(raw) and low <= raw <= high) or (whole and raw != int(raw)):
            kind = "a whole number" if whole else "a number"
            raise InputError(f"{where} {key}: {kind} from {low:g} to {high:g}"
                             + (" (minutes)" if isinstance(current, timedelta) else ""))
        if isinstance(current, timedelta):
            changes[key] = timedelta(minutes=raw)
        elif isinstance(current, int):
            changes[key] = int(raw)
        else:
            changes[key] = float(raw)
    return replace(base, **changes)


def from_parameters(parameters: Mapping[str, Any] | None, version: int) -> Thresholds:
    """The thresholds a rule set version holds (its ``logins`` table); the defaults for
    a version made before login thresholds were rule parameters."""
    known = {k: v for k, v in (parameters or {}).items() if k in BOUNDS}
    return parse_section(known, DEFAULTS, f"rule set v{version} [logins]")


def in_force(session: Session) -> tuple[Thresholds, int | None]:
    """The thresholds the detectors judge by: those of the newest approved rule set, or
    the defaults while none was approved; and that version."""
    live = session.execute(
        select(RuleSet.id, RuleSet.parameters).where(RuleSet.activated_at.is_not(None))
        .order_by(RuleSet.id.desc()).limit(1)).first()
    if live is None:
        return DEFAULTS, None
    return from_parameters(live.parameters.get("logins"), live.id), int(live.id)
