"""The four-eyes primitive: one officer asks, a different and sufficiently senior one
approves with a fresh authenticator code, and the action executes exactly once, in the
same transaction as its audit entries.

Each kind of request (2FA reset, large withdrawal, officer grants, unfreeze...) is an
`ApprovalKind` that its domain defines, with the role its approver needs and the
function that executes it; `services.four_eyes` lists every kind and decides requests of
any of them. Exactly-once comes from a conditional update (``status = 'pending'`` ->
``'executed'``) inside the executing transaction: of two approvers racing, the second
finds no pending row and gets a conflict naming the first.

The second pair of eyes must be a different person in fact, not only in name: an officer
who received a privilege grant (creation, a raised role, re-enabling, a new
authenticator or password) in the last 24 hours decides nothing, and two officers of whom
one asked for a grant of the other never decide each other's requests (`independence`).
Secrets a request carries to its execution (a new officer's authenticator secret) are
sealed with the field cipher, never shown or audited.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from polysec_tui.db.models import ApprovalRequest, Officer, OfficerGrant
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services.officers import notifications
from polysec_tui.services.officers.auth import Actor, at_least, require
from polysec_tui.services.runtime import Runtime

DEFAULT_TTL = timedelta(hours=24)
MAX_REASON = 2000
# An officer decides nothing for this long after receiving a privilege grant.
GRANT_QUARANTINE = timedelta(hours=24)

Executor = Callable[[Runtime, Session, ApprovalRequest, Actor], dict[str, Any]]
# The evidence a decider reads besides the reason, as (label, text) lines, read from the
# database as it is now (the withdrawal's amount and risk, the identity proofs).
Evidence = Callable[[Session, ApprovalRequest], list[tuple[str, str]]]


@dataclass(frozen=True)
class ApprovalKind:
    name: str
    # The approver's minimum rank, senior or admin; or a function that says it from the
    # database as it is now and the payload (new credentials for an admin need an admin).
    min_role: str | Callable[[Session, dict[str, Any]], str]
    execute: Executor
    describe: Callable[[dict[str, Any]], str]
    # What the requester must still be allowed to do when the request is decided: a
    # request of an officer disabled or demoted since dies with their rights.
    requester_permission: str
    ttl: timedelta = DEFAULT_TTL
    # Why this approver may not decide this payload (e.g. a grant to themselves), or None.
    refuse: Callable[[dict[str, Any], Actor], str | None] | None = None
    evidence: Evidence | None = None

    def approver_role(self, session: Session, payload: dict[str, Any]) -> str:
        if isinstance(self.min_role, str):
            return self.min_role
        return self.min_role(session, payload)


# The kinds a caller knows, by name. Every kind there is: `services.four_eyes.KINDS`;
# a domain that decides only its own passes just those (a 2FA reset, say).
Kinds = Mapping[str, ApprovalKind]


@dataclass(frozen=True)
class Subject:
    """What a request is about, so that a console can open its context: an account (its
    timeline, its 2FA status), a withdrawal (its detail) or an officer. Every kind's
    payload names it with these keys."""

    account: str | None = None  # the platform's id
    account_id: uuid.UUID | None = None
    withdrawal: str | None = None  # the platform's id
    officer: str | None = None

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Subject:
        def text(key: str) -> str | None:
            value = payload.get(key)
            return None if value is None else str(value)

        account_id = text("account_id")
        return cls(text("account"), uuid.UUID(account_id) if account_id else None,
                   text("withdrawal"), text("officer"))


@dataclass(frozen=True)
class RequestView:
    id: uuid.UUID
    kind: str
    description: str
    requester: str
    reason: str
    created_at: datetime
    expires_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    requester_id: uuid.UUID
    subject: Subject
    evidence: tuple[tuple[str, str], ...] = ()
    decision_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__}
        doc["subject"] = {k: v for k, v in self.subject.__dict__.items() if v is not None}
        doc["evidence"] = dict(self.evidence)
        return doc


@dataclass(frozen=True)
class Executed:
    request_id: uuid.UUID
    kind: str
    result: dict[str, Any]


def open_request(rt: Runtime, actor: Actor, kind: ApprovalKind, reason: str,
                 payload: dict[str, Any], *, ttl: timedelta | None = None,
                 session: Session | None = None,
                 sealed: dict[str, Any] | None = None) -> uuid.UUID:
    """Record a request; inside ``session`` when the caller's own action opens it.
    ``sealed``: secrets for the executor, stored encrypted, never shown or audited."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise InputError(f"a reason of 1 to {MAX_REASON} characters is required")
    now = rt.clock()
    request_id = uuid.uuid4()

    sealed_enc = None if sealed is None else rt.cipher.encrypt(
        json.dumps(sealed), table="approval_requests", column="sealed", row_id=request_id)

    def write(s: Session) -> None:
        s.add(ApprovalRequest(
            id=request_id, kind=kind.name, requester_id=actor.officer_id, reason=reason,
            payload=payload, created_at=now, expires_at=now + (ttl or kind.ttl),
            status="pending", sealed_enc=sealed_enc,
        ))
        rt.audit.append(s, officer=actor.name, action="approval.request", at=now,
                        target=f"request:{request_id}",
                        details={"kind": kind.name, "payload": payload, "reason": reason})

    if session is not None:
        write(session)
    else:
        with rt.transaction() as s:
            write(s)
    return request_id


