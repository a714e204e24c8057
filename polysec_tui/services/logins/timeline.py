"""The account timeline: one chronological story of an account.

Logins (successful and failed, each with the anomalies found on it), security events,
withdrawals and the officers' decisions on them, 2FA reset requests and every officer
action recorded against the account in the audit log. Each source is one indexed query
(``account_id, at`` or the audit log's ``target``) limited to the newest ``limit``
events, merged in Python. PII is never part of it: the account is named by its platform
id and its masked e-mail. Text that comes from the platform (user agents, cities,
address labels) is data, to be rendered literally.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    ApprovalRequest,
    AuditLogEntry,
    LoginEvent,
    Officer,
    ReviewDecision,
    SecurityEvent,
    TwoFactorResetRequest,
    Withdrawal,
    WithdrawalScreening,
)
from polysec_tui.errors import InputError
from polysec_tui.services.clients.accounts import decrypt_pii, resolve
from polysec_tui.services.clients.masking import mask_email
from polysec_tui.services.logins.anomalies import anomalies_for_logins
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime

DEFAULT_LIMIT = 500
MAX_LIMIT = 10_000
DEFAULT_DAYS = 30
MAX_DAYS = 366
DEFAULT_LOCATED = 200
Ident = str | uuid.UUID  # platform id or exact e-mail, or the console's account UUID


@dataclass
class TimelineEvent:
    at: datetime
    type: str  # login | login_failed | security_event | withdrawal | review | twofa_reset
    #            | officer_action
    ref: str  # the event's own id (platform id, decision id, audit seq)
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "type": self.type, "ref": self.ref, "summary": self.summary,
                "details": self.details, "anomalies": self.anomalies}


@dataclass
class Timeline:
    account: str
    account_id: uuid.UUID
    email: str  # masked
    status: str
    country: str | None
    events: list[TimelineEvent]
    truncated: bool

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "account_id": self.account_id,
                "email": self.email, "status": self.status, "country": self.country,
                "truncated": self.truncated, "events": [e.as_dict() for e in self.events]}


@dataclass(frozen=True)
class DayCount:
    """Logins of one UTC day."""

    day: date
    succeeded: int
    failed: int


@dataclass(frozen=True)
class LocatedLogin:
    """A successful login with coordinates (for the map); ``impossible_travel`` says that
    the trip from the account's previous located login to this one was flagged."""

    login: str  # platform id
    at: datetime
    latitude: float
    longitude: float
    country: str | None
    city: str | None  # platform text: render literally
    impossible_travel: bool


def find_account(rt: Runtime, session: Session, ident: Ident) -> Account:
    """The account by its console UUID, platform id or exact e-mail."""
    if isinstance(ident, uuid.UUID):
        account = session.get(Account, ident)
        if account is None:
            raise InputError(f"no account with id {ident}")
        return account
    return resolve(rt, session, ident)


def account_timeline(rt: Runtime, actor: Actor, ident: Ident, *,
                     limit: int = DEFAULT_LIMIT) -> Timeline:
    """The newest ``limit`` events of the account (by id or exact e-mail), oldest first."""
    require(actor, "read")
    limit = max(1, min(limit, MAX_LIMIT))
    with rt.sessions() as session:
        account = find_account(rt, session, ident)
        email = mask_email(decrypt_pii(rt, account).email)
        events: list[TimelineEvent] = []
        fetch = limit + 1  # one more than shown: tells whether older events exist
        events += _logins(session, account.id, fetch)
        events += _security_events(session, account.id, fetch)
        events += _withdrawals(session, account.id, fetch)
        events += _twofa_resets(session, account.id, fetch)
        events += _officer_actions(session, account.external_id, fetch)
    events.sort(key=lambda e: (e.at, e.type, e.ref))
    truncated = len(events) > limit
    return Timeline(account.external_id, account.id, email, account.status, account.country,
                    events[-limit:], truncated)


