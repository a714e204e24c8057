"""The login detectors' thresholds as rule parameters: read from a ``[logins]`` table,
written as JSON, and taken from the rule set in force (`polysec rules`,
services/withdrawals/rulesets.py keeps the versions). The defaults are
``rules.DEFAULTS``; docs/anomalies.md gives the source of each.

Windows are whole minutes in the table and the JSON (``brute_force_window = 10``),
counts whole numbers, the rest numbers; every value stays within a factor of four of
its default (``BAND``, ``OWN_BOUNDS``), so that no proposal can switch a detector off,
flood the consoles, or make a pass read months of logins."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from polysec_tui.db.models import ApprovalRequest, RuleSet
from polysec_tui.errors import InputError
from polysec_tui.services.logins.rules import DEFAULTS, Thresholds

PARAMETERS = tuple(f.name for f in fields(Thresholds))
# How far a rule set may move a threshold from its default: a quarter to four times.
# A detector stays a detector: the extremes of a wide range are off-switches (a risk
# threshold of 100, which no score reaches; a minimum distance of 20,000 km) or floods
# (every login risky), and a proposal that silences a detector must be seen as one.
BAND = 4.0
# Where the band is not the bound: shares, and what a quarter of the default would
# make meaningless.
OWN_BOUNDS: dict[str, tuple[float, float]] = {
    # Below 1: at 1 a single success from the source (what a stuffing that worked
    # produces) would silence the campaign.
    "stuffing_failure_share": (0.5, 0.95), "campaign_share": (0.5, 0.95),
    "brute_force_failures": (3, 20), "saf_failures": (3, 20),
    "spraying_max_attempts": (1, 12), "campaign_ratio": (2, 20),
    "campaign_max_per_source": (2, 20),
    # Together: an intruder new in every feature on an account of min_history logins
    # scores about log10(100 n) + log10(4 n), 4.6 at n = 10; at the edges (20 and 6) the
    # takeover detectors were silent for accounts under about 40 logins.
    "min_history": (2, 10), "risk_log10_threshold": (1.5, 4.5),
    "campaign_min_history_hours": (24, 96),
}
WHOLE = {name for name in PARAMETERS
         if isinstance(getattr(DEFAULTS, name), int | timedelta)}


def _bounds(name: str) -> tuple[float, float]:
    if name in OWN_BOUNDS:
        return OWN_BOUNDS[name]
    default = getattr(DEFAULTS, name)
    value = default.total_seconds() / 60 if isinstance(default, timedelta) else default
    low, high = value / BAND, value * BAND
    if name in WHOLE:
        return float(math.ceil(low)), float(math.floor(high))
    return low, high


BOUNDS: dict[str, tuple[float, float]] = {name: _bounds(name) for name in PARAMETERS}


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
        whole = key in WHOLE
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not (
                math.isfinite(raw) and low <= raw <= high) or (whole and raw != int(raw)):
            kind = "a whole number" if whole else "a number"
            raise InputError(f"{where} {key}: {kind} from {low:g} to {high:g}"
                             + (" (minutes)" if isinstance(current, timedelta) else "")
                             + f", the default {plain(getattr(DEFAULTS, key))} within "
                             "a factor of four")
        if isinstance(current, timedelta):
            changes[key] = timedelta(minutes=raw)
        elif isinstance(current, int):
            changes[key] = int(raw)
        else:
            changes[key] = float(raw)
    return replace(base, **changes)


def from_parameters(parameters: Mapping[str, Any] | None) -> Thresholds:
    """The thresholds a rule set version holds (its ``logins`` table), each kept within
    today's bounds (a version stored under wider ones must not stop the detectors); the
    defaults for a version made before login thresholds were rule parameters."""
    doc = parameters_of(DEFAULTS)
    for key, raw in (parameters or {}).items():
        if key in BOUNDS and isinstance(raw, int | float) and not isinstance(raw, bool) \
                and math.isfinite(raw):
            low, high = BOUNDS[key]
            doc[key] = min(max(round(raw) if key in WHOLE else raw, low), high)
    return parse_section(doc, DEFAULTS, "rule set [logins]")


def plain(value: Any) -> str:
    """A threshold as the table writes it: windows in minutes."""
    if isinstance(value, timedelta):
        value = value.total_seconds() / 60
    return f"{value:g}"


def in_force(session: Session) -> tuple[Thresholds, int | None]:
    """The thresholds the detectors judge by: those of the newest approved rule set, or
    the defaults while none was approved; and that version."""
    live = session.execute(
        select(RuleSet.id, RuleSet.parameters).where(RuleSet.activated_at.is_not(None))
        .order_by(RuleSet.id.desc()).limit(1)).first()
    if live is None:
        return DEFAULTS, None
    return from_parameters(live.parameters.get("logins")), int(live.id)


# Proposals whose login thresholds judge every new login again in shadow at once.
MAX_SHADOWS = 3


def shadows(session: Session, now: datetime, live: Thresholds) -> list[tuple[int, Thresholds]]:
    """The proposals running in shadow on new logins beside ``live`` (the thresholds in
    force): their four-eyes request pending and not expired, their login thresholds
    other than ``live``; the oldest ``MAX_SHADOWS``, with their versions."""
    running = []
    for version, parameters in pending_proposals(session, now):
        t = from_parameters(parameters.get("logins"))
        if t != live:
            running.append((version, t))
    return running[:MAX_SHADOWS]


def pending_proposals(session: Session, now: datetime) -> list[tuple[int, dict[str, Any]]]:
    """The rule set versions proposed and not decided (their four-eyes request pending,
    not expired), oldest first, with their parameters: those that run in shadow, here
    and in screening (`screening.in_force`)."""
    return [(int(version), parameters) for version, parameters in session.execute(
        select(RuleSet.id, RuleSet.parameters)
        .join(ApprovalRequest, ApprovalRequest.id == RuleSet.request_id)
        .where(RuleSet.activated_at.is_(None), ApprovalRequest.status == "pending",
               ApprovalRequest.expires_at > now)
        .order_by(RuleSet.id))]
