"""Dashboard alerts: high-severity events an officer must see, and their acknowledgement.

An alert is not a row of its own: it *is* an event already in the database, named by
``kind:ref``:

- ``anomaly:<id>``: a login anomaly of severity high or critical whose login falls in the
  last 24 hours (``login_anomalies.at``, indexed);
- ``withdrawal:<id>``: a withdrawal held for review (status ``held``) whose amount is above
  its asset's four-eyes approval limit (``[screening] approval_limits``; an asset without a
  limit always alerts, as it always needs four-eyes);
- ``audit:<id>``: an audit run of the last 24 hours whose result is ``fail``;
- ``monitoring:0``: events wait and no watcher has judged them for ``[watch]
  stale_after_seconds`` (:mod:`monitoring.watcher`). Critical, and not acknowledged: it
  clears itself when a watcher has caught up again.

An alert stays on the dashboard until an officer acknowledges it. The acknowledgement is a
row of ``alert_acks`` (unique per event) and an ``alert.acknowledge`` entry of the audit
log, written in one transaction; a second officer acknowledging the same event gets a
conflict (exit 4), not a second entry.

Candidates are bounded (newest ``LIMIT`` of each kind) and the acknowledgements of just
those candidates are looked up by key, so the cost does not grow with the history.

This module never imports textual.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, cast, or_, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from polysec_tui.db.models import (
    Account,
    AlertAck,
    AuditFinding,
    AuditRun,
    LoginAnomaly,
    Officer,
    Withdrawal,
    WithdrawalScreening,
)
from polysec_tui.db.types import record_id
from polysec_tui.errors import ConflictError, InputError
from polysec_tui.services.monitoring import watcher
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.screening import ScreeningConfig, load_config
from polysec_tui.text import printable

KINDS = ("anomaly", "withdrawal", "audit")
HIGH_SEVERITIES = ("high", "critical")
WINDOW = timedelta(hours=24)
LIMIT = 100  # newest candidates of each kind
NOTE_MAX = 500


@dataclass(frozen=True)
class Alert:
    kind: str  # anomaly | withdrawal | audit
    ref: str  # the event's id in its table
    at: datetime
    severity: str  # high | critical
    title: str  # what happened, e.g. "critical anomaly: impossible travel"
    account: str  # the platform's account id ("" for an audit run); untrusted, printable
    detail: str  # printable

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.ref}"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, **asdict(self)}


MONITORING = "monitoring"


def parse_key(key: str) -> tuple[str, str]:
    kind, _, ref = key.partition(":")
    if kind == MONITORING:
        raise InputError("the monitoring alert cannot be acknowledged: it clears itself "
                         "when a watcher (`polysec watch`) has judged the waiting events")
    if kind not in KINDS or record_id(ref) is None:
        raise InputError(f"not an alert: {printable(key, limit=80)!r} "
                         "(anomaly:<id>, withdrawal:<id> or audit:<id>)")
    return kind, ref


def above_limit(cfg: ScreeningConfig, asset: str, amount: Decimal) -> bool:
    limit = cfg.approval_limit(asset)
    return limit is None or amount > limit


def _above_limit_sql(cfg: ScreeningConfig, dialect: str) -> ColumnElement[bool]:
    """:func:`above_limit` as a condition, so the database picks the large held
    withdrawals however long the held queue is. SQLite stores amounts as decimal strings:
    there they are compared as REAL (an amount above the limit by less than about 1e-15
    of it reads as equal and does not alert on SQLite); :func:`above_limit` then decides
    exactly on every engine."""
    limits = cfg.approval_limits
    amount: Any = Withdrawal.amount
    bounds: dict[str, Any] = dict(limits)
    if dialect == "sqlite":
        amount = cast(type_coerce(Withdrawal.amount, String), Float)
        bounds = {asset: float(limit) for asset, limit in limits.items()}
    return or_(Withdrawal.asset.not_in(list(limits)),
               *(and_(Withdrawal.asset == asset, amount > bound)
                 for asset, bound in bounds.items()))


def unacknowledged(session: Session, now: datetime, cfg: ScreeningConfig,
                   monitoring: watcher.WatcherStatus | None = None) -> list[Alert]:
    """The alerts nobody has acknowledged yet, newest first (a stalled monitoring first
    of all: nothing else on the list is current while it lasts). ``monitoring``: the
    watcher's status when the caller has read it already."""
    since = now - WINDOW
    found: list[Alert] = []
    if monitoring is None:
        monitoring = watcher.status(session, now, watcher.WatchConfig())
    stalled = [_stalled(monitoring, now)] if monitoring.stale else []
    for row in session.execute(
        select(LoginAnomaly.id, LoginAnomaly.at, LoginAnomaly.severity, LoginAnomaly.kind,
               Account.external_id, LoginAnomaly.source_ip, LoginAnomaly.explanation)
        .join(Account, Account.id == LoginAnomaly.account_id)
        .where(LoginAnomaly.at >= since, LoginAnomaly.at <= now,
               LoginAnomaly.severity.in_(HIGH_SEVERITIES))
        .order_by(LoginAnomaly.at.desc(), LoginAnomaly.id.desc()).limit(LIMIT)
    ):
        anomaly_id, at, severity, kind, account, ip, explanation = row
        found.append(Alert(
            "anomaly", str(anomaly_id), at, severity,
            f"{severity} anomaly: {printable(kind, limit=32).replace('_', ' ')}",
            printable(account, limit=64),
            printable(f"from {ip}: {explanation}" if ip else explanation, limit=200)))
    for held in session.execute(
        select(Withdrawal.id, Withdrawal.requested_at, Withdrawal.asset, Withdrawal.amount,
               Account.external_id, WithdrawalScreening.risk_score, Withdrawal.ip)
        .join(Account, Account.id == Withdrawal.account_id)
        .outerjoin(WithdrawalScreening, WithdrawalScreening.withdrawal_id == Withdrawal.id)
        .where(Withdrawal.status == "held",
               _above_limit_sql(cfg, session.get_bind().dialect.name))
        .order_by(Withdrawal.requested_at.desc(), Withdrawal.id.desc()).limit(LIMIT)
    ):
        wid, at, asset, amount, account, risk, ip = held
        if not above_limit(cfg, asset, amount):
            continue
        risk_text = f", risk {risk:.0f}" if risk is not None else ""
        found.append(Alert(
            "withdrawal", str(wid), at, "high",
            f"held withdrawal: {format(amount, 'f')} {printable(asset, limit=16)}",
            printable(account, limit=64),
            printable(f"above the four-eyes limit, from {ip}{risk_text}", limit=200)))
    runs = session.execute(
        select(AuditRun.id, AuditRun.started_at)
        .where(AuditRun.result == "fail", AuditRun.started_at >= since,
               AuditRun.started_at <= now)
        .order_by(AuditRun.id.desc()).limit(LIMIT)
    ).all()
    failed: dict[int, list[str]] = {run_id: [] for run_id, _ in runs}
    if failed:
        for run_id, check in session.execute(
            select(AuditFinding.run_id, AuditFinding.check_name)
            .where(AuditFinding.run_id.in_(list(failed)), AuditFinding.status == "fail")
            .order_by(AuditFinding.check_name)
        ):
            failed[run_id].append(check)
    for run_id, at in runs:
        checks = ", ".join(failed[run_id]) or "see the run"
        found.append(Alert("audit", str(run_id), at, "high", f"audit run {run_id} failed",
                           "", printable(f"failed: {checks}", limit=200)))
    if not found:
        return stalled
    acked = _acknowledged(session, found)
    alerts = [a for a in found if (a.kind, a.ref) not in acked]
    alerts.sort(key=lambda a: (a.at, a.kind, int(a.ref)), reverse=True)
    return stalled + alerts


