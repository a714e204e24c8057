"""Dashboard alerts: incidents of activity an officer must see, and their acknowledgement.

An alert is not a row per event: it groups the high-severity events of one subject, with
a stable key ``kind:ref``, and grows as events arrive:

- ``account:<account uuid>``: what happened to one account in the last 24 hours: its
  high or critical login anomalies (a brute force, a success after failures, an
  impossible trip, a risky login), its held withdrawals above their asset's four-eyes
  limit (``[screening] approval_limits``; an asset without a limit always alerts, as it
  always needs four-eyes), and a held withdrawal that completes a takeover chain (a
  security change, then a request from an anomalous session: screening's
  ``security_change_hold`` and ``risky_session`` together, critical), a held withdrawal
  to a sanctioned or known-bad destination, and past withdrawals to an address a
  sanctions list imported in the window newly names (both critical), all in one alert;
- ``source:<ip or ASn>``: a credential stuffing or password spraying campaign from one
  IP or network in the last 24 hours, however many accounts it touched (its findings
  count from severity medium up: each failed attempt of a spraying campaign is medium,
  the campaign is high at least);
- ``audit:<id>``: an audit run of the last 24 hours whose result is ``fail``;
- ``monitoring:0``: events wait and no watcher has judged them for ``[watch]
  stale_after_seconds`` (:mod:`monitoring.watcher`). Critical, and not acknowledged: it
  clears itself when a watcher has caught up again.

Each alert carries its counts (events, accounts, IPs, per kind), first and last seen, and
the highest severity of its events, which rises as worse ones arrive. The counts come
from ``GROUP BY`` over the window's indexed rows, never from a capped list.

Acknowledging an alert covers it as far as the officer saw it (``through``: its last
event then): a row of ``alert_acks`` and an ``alert.acknowledge`` entry of the audit
log, in one transaction. An event that arrives later brings the alert back, grown. A
second officer acknowledging the same extent gets a conflict (exit 4) naming the first.
Several alerts can be acknowledged at once with one note (`acknowledge_many`); each is
its own transaction, and the ones that failed are listed with why.

An officer can snooze an account's or a source's alert, or one detector in it, for a
bounded time with a reason (`snooze`: senior officers, at most a day, audited, listed by
`list_snoozes`). A snoozed alert comes back when the time is up, or at once if its
severity rises above what it was when snoozed.

This module never imports textual.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, cast, func, or_, select, true, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from polysec_tui.config import Settings
from polysec_tui.db.models import (
    Account,
    AlertAck,
    AlertSnooze,
    AuditFinding,
    AuditRun,
    LoginAnomaly,
    Officer,
    SanctionedPayment,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.errors import ConflictError, InputError, PolysecError, RefusedError
from polysec_tui.services import outcomes
from polysec_tui.services.logins.rules import SOURCE_KINDS  # grouped by their source
from polysec_tui.services.monitoring import watcher
from polysec_tui.services.officers.auth import Actor, at_least, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.screening import (
    ALWAYS_HOLD,
    ScreeningConfig,
    in_force,
    load_config,
)
from polysec_tui.text import printable

KINDS = ("account", "source", "audit")
HIGH_SEVERITIES = ("high", "critical")
CAMPAIGN_SEVERITIES = ("medium", "high", "critical")
SEVERITY_RANK = {"high": 1, "critical": 2}
# Screening rules that together make a held withdrawal the end of a takeover chain: one
# of each group (a recent security change, and a flagged session or a threat-listed IP).
TAKEOVER_RULES = (("security_change_hold",),
                  ("risky_session", "ip_reputation", "recent_anomalies"))
WINDOW = timedelta(hours=24)
NOTE_MAX = 500
MAX_SNOOZE_MINUTES = 24 * 60  # a snooze is bounded: a day at most
MONITORING = "monitoring"


@dataclass(frozen=True)
class Alert:
    kind: str  # account | source | audit | monitoring
    ref: str  # the account's uuid, the source ("203.0.113.5", "AS64500"), the run's id
    at: datetime  # the newest event
    severity: str  # high | critical
    title: str  # what happened, e.g. "brute force (12), impossible travel" (printable)
    account: str  # the platform's account id ("" unless one account); printable
    detail: str  # printable
    first_at: datetime | None = None
    events: int = 1
    accounts: int = 0
    ips: int = 0
    parts: tuple[tuple[str, int], ...] = ()  # (what, how many), most first
    rules: tuple[str, ...] = ()  # what fired: detector:<kind>, alert:<what> (outcomes)
    # When its newest event *arrived* (found by a detector, held by screening): what an
    # acknowledgement covers, so that a late event with an old time still brings it back.
    seen_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.ref}"

    @property
    def arrived(self) -> datetime:
        """When its newest event arrived (its time, when that is not known)."""
        return self.seen_at or self.at

    def due(self, sla: AlertSla) -> datetime:
        """When an officer should have acknowledged it: its first event plus the SLA of
        its severity."""
        return (self.first_at or self.at) + sla.of(self.severity)

    def as_dict(self) -> dict[str, Any]:
        doc = {"key": self.key, **asdict(self)}
        doc["parts"] = dict(self.parts)
        return doc


@dataclass(frozen=True)
class AlertSla:
    """``[alerts]``: how long an alert may wait for an acknowledgement, by severity
    (minutes, counted from its first event). Past it, the alert is late: highlighted in
    the console and counted on the dashboard and in "my work"."""

    critical_minutes: float = 15.0
    high_minutes: float = 60.0

    def of(self, severity: str) -> timedelta:
        return timedelta(minutes=self.critical_minutes if severity == "critical"
                         else self.high_minutes)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertSla:
        raw = dict(settings.section("alerts"))
        values: dict[str, float] = {}
        for name, value in raw.items():
            if name not in cls.__dataclass_fields__:
                raise InputError(f"config: unknown key [alerts] {name}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InputError(f"config: [alerts] {name} must be a number of minutes "
                                 "above 0")
            values[name] = float(value)
        return cls(**values)


def late(alerts: list[Alert] | tuple[Alert, ...], sla: AlertSla, now: datetime) -> int:
    """How many of ``alerts`` are past their SLA (the monitoring alert is always late)."""
    return sum(a.kind == MONITORING or a.due(sla) < now for a in alerts)


def parse_key(key: str) -> tuple[str, str]:
    kind, _, ref = key.strip().partition(":")
    if kind == MONITORING:
        raise InputError("the monitoring alert cannot be acknowledged: it clears itself "
                         "when a watcher (`polysec watch`) has judged the waiting events")
    if kind not in KINDS or not ref or len(ref) > 64:
        raise InputError(f"not an alert: {printable(key, limit=80)!r} "
                         "(account:<uuid>, source:<ip or ASn> or audit:<id>)")
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
    """The alerts nobody has acknowledged as far as they have grown, newest first (a
    stalled monitoring first of all: nothing else on the list is current while it lasts).
    ``monitoring``: the watcher's status when the caller has read it already."""
    if monitoring is None:
        monitoring = watcher.status(session, now, watcher.WatchConfig())
    stalled = [_stalled(monitoring, now)] if monitoring.stale else []
    found = current(session, now, cfg)
    if not found:
        return stalled
    acked = _acknowledged_through(session, found)
    snoozed = _snoozed(session, now)
    alerts = [a for a in found
              if ((through := acked.get((a.kind, a.ref))) is None or through < a.arrived)
              and not _silenced(a, snoozed.get(a.key, []))]
    return stalled + alerts


