"""The periodic access review (SOC 2 CC6.2/6.3; `polysec officer review`).

Every enabled officer's access is reviewed every ``REVIEW_DAYS`` (a quarter): an admin
who did not grant it (never the one who asked for or approved any of the officer's
grants, never the officer) confirms it, or revokes it, which disables the officer and
ends their sessions at once, in the same transaction as the review and its audit entry.
Re-enabling is a grant like any other (four-eyes).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from polysec_tui.db.models import AccessReview, Officer, OfficerGrant
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.officers.sessions import revoke_all
from polysec_tui.services.runtime import Runtime

REVIEW_DAYS = 90
DECISIONS = ("confirmed", "revoked")
REASON_MAX = 500


@dataclass(frozen=True)
class ReviewItem:
    """An officer as a reviewer sees them: their access, who granted it, when they last
    logged in, and their last review."""

    name: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    granted_by: tuple[str, ...]  # who asked for or approved the officer's grants
    last_review_at: datetime | None
    last_reviewer: str | None
    last_decision: str | None
    due: bool  # enabled and not reviewed in REVIEW_DAYS

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["granted_by"] = list(self.granted_by)
        return doc


def items(rt: Runtime, actor: Actor, *, now: datetime | None = None) -> list[ReviewItem]:
    """Every officer with their last review, by name."""
    require(actor, "officers.manage")
    now = now or rt.clock()
    with rt.sessions() as session:
        return _items(session, now)


def _items(session: Session, now: datetime) -> list[ReviewItem]:
    names = {oid: name for oid, name in session.execute(select(Officer.id, Officer.name))}
    granters = _granters(session)
    last: dict[uuid.UUID, AccessReview] = {}
    for review in session.scalars(select(AccessReview).order_by(AccessReview.at)):
        last[review.officer_id] = review
    since = now - timedelta(days=REVIEW_DAYS)
    granted: dict[uuid.UUID, datetime] = {}
    for officer_id, at in session.execute(select(OfficerGrant.officer_id, OfficerGrant.at)):
        granted[officer_id] = max(at, granted.get(officer_id, at))
    found = []
    for o in session.scalars(select(Officer).order_by(Officer.name)):
        done = last.get(o.id)
        # Due again at once when the access changed since: another role, a new grant.
        changed = done is not None and (done.role != o.role or done.decision == "revoked"
                                        or granted.get(o.id, done.at) > done.at)
        found.append(ReviewItem(
            o.name, o.role, o.disabled, o.created_at, o.last_login_at,
            tuple(sorted(names.get(g, "?") for g in granters.get(o.id, set()))),
            done.at if done else None,
            names.get(done.reviewer_id) if done else None,
            done.decision if done else None,
            not o.disabled and (done is None or done.at < since or changed)))
    return found


def _granters(session: Session) -> dict[uuid.UUID, set[uuid.UUID]]:
    found: dict[uuid.UUID, set[uuid.UUID]] = {}
    for officer_id, asked, approved in session.execute(
            select(OfficerGrant.officer_id, OfficerGrant.requested_by,
                   OfficerGrant.approved_by)):
        for who in (asked, approved):
            if who is not None:
                found.setdefault(officer_id, set()).add(who)
    return found


def review(rt: Runtime, actor: Actor, name: str, decision: str, reason: str) -> ReviewItem:
    """Record ``decision`` (confirmed | revoked) on ``name``'s access, with its reason;
    a revocation disables the officer and ends their sessions. One transaction with its
    audit entry."""
    require(actor, "officers.manage")
    if decision not in DECISIONS:
        raise InputError(f"a review decides {' or '.join(DECISIONS)}")
    text = " ".join((reason or "").split())
    if not text:
        raise InputError("a review needs a reason (what was checked)")
    if len(text) > REASON_MAX:
        raise InputError(f"the reason is longer than {REASON_MAX} characters")
    if name == actor.name:
        raise RefusedError("an officer cannot review their own access")
    now = rt.clock()
    with rt.transaction() as session:
        officer = session.scalars(select(Officer).where(Officer.name == name)
                                  .with_for_update()).first()
        if officer is None:
            raise InputError(f"no officer named {name!r}")
        if officer.disabled:
            raise ConflictError(f"officer {name} is disabled: no access to review")
        if actor.officer_id in _granters(session).get(officer.id, set()):
            raise RefusedError(f"{actor.name} granted {name}'s access: another admin "
                               "reviews it")
        reviewer = session.scalars(select(Officer).where(Officer.id == actor.officer_id)
                                   .with_for_update()).first()
        if reviewer is None or reviewer.disabled:
            raise RefusedError(f"{actor.name} is disabled")
        if decision == "revoked" and officer.role == "admin" and not session.scalars(
                select(Officer.id).where(Officer.role == "admin", Officer.id != officer.id,
                                         Officer.disabled.is_(False))).first():
            raise RefusedError(f"{name} is the last enabled admin")
        session.add(AccessReview(id=uuid.uuid4(), officer_id=officer.id,
                                 reviewer_id=actor.officer_id, decision=decision,
                                 role=officer.role, reason=text, at=now))
        details: dict[str, Any] = {"decision": decision, "role": officer.role, "reason": text}
        if decision == "revoked":
            officer.disabled = True
            details["sessions_ended"] = revoke_all(session, officer.id, now)
        session.flush()
        rt.audit.append(session, officer=actor.name, action="officer.review", at=now,
                        target=f"officer:{name}", details=details)
        return next(i for i in _items(session, now) if i.name == name)
