"""Client 2FA reset: identity proofing, four-eyes approval, and a withdrawal hold.

A client who lost their authenticator asks support to remove it. That is the most abused
path to an account takeover, so:

- the requesting officer (analyst or above) records how the client proved who they are
  (a checklist of independent proofs, at least ``[twofa] min_proofs`` of them) and sees
  the account's risk context (recent login anomalies, pending withdrawals, recent
  security changes) before and inside the request;
- a different officer, senior or above, approves or denies it with a fresh authenticator
  code, through the four-eyes primitive (:mod:`services.approvals`): requests expire
  (``[twofa] request_ttl_hours``, default 24) and execute exactly once;
- execution is one transaction with its audit entries: the encrypted secret row is
  deleted (nothing of it is kept), the account is marked as needing re-enrolment, the
  client's sessions are revoked, a ``security_change`` withdrawal hold is placed for
  ``[twofa] hold_hours`` (default 48), a ``2fa_reset`` security event is recorded and a
  notification is queued in the outbox for the platform to send;
- no officer ever sees or chooses the new secret: the client enrols a new authenticator
  on the platform at their next login.

A request's id is the id of its approval request (the one `polysec approvals` shows).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    ApprovalRequest,
    ClientNotification,
    ClientSession,
    Hold,
    LoginAnomaly,
    Officer,
    SecurityEvent,
    TotpEnrolment,
    TwoFactorResetRequest,
    Withdrawal,
)
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services.clients.accounts import resolve
from polysec_tui.services.officers import approvals
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.holds import hold_in_force
from polysec_tui.text import printable

KIND = "twofa.reset"
HOLD_KIND = "security_change"
SECURITY_EVENT = "2fa_reset"
NOTIFICATION = "2fa_reset"
# Security events about the authenticator, shown by `twofa status`.
TWOFA_EVENTS = ("2fa_enabled", "2fa_disabled", "2fa_change", "2fa_reset")
# Security events that make a 2FA reset riskier when they are recent.
SECURITY_CHANGES = ("password_change", "password_reset", "email_change", "phone_change",
                    "new_device", *TWOFA_EVENTS)
OPEN_WITHDRAWALS = ("pending", "held", "in_review", "escalated")
MAX_EVIDENCE = 2000
MAX_REFERENCE = 128


# ------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Policy:
    """The ``[twofa]`` table of the TOML configuration."""

    request_ttl: timedelta = timedelta(hours=24)
    hold: timedelta = timedelta(hours=48)
    min_proofs: int = 2
    risk_window: timedelta = timedelta(days=30)

    KEYS = ("request_ttl_hours", "hold_hours", "min_proofs", "risk_days")

    @classmethod
    def from_settings(cls, rt: Runtime) -> Policy:
        section = rt.settings.section("twofa")
        unknown = set(section) - set(cls.KEYS)
        if unknown:
            raise InputError(f"config: unknown [twofa] key(s): {', '.join(sorted(unknown))}")
        for key, value in section.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"config: [twofa] {key} must be a positive integer")
        min_proofs = section.get("min_proofs", 2)
        if min_proofs > len(PROOFS):
            raise InputError(f"config: [twofa] min_proofs is at most {len(PROOFS)}")
        return cls(
            request_ttl=timedelta(hours=section.get("request_ttl_hours", 24)),
            hold=timedelta(hours=section.get("hold_hours", 48)),
            min_proofs=min_proofs,
            risk_window=timedelta(days=section.get("risk_days", 30)),
        )


# --------------------------------------------------------------------- identity proofing

# The checklist: name -> label. Each item is a reference to where the proof is kept
# (case number, KYC vendor reference...), never the document or the answers themselves.
PROOFS: dict[str, str] = {
    "id_document": "ID document matched the KYC record",
    "liveness": "selfie / liveness check",
    "history_questions": "account history questions answered",
    "kyc_reference": "KYC record reference",
}


@dataclass(frozen=True)
class Proof:
    """How the client proved their identity. A value is a reference (case or check id)
    or, for the history questions, ``"passed"``; None means not done."""

    id_document: str | None = None
    liveness: str | None = None
    history_questions: str | None = None
    kyc_reference: str | None = None

    def items(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in PROOFS:
            value = getattr(self, name)
            if value is None:
                continue
            text = printable(value, limit=MAX_REFERENCE + 1).strip()
            if not text:
                continue
            if len(text) > MAX_REFERENCE:
                raise InputError(f"proof {name}: a reference of at most {MAX_REFERENCE} "
                                 "characters")
            out[name] = text
        return out


# ------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class RiskContext:
    """What makes a reset of this account riskier, newest first."""

    since: datetime
    anomalies: list[dict[str, Any]]
    pending_withdrawals: list[dict[str, Any]]
    security_changes: list[dict[str, Any]]
    active_holds: list[dict[str, Any]]

    @property
    def flags(self) -> int:
        return (len(self.anomalies) + len(self.pending_withdrawals)
                + len(self.security_changes) + len(self.active_holds))

    def summary(self) -> str:
        return (f"{len(self.anomalies)} login anomalies, "
                f"{len(self.pending_withdrawals)} open withdrawals, "
                f"{len(self.security_changes)} security changes since "
                f"{self.since:%Y-%m-%d}, {len(self.active_holds)} active holds")

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since, "anomalies": self.anomalies,
                "pending_withdrawals": self.pending_withdrawals,
                "security_changes": self.security_changes, "active_holds": self.active_holds}


@dataclass(frozen=True)
class TwoFactorStatus:
    """The enrolment state of an account. Never the secret."""

    account_id: uuid.UUID
    account: str
    enrolled: bool
    enrolled_at: datetime | None
    last_used_at: datetime | None
    reenrolment_required: bool
    hold_until: datetime | None
    pending_request: uuid.UUID | None
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ResetRequestView:
    id: uuid.UUID
    account: str
    account_id: uuid.UUID
    requester: str
    reason: str
    evidence: str
    proofs: dict[str, str]
    risk: dict[str, int]
    created_at: datetime
    expires_at: datetime
    status: str  # pending | executed | denied | expired
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Opened:
    request: ResetRequestView
    risk: RiskContext


# ------------------------------------------------------------------------------ queries


def _risk(session: Session, account_id: uuid.UUID, now: datetime,
          window: timedelta) -> RiskContext:
    since = now - window
    anomalies = [
        {"at": a.at, "kind": a.kind, "severity": a.severity, "source_ip": a.source_ip,
         "explanation": a.explanation}
        for a in session.scalars(
            select(LoginAnomaly)
            .where(LoginAnomaly.account_id == account_id, LoginAnomaly.at >= since)
            .order_by(LoginAnomaly.at.desc(), LoginAnomaly.id.desc()).limit(50))
    ]
    withdrawals = [
        {"id": w.external_id, "requested_at": w.requested_at, "asset": w.asset,
         "amount": w.amount, "status": w.status, "address": w.address}
        for w in session.scalars(
            select(Withdrawal)
            .where(Withdrawal.account_id == account_id,
                   Withdrawal.status.in_(OPEN_WITHDRAWALS))
            .order_by(Withdrawal.requested_at.desc()).limit(50))
    ]
    changes = [
        {"at": e.at, "kind": e.kind, "ip": e.ip, "device_id": e.device_id}
        for e in session.scalars(
            select(SecurityEvent)
            .where(SecurityEvent.account_id == account_id, SecurityEvent.at >= since,
                   SecurityEvent.kind.in_(SECURITY_CHANGES))
            .order_by(SecurityEvent.at.desc(), SecurityEvent.id.desc()).limit(50))
    ]
    holds = [
        {"kind": h.kind, "reason": h.reason, "created_at": h.created_at,
         "expires_at": h.expires_at}
        for h in session.scalars(_active_holds(account_id, now))
    ]
    return RiskContext(since, anomalies, withdrawals, changes, holds)


def _active_holds(account_id: uuid.UUID, now: datetime) -> Any:
    return (select(Hold).where(Hold.account_id == account_id, hold_in_force(now))
            .order_by(Hold.created_at.desc()))


def security_hold_until(session: Session, account_id: uuid.UUID,
                        now: datetime) -> datetime | None:
    """When the newest active ``security_change`` hold on the account ends (None: no
    hold). Withdrawal screening refuses approvals while one is active."""
    return session.scalar(
        select(func.max(Hold.expires_at))
        .where(Hold.account_id == account_id, hold_in_force(now, kind=HOLD_KIND))
    )


def risk_context(rt: Runtime, actor: Actor, ident: str) -> RiskContext:
    require(actor, "read")
    with rt.sessions() as session:
        account = resolve(rt, session, ident)
        return _risk(session, account.id, rt.clock(), Policy.from_settings(rt).risk_window)


def _pending_request(session: Session, account_id: uuid.UUID,
                     now: datetime) -> uuid.UUID | None:
    return session.scalar(
        select(ApprovalRequest.id)
        .join(TwoFactorResetRequest, TwoFactorResetRequest.approval_id == ApprovalRequest.id)
        .where(TwoFactorResetRequest.account_id == account_id,
               ApprovalRequest.status == "pending", ApprovalRequest.expires_at > now)
        .limit(1)
    )


def _status(session: Session, account: Account, now: datetime) -> TwoFactorStatus:
    enrolment = session.scalars(
        select(TotpEnrolment).where(TotpEnrolment.account_id == account.id)
    ).first()
    events = [
        {"at": e.at, "kind": e.kind, "ip": e.ip, "device_id": e.device_id}
        for e in session.scalars(
            select(SecurityEvent)
            .where(SecurityEvent.account_id == account.id,
                   SecurityEvent.kind.in_(TWOFA_EVENTS))
            .order_by(SecurityEvent.at.desc(), SecurityEvent.id.desc()).limit(20))
    ]
    return TwoFactorStatus(
        account.id, account.external_id, enrolment is not None,
        enrolment.enrolled_at if enrolment else None,
        enrolment.last_used_at if enrolment else None,
        bool(account.twofa_reenrol_required),
        security_hold_until(session, account.id, now),
        _pending_request(session, account.id, now), events,
    )


def status(rt: Runtime, actor: Actor, ident: str) -> TwoFactorStatus:
    require(actor, "read")
    with rt.sessions() as session:
        return _status(session, resolve(rt, session, ident), rt.clock())


def status_by_id(rt: Runtime, actor: Actor, account_id: uuid.UUID) -> TwoFactorStatus:
    require(actor, "read")
    with rt.sessions() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise InputError(f"no account with id {account_id}")
        return _status(session, account, rt.clock())


def _views(session: Session, rows: list[tuple[TwoFactorResetRequest, ApprovalRequest, str]],
           now: datetime) -> list[ResetRequestView]:
    ids = {o for _r, a, _x in rows for o in (a.requester_id, a.decided_by) if o is not None}
    names: dict[uuid.UUID, str] = {}
    if ids:
        names = {oid: name for oid, name in session.execute(
            select(Officer.id, Officer.name).where(Officer.id.in_(ids)))}
    out = []
    for reset, approval, external_id in rows:
        state = approval.status
        if state == "pending" and approval.expires_at <= now:
            state = "expired"
        evidence = reset.evidence or {}
        out.append(ResetRequestView(
            approval.id, external_id, reset.account_id, names.get(approval.requester_id, "?"),
            approval.reason, str(evidence.get("evidence", "")),
            dict(evidence.get("proofs", {})), dict(evidence.get("risk", {})),
            approval.created_at, approval.expires_at, state,
            names.get(approval.decided_by) if approval.decided_by else None,
            approval.decided_at, approval.decision_note,
        ))
    return out


def _request_rows(session: Session, *where: Any,
                  limit: int = 500) -> list[tuple[TwoFactorResetRequest, ApprovalRequest, str]]:
    stmt = (
        select(TwoFactorResetRequest, ApprovalRequest, Account.external_id)
        .join(ApprovalRequest, ApprovalRequest.id == TwoFactorResetRequest.approval_id)
        .join(Account, Account.id == TwoFactorResetRequest.account_id)
        .where(*where)
        .order_by(ApprovalRequest.created_at.desc(), ApprovalRequest.id)
        .limit(limit)
    )
    return [(r, a, x) for r, a, x in session.execute(stmt)]


def list_requests(rt: Runtime, actor: Actor, *, pending_only: bool = False,
                  account_id: uuid.UUID | None = None,
                  exclude_requester: uuid.UUID | None = None) -> list[ResetRequestView]:
    """Reset requests, newest first. ``pending_only``: still decidable (not expired);
    ``exclude_requester``: leave out that officer's own requests (what they can decide)."""
    require(actor, "read")
    now = rt.clock()
    where: list[Any] = []
    if pending_only:
        where += [ApprovalRequest.status == "pending", ApprovalRequest.expires_at > now]
    if account_id is not None:
        where.append(TwoFactorResetRequest.account_id == account_id)
    if exclude_requester is not None:
        where.append(ApprovalRequest.requester_id != exclude_requester)
    with rt.sessions() as session:
        return _views(session, _request_rows(session, *where), now)


