"""The dashboard's figures: what a security officer wants to see first.

Why it looks like this:

- Every figure is an aggregate computed by the database (``COUNT``/``SUM`` with a
  ``WHERE at >= :since`` on an indexed column); nothing is pulled into Python to be
  counted, so the dashboard stays cheap on a large PostgreSQL or MariaDB.
- The 24-hour window is ``[now - 24 h, now]`` where *now* is the runtime's clock (pinned in
  tests). Events stamped after the clock are not counted: the summary is an "as of" view,
  and a dashboard pinned to a time shows the same figures every time.
- "Newest events" merges three small ``ORDER BY at DESC LIMIT n`` queries (failed logins,
  security events, withdrawals) in Python. Successful logins are left out: they are the
  bulk of the traffic and would push every signal off the list.
- The result is made of frozen dataclasses of plain values (no ORM objects), so a
  Textual thread worker can hand it to the UI thread and ``polysec status --json`` can
  print it. Text that comes from the platform (IPs, cities, user agents, addresses,
  account ids) goes through :func:`printable`, which removes control characters and
  terminal escape sequences; renderers must still treat it as literal text, never markup.

This module never imports textual.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, distinct, false, func, select
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    ApprovalRequest,
    AuditFinding,
    AuditHead,
    AuditRun,
    BackupDrill,
    BackupRecord,
    LoginAnomaly,
    LoginEvent,
    SecurityEvent,
    TotpEnrolment,
    Withdrawal,
    WithdrawalScreening,
)
from polysec_tui.errors import InputError
from polysec_tui.services.clients import incidents
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Clock, Runtime
from polysec_tui.text import printable

if TYPE_CHECKING:
    from polysec_tui.services.monitoring.alerts import Alert
    from polysec_tui.services.monitoring.watcher import WatcherStatus

WINDOW = timedelta(hours=24)
RATE_WINDOW = timedelta(hours=1)  # the failed-login rate: failures in the last hour
NEWEST_EVENTS = 12
RATE_ALARM_MIN = 10
RATE_ALARM_FACTOR = 3

@dataclass(frozen=True)
class DashboardEvent:
    at: datetime
    source: str  # login | security | withdrawal
    kind: str  # failed | new_device, password_change... | pending, held...
    account: str  # the platform's account id (untrusted text)
    detail: str  # short description built from untrusted text, already printable()

    @property
    def label(self) -> str:
        return f"{self.source} {self.kind}"


@dataclass(frozen=True)
class DashboardSummary:
    as_of: datetime
    database: str
    demo: bool
    accounts: int
    accounts_2fa: int
    logins_ok_24h: int
    logins_failed_24h: int
    failing_ips_24h: int
    withdrawals_pending: int
    withdrawals_held: int
    events: tuple[DashboardEvent, ...]
    # The live figures (issue 9): failed-login rate, anomalies, four-eyes, backup, audit,
    # incidents and the alerts nobody has acknowledged yet.
    logins_failed_1h: int = 0
    anomalies_24h: int = 0
    anomalies_high_24h: int = 0  # severity high or critical
    approvals_pending: int = 0
    approvals_oldest_at: datetime | None = None
    backup: LastBackup | None = None
    drill: LastDrill | None = None  # the newest restore drill (`polysec backup drill`)
    audit: LastAudit | None = None
    incidents_open: int = 0
    alerts: tuple[Alert, ...] = ()
    watcher: WatcherStatus | None = None  # the detector service (`polysec watch`)
    # Past their SLA: withdrawals waiting for an officer (held, escalated or claimed)
    # longer than [screening] review_sla_hours; alerts unacknowledged past [alerts].
    withdrawals_late: int = 0
    alerts_late: int = 0

    @property
    def coverage_pct(self) -> float | None:
        """Share of accounts with an authenticator enrolled, in percent (None: no accounts)."""
        if not self.accounts:
            return None
        return round(100.0 * self.accounts_2fa / self.accounts, 1)

    @property
    def failed_per_hour_24h(self) -> float:
        """The 24-hour average of failed logins per hour (the baseline of the rate)."""
        return round(self.logins_failed_24h / (WINDOW.total_seconds() / 3600), 1)

    @property
    def failed_rate_alarming(self) -> bool:
        """The last hour saw at least 10 failures and three times the 24-hour average."""
        return (self.logins_failed_1h >= RATE_ALARM_MIN
                and self.logins_failed_1h >= RATE_ALARM_FACTOR * self.failed_per_hour_24h)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["two_factor_coverage_pct"] = self.coverage_pct
        doc["window_hours"] = int(WINDOW.total_seconds() // 3600)
        doc["logins_failed_per_hour_24h"] = self.failed_per_hour_24h
        doc["alerts"] = [a.as_dict() for a in self.alerts]
        if self.backup is not None:
            doc["backup"]["age_hours"] = self.backup.age_hours(self.as_of)
        if self.drill is not None:
            doc["drill"]["age_hours"] = self.drill.age_hours(self.as_of)
        return doc


@dataclass(frozen=True)
class LastBackup:
    """The newest backup of the catalogue (pruned ones left out)."""

    created_at: datetime
    status: str  # complete | verified | failed
    verified: bool
    shipped: bool

    def age_hours(self, now: datetime) -> float:
        return round((now - self.created_at).total_seconds() / 3600, 1)


@dataclass(frozen=True)
class LastDrill:
    """The newest restore drill: when, and whether the restored copy passed its checks."""

    started_at: datetime
    result: str  # pass | fail
    total_seconds: float
    signature: str = "valid"  # valid | invalid | untrusted signer (the record's)

    def age_hours(self, now: datetime) -> float:
        return round((now - self.started_at).total_seconds() / 3600, 1)


@dataclass(frozen=True)
class LastAudit:
    """The newest audit run: its result (None while it runs) and how many checks failed."""

    run_id: int
    started_at: datetime
    result: str | None  # pass | warn | fail
    failed: int


class DashboardService:
    """The figures for one officer: every ``summary`` checks ``read`` (masked data only)."""

    def __init__(self, runtime: Runtime, actor: Actor, *, clock: Clock | None = None,
                 newest: int = NEWEST_EVENTS) -> None:
        self.runtime = runtime
        self.actor = actor
        self.clock = clock or runtime.clock
        self.newest = newest

    def summary(self) -> DashboardSummary:
        require(self.actor, "read")
        now = self.clock()
        since = now - WINDOW
        demo = self.runtime.is_demo()
        with self.runtime.sessions() as session:
            accounts, accounts_2fa = session.execute(
                select(
                    select(func.count(Account.id)).scalar_subquery(),
                    select(func.count(TotpEnrolment.id)).scalar_subquery(),
                )
            ).one()
            failed = ~LoginEvent.success
            ok_24h, failed_24h, failing_ips = session.execute(
                select(
                    func.coalesce(func.sum(case((LoginEvent.success, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
                    func.count(distinct(case((failed, LoginEvent.ip)))),
                ).where(LoginEvent.at >= since, LoginEvent.at <= now)
            ).one()
            by_status: dict[str, int] = {
                status: count
                for status, count in session.execute(
                    select(Withdrawal.status, func.count())
                    .where(Withdrawal.status.in_(("pending", "held")))
                    .group_by(Withdrawal.status)
                )
            }
            events = self._newest_events(session, now)
            live = self._live_figures(session, now)
        live["incidents_open"] = incidents.open_count(self.runtime)
        return DashboardSummary(
            as_of=now,
            database=self.runtime.database_label,
            demo=demo,
            accounts=int(accounts),
            accounts_2fa=int(accounts_2fa),
            logins_ok_24h=int(ok_24h),
            logins_failed_24h=int(failed_24h),
            failing_ips_24h=int(failing_ips),
            withdrawals_pending=int(by_status.get("pending", 0)),
            withdrawals_held=int(by_status.get("held", 0)),
            events=events,
            **live,
        )

    def change_token(self) -> tuple[Any, ...]:
        """A cheap fingerprint of what the dashboard shows: the newest ids of the event
        tables, the audit log's head (every officer action: decisions, approvals,
        incidents, acknowledgements, backups, audit runs), the held queue and the
        backup catalogue. Each part is an index lookup or a tiny table, so an idle
        console can ask every few seconds; when the token is unchanged, nothing is
        reloaded and nothing is redrawn. (Accounts are not in it: counting them is not
        cheap on a large table; the periodic reload picks them up.)"""
        require(self.actor, "read")
        with self.runtime.sessions() as session:
            row = session.execute(select(
                select(func.max(LoginEvent.id)).scalar_subquery(),
                select(func.max(SecurityEvent.id)).scalar_subquery(),
                select(func.max(Withdrawal.id)).scalar_subquery(),
                select(func.max(WithdrawalScreening.screened_at)).scalar_subquery(),
                select(func.count()).select_from(Withdrawal)
                .where(Withdrawal.status == "held").scalar_subquery(),
                select(func.max(LoginAnomaly.id)).scalar_subquery(),
                select(func.max(AuditHead.seq)).scalar_subquery(),
                select(func.max(AuditRun.id)).scalar_subquery(),
                select(func.count(AuditRun.finished_at)).scalar_subquery(),
                select(func.count(BackupRecord.id)).scalar_subquery(),
                select(func.count(BackupRecord.verified_at)).scalar_subquery(),
                select(func.count(BackupRecord.shipped_at)).scalar_subquery(),
            )).one()
        return tuple(row)

    def _live_figures(self, session: Session, now: datetime) -> dict[str, Any]:
        from polysec_tui.services.monitoring import alerts, watcher
        from polysec_tui.services.withdrawals import review
        from polysec_tui.services.withdrawals.screening import load_config

        monitoring = watcher.status(session, now,
                                    watcher.WatchConfig.from_settings(self.runtime.settings))
        failed_1h = session.scalar(
            select(func.count()).select_from(LoginEvent)
            .where(LoginEvent.at > now - RATE_WINDOW, LoginEvent.at <= now,
                   LoginEvent.success == false())) or 0
        since = now - WINDOW
        high = LoginAnomaly.severity.in_(alerts.HIGH_SEVERITIES)
        anomalies, anomalies_high = session.execute(
            select(func.count(), func.coalesce(func.sum(case((high, 1), else_=0)), 0))
            .select_from(LoginAnomaly)
            .where(LoginAnomaly.at >= since, LoginAnomaly.at <= now)).one()
        approvals, oldest = session.execute(
            select(func.count(), func.min(ApprovalRequest.created_at))
            .where(ApprovalRequest.status == "pending", ApprovalRequest.expires_at > now)
        ).one()
        backup_row = session.execute(
            select(BackupRecord.created_at, BackupRecord.status, BackupRecord.verified_at,
                   BackupRecord.shipped_at)
            .where(BackupRecord.status != "pruned")
            .order_by(BackupRecord.created_at.desc()).limit(1)).one_or_none()
        backup = None if backup_row is None else LastBackup(
            backup_row.created_at, backup_row.status,
            backup_row.verified_at is not None or backup_row.status == "verified",
            backup_row.shipped_at is not None)
        drill = self._last_drill(session)
        run = session.execute(select(AuditRun.id, AuditRun.started_at, AuditRun.result)
                              .order_by(AuditRun.id.desc()).limit(1)).one_or_none()
        audit = None
        if run is not None:
            failed = session.scalar(select(func.count()).select_from(AuditFinding).where(
                AuditFinding.run_id == run.id, AuditFinding.status == "fail")) or 0
            audit = LastAudit(int(run.id), run.started_at, run.result, int(failed))
        screening_cfg = load_config(self.runtime.settings)
        current = tuple(alerts.unacknowledged(session, now, screening_cfg, monitoring))
        return {
            "withdrawals_late": review.late_count(session, now, screening_cfg.review_sla_hours),
            "alerts_late": alerts.late(current, alerts.AlertSla.from_settings(
                self.runtime.settings), now),
            "logins_failed_1h": int(failed_1h),
            "anomalies_24h": int(anomalies),
            "anomalies_high_24h": int(anomalies_high),
            "approvals_pending": int(approvals),
            "approvals_oldest_at": oldest,
            "backup": backup,
            "drill": drill,
            "audit": audit,
            "alerts": current,
            "watcher": monitoring,
        }

    def _last_drill(self, session: Session) -> LastDrill | None:
        """The newest restore drill as its signed record says (``backups.read_drill``)."""
        from polysec_tui.services.operations import backups

        row = session.scalars(select(BackupDrill).order_by(BackupDrill.started_at.desc())
                              .limit(1)).first()
        if row is None:
            return None
        try:
            signers = backups.BackupConfig.from_settings(self.runtime.settings).signers
        except InputError:
            signers = ()
        view = backups.read_drill(row, signers)
        return LastDrill(view.started_at, view.result, view.total_seconds, view.signature)

    def _newest_events(self, session: Session, now: datetime) -> tuple[DashboardEvent, ...]:
        n = self.newest
        if n <= 0:
            return ()
        events: list[DashboardEvent] = []
        logins = session.execute(
            select(LoginEvent.at, Account.external_id, LoginEvent.failure_reason,
                   LoginEvent.ip, LoginEvent.city, LoginEvent.country, LoginEvent.user_agent)
            .join(Account, Account.id == LoginEvent.account_id)
            .where(LoginEvent.success == false(), LoginEvent.at <= now)
            .order_by(LoginEvent.at.desc(), LoginEvent.id.desc())
            .limit(n)
        )
        for at, account, reason, ip, city, country, agent in logins:
            place = ", ".join(p for p in (city, country) if p)
            parts = [reason or "failed", "from", ip]
            if place:
                parts.append(f"({place})")
            if agent:
                parts.append(agent)
            events.append(_event(at, "login", "failed", account, " ".join(parts)))
        security = session.execute(
            select(SecurityEvent.at, SecurityEvent.kind, Account.external_id,
                   SecurityEvent.ip, SecurityEvent.device_id)
            .join(Account, Account.id == SecurityEvent.account_id)
            .where(SecurityEvent.at <= now)
            .order_by(SecurityEvent.at.desc(), SecurityEvent.id.desc())
            .limit(n)
        )
        for at, kind, account, source_ip, device in security:
            words: list[str] = []
            if source_ip:
                words += ["from", source_ip]
            if device:
                words += ["device", device]
            events.append(_event(at, "security", kind, account, " ".join(words)))
        withdrawals = session.execute(
            select(Withdrawal.requested_at, Withdrawal.status, Account.external_id,
                   Withdrawal.amount, Withdrawal.asset, Withdrawal.address, Withdrawal.ip)
            .join(Account, Account.id == Withdrawal.account_id)
            .where(Withdrawal.requested_at <= now)
            .order_by(Withdrawal.requested_at.desc(), Withdrawal.id.desc())
            .limit(n)
        )
        for at, status, account, amount, asset, address, request_ip in withdrawals:
            to = _shorten(printable(address))
            detail = f"{_amount(amount)} {asset} to {to} from {request_ip}"
            events.append(_event(at, "withdrawal", status, account, detail))
        # Newest first; ties broken by a stable, content-based order for reproducibility.
        events.sort(key=lambda e: (e.at, e.source, e.account, e.detail), reverse=True)
        return tuple(events[:n])


def _event(at: datetime, source: str, kind: str, account: str, detail: str) -> DashboardEvent:
    return DashboardEvent(at, source, printable(kind, limit=32), printable(account, limit=64),
                          printable(detail, limit=200))


def _amount(value: Decimal) -> str:
    return format(value, "f")


def _shorten(address: str, keep: int = 8) -> str:
    """Start and end of a destination address: enough to recognise, short enough to fit."""
    if len(address) <= 2 * keep + 1:
        return address
    return f"{address[:keep]}…{address[-keep:]}"