def _snoozed(session: Session, now: datetime) -> dict[str, list[AlertSnooze]]:
    active: dict[str, list[AlertSnooze]] = {}
    for snooze in session.scalars(select(AlertSnooze).where(AlertSnooze.until > now)):
        active.setdefault(snooze.subject, []).append(snooze)
    return active


def _silenced(alert: Alert, snoozes: list[AlertSnooze]) -> bool:
    """Snoozed, and not risen above the severity it had then: a whole subject, or every
    detector the alert is made of."""
    rank = SEVERITY_RANK.get(alert.severity, 1)
    held = [s for s in snoozes if SEVERITY_RANK.get(s.severity, 1) >= rank]
    if any(s.rule is None for s in held):
        return True
    rules = {s.rule for s in held}
    return bool(alert.rules) and set(alert.rules) <= rules


@dataclass(frozen=True)
class SnoozeView:
    id: int
    subject: str
    rule: str | None
    severity: str
    until: datetime
    reason: str
    officer: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def snooze(rt: Runtime, actor: Actor, key: str, minutes: float, reason: str, *,
           rule: str | None = None) -> SnoozeView:
    """Silence the alert ``key`` (an account or a source; with ``rule``, only that
    detector on it) for at most `MAX_SNOOZE_MINUTES`, audited. It comes back when the
    time is up, or sooner if its severity rises. Senior officers and admins only:
    silencing is a judgement on the rules, not on one case."""
    require(actor, "review")
    if not at_least(actor, "senior"):
        raise RefusedError("only a senior officer or above can snooze an alert")
    kind, ref = parse_key(key)
    if kind not in ("account", "source"):
        raise InputError("only an account's or a source's alert can be snoozed")
    if not 1 <= minutes <= MAX_SNOOZE_MINUTES:
        raise InputError(f"a snooze lasts 1 to {MAX_SNOOZE_MINUTES} minutes")
    text = (reason or "").strip()
    if not text or len(text) > NOTE_MAX:
        raise InputError(f"a reason of 1 to {NOTE_MAX} characters is required")
    now = rt.clock()
    with rt.transaction() as session:
        alert = next((a for a in current(session, now, load_config(rt.settings))
                      if a.key == f"{kind}:{ref}"), None)
        if alert is None:
            raise InputError(f"no such alert in the last 24 hours: {printable(key)}")
        if rule is not None:
            rule = rule if rule.startswith(("detector:", "alert:")) else f"detector:{rule}"
            if rule not in alert.rules:
                raise InputError(f"{printable(rule)} is not part of alert {printable(key)} "
                                 f"({', '.join(alert.rules)})")
        row = AlertSnooze(subject=alert.key, rule=rule, severity=alert.severity,
                          until=now + timedelta(minutes=minutes), reason=text,
                          officer_id=actor.officer_id, created_at=now)
        session.add(row)
        session.flush()
        rt.audit.append(session, officer=actor.name, action="alert.snooze", at=now,
                        target=f"alert:{alert.key}",
                        details={"rule": rule, "minutes": minutes,
                                 "until": row.until.isoformat(),
                                 "severity": alert.severity, "reason": text})
        return SnoozeView(row.id, row.subject, rule, row.severity, row.until, text,
                          actor.name, now)