def get_request(rt: Runtime, actor: Actor, request_id: uuid.UUID) -> ResetRequestView:
    require(actor, "read")
    with rt.sessions() as session:
        rows = _request_rows(session, ApprovalRequest.id == request_id)
        if not rows:
            raise InputError(f"no 2FA reset request {request_id}")
        return _views(session, rows, rt.clock())[0]


# ------------------------------------------------------------------------------ actions


def request_reset(rt: Runtime, actor: Actor, ident: str, reason: str, evidence: str,
                  proof: Proof) -> Opened:
    """Open a reset request for the account ``ident`` (analyst or above)."""
    require(actor, "twofa.request")
    policy = Policy.from_settings(rt)
    proofs = proof.items()
    # Policy refusals (exit 3), not malformed input: a reset without proven identity is
    # exactly what an account takeover asks for.
    if not proofs:
        raise RefusedError("no identity proof recorded: tick the checklist "
                           f"({', '.join(PROOFS)})")
    if len(proofs) < policy.min_proofs:
        raise RefusedError(f"{len(proofs)} identity proof(s) recorded; a 2FA reset needs at "
                           f"least {policy.min_proofs} ({', '.join(PROOFS)})")
    evidence = evidence.strip()
    if not evidence or len(evidence) > MAX_EVIDENCE:
        raise InputError(f"evidence of 1 to {MAX_EVIDENCE} characters is required")
    now = rt.clock()
    with rt.transaction() as session:
        account = resolve(rt, session, ident)
        # Serialise requests for one account: the row lock makes the pending check and
        # the insert below atomic on PostgreSQL and MariaDB (SQLite has one writer).
        session.execute(update(Account).where(Account.id == account.id)
                        .values(twofa_reenrol_required=Account.twofa_reenrol_required)
                        .execution_options(synchronize_session=False))
        if session.scalar(select(TotpEnrolment.id)
                          .where(TotpEnrolment.account_id == account.id)) is None:
            raise ConflictError(f"account {account.external_id} has no authenticator "
                                "enrolled; there is nothing to reset")
        pending = _pending_request(session, account.id, now)
        if pending is not None:
            raise ConflictError(f"account {account.external_id} has a pending 2FA reset "
                                f"request already: {pending}")
        risk = _risk(session, account.id, now, policy.risk_window)
        risk_counts = {"anomalies": len(risk.anomalies),
                       "pending_withdrawals": len(risk.pending_withdrawals),
                       "security_changes": len(risk.security_changes),
                       "active_holds": len(risk.active_holds)}
        payload = {"account": account.external_id, "account_id": str(account.id),
                   "proofs": sorted(proofs)}
        request_id = approvals.open_request(rt, actor, APPROVAL, reason, payload,
                                            ttl=policy.request_ttl, session=session)
        session.add(TwoFactorResetRequest(
            id=uuid.uuid4(), account_id=account.id, approval_id=request_id,
            evidence={"evidence": evidence, "proofs": proofs, "risk": risk_counts},
            created_at=now,
        ))
        rt.audit.append(session, officer=actor.name, action="twofa.reset_request", at=now,
                        target=f"account:{account.external_id}",
                        details={"request": str(request_id), "proofs": proofs,
                                 "evidence": evidence, "risk": risk_counts})
        session.flush()
        view = _views(session, _request_rows(session, ApprovalRequest.id == request_id),
                      now)[0]
    return Opened(view, risk)