def unseal(rt: Runtime, request: ApprovalRequest) -> dict[str, Any]:
    """The secrets a request carries to its executor."""
    if request.sealed_enc is None:
        return {}
    doc = json.loads(rt.cipher.decrypt(request.sealed_enc, table="approval_requests",
                                       column="sealed", row_id=request.id))
    assert isinstance(doc, dict)
    return doc


def independence(session: Session, approver_id: uuid.UUID, requester_id: uuid.UUID,
                 now: datetime) -> str | None:
    """Why ``approver_id`` cannot be the second pair of eyes for ``requester_id``, or
    None. The first admin's own creation (`init`) and the set-up's second admin, whom the
    first one adds once (`setup`), are the bootstrap: they tie nobody."""
    tie = session.execute(
        select(OfficerGrant.kind, OfficerGrant.officer_id).where(
            OfficerGrant.kind.not_in(("init", "setup")),
            or_(and_(OfficerGrant.officer_id == approver_id,
                     OfficerGrant.requested_by == requester_id),
                and_(OfficerGrant.officer_id == requester_id,
                     OfficerGrant.requested_by == approver_id)),
        ).limit(1)
    ).first()
    if tie is not None:
        kind, granted = tie
        names = _names(session, approver_id, requester_id)
        who, by = ((names.get(approver_id), names.get(requester_id)) if granted == approver_id
                   else (names.get(requester_id), names.get(approver_id)))
        return (f"{by} asked for a privilege grant of {who} ({kind}): the two can never be "
                "each other's second pair of eyes")
    recent = session.scalar(
        select(OfficerGrant.at).where(OfficerGrant.officer_id == approver_id,
                                      OfficerGrant.kind != "init",
                                      OfficerGrant.at > now - GRANT_QUARANTINE)
        .order_by(OfficerGrant.at.desc()).limit(1)
    )
    if recent is not None:
        until = recent + GRANT_QUARANTINE
        return (f"a privilege grant of {recent:%Y-%m-%d %H:%M} UTC keeps this officer from "
                f"deciding requests until {until:%Y-%m-%d %H:%M} UTC")
    return None


def _names(session: Session, *ids: uuid.UUID | None) -> dict[uuid.UUID, str]:
    wanted = [i for i in ids if i is not None]
    rows = session.execute(select(Officer.id, Officer.name).where(Officer.id.in_(wanted)))
    return {oid: name for oid, name in rows}


def _view(session: Session, request: ApprovalRequest, now: datetime,
          kinds: Kinds) -> RequestView:
    names = _names(session, request.requester_id, request.decided_by)
    status = request.status
    if status == "pending" and request.expires_at <= now:
        status = "expired"
    kind = kinds.get(request.kind)
    return RequestView(
        request.id, request.kind, kind.describe(request.payload) if kind else request.kind,
        names.get(request.requester_id, "?"), request.reason, request.created_at,
        request.expires_at, status,
        names.get(request.decided_by) if request.decided_by else None, request.decided_at,
        request.requester_id, Subject.of(request.payload),
        tuple(kind.evidence(session, request)) if kind and kind.evidence else (),
        request.decision_note,
    )


