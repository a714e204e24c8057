"""Protecting a whole account: freeze, unfreeze (four-eyes), lockdown, client reports.

- **freeze**: a ``freeze`` hold without expiry (withdrawal approvals refuse while it
  lasts; screening shows ``account_frozen``) and account status ``frozen``.
- **unfreeze**: only through the four-eyes primitive; a different, senior officer
  approves with a fresh code; the hold is released.
- **lockdown** (fresh code): in ONE transaction, every client session and API key
  revoked, a password reset required, the freeze hold, every pending/held/claimed/
  escalated withdrawal rejected with the reason, a notification queued in the outbox and
  an incident opened (or the open one of an earlier lockdown reused). Running it again
  changes nothing further (and says so); a failure anywhere rolls everything back.
- **report**: a client's report of unauthorised use opens an incident.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    ApiKey,
    ApprovalRequest,
    ClientNotification,
    ClientSession,
    Hold,
    Incident,
    IncidentLink,
    Officer,
    ReviewDecision,
    Withdrawal,
)
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services.clients import incidents
from polysec_tui.services.clients.accounts import resolve
from polysec_tui.services.officers import approvals, sessions
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.holds import hold_in_force

UNFREEZE_KIND = "account.unfreeze"
OPEN_WITHDRAWAL_STATES = ("pending", "held", "in_review", "escalated")
REPORT_CHANNELS = ("phone", "email", "ticket")
MAX_REASON = 2000


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InputError(f"a reason of 1 to {MAX_REASON} characters is required")
    return reason


def _account(session: Session, rt: Runtime, ident: str) -> Account:
    """The account, locked for this transaction (two officers act one after the other)."""
    found = resolve(rt, session, ident)
    return session.execute(select(Account).where(Account.id == found.id)
                           .with_for_update().execution_options(populate_existing=True)
                           ).scalar_one()


def _freeze_hold(session: Session, account_id: uuid.UUID) -> Hold | None:
    return session.scalar(select(Hold).where(Hold.account_id == account_id,
                                             hold_in_force(None, kind="freeze")))


def _freeze_in(session: Session, actor: Actor, account: Account, reason: str,
               now: Any) -> bool:
    """Place the freeze hold unless one is in force; True when placed."""
    if _freeze_hold(session, account.id) is not None:
        return False
    session.add(Hold(account_id=account.id, kind="freeze", reason=reason, created_at=now,
                     created_by=actor.officer_id, expires_at=None))
    if account.status == "active":
        account.status = "frozen"
    return True


# ------------------------------------------------------------------------------ freeze


def freeze(rt: Runtime, actor: Actor, ident: str, reason: str) -> bool:
    """Freeze withdrawals (and API withdrawals) of the account. False: already frozen."""
    require(actor, "review")
    text = _reason(reason)
    now = rt.clock()
    with rt.transaction() as session:
        account = _account(session, rt, ident)
        placed = _freeze_in(session, actor, account, text, now)
        rt.audit.append(session, officer=actor.name, action="account.freeze", at=now,
                        target=f"account:{account.external_id}",
                        details={"reason": text, "already_frozen": not placed})
    return placed


def request_unfreeze(rt: Runtime, actor: Actor, ident: str, reason: str) -> uuid.UUID:
    """Open the four-eyes request that lifts a freeze."""
    require(actor, "review")
    text = _reason(reason)
    with rt.transaction() as session:
        account = _account(session, rt, ident)
        if _freeze_hold(session, account.id) is None:
            raise ConflictError(f"account {account.external_id} is not frozen")
        if account.status == "locked":
            raise RefusedError(f"account {account.external_id} is locked down: close its "
                               "incident's investigation first; unfreezing would reopen "
                               "withdrawals of a taken-over account")
        return approvals.open_request(rt, actor, UNFREEZE, text,
                                      {"account": account.external_id,
                                       "account_id": str(account.id)}, session=session)


def _execute_unfreeze(rt: Runtime, session: Session, request: ApprovalRequest,
                      approver: Actor) -> dict[str, Any]:
    now = rt.clock()
    account_id = uuid.UUID(request.payload["account_id"])
    released = session.execute(
        update(Hold).where(Hold.account_id == account_id, hold_in_force(None, kind="freeze"))
        .values(released_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    account = session.get(Account, account_id)
    assert account is not None
    if account.status == "frozen":
        account.status = "active"
    rt.audit.append(session, officer=approver.name, action="account.unfreeze", at=now,
                    target=f"account:{account.external_id}",
                    details={"request": str(request.id), "holds_released": released})
    return {"account": account.external_id, "holds_released": released}


def _unfreeze_evidence(session: Session, request: ApprovalRequest) -> list[tuple[str, str]]:
    """The freeze the request would lift: since when, by whom, why."""
    account_id = request.payload.get("account_id")
    hold = _freeze_hold(session, uuid.UUID(str(account_id))) if account_id else None
    if hold is None:
        return [("freeze", "none in force any more")]
    by = session.scalar(select(Officer.name).where(Officer.id == hold.created_by))
    return [("freeze", f"since {hold.created_at:%Y-%m-%d %H:%M} UTC by {by or 'the platform'}: "
                       f"{hold.reason}")]


UNFREEZE = approvals.ApprovalKind(
    name=UNFREEZE_KIND, min_role="senior", execute=_execute_unfreeze,
    describe=lambda payload: f"unfreeze account {payload.get('account')}",
    requester_permission="review", evidence=_unfreeze_evidence,
)


# ---------------------------------------------------------------------------- lockdown


@dataclass(frozen=True)
class LockdownResult:
    account: str
    incident: int
    sessions_revoked: int
    api_keys_revoked: int
    withdrawals_rejected: list[str]
    froze: bool
    already_locked: bool

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "incident": self.incident,
                "sessions_revoked": self.sessions_revoked,
                "api_keys_revoked": self.api_keys_revoked,
                "withdrawals_rejected": self.withdrawals_rejected, "froze": self.froze,
                "already_locked": self.already_locked}


def lockdown_plan(rt: Runtime, actor: Actor, ident: str) -> dict[str, Any]:
    """What a lockdown would do now (the confirmation lists exactly this)."""
    require(actor, "review")
    now = rt.clock()
    with rt.sessions() as session:
        account = resolve(rt, session, ident)
        account_id = account.id
        live_sessions = len(session.scalars(select(ClientSession.id).where(
            ClientSession.account_id == account_id, ClientSession.revoked_at.is_(None)
        )).all())
        keys = len(session.scalars(select(ApiKey.id).where(
            ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))).all())
        wds = list(session.scalars(select(Withdrawal.external_id).where(
            Withdrawal.account_id == account_id,
            Withdrawal.status.in_(OPEN_WITHDRAWAL_STATES))
            .order_by(Withdrawal.requested_at, Withdrawal.id)))
        frozen = _freeze_hold(session, account_id) is not None
    return {"account": account.external_id, "status": account.status,
            "sessions_to_revoke": live_sessions, "api_keys_to_revoke": keys,
            "withdrawals_to_reject": wds, "freeze": not frozen,
            "password_reset": not account.password_reset_required,
            "notification": True, "incident": True, "at": now.isoformat()}


def lockdown(rt: Runtime, actor: Actor, ident: str, reason: str, code: str) -> LockdownResult:
    require(actor, "review")
    text = _reason(reason)
    sessions.step_up(rt, actor, code)
    now = rt.clock()
    with rt.transaction() as session:
        account = _account(session, rt, ident)
        already = account.status == "locked"
        revoked = session.execute(
            update(ClientSession).where(ClientSession.account_id == account.id,
                                        ClientSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason="lockdown")
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        keys = session.execute(
            update(ApiKey).where(ApiKey.account_id == account.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason="lockdown")
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        froze = _freeze_in(session, actor, account, f"lockdown: {text}", now)
        account.status = "locked"
        account.password_reset_required = True
        rejected = _reject_open_withdrawals(rt, session, actor, account, text, now)
        incident = _lockdown_incident(session, account.external_id)
        if incident is None:
            incident = incidents.open_in(
                rt, session, actor, title=f"Lockdown of account {account.external_id}",
                severity="high", source="lockdown", accounts=[account.external_id],
                note=text, now=now)
        for ext in rejected:
            incidents.add_link(rt, session, actor, incident, "withdrawal", ext, now)
        changed = bool(revoked or keys or froze or rejected or not already)
        if changed:
            session.add(ClientNotification(
                account_id=account.id, kind="account_locked", created_at=now,
                payload={"template": "account_locked", "incident": incident.id,
                         "withdrawals_rejected": len(rejected)}))
        details = {"reason": text, "incident": incident.id, "sessions_revoked": revoked,
                   "api_keys_revoked": keys, "withdrawals_rejected": rejected,
                   "froze": froze, "already_locked": already and not changed}
        rt.audit.append(session, officer=actor.name, action="account.lockdown", at=now,
                        target=f"account:{account.external_id}", details=details)
        return LockdownResult(account.external_id, incident.id, revoked, keys, rejected,
                              froze, already and not changed)


def _reject_open_withdrawals(rt: Runtime, session: Session, actor: Actor, account: Account,
                             reason: str, now: Any) -> list[str]:
    # Their pending four-eyes requests are withdrawn first (the request's row before the
    # withdrawal's, as an approval's execution takes them): none is approved afterwards.
    waiting = session.execute(
        select(Withdrawal.external_id, Withdrawal.approval_id)
        .where(Withdrawal.account_id == account.id,
               Withdrawal.status.in_(OPEN_WITHDRAWAL_STATES),
               Withdrawal.approval_id.is_not(None))).all()
    for ext, request_id in waiting:
        assert request_id is not None
        approvals.withdraw(session, actor, request_id,
                           f"withdrawn: withdrawal {ext} was rejected by {actor.name} "
                           "(account lockdown)", now)
    open_ones = list(session.execute(
        select(Withdrawal.id, Withdrawal.external_id)
        .where(Withdrawal.account_id == account.id,
               Withdrawal.status.in_(OPEN_WITHDRAWAL_STATES))
        .order_by(Withdrawal.requested_at, Withdrawal.id).with_for_update()))
    note = f"account lockdown: {reason}"
    for wd_id, ext in open_ones:
        session.execute(
            update(Withdrawal).where(Withdrawal.id == wd_id)
            .values(status="rejected", decided_by=actor.officer_id, decided_at=now)
            .execution_options(synchronize_session=False))
        session.add(ReviewDecision(withdrawal_id=wd_id, officer_id=actor.officer_id,
                                   decision="reject", note=note, decided_at=now))
        rt.audit.append(session, officer=actor.name, action="withdrawal.reject", at=now,
                        target=f"withdrawal:{ext}",
                        details={"note": note, "account": str(account.id),
                                 "status": "rejected", "by": "lockdown"})
    return [ext for _id, ext in open_ones]


def _lockdown_incident(session: Session, account_ext: str) -> Incident | None:
    return session.scalar(
        select(Incident).join(IncidentLink, IncidentLink.incident_id == Incident.id)
        .where(Incident.source == "lockdown", Incident.state != "closed",
               IncidentLink.kind == "account", IncidentLink.ref == account_ext)
        .order_by(Incident.id.desc()).limit(1))


# ----------------------------------------------------------------------- client report


def report(rt: Runtime, actor: Actor, ident: str, via: str, text: str) -> int:
    """A client reports unauthorised use: open an incident with their words as a note."""
    require(actor, "review")
    if via not in REPORT_CHANNELS:
        raise InputError(f"--via must be one of {', '.join(REPORT_CHANNELS)}")
    words = _reason(text)
    now = rt.clock()
    with rt.transaction() as session:
        account = _account(session, rt, ident)
        incident = incidents.open_in(
            rt, session, actor, title=f"Client reports unauthorised use ({via})",
            severity="high", source="client_report", accounts=[account.external_id],
            note=f"client report via {via}: {words}", now=now)
        return incident.id