def _check_kind(rt: Runtime, actor: Actor, request_id: uuid.UUID) -> None:
    view = approvals.get_request(rt, actor, request_id, _ONLY_2FA)
    if view.kind != KIND:
        raise InputError(f"request {request_id} is not a 2FA reset ({view.kind})")


def check(rt: Runtime, actor: Actor, request_id: uuid.UUID, *, approving: bool) -> None:
    """Refuse, before a code is asked, what ``actor`` may not decide."""
    _check_kind(rt, actor, request_id)
    approvals.check_decider(rt, actor, request_id, _ONLY_2FA, approving=approving)


def approve(rt: Runtime, actor: Actor, request_id: uuid.UUID,
            code: str) -> approvals.Executed:
    """Approve and execute (senior or above, not the requester, fresh code)."""
    _check_kind(rt, actor, request_id)
    return approvals.approve(rt, actor, request_id, code, _ONLY_2FA)


def deny(rt: Runtime, actor: Actor, request_id: uuid.UUID, note: str, code: str) -> None:
    _check_kind(rt, actor, request_id)
    approvals.deny(rt, actor, request_id, note, code, _ONLY_2FA)


def _execute(rt: Runtime, session: Session, request: ApprovalRequest,
             approver: Actor) -> dict[str, Any]:
    """Runs inside the approving transaction (after the exactly-once claim): everything
    here commits together with the audit entries, or none of it does."""
    now = rt.clock()
    policy = Policy.from_settings(rt)
    account = session.get(Account, uuid.UUID(str(request.payload["account_id"])))
    if account is None:
        raise InputError(f"account {request.payload.get('account')} no longer exists")
    # The secret row goes; nothing of it (ciphertext included) is kept or returned.
    destroyed = session.execute(
        delete(TotpEnrolment).where(TotpEnrolment.account_id == account.id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(update(Account).where(Account.id == account.id)
                    .values(twofa_reenrol_required=True)
                    .execution_options(synchronize_session=False))
    revoked = session.execute(
        update(ClientSession)
        .where(ClientSession.account_id == account.id, ClientSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=SECURITY_EVENT)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    hold_until = now + policy.hold
    session.add(Hold(account_id=account.id, kind=HOLD_KIND,
                     reason=f"2FA reset (request {request.id})", created_at=now,
                     created_by=approver.officer_id, expires_at=hold_until))
    session.add(SecurityEvent(external_id=f"polysec-2fa-reset-{request.id}",
                              account_id=account.id, at=now, kind=SECURITY_EVENT,
                              details={"source": "polysec", "request": str(request.id)}))
    session.add(ClientNotification(
        account_id=account.id, kind=NOTIFICATION, created_at=now,
        payload={"template": NOTIFICATION, "request": str(request.id), "reset_at":
                 now.isoformat(), "withdrawals_held_until": hold_until.isoformat()},
    ))
    session.flush()
    details = {"request": str(request.id), "secret_rows_destroyed": destroyed,
               "sessions_revoked": revoked, "hold_until": hold_until.isoformat()}
    rt.audit.append(session, officer=approver.name, action="twofa.reset", at=now,
                    target=f"account:{account.external_id}", details=details)
    return {"account": account.external_id, **details}


def _evidence(session: Session, request: ApprovalRequest) -> list[tuple[str, str]]:
    """The identity proofs and their references, the evidence text, and the account's
    risk when the request was opened."""
    recorded = session.scalar(select(TwoFactorResetRequest.evidence)
                              .where(TwoFactorResetRequest.approval_id == request.id))
    if not recorded:
        return []
    proofs = dict(recorded.get("proofs", {}))
    risk = dict(recorded.get("risk", {}))
    return [("identity proofs", "; ".join(f"{name}: {ref}" for name, ref in proofs.items())
             or "none"),
            ("evidence", str(recorded.get("evidence", ""))),
            ("risk when asked", ", ".join(f"{k.replace('_', ' ')} {v}"
                                          for k, v in risk.items()) or "-")]


APPROVAL = approvals.ApprovalKind(
    name=KIND, min_role="senior", execute=_execute,
    describe=lambda payload: f"reset the 2FA of account {payload.get('account')}",
    requester_permission="twofa.request", evidence=_evidence,
)
_ONLY_2FA: approvals.Kinds = {KIND: APPROVAL}
