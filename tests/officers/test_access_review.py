"""The periodic access review (`polysec officer review`): an admin who did not grant an
officer's access confirms or revokes it; a revocation disables the officer and ends
their sessions in the review's transaction; every review is audited. On every engine."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from polysec_tui.db.models import AccessReview, AuditLogEntry, Officer, OfficerGrant
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services.officers import reviews, sessions
from tests.support.officers import Staff


def _id(staff: Staff, name: str) -> uuid.UUID:
    with staff.rt.sessions() as s:
        return s.scalars(select(Officer.id).where(Officer.name == name)).one()


def test_everyone_is_due_until_reviewed_then_again_after_a_quarter(staff: Staff) -> None:
    rt, root = staff.rt, staff.actors["root"]
    due = {i.name: i.due for i in reviews.items(rt, root)}
    assert due == {"admin2": True, "ann": True, "cron": True, "root": True, "sam": True,
                   "sue": True}
    done = reviews.review(rt, root, "ann", "confirmed", "  still reviews the queue daily ")
    assert (done.due, done.last_decision, done.last_reviewer) == (False, "confirmed", "root")
    assert done.last_review_at == staff.clock()
    later = {i.name: i for i in reviews.items(rt, root, now=staff.clock() + timedelta(days=91))}
    assert later["ann"].due
    with rt.sessions() as s:
        entry = s.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "officer.review")
                          ).one()
        assert entry.officer == "root" and entry.target == "officer:ann"
        assert '"reason":"still reviews the queue daily"' in entry.details
        assert s.scalars(select(AccessReview.role)).one() == "analyst"


def test_a_revocation_disables_the_officer_and_ends_their_sessions(staff: Staff) -> None:
    rt, root = staff.rt, staff.actors["root"]
    token, _actor = sessions.create_token(rt, root, "cron")
    reviews.review(rt, root, "cron", "revoked", "the nightly job moved to another host")
    with rt.sessions() as s:
        assert s.get(Officer, _id(staff, "cron")).disabled  # type: ignore[union-attr]
    with pytest.raises(RefusedError):
        sessions.authenticate(rt, token)
    item = next(i for i in reviews.items(rt, root) if i.name == "cron")
    assert (item.disabled, item.due, item.last_decision) == (True, False, "revoked")
    with pytest.raises(ConflictError, match="disabled: no access to review"):
        reviews.review(rt, root, "cron", "confirmed", "again")


def test_who_granted_the_access_does_not_review_it(staff: Staff) -> None:
    """admin2 asked for ann's promotion, root approved it: neither reviews ann; sue
    cannot (not an admin); nobody reviews themselves; a reason is required."""
    rt = staff.rt
    with rt.transaction() as s:
        s.add(OfficerGrant(id=uuid.uuid4(), officer_id=_id(staff, "ann"), kind="promote",
                           role="analyst", requested_by=_id(staff, "admin2"),
                           approved_by=_id(staff, "root"), at=staff.clock()))
    for who in ("admin2", "root"):
        with pytest.raises(RefusedError, match=f"{who} granted ann's access"):
            reviews.review(rt, staff.actors[who], "ann", "confirmed", "fine")
    with pytest.raises(RefusedError, match=r"may not officers\.manage"):
        reviews.review(rt, staff.actors["sue"], "ann", "confirmed", "fine")
    with pytest.raises(RefusedError, match="their own access"):
        reviews.review(rt, staff.actors["root"], "root", "confirmed", "fine")
    with pytest.raises(InputError, match="needs a reason"):
        reviews.review(rt, staff.actors["root"], "sam", "confirmed", "   ")
    with pytest.raises(InputError, match="no officer named"):
        reviews.review(rt, staff.actors["root"], "nobody", "confirmed", "fine")
    granted = next(i for i in reviews.items(rt, staff.actors["root"]) if i.name == "ann")
    assert granted.granted_by == ("admin2", "root")
    with rt.sessions() as s:
        assert s.scalars(select(AccessReview)).all() == []


def test_a_change_of_access_makes_the_review_due_again(staff: Staff) -> None:
    """Confirmed as an analyst, then granted more: due again at once. A revoked admin's
    still-open session reviews nothing (so two admins cannot revoke each other)."""
    rt, root = staff.rt, staff.actors["root"]
    reviews.review(rt, root, "ann", "confirmed", "still on the queue")
    with rt.transaction() as s:
        s.add(OfficerGrant(id=uuid.uuid4(), officer_id=_id(staff, "ann"), kind="promote",
                           role="senior", requested_by=_id(staff, "admin2"),
                           approved_by=_id(staff, "sue"), at=staff.clock() + timedelta(hours=1)))
        s.get(Officer, _id(staff, "ann")).role = "senior"  # type: ignore[union-attr]
    later = staff.clock() + timedelta(hours=2)
    assert next(i for i in reviews.items(rt, root, now=later) if i.name == "ann").due
    reviews.review(rt, root, "admin2", "revoked", "left the company")
    with pytest.raises(RefusedError, match="admin2 is disabled"):
        reviews.review(rt, staff.actors["admin2"], "root", "revoked", "x" * 10)