def list_requests(rt: Runtime, actor: Actor, kinds: Kinds, *, pending_only: bool = True,
                  kind: str | None = None, mine: bool = False) -> list[RequestView]:
    """Requests newest first (at most 500); ``mine``: only those ``actor`` made."""
    require(actor, "read")
    now = rt.clock()
    with rt.sessions() as session:
        query = select(ApprovalRequest).order_by(ApprovalRequest.created_at.desc())
        if pending_only:
            query = query.where(ApprovalRequest.status == "pending",
                                ApprovalRequest.expires_at > now)
        if kind:
            if kind not in kinds:
                raise InputError(f"unknown kind {kind!r}; use one of {', '.join(sorted(kinds))}")
            query = query.where(ApprovalRequest.kind == kind)
        if mine:
            query = query.where(ApprovalRequest.requester_id == actor.officer_id)
        return [_view(session, r, now, kinds) for r in session.scalars(query.limit(500))]


def get_request(rt: Runtime, actor: Actor, request_id: uuid.UUID,
                kinds: Kinds) -> RequestView:
    require(actor, "read")
    with rt.sessions() as session:
        request = session.get(ApprovalRequest, request_id)
        if request is None:
            raise InputError(f"no request {request_id}")
        return _view(session, request, rt.clock(), kinds)


def check_decider(rt: Runtime, actor: Actor, request_id: uuid.UUID, kinds: Kinds, *,
                   approving: bool) -> ApprovalKind:
    """Refusals that need no code: permission, self-approval, seniority, independence,
    state. `_claim` asks the same again inside the deciding transaction."""
    require(actor, "approve")
    with rt.sessions() as session:
        request = session.get(ApprovalRequest, request_id)
        if request is None:
            raise InputError(f"no request {request_id}")
        kind = _decidable(session, actor, request, rt.clock(), kinds, approving=approving)
        _raise_if_decided(_view(session, request, rt.clock(), kinds))
    return kind


def _decidable(session: Session, actor: Actor, request: ApprovalRequest, now: datetime,
               kinds: Kinds, *, approving: bool) -> ApprovalKind:
    """Who may decide ``request``. Approving needs an independent second pair of eyes;
    denying is protective, so any other officer of the kind's role may deny, a newly
    granted one or one tied to the requester included."""
    kind = kinds.get(request.kind)
    if kind is None:
        raise InputError(f"request {request.id} has unknown kind {request.kind!r}")
    if request.requester_id == actor.officer_id:
        raise RefusedError("the requester cannot decide their own request (four-eyes)")
    needed = kind.approver_role(session, request.payload)
    if not at_least(actor, needed):
        raise RefusedError(f"{request.kind} needs an approver with role {needed} or above")
    if not approving:
        return kind
    problem = ((kind.refuse(request.payload, actor) if kind.refuse else None)
               or _requester_problem(session, kind, request)
               or independence(session, actor.officer_id, request.requester_id, now))
    if problem:
        raise RefusedError(problem)
    return kind


def _requester_problem(session: Session, kind: ApprovalKind,
                       request: ApprovalRequest) -> str | None:
    requester = session.get(Officer, request.requester_id)
    if requester is None or requester.disabled:
        name = requester.name if requester else "?"
        return (f"{name}, who asked, is disabled: the request can no longer be approved "
                "(deny it)")
    if not Actor(requester.id, requester.name, requester.role).can(kind.requester_permission):
        return (f"{requester.name}, who asked, is {requester.role} now and may no longer "
                f"{kind.requester_permission}: the request can no longer be approved")
    return None


def _raise_if_decided(view: RequestView) -> None:
    if view.status == "expired":
        raise RefusedError(f"request {view.id} expired at {view.expires_at:%Y-%m-%d %H:%M} UTC")
    if view.status != "pending":
        raise ConflictError(
            f"request {view.id} was already {view.status} by {view.decided_by} "
            f"at {view.decided_at:%Y-%m-%d %H:%M:%S} UTC"
        )


