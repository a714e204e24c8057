"""Claims that move: release by the claimant, reassignment by a senior officer (with a
reason, both officers told), expiry after the idle time, and "next" claiming the most
urgent withdrawal, one winner per item even with eight processes pressing it at once.
All three databases."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from polysec_tui.config import Settings
from polysec_tui.db.models import ReviewDecision, Withdrawal
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import four_eyes
from polysec_tui.services.officers import notifications
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import review as wds
from tests.support.officers import Staff
from tests.support.screening import request, status

# ip_not_seen 20 + new_country 20 + new_destination 15 = 55: held.
SUSPICIOUS = {"login_extra": {"country": "FR"}}


def held(rt: Runtime, ext: str, **extra: Any) -> str:
    """A withdrawal screening holds: each from an IP and to an address not seen before."""
    n = sum(map(ord, ext)) % 200 + 1
    request(rt, ext, **{**SUSPICIOUS, "ip": f"198.51.100.{n}",
                        "address": f"bc1qnewdestination{ext.lower()}", **extra})
    assert status(rt, ext) == "held"
    return ext


def claimant(staff: Staff, ext: str) -> str | None:
    return wds.show(staff.rt, staff.actors["sue"], ext).item.claimed_by


def told(staff: Staff, name: str) -> list[tuple[str, str]]:
    return [(n.kind, n.text) for n in notifications.take(staff.rt, staff.actors[name])]


def test_the_claimant_releases_and_the_item_returns_as_it_was(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1")
    wds.claim(rt, ann, "T1")
    with pytest.raises(ConflictError, match="claimed by ann; only they can release"):
        wds.release(rt, sue, "T1")
    assert wds.release(rt, ann, "T1").status == "held"
    assert (status(rt, "T1"), claimant(staff, "T1")) == ("held", None)
    with pytest.raises(ConflictError, match="held: nothing to release"):
        wds.release(rt, ann, "T1")
    # An escalated withdrawal a senior claimed goes back to the seniors, not to "held".
    held(rt, "T2")
    wds.escalate(rt, ann, "T2", "looks like a takeover")
    wds.claim(rt, sue, "T2")
    assert wds.release(rt, sue, "T2").status == "escalated"
    assert [d.decision for d in wds.show(rt, sue, "T2").decisions] == [
        "escalate", "claim", "release"]


def test_a_claim_waiting_for_four_eyes_stays(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1", amount="1.5")  # above the 1 BTC approval limit
    wds.claim(rt, ann, "T1")
    opened = wds.approve(rt, ann, "T1", "expected, client called")
    assert opened.approval_id is not None
    with pytest.raises(RefusedError, match="waits for four-eyes request"):
        wds.release(rt, ann, "T1")
    with pytest.raises(RefusedError, match="decide or deny the request"):
        wds.reassign(rt, sue, "T1", "sam", "ann went home")
    staff.clock.advance(hours=2)  # idle, but a senior has not decided yet
    assert wds.expire_claims(rt, sue) == []
    # Denied: the claim is active again from the denial; it expires 30 min later.
    four_eyes.deny(rt, sue, opened.approval_id, "call the client first", staff.next_code("sue"))
    assert ("approval.denied", "sue denied your request: approve withdrawal T1: call the "
            "client first") in told(staff, "ann")
    staff.clock.advance(minutes=20)
    assert wds.expire_claims(rt, sue) == []
    staff.clock.advance(minutes=11)
    assert wds.expire_claims(rt, sue) == ["T1"]
    assert status(rt, "T1") == "held"


def test_a_senior_reassigns_with_a_reason_and_both_are_told(staff: Staff) -> None:
    rt, ann, sue, sam = staff.rt, staff.actors["ann"], staff.actors["sue"], staff.actors["sam"]
    held(rt, "T1")
    wds.claim(rt, ann, "T1")
    with pytest.raises(RefusedError, match="only a senior officer"):
        wds.reassign(rt, ann, "T1", "sam", "swap")
    with pytest.raises(InputError, match="note is required"):
        wds.reassign(rt, sue, "T1", "sam", "  ")
    with pytest.raises(InputError, match="no officer"):
        wds.reassign(rt, sue, "T1", "nobody", "ann went home")
    with pytest.raises(RefusedError, match="cannot review"):
        wds.reassign(rt, sue, "T1", "cron", "automation")
    with pytest.raises(InputError, match="claimed by ann already"):
        wds.reassign(rt, sue, "T1", "ann", "no-op")
    assert wds.reassign(rt, sue, "T1", "sam", "ann went home").status == "in_review"
    assert claimant(staff, "T1") == "sam"
    assert told(staff, "ann") == [("claim.reassigned", "sue reassigned withdrawal T1 from "
                                   "you to sam: ann went home")]
    assert told(staff, "sam") == [("claim.assigned", "sue assigned withdrawal T1 to you "
                                   "(was ann's): ann went home")]
    assert told(staff, "ann") == []  # shown once
    # The previous claimant can no longer decide; the new one can.
    with pytest.raises(ConflictError, match="claimed by sam"):
        wds.reject(rt, ann, "T1", "mine")
    assert wds.reject(rt, sam, "T1", "confirmed with the client: not them").status == "rejected"
    with pytest.raises(ConflictError, match="not claimed"):
        wds.reassign(rt, sue, "T1", "ann", "too late")
    assert [(d.decision, d.note) for d in wds.show(rt, sue, "T1").decisions][1] == (
        "reassign", "ann went home")


def test_an_idle_claim_expires_and_its_officer_is_told(staff: Staff) -> None:
    rt, ann, sam = staff.rt, staff.actors["ann"], staff.actors["sam"]
    held(rt, "T1")
    held(rt, "T2")
    wds.claim(rt, ann, "T1")
    staff.clock.advance(minutes=29)
    wds.claim(rt, ann, "T2")
    assert wds.expire_claims(rt, sam) == []
    staff.clock.advance(minutes=2)  # T1 idle 31 min, T2 2 min
    # Another officer's claim attempt returns the stale claim to the queue first.
    assert wds.claim(rt, sam, "T1").status == "in_review"
    assert (claimant(staff, "T1"), claimant(staff, "T2")) == ("sam", "ann")
    (note,) = told(staff, "ann")
    assert note == ("claim.expired", "your claim on withdrawal T1 expired after 30 min "
                    "without activity: it is back in the queue")
    assert [d.decision for d in wds.show(rt, sam, "T1").decisions] == [
        "claim", "claim_expired", "claim"]


def test_the_timeout_is_configurable_and_zero_disables_it(staff: Staff) -> None:
    import dataclasses

    rt, ann = staff.rt, staff.actors["ann"]
    held(rt, "T1")
    wds.claim(rt, ann, "T1")
    rt.settings = dataclasses.replace(
        rt.settings, options={"screening": {"claim_timeout_minutes": 0}})
    staff.clock.advance(days=2)
    assert wds.expire_claims(rt, ann) == []
    rt.settings = dataclasses.replace(
        rt.settings, options={"screening": {"claim_timeout_minutes": 5}})
    assert wds.expire_claims(rt, ann) == ["T1"]


def test_next_claims_past_the_sla_first_then_the_riskiest(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "FRESH", amount="4.2")  # amount_outlier on top: the riskiest
    held(rt, "OLD", ago=timedelta(hours=5))  # past the 4 h review SLA
    held(rt, "MID")
    held(rt, "ESC")
    wds.escalate(rt, ann, "ESC", "senior work")
    order = [o.external_id for o in iter(lambda: wds.claim_next(rt, ann), None)]
    assert order == ["OLD", "FRESH", "MID"]  # not ESC: escalated is for seniors
    assert all(claimant(staff, ext) == "ann" for ext in order)
    assert wds.claim_next(rt, ann) is None
    next_for_senior = wds.claim_next(rt, sue)
    assert next_for_senior is not None and next_for_senior.external_id == "ESC"


def _next_worker(settings: Settings, actor: Actor, barrier: Any, results: Any) -> None:
    from polysec_tui.services.runtime import open_runtime

    rt = open_runtime(settings)
    claimed: list[str] = []
    try:
        barrier.wait(timeout=120)
        while (outcome := wds.claim_next(rt, actor)) is not None:
            claimed.append(outcome.external_id)
        results.put((actor.name, claimed, ""))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put((actor.name, claimed, f"{type(exc).__name__}: {exc}"))
    finally:
        rt.engine.dispose()


def test_eight_officers_pressing_next_at_once_never_share_an_item(
        staff: Staff, settings: Settings) -> None:
    rt = staff.rt
    items = [held(rt, f"N{i}", amount=str(round(0.3 + i * 0.01, 2))) for i in range(12)]
    racers = [staff.actors[("sue", "sam", "ann")[i % 3]] for i in range(8)]
    staff.rt.engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(racers)), ctx.Queue()
    workers = [ctx.Process(target=_next_worker, args=(settings, actor, barrier, results))
               for actor in racers]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    errors = [(name, error) for name, _c, error in outcomes if error]
    assert not errors
    claimed = [ext for _n, got, _e in outcomes for ext in got]
    assert sorted(claimed) == sorted(items)  # each exactly once
    with rt.sessions() as s:
        per_item = dict(s.execute(
            select(Withdrawal.external_id, func.count(ReviewDecision.id))
            .join(ReviewDecision, ReviewDecision.withdrawal_id == Withdrawal.id)
            .where(Withdrawal.external_id.in_(items), ReviewDecision.decision == "claim")
            .group_by(Withdrawal.external_id)).all())
    assert per_item == dict.fromkeys(items, 1)
    assert rt.audit.verify(rt.engine).ok


def test_my_work_lists_claims_decisions_requests_and_lateness(staff: Staff) -> None:
    from polysec_tui.services import work

    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "NEW")  # first: its French login must not be history for the next ones
    held(rt, "OLD", ago=timedelta(hours=5))  # past the 4 h review SLA
    held(rt, "BIG", amount="1.5")
    wds.claim(rt, ann, "OLD")
    wds.claim(rt, ann, "NEW")
    opened = wds.approve(rt, ann, "BIG", "client called")
    mine = work.my_work(rt, ann)
    assert [i.external_id for i in mine.claimed] == ["OLD", "NEW", "BIG"]  # oldest first
    assert [mine.due(i) < mine.as_of for i in mine.claimed] == [True, False, False]
    assert mine.to_decide == ()  # an analyst decides no four-eyes request
    assert [(r.id, r.status) for r in mine.requested] == [(opened.approval_id, "pending")]
    assert mine.withdrawals_late == 1
    theirs = work.my_work(rt, sue)
    assert theirs.claimed == () and [r.id for r in theirs.to_decide] == [opened.approval_id]
    doc = theirs.as_dict()
    assert doc["to_decide"][0]["kind"] == "withdrawal.approve" and doc["withdrawals_late"] == 1


def test_work_cli(staff: Staff, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.support.cli import run_cli
    from tests.support.officers import commands_use_clock

    rt = staff.rt
    held(rt, "OLD", ago=timedelta(hours=5))
    wds.claim(rt, staff.actors["ann"], "OLD")
    commands_use_clock(monkeypatch, staff.clock)
    token, _ = staff.login("ann")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    doc = json.loads(run_cli(capsys, "work", "--json").out)
    assert [(c["external_id"], c["late"]) for c in doc["claimed"]] == [("OLD", True)]
    text = run_cli(capsys, "work").out.splitlines()
    assert "1 withdrawal(s) past the 4 h review SLA" in text[0]
    assert text[1] == "claimed by you: 1" and text[2].split()[0] == "LATE"


def test_an_escalated_claim_is_reassigned_to_seniors_only(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1")
    wds.escalate(rt, ann, "T1", "looks like a takeover")
    wds.claim(rt, sue, "T1")
    with pytest.raises(RefusedError, match="only a senior officer can take it over"):
        wds.reassign(rt, sue, "T1", "ann", "handing over")
    assert wds.reassign(rt, sue, "T1", "sam", "handing over").status == "in_review"
    assert claimant(staff, "T1") == "sam"


def test_opening_a_four_eyes_request_is_activity_on_the_claim(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1", amount="1.5")
    wds.claim(rt, ann, "T1")
    staff.clock.advance(minutes=40)  # an old claim...
    opened = wds.approve(rt, ann, "T1", "client called")  # ...then the request
    assert opened.approval_id is not None
    four_eyes.deny(rt, sue, opened.approval_id, "call again", staff.next_code("sue"))
    staff.clock.advance(minutes=20)
    assert wds.expire_claims(rt, sue) == []  # 20 min since the denial
    staff.clock.advance(minutes=11)
    assert wds.expire_claims(rt, sue) == ["T1"]
