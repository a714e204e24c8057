"""Who may do what. Every service call that acts for an officer takes an `Actor` and
checks its permission here: hiding a button in the TUI is not the control.

Roles: analyst (review, read), senior (approve, reveal PII, 2FA reset approval), admin
(officers, keys, restore) and automation (backups and audit checks, nothing else).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from polysec_tui.errors import RefusedError

ROLES = ("analyst", "senior", "admin", "automation")
# Seniority for "a sufficiently senior officer"; automation is outside the ladder.
RANK = {"analyst": 1, "senior": 2, "admin": 3, "automation": 0}

HUMANS = frozenset({"analyst", "senior", "admin"})
SENIOR_UP = frozenset({"senior", "admin"})

PERMISSIONS: dict[str, frozenset[str]] = {
    "read": HUMANS,  # queues, timelines, dashboards (masked PII)
    "review": HUMANS,  # claim and decide withdrawals (four-eyes above the limit)
    "approve": SENIOR_UP,  # decide four-eyes requests
    "pii.reveal": SENIOR_UP,
    "twofa.request": HUMANS,
    "officers.manage": frozenset({"admin"}),
    "keys.manage": frozenset({"admin"}),
    "backup.run": frozenset({"admin", "automation"}),
    "backup.restore": frozenset({"admin"}),
    "audit.run": frozenset({"senior", "admin", "automation"}),
    "auditlog.read": frozenset({"senior", "admin", "automation"}),
    "logins.analyze": frozenset({"analyst", "senior", "admin", "automation"}),
    "withdrawals.screen": frozenset({"analyst", "senior", "admin", "automation"}),
    "blocklist.add": HUMANS,  # blocking an address only makes screening stricter
    "blocklist.remove": SENIOR_UP,  # unblocking weakens it: senior officers only
    # A new version of a sanctions list may also drop addresses: not for analysts.
    "sanctions.import": frozenset({"senior", "admin", "automation"}),
    # A list decides what the detectors call an attacker's network: not for analysts.
    "iplists.import": frozenset({"senior", "admin", "automation"}),
    # Screening's thresholds and weights: proposed and backtested by senior officers,
    # live only once another approves (services/withdrawals/rulesets.py).
    "rules.propose": SENIOR_UP,
    # The SIEM export's dead letters, sent again (services/monitoring/export.py).
    "export.manage": frozenset({"admin", "automation"}),
}


@dataclass(frozen=True)
class Actor:
    """The authenticated officer behind an action."""

    officer_id: uuid.UUID
    name: str
    role: str
    session_id: uuid.UUID | None = None

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


def require(actor: Actor, permission: str) -> None:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    if not actor.can(permission):
        allowed = ", ".join(r for r in ROLES if r in PERMISSIONS[permission])
        raise RefusedError(
            f"officer {actor.name} ({actor.role}) may not {permission}; needs {allowed}"
        )


def at_least(actor: Actor, role: str) -> bool:
    return actor.role != "automation" and RANK[actor.role] >= RANK[role]