def list_snoozes(rt: Runtime, actor: Actor) -> list[SnoozeView]:
    """The snoozes in force, soonest to end first."""
    require(actor, "read")
    now = rt.clock()
    with rt.sessions() as session:
        return [SnoozeView(s.id, s.subject, s.rule, s.severity, s.until, s.reason,
                           name or "?", s.created_at)
                for s, name in session.execute(
                    select(AlertSnooze, Officer.name)
                    .join(Officer, Officer.id == AlertSnooze.officer_id)
                    .where(AlertSnooze.until > now).order_by(AlertSnooze.until))]


def current(session: Session, now: datetime, cfg: ScreeningConfig) -> list[Alert]:
    """Every alert of the window as far as it has grown, acknowledged or not, newest
    first. ``cfg``: the configuration file's; the rule set in force replaces its weights."""
    cfg, _shadows = in_force(session, cfg, now)
    groups: dict[tuple[str, str], _Group] = {}
    _anomaly_groups(session, now - WINDOW, now, groups)
    _withdrawal_groups(session, cfg, groups)
    _sanctions_groups(session, now - WINDOW, now, groups)
    alerts = [g.alert() for g in groups.values()]
    alerts.extend(_failed_audits(session, now - WINDOW, now))
    alerts.sort(key=lambda a: (a.at, a.key), reverse=True)
    return alerts