def _logins(session: Session, account_id: uuid.UUID, limit: int) -> list[TimelineEvent]:
    rows = session.scalars(
        select(LoginEvent).where(LoginEvent.account_id == account_id)
        .order_by(LoginEvent.at.desc(), LoginEvent.id.desc()).limit(limit)
    ).all()
    found = anomalies_for_logins(session, [r.id for r in rows])
    out = []
    for r in rows:
        where = "/".join(x for x in (r.country, r.city) if x) or "unknown place"
        asn = f" AS{r.asn}" if r.asn is not None else ""
        outcome = "succeeded" if r.success else f"failed ({r.failure_reason or 'unknown'})"
        out.append(TimelineEvent(
            r.at, "login" if r.success else "login_failed", r.external_id,
            f"login {outcome} from {r.ip}{asn} ({where})",
            {"ip": r.ip, "asn": r.asn, "country": r.country, "region": r.region,
             "city": r.city, "latitude": r.latitude, "longitude": r.longitude,
             "user_agent": r.user_agent, "browser": r.browser, "os": r.os,
             "device_type": r.device_type, "device_id": r.device_id, "rtt_ms": r.rtt_ms},
            [{"kind": a.kind, "severity": a.severity, "score": a.score,
              "explanation": a.explanation, "details": a.details, "detected_at": a.detected_at}
             for a in found.get(r.id, [])],
        ))
    return out


def _security_events(session: Session, account_id: uuid.UUID,
                     limit: int) -> list[TimelineEvent]:
    rows = session.scalars(
        select(SecurityEvent).where(SecurityEvent.account_id == account_id)
        .order_by(SecurityEvent.at.desc(), SecurityEvent.id.desc()).limit(limit)
    ).all()
    return [
        TimelineEvent(r.at, "security_event", r.external_id,
                      f"{r.kind}" + (f" {r.address}" if r.address else "")
                      + (f" from {r.ip}" if r.ip else ""),
                      {"kind": r.kind, "ip": r.ip, "device_id": r.device_id,
                       "address": r.address, "details": r.details or {}})
        for r in rows
    ]


def _withdrawals(session: Session, account_id: uuid.UUID, limit: int) -> list[TimelineEvent]:
    rows = session.execute(
        select(Withdrawal, WithdrawalScreening.risk_score)
        .outerjoin(WithdrawalScreening, WithdrawalScreening.withdrawal_id == Withdrawal.id)
        .where(Withdrawal.account_id == account_id)
        .order_by(Withdrawal.requested_at.desc(), Withdrawal.id.desc()).limit(limit)
    ).all()
    out = [
        TimelineEvent(
            r.requested_at, "withdrawal", r.external_id,
            f"withdrawal of {format(r.amount, 'f')} {r.asset} requested from {r.ip} "
            f"(status {r.status})",
            {"asset": r.asset, "amount": r.amount, "available_balance": r.available_balance,
             "address": r.address, "address_label": r.address_label, "ip": r.ip,
             "device_id": r.device_id, "login": r.login_external_id, "status": r.status,
             "risk_score": risk_score},
        )
        for r, risk_score in rows
    ]
    by_id = {r.id: r.external_id for r, _ in rows}
    if by_id:
        decisions = session.execute(
            select(ReviewDecision, Officer.name)
            .join(Officer, Officer.id == ReviewDecision.officer_id)
            .where(ReviewDecision.withdrawal_id.in_(list(by_id)))
        ).all()
        for decision, officer in decisions:
            out.append(TimelineEvent(
                decision.decided_at, "review", f"decision-{decision.id}",
                f"{officer} decided {decision.decision} on withdrawal "
                f"{by_id[decision.withdrawal_id]}",
                {"officer": officer, "decision": decision.decision, "note": decision.note,
                 "withdrawal": by_id[decision.withdrawal_id]},
            ))
    return out