def _claim(rt: Runtime, session: Session, actor: Actor, request_id: uuid.UUID,
           status: str, note: str | None, kinds: Kinds) -> ApprovalRequest:
    """The exactly-once step: only one transaction turns a pending request into a
    decided one; the loser learns who won."""
    now = rt.clock()
    pending = session.get(ApprovalRequest, request_id)
    if pending is not None:
        _decidable(session, actor, pending, now, kinds, approving=status == "executed")
    result = session.execute(
        update(ApprovalRequest)
        .where(ApprovalRequest.id == request_id, ApprovalRequest.status == "pending",
               ApprovalRequest.expires_at > now,
               ApprovalRequest.requester_id != actor.officer_id)
        .values(status=status, decided_by=actor.officer_id, decided_at=now,
                decision_note=note)  # sealed_enc is cleared once the executor used it
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        with rt.sessions() as fresh:
            request = fresh.get(ApprovalRequest, request_id)
            assert request is not None
            _raise_if_decided(_view(fresh, request, now, kinds))
        raise ConflictError(f"request {request_id} could not be decided")
    request = session.get(ApprovalRequest, request_id, populate_existing=True)
    assert request is not None
    return request


def approve(rt: Runtime, actor: Actor, request_id: uuid.UUID, code: str,
            kinds: Kinds) -> Executed:
    """Approve and execute ``request_id``, one of ``kinds``, with a fresh code."""
    from polysec_tui.services.officers.sessions import step_up

    kind = check_decider(rt, actor, request_id, kinds, approving=True)
    step_up(rt, actor, code)
    with rt.transaction() as session:
        request = _claim(rt, session, actor, request_id, "executed", None, kinds)
        result = kind.execute(rt, session, request, actor)
        request.sealed_enc = None  # the secrets it carried are in force or moot now
        rt.audit.append(session, officer=actor.name, action="approval.execute", at=rt.clock(),
                        target=f"request:{request_id}",
                        details={"kind": request.kind, "payload": request.payload,
                                 "result": _auditable(result)})
        notifications.send(session, request.requester_id, rt.clock(), "approval.executed",
                           f"{actor.name} approved your request: "
                           f"{kind.describe(request.payload)} (done)",
                           f"request:{request_id}")
    return Executed(request_id, kind.name, result)


def deny(rt: Runtime, actor: Actor, request_id: uuid.UUID, note: str, code: str,
         kinds: Kinds) -> None:
    from polysec_tui.services.officers.sessions import step_up

    if not note.strip():
        raise InputError("a reason for the denial is required")
    kind = check_decider(rt, actor, request_id, kinds, approving=False)
    step_up(rt, actor, code)
    with rt.transaction() as session:
        request = _claim(rt, session, actor, request_id, "denied", note.strip(), kinds)
        request.sealed_enc = None
        rt.audit.append(session, officer=actor.name, action="approval.deny", at=rt.clock(),
                        target=f"request:{request_id}",
                        details={"kind": request.kind, "note": note.strip()})
        notifications.send(session, request.requester_id, rt.clock(), "approval.denied",
                           f"{actor.name} denied your request: "
                           f"{kind.describe(request.payload)}: {note.strip()}",
                           f"request:{request_id}")


def withdraw(session: Session, actor: Actor, request_id: uuid.UUID, note: str,
             now: datetime) -> bool:
    """Close a pending request whose subject was decided otherwise (a withdrawal
    rejected or escalated by the officer who asked, an account locked down), in the
    caller's transaction; whether one was pending. Call it before changing the subject:
    an execution takes the request's row, then its subject's, and the same order
    everywhere is what keeps the two from deadlocking."""
    done = session.execute(
        update(ApprovalRequest)
        .where(ApprovalRequest.id == request_id, ApprovalRequest.status == "pending")
        .values(status="withdrawn", decided_by=actor.officer_id, decided_at=now,
                decision_note=note, sealed_enc=None)
        .execution_options(synchronize_session=False))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def _auditable(result: dict[str, Any]) -> dict[str, Any]:
    """Only plain, non-secret values of an execution result reach the audit log."""
    return {k: v for k, v in result.items() if isinstance(v, str | int | float | bool)}