class _Group:
    """One alert being put together from its events' counts."""

    def __init__(self, kind: str, ref: str) -> None:
        self.kind, self.ref = kind, ref
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.rank = 0
        self.seen: datetime | None = None
        self.parts: Counter[str] = Counter()
        self.accounts: set[Any] = set()
        self.ips: set[str] = set()
        self.account_label = ""
        self.amounts: list[str] = []
        self.newest_id = 0  # the newest anomaly: its explanation leads the detail
        self.latest = ""
        self.rules: set[str] = set()

    def add(self, what: str, count: int, first: datetime, last: datetime,
            severity: str, seen: datetime) -> None:
        self.parts[what] += count
        self.seen = seen if self.seen is None else max(self.seen, seen)
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)
        self.rank = max(self.rank, SEVERITY_RANK.get(severity, 1))

    def alert(self) -> Alert:
        assert self.first is not None and self.last is not None
        severity = "critical" if self.rank >= 2 else "high"
        parts = tuple(sorted(self.parts.items(), key=lambda p: (-p[1], p[0])))
        listed = ", ".join(f"{what} ({n:,})" if n > 1 else what for what, n in parts)
        span = (f"{self.first:%m-%d %H:%M}" if self.first == self.last
                else f"{self.first:%m-%d %H:%M} to {self.last:%m-%d %H:%M}")
        events = sum(self.parts.values())
        if self.kind == "source":
            title = f"{listed} from {self.ref}"
            detail = (f"{len(self.accounts):,} account(s), {len(self.ips):,} IP(s), "
                      f"{events:,} event(s), {span}")
            account = ""
        else:
            title = listed
            bits = [self.latest] if self.latest else []
            if self.amounts:
                bits.append("held above the four-eyes limit: " + ", ".join(self.amounts[:3])
                            + (" …" if len(self.amounts) > 3 else ""))
            counted = f"{events:,} event(s)" + (f" from {len(self.ips):,} IP(s)"
                                                 if self.ips else "")
            detail = "; ".join([*bits, f"{counted}, {span}"])
            account = self.account_label
        return Alert(self.kind, self.ref, self.last, severity, printable(title, limit=160),
                     printable(account, limit=64), printable(detail, limit=200),
                     self.first, events, len(self.accounts), len(self.ips), parts,
                     tuple(sorted(self.rules)), self.seen)


def _label(kind: str) -> str:
    return printable(kind, limit=32).replace("_", " ")