def _twofa_resets(session: Session, account_id: uuid.UUID, limit: int) -> list[TimelineEvent]:
    rows = session.execute(
        select(TwoFactorResetRequest, ApprovalRequest)
        .join(ApprovalRequest, ApprovalRequest.id == TwoFactorResetRequest.approval_id)
        .where(TwoFactorResetRequest.account_id == account_id)
        .order_by(TwoFactorResetRequest.created_at.desc()).limit(limit)
    ).all()
    ids = {o for _r, a in rows for o in (a.requester_id, a.decided_by) if o is not None}
    names: dict[uuid.UUID, str] = {}
    if ids:
        names = {oid: name for oid, name in session.execute(
            select(Officer.id, Officer.name).where(Officer.id.in_(ids)))}
    return [
        TimelineEvent(
            reset.created_at, "twofa_reset", str(approval.id),
            f"2FA reset requested by {names.get(approval.requester_id, '?')} "
            f"(status {approval.status})",
            {"requester": names.get(approval.requester_id), "status": approval.status,
             "reason": approval.reason,
             "decided_by": names.get(approval.decided_by) if approval.decided_by else None,
             "decided_at": approval.decided_at},
        )
        for reset, approval in rows
    ]


def _officer_actions(session: Session, external_id: str, limit: int) -> list[TimelineEvent]:
    rows = session.scalars(
        select(AuditLogEntry).where(AuditLogEntry.target == f"account:{external_id}")
        .order_by(AuditLogEntry.seq.desc()).limit(limit)
    ).all()
    out = []
    for r in rows:
        try:
            details = json.loads(r.details)
        except ValueError:
            details = {"raw": r.details}
        out.append(TimelineEvent(r.at, "officer_action", f"audit-{r.seq}",
                                 f"{r.officer}: {r.action}", {"officer": r.officer,
                                                              "action": r.action,
                                                              "details": details}))
    return out


def _day(session: Session, column: Any) -> ColumnElement[Any]:
    """The UTC day of a stored time (times are stored as naive UTC on every engine)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(column, Date)
    return func.date(column)  # SQLite ('YYYY-MM-DD' text) and MariaDB (a DATE)


def logins_per_day(rt: Runtime, actor: Actor, ident: Ident, *,
                   days: int = DEFAULT_DAYS) -> list[DayCount]:
    """Successful and failed logins of the account per UTC day, for the ``days`` days up
    to and including today (the runtime's clock), oldest first, days without logins
    included as zeros. One ``GROUP BY`` over the ``(account_id, at)`` index."""
    require(actor, "read")
    days = max(1, min(days, MAX_DAYS))
    today = rt.clock().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
    with rt.sessions() as session:
        account = find_account(rt, session, ident)
        day = _day(session, LoginEvent.at)
        rows = session.execute(
            select(day, LoginEvent.success, func.count())
            .where(LoginEvent.account_id == account.id, LoginEvent.at >= start,
                   LoginEvent.at < end)
            .group_by(day, LoginEvent.success)
        ).all()
    counts: dict[date, list[int]] = {}
    for raw_day, success, n in rows:
        key = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day)[:10])
        counts.setdefault(key, [0, 0])[0 if success else 1] += int(n)
    out = []
    for offset in range(days):
        d = first + timedelta(days=offset)
        ok, failed = counts.get(d, (0, 0))
        out.append(DayCount(d, ok, failed))
    return out


def located_logins(rt: Runtime, actor: Actor, ident: Ident, *,
                   limit: int = DEFAULT_LOCATED) -> list[LocatedLogin]:
    """The account's newest ``limit`` successful logins that have coordinates, oldest
    first, each marked when it was flagged ``impossible_travel``."""
    require(actor, "read")
    limit = max(1, min(limit, MAX_LIMIT))
    with rt.sessions() as session:
        account = find_account(rt, session, ident)
        rows = session.execute(
            select(LoginEvent.id, LoginEvent.external_id, LoginEvent.at,
                   LoginEvent.latitude, LoginEvent.longitude, LoginEvent.country,
                   LoginEvent.city)
            .where(LoginEvent.account_id == account.id, LoginEvent.success.is_(True),
                   LoginEvent.latitude.is_not(None), LoginEvent.longitude.is_not(None))
            .order_by(LoginEvent.at.desc(), LoginEvent.id.desc()).limit(limit)
        ).all()
        found = anomalies_for_logins(session, [r.id for r in rows])
    return [
        LocatedLogin(r.external_id, r.at, float(r.latitude), float(r.longitude), r.country,
                     r.city, any(a.kind == "impossible_travel" for a in found.get(r.id, [])))
        for r in reversed(rows)
    ]
