"""Records kept past their retention period (`polysec retention report`).

MiCA Art. 68(9) and NYDFS 500.06 ask for records kept five years: ``[retention] years``
(default 5). The report lists, per kind of record, how many are older than that and the
oldest one's time. It deletes nothing: polysec has no deletion of records, and one would
be a four-eyes request like every other destructive action.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from polysec_tui.config import Settings
from polysec_tui.db.models import (
    ApprovalRequest,
    AuditLogEntry,
    AuditRun,
    BackupDrill,
    BackupRecord,
    LoginEvent,
    ReviewDecision,
    SecurityEvent,
    Withdrawal,
)
from polysec_tui.errors import InputError
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime

DEFAULT_YEARS = 5
# (kind, the time column that ages the record)
KINDS: tuple[tuple[str, Any], ...] = (
    ("audit log entries", AuditLogEntry.at),
    ("logins", LoginEvent.at),
    ("withdrawals", Withdrawal.requested_at),
    ("security events", SecurityEvent.at),
    ("withdrawal decisions", ReviewDecision.decided_at),
    ("four-eyes requests", ApprovalRequest.created_at),
    ("backups (catalogue)", BackupRecord.created_at),
    ("restore drills", BackupDrill.started_at),
    ("audit-check runs", AuditRun.started_at),
)


def years_of(settings: Settings) -> int:
    raw = settings.section("retention")
    unknown = sorted(set(raw) - {"years"})
    if unknown:
        raise InputError(f"config: [retention] has no setting {unknown[0]!r}")
    years = raw.get("years", DEFAULT_YEARS)
    if isinstance(years, bool) or not isinstance(years, int) or not 1 <= years <= 100:
        raise InputError("config: [retention] years must be a whole number from 1 to 100")
    return years


@dataclass(frozen=True)
class Past:
    kind: str
    past_retention: int
    oldest: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def report(rt: Runtime, actor: Actor) -> tuple[int, datetime, list[Past]]:
    """(years, the cutoff, each kind's records older than it)."""
    require(actor, "auditlog.read")
    years = years_of(rt.settings)
    now = rt.clock()
    try:
        cutoff = now.replace(year=now.year - years)
    except ValueError:  # 29 February in a year without one
        cutoff = now.replace(year=now.year - years, day=28)
    found = []
    with rt.sessions() as session:
        for kind, column in KINDS:
            count, oldest = session.execute(
                select(func.count(), func.min(column)).where(column < cutoff)).one()
            found.append(Past(kind, int(count or 0), oldest))
    return years, cutoff, found