def _stalled(status: watcher.WatcherStatus, now: datetime) -> Alert:
    waited = ("" if status.lag_seconds is None
              else f" for {status.lag_seconds / 60:,.0f} min")
    who = (f"the watcher on {status.host} is behind" if status.running
           else "no watcher is running (`polysec watch`)")
    return Alert(MONITORING, "0", now, "critical", "monitoring stalled", "",
                 printable(f"{status.lag_events:,} event(s) waiting unjudged{waited}: {who}",
                           limit=200))


def _acknowledged(session: Session, alerts: list[Alert]) -> set[tuple[str, str]]:
    done: set[tuple[str, str]] = set()
    for kind in KINDS:
        refs = [a.ref for a in alerts if a.kind == kind]
        if refs:
            done.update((kind, ref) for ref in session.scalars(
                select(AlertAck.ref).where(AlertAck.kind == kind, AlertAck.ref.in_(refs))))
    return done


def list_alerts(rt: Runtime, actor: Actor) -> list[Alert]:
    require(actor, "read")
    cfg = load_config(rt.settings)
    watch = watcher.WatchConfig.from_settings(rt.settings)
    now = rt.clock()
    with rt.sessions() as session:
        return unacknowledged(session, now, cfg, watcher.status(session, now, watch))


def _exists(session: Session, kind: str, ref: int) -> bool:
    table: Any = {"anomaly": LoginAnomaly, "withdrawal": Withdrawal, "audit": AuditRun}[kind]
    return session.scalar(select(table.id).where(table.id == ref)) is not None


def acknowledge(rt: Runtime, actor: Actor, key: str, note: str | None = None) -> None:
    """Mark the alert ``key`` seen and handled by ``actor``: one row and one audit entry,
    in one transaction. Exit 4 if another officer acknowledged it first."""
    require(actor, "review")
    kind, ref = parse_key(key)
    if note is not None:
        note = note.strip() or None
        if note is not None and len(note) > NOTE_MAX:
            raise InputError(f"the note is longer than {NOTE_MAX} characters")
    now = rt.clock()
    try:
        with rt.transaction() as session:
            if not _exists(session, kind, int(ref)):
                raise InputError(f"no such event: {key}")
            session.add(AlertAck(kind=kind, ref=ref, officer_id=actor.officer_id,
                                 acked_at=now, note=note))
            session.flush()
            details: dict[str, Any] = {"kind": kind}
            if note:
                details["note"] = note
            rt.audit.append(session, officer=actor.name, action="alert.acknowledge", at=now,
                            target=f"alert:{kind}:{ref}", details=details)
    except IntegrityError:
        with rt.sessions() as session:
            who = session.scalar(
                select(Officer.name).join(AlertAck, AlertAck.officer_id == Officer.id)
                .where(AlertAck.kind == kind, AlertAck.ref == ref))
        raise ConflictError(f"alert {key} was already acknowledged by {who or 'someone'}"
                            ) from None
