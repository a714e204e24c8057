"""One officer's work in one place (`polysec work`, the console's "My work"): the
withdrawals they hold the claim of, with their review SLA clock; the four-eyes requests
of other officers they may decide; their own requests of the last week and their state;
and how much of the team's work is past its SLA (withdrawals waiting for an officer,
alerts waiting for an acknowledgement).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from polysec_tui.services import four_eyes
from polysec_tui.services.monitoring import alerts, watcher
from polysec_tui.services.officers.approvals import RequestView
from polysec_tui.services.officers.auth import Actor, at_least, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import review
from polysec_tui.services.withdrawals.review import QueueItem
from polysec_tui.services.withdrawals.screening import load_config

RECENT = timedelta(days=7)  # how far back "my requests" go


@dataclass(frozen=True)
class MyWork:
    as_of: datetime
    officer: str
    sla_hours: float  # the review SLA of withdrawals
    claimed: tuple[QueueItem, ...]
    to_decide: tuple[RequestView, ...]
    requested: tuple[RequestView, ...]
    withdrawals_late: int  # the team's
    alerts_late: int

    def due(self, item: QueueItem) -> datetime:
        return item.requested_at + timedelta(hours=self.sla_hours)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of, "officer": self.officer, "sla_hours": self.sla_hours,
            "claimed": [i.as_dict() | {"due": self.due(i), "late": self.due(i) < self.as_of}
                        for i in self.claimed],
            "to_decide": [r.as_dict() for r in self.to_decide],
            "requested": [r.as_dict() for r in self.requested],
            "withdrawals_late": self.withdrawals_late, "alerts_late": self.alerts_late,
        }


def _may_decide(actor: Actor, request: RequestView) -> bool:
    """Other officers' requests of a kind this officer's role can decide (a kind whose
    approver depends on the payload, an officer grant, needs a senior at least)."""
    kind = four_eyes.KINDS.get(request.kind)
    if kind is None or request.requester_id == actor.officer_id:
        return False
    role = kind.min_role if isinstance(kind.min_role, str) else "senior"
    return at_least(actor, role)


def my_work(rt: Runtime, actor: Actor) -> MyWork:
    require(actor, "read")
    now = rt.clock()
    cfg = load_config(rt.settings)
    claimed = review.list_queue(rt, actor, status="in_review", sort="age", limit=1000,
                                claimant=actor.officer_id).items
    pending = four_eyes.list_requests(rt, actor)
    mine = [r for r in four_eyes.list_requests(rt, actor, pending_only=False, mine=True)
            if r.created_at >= now - RECENT]
    with rt.sessions() as session:
        withdrawals_late = review.late_count(session, now, cfg.review_sla_hours)
        current = alerts.unacknowledged(session, now, cfg, watcher.status(
            session, now, watcher.WatchConfig.from_settings(rt.settings)))
    return MyWork(now, actor.name, cfg.review_sla_hours, claimed,
                  tuple(r for r in pending if _may_decide(actor, r)), tuple(mine),
                  withdrawals_late,
                  alerts.late(current, alerts.AlertSla.from_settings(rt.settings), now))
