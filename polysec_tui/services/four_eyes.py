"""Every kind of four-eyes request, listed in one place, and the deciding of a request of
any of them: the approvals inbox of the CLI (`polysec approvals`) and the console.

A new kind is an `ApprovalKind` its domain defines and one entry in `KINDS` here; the
domains import `approvals`, never this module, so nothing loads a module by name.
"""

from __future__ import annotations

import uuid

from polysec_tui.services.clients import protection, twofa
from polysec_tui.services.officers import approvals, registry
from polysec_tui.services.officers.approvals import Executed, RequestView
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import review, rulesets

KINDS: approvals.Kinds = {kind.name: kind for kind in (
    *registry.KINDS, twofa.APPROVAL, protection.UNFREEZE, review.APPROVAL,
    rulesets.APPROVAL)}


def list_requests(rt: Runtime, actor: Actor, *, pending_only: bool = True,
                  kind: str | None = None, mine: bool = False) -> list[RequestView]:
    return approvals.list_requests(rt, actor, KINDS, pending_only=pending_only, kind=kind,
                                   mine=mine)


def get_request(rt: Runtime, actor: Actor, request_id: uuid.UUID) -> RequestView:
    return approvals.get_request(rt, actor, request_id, KINDS)


def check(rt: Runtime, actor: Actor, request_id: uuid.UUID, *, approving: bool) -> None:
    """Refuse, before a code is asked, what ``actor`` may not decide (their own request,
    too junior, already decided)."""
    approvals.check_decider(rt, actor, request_id, KINDS, approving=approving)


def approve(rt: Runtime, actor: Actor, request_id: uuid.UUID, code: str) -> Executed:
    return approvals.approve(rt, actor, request_id, code, KINDS)


def deny(rt: Runtime, actor: Actor, request_id: uuid.UUID, note: str, code: str) -> None:
    approvals.deny(rt, actor, request_id, note, code, KINDS)