def _anomaly_groups(session: Session, since: datetime, now: datetime,
                    groups: dict[tuple[str, str], _Group]) -> None:
    a = LoginAnomaly
    in_window = (a.at >= since, a.at <= now, a.severity.in_(HIGH_SEVERITIES))
    campaign = (a.at >= since, a.at <= now, a.severity.in_(CAMPAIGN_SEVERITIES))
    # Account-scoped kinds: one row per account, kind and severity.
    for account_id, ext, kind, severity, n, first, last, newest, seen in session.execute(
        select(a.account_id, Account.external_id, a.kind, a.severity, func.count(),
               func.min(a.at), func.max(a.at), func.max(a.id), func.max(a.detected_at))
        .join(Account, Account.id == a.account_id)
        .where(*in_window, a.kind.not_in(SOURCE_KINDS))
        .group_by(a.account_id, Account.external_id, a.kind, a.severity)
    ):
        group = _group(groups, "account", str(account_id))
        group.account_label = ext
        group.accounts.add(account_id)
        group.add(_label(kind), int(n), first, last, severity, seen)
        group.rules.add(f"detector:{kind}")
        group.newest_id = max(group.newest_id, int(newest))
    by_newest = {g.newest_id: g for g in groups.values() if g.newest_id}
    latest_ids = sorted(by_newest)
    for start in range(0, len(latest_ids), 500):
        for anomaly_id, ip, explanation in session.execute(
                select(a.id, a.source_ip, a.explanation)
                .where(a.id.in_(latest_ids[start:start + 500]))):
            by_newest[anomaly_id].latest = f"from {ip}: {explanation}" if ip else explanation
    for account_id, ip in session.execute(
        select(a.account_id, a.source_ip).where(*in_window, a.kind.not_in(SOURCE_KINDS))
        .group_by(a.account_id, a.source_ip)
    ):
        if ip:
            _group(groups, "account", str(account_id)).ips.add(ip)
    # Source kinds: grouped by the campaign's source (the IP, or the network of an
    # ASN-wide burst), which the finding's details name; one detail read per IP.
    rows = session.execute(
        select(a.kind, a.severity, a.source_ip, a.source_asn, a.account_id, func.count(),
               func.min(a.at), func.max(a.at), func.max(a.id), func.max(a.detected_at))
        .where(*campaign, a.kind.in_(SOURCE_KINDS))
        .group_by(a.kind, a.severity, a.source_ip, a.source_asn, a.account_id)).all()
    sources: dict[int, str] = {}
    ids = sorted({row[8] for row in rows})
    for start in range(0, len(ids), 500):
        for anomaly_id, details in session.execute(
                select(a.id, a.details).where(a.id.in_(ids[start:start + 500]))):
            source = details.get("source") if isinstance(details, dict) else None
            sources[anomaly_id] = str(source) if source else ""
    for kind, severity, ip, asn, account_id, n, first, last, newest_id, seen in rows:
        source = sources.get(newest_id) or (ip or (f"AS{asn}" if asn is not None else "?"))
        group = _group(groups, "source", source[:64])
        group.accounts.add(account_id)
        if ip:
            group.ips.add(ip)
        group.add(_label(kind), int(n), first, last, severity, seen)
        group.rules.add(f"detector:{kind}")


def _withdrawal_groups(session: Session, cfg: ScreeningConfig,
                       groups: dict[tuple[str, str], _Group]) -> None:
    w = Withdrawal
    # A security change counts when it weighs at least half the rule's weight: not the
    # client's own change from their usual device and network (a quarter).
    # So does the account's recent story: a login found to be someone else's, not a
    # quarter-weight novelty or failed attempt.
    f = WithdrawalFlag
    strong = {rule: f.score >= cfg.weight(rule) / 2
              for rule in ("security_change_hold", "recent_anomalies")}
    takeover = and_(*(w.id.in_(select(f.withdrawal_id).where(or_(*(
        and_(f.rule == rule, strong.get(rule, true())) for rule in group))))
                      for group in TAKEOVER_RULES))
    listed = w.id.in_(select(WithdrawalFlag.withdrawal_id)
                      .where(WithdrawalFlag.rule.in_(ALWAYS_HOLD)))
    for account_id, ext, at, asset, amount, chain, bad, screened in session.execute(
        select(w.account_id, Account.external_id, w.requested_at, w.asset, w.amount,
               takeover, listed, WithdrawalScreening.screened_at)
        .join(Account, Account.id == w.account_id)
        .outerjoin(WithdrawalScreening, WithdrawalScreening.withdrawal_id == w.id)
        .where(w.status == "held",
               or_(_above_limit_sql(cfg, session.get_bind().dialect.name), takeover,
                   listed))
        .order_by(w.requested_at.desc(), w.id.desc())
    ):
        large = above_limit(cfg, asset, amount)
        if not (large or chain or bad):
            continue
        group = _group(groups, "account", str(account_id))
        group.account_label = ext
        group.accounts.add(account_id)
        if large:
            group.amounts.append(f"{format(amount, 'f')} {printable(asset, limit=16)}")
            group.rules.add("alert:large_held_withdrawal")
        seen = screened or at
        if bad:
            group.rules.add("alert:sanctioned_destination")
            group.add("held withdrawal to a sanctioned or known-bad destination", 1, at, at,
                      "critical", seen)
        elif chain:
            group.rules.add("alert:takeover_chain")
            group.add("takeover chain: security change, anomalous session, withdrawal", 1,
                      at, at, "critical", seen)
        else:
            group.add("held withdrawal", 1, at, at, "high", seen)


def _sanctions_groups(session: Session, since: datetime, now: datetime,
                      groups: dict[tuple[str, str], _Group]) -> None:
    """Past withdrawals to an address that a list imported in the window newly names
    (``sanctioned_payments``, found by the import's re-screening): critical, dated by
    the import. Those held now are the held withdrawals' part instead."""
    w, p = Withdrawal, SanctionedPayment
    for account_id, ext, n, found, address in session.execute(
        select(w.account_id, Account.external_id, func.count(w.id.distinct()),
               func.max(p.found_at), func.max(w.address))
        .join(p, p.withdrawal_id == w.id)
        .join(Account, Account.id == w.account_id)
        .where(p.found_at >= since, p.found_at <= now, w.status != "held")
        .group_by(w.account_id, Account.external_id)
    ):
        group = _group(groups, "account", str(account_id))
        group.account_label = ext
        group.accounts.add(account_id)
        group.rules.add("alert:sanctioned_destination")
        group.latest = group.latest or (f"paid {printable(address, limit=64)}, which a "
                                        "sanctions list now names")
        group.add("past withdrawal to a newly sanctioned address", int(n), found, found,
                  "critical", found)


def _group(groups: dict[tuple[str, str], _Group], kind: str, ref: str) -> _Group:
    group = groups.get((kind, ref))
    if group is None:
        group = groups[(kind, ref)] = _Group(kind, ref)
    return group


def _failed_audits(session: Session, since: datetime, now: datetime) -> list[Alert]:
    runs = session.execute(
        select(AuditRun.id, AuditRun.started_at)
        .where(AuditRun.result == "fail", AuditRun.started_at >= since,
               AuditRun.started_at <= now)
        .order_by(AuditRun.id.desc())
    ).all()
    failed: dict[int, list[str]] = {run_id: [] for run_id, _ in runs}
    if failed:
        for run_id, check in session.execute(
            select(AuditFinding.run_id, AuditFinding.check_name)
            .where(AuditFinding.run_id.in_(list(failed)), AuditFinding.status == "fail")
            .order_by(AuditFinding.check_name)
        ):
            failed[run_id].append(check)
    return [Alert("audit", str(run_id), at, "high", f"audit run {run_id} failed", "",
                  printable(f"failed: {', '.join(failed[run_id]) or 'see the run'}",
                            limit=200), at, seen_at=at)
            for run_id, at in runs]


def _stalled(status: watcher.WatcherStatus, now: datetime) -> Alert:
    waited = ("" if status.lag_seconds is None
              else f" for {status.lag_seconds / 60:,.0f} min")
    who = (f"the watcher on {status.host} is behind" if status.running
           else "no watcher is running (`polysec watch`)")
    return Alert(MONITORING, "0", now, "critical", "monitoring stalled", "",
                 printable(f"{status.lag_events:,} event(s) waiting unjudged{waited}: {who}",
                           limit=200), now, status.lag_events)


def _acknowledged_through(session: Session,
                          alerts: list[Alert]) -> dict[tuple[str, str], datetime]:
    """How far each alert was acknowledged (its newest event then)."""
    done: dict[tuple[str, str], datetime] = {}
    for kind in KINDS:
        refs = [a.ref for a in alerts if a.kind == kind]
        for start in range(0, len(refs), 500):
            for ref, through in session.execute(
                select(AlertAck.ref, func.max(AlertAck.through_at))
                .where(AlertAck.kind == kind, AlertAck.ref.in_(refs[start:start + 500]),
                       AlertAck.through_at.is_not(None))
                .group_by(AlertAck.ref)
            ):
                if through is not None:
                    done[(kind, ref)] = through
    return done


def list_alerts(rt: Runtime, actor: Actor) -> list[Alert]:
    require(actor, "read")
    cfg = load_config(rt.settings)
    watch = watcher.WatchConfig.from_settings(rt.settings)
    now = rt.clock()
    with rt.sessions() as session:
        return unacknowledged(session, now, cfg, watcher.status(session, now, watch))


def acknowledge(rt: Runtime, actor: Actor, key: str, note: str | None = None, *,
                outcome: str, through: datetime | None = None) -> Alert:
    """Acknowledge the alert ``key`` as far as ``through`` (the arrival of the newest
    event the officer saw, `Alert.arrived`; by default, as far as it has grown now) with
    its ``outcome`` (`services.outcomes`; the note is its reason): one row, the outcome
    and one audit entry, in one transaction. Exit 4 if it was acknowledged that far
    already (by another officer, or from a screen showing older data)."""
    require(actor, "review")
    kind, ref = parse_key(key)
    note = _note(note)
    outcomes.checked(outcome, note)
    now = rt.clock()
    cfg = load_config(rt.settings)
    try:
        with rt.transaction() as session:
            alert = next((a for a in current(session, now, cfg) if a.key == f"{kind}:{ref}"),
                         None)
            if alert is None:
                raise InputError(f"no such alert in the last 24 hours: {printable(key)}")
            covered: datetime = (alert.arrived if through is None
                                 else min(through, alert.arrived))
            already = session.scalar(select(func.max(AlertAck.through_at)).where(
                AlertAck.kind == kind, AlertAck.ref == ref))
            if already is not None and already >= covered:
                raise ConflictError(f"alert {key} was already acknowledged by "
                                    f"{_last_acknowledger(session, kind, ref)}")
            session.add(AlertAck(kind=kind, ref=ref, officer_id=actor.officer_id,
                                 acked_at=now, note=note, through_at=covered))
            session.flush()
            outcomes.record(session, actor.officer_id, now, f"alert:{alert.key}", outcome,
                            note, list(alert.rules))
            details: dict[str, Any] = {"kind": kind, "through": covered.isoformat(),
                                       "events": alert.events, "severity": alert.severity,
                                       "title": alert.title, "outcome": outcome}
            if note:
                details["note"] = note
            rt.audit.append(session, officer=actor.name, action="alert.acknowledge", at=now,
                            target=f"alert:{kind}:{ref}", details=details)
            return alert
    except IntegrityError:  # the same extent, acknowledged at the same moment
        with rt.sessions() as session:
            who = _last_acknowledger(session, kind, ref)
        raise ConflictError(f"alert {key} was already acknowledged by {who}") from None


def _last_acknowledger(session: Session, kind: str, ref: str) -> str:
    who = session.scalar(
        select(Officer.name).join(AlertAck, AlertAck.officer_id == Officer.id)
        .where(AlertAck.kind == kind, AlertAck.ref == ref)
        .order_by(AlertAck.id.desc()).limit(1))
    return who or "someone"


def acknowledge_many(rt: Runtime, actor: Actor, keys: list[tuple[str, datetime | None]],
                     note: str | None, *, outcome: str) -> list[tuple[str, PolysecError | None]]:
    """Acknowledge each alert (key, as far as) with the same outcome and note, each in
    its own transaction: the key and None when done, or the refusal that stopped it."""
    require(actor, "review")
    note = _note(note)
    outcomes.checked(outcome, note)
    results: list[tuple[str, PolysecError | None]] = []
    for key, through in keys:
        try:
            acknowledge(rt, actor, key, note, outcome=outcome, through=through)
            results.append((key, None))
        except PolysecError as refused:
            results.append((key, refused))
    return results


def _note(note: str | None) -> str | None:
    text = (note or "").strip() or None
    if text is not None and len(text) > NOTE_MAX:
        raise InputError(f"the note is longer than {NOTE_MAX} characters")
    return text
