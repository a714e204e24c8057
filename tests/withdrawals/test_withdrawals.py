"""The review queue and decisions: states, conditional updates (exactly one of two
officers wins), four-eyes above the approval limit, holds and the blocklist refusing an
approval, permissions, audit, and the CLI's --json and exit codes. All three databases."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from polysec_tui.db.models import (
    ApprovalRequest,
    AuditLogEntry,
    Hold,
    ReviewDecision,
    Withdrawal,
    WithdrawalScreening,
)
from polysec_tui.errors import ConflictError, InputError, PolysecError, RefusedError
from polysec_tui.services import four_eyes
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import blocklist
from polysec_tui.services.withdrawals import review as wds
from tests.support import FIXED_NOW
from tests.support.cli import run_cli
from tests.support.helpers import ingest, withdrawal
from tests.support.officers import Staff
from tests.support.screening import HOME_ADDRESS, HOME_IP, iso, request, status

# ip_not_seen 20 + new_country 20 + new_destination 15 = 55: held.
SUSPICIOUS = {"ip": "198.51.100.9", "address": "bc1qnewdestination",
              "login_extra": {"country": "FR"}}


def held(rt: Runtime, ext: str = "T1", **extra: str) -> str:
    request(rt, ext, **{**SUSPICIOUS, **extra})  # type: ignore[arg-type]
    assert status(rt, ext) == "held"
    return ext


def decisions(rt: Runtime, ext: str) -> list[tuple[str, str | None]]:
    with rt.sessions() as s:
        wid = s.scalar(select(Withdrawal.id).where(Withdrawal.external_id == ext))
        return [(d.decision, d.note) for d in s.scalars(
            select(ReviewDecision).where(ReviewDecision.withdrawal_id == wid)
            .order_by(ReviewDecision.id))]


def audit(rt: Runtime) -> list[tuple[str, str, str | None]]:
    with rt.sessions() as s:
        return [(e.officer, e.action, e.target) for e in s.scalars(
            select(AuditLogEntry).where(AuditLogEntry.action.like("withdrawal.%"))
            .order_by(AuditLogEntry.seq))]


def test_queue_is_held_first_filtered_and_paged(staff: Staff) -> None:
    rt, ann = staff.rt, staff.actors["ann"]
    held(rt, "T1")
    held(rt, "T2", amount="4.2")  # amount_outlier on top: riskier
    request(rt, "T3")  # ordinary: pending
    page = wds.list_queue(rt, ann)
    assert [i.external_id for i in page.items] == ["T2", "T1"] and page.total == 2
    assert page.items[0].rules[:3] == ("ip_not_seen", "new_country", "amount_outlier")
    assert [i.external_id for i in wds.list_queue(rt, ann, sort="age").items] == ["T1", "T2"]
    assert [i.external_id for i in wds.list_queue(rt, ann, status="pending").items
            if i.external_id.startswith("T")] == ["T3"]
    assert [i.external_id for i in wds.list_queue(rt, ann, rule="amount_outlier").items] == [
        "T2"]
    assert wds.list_queue(rt, ann, asset="ETH").total == 0
    second = wds.list_queue(rt, ann, offset=1, limit=1)
    assert [i.external_id for i in second.items] == ["T1"] and second.total == 2
    wds.claim(rt, ann, "T1")
    assert [(i.external_id, i.status, i.claimed_by)
            for i in wds.list_queue(rt, ann).items] == [("T2", "held", None),
                                                        ("T1", "in_review", "ann")]
    with pytest.raises(InputError):
        wds.list_queue(rt, ann, status="nope")


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_one_status_by_risk_pages_screened_then_unscreened(
        staff: Staff, large: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sorted by risk, one status reads highest risk first, then oldest first, then
    the unscreened, oldest first; page after page, whether the status is small (sorted
    by the database) or large (the verdicts' risk index walked down to the page)."""
    rt, ann = staff.rt, staff.actors["ann"]
    if large:
        monkeypatch.setattr(wds, "COUNT_CAP", 1)
    for n in range(7):  # new addresses and unknown IPs: some score, none held
        request(rt, f"P{n}", ago=timedelta(hours=2 + n),
                address=HOME_ADDRESS if n % 2 else f"bc1qnew{n}",
                ip=HOME_IP if n % 3 else "198.51.100.9")
    ingest(rt, "withdrawals", *(withdrawal(f"U{n}", at=iso(timedelta(minutes=50 - n)))
                                for n in range(3)))  # not screened yet
    with rt.sessions() as s:
        rows = s.execute(select(Withdrawal.id, Withdrawal.external_id,
                                Withdrawal.requested_at, WithdrawalScreening.risk_score)
                         .outerjoin(WithdrawalScreening)
                         .where(Withdrawal.status == "pending")).all()
    expected = [ext for _, ext, _, _ in sorted(
        rows, key=lambda r: (r[3] is None, -(r[3] or 0), r[2], r[0]))]
    assert len({r[3] for r in rows}) >= 3 and sum(r[3] is None for r in rows) == 3
    paged = [i.external_id for offset in range(0, len(expected) + 3, 3)
             for i in wds.list_queue(rt, ann, status="pending", offset=offset,
                                     limit=3).items]
    assert paged == expected
    # A page that starts right where the unscreened begin.
    first_unscreened = len(expected) - 3
    page = wds.list_queue(rt, ann, status="pending", offset=first_unscreened, limit=2)
    assert [i.external_id for i in page.items] == expected[first_unscreened:][:2]
    assert [i.risk_score for i in page.items] == [None, None]


def test_show_has_flags_account_and_history(staff: Staff) -> None:
    rt = staff.rt
    held(rt)
    d = wds.show(rt, staff.actors["ann"], "T1")
    assert [f.rule for f in d.flags] == ["ip_not_seen", "new_country", "new_destination"]
    assert all(f.explanation for f in d.flags)
    assert d.account_summary.external_id == "A1"
    assert d.account_summary.masked["email"] != "a1.doe@example.com"
    assert d.recent_logins[0].ip == "198.51.100.9" and d.recent_logins[0].country == "FR"
    assert len(d.recent_withdrawals) == 6 and d.address_accounts == 1
    assert d.as_dict()["flags"][0]["rule"] == "ip_not_seen"


def test_claim_then_decide_by_the_claimant_only(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt)
    assert wds.claim(rt, ann, "T1").status == "in_review"
    with pytest.raises(ConflictError, match="claimed by ann"):
        wds.approve(rt, sue, "T1", "looks fine")
    with pytest.raises(ConflictError, match="claimed by ann"):
        wds.claim(rt, sue, "T1")
    with pytest.raises(InputError, match="note"):
        wds.approve(rt, ann, "T1", "  ")
    assert wds.approve(rt, ann, "T1", "client confirmed by phone").status == "approved"
    with pytest.raises(ConflictError, match="already approved by ann"):
        wds.reject(rt, sue, "T1", "too late")
    assert decisions(rt, "T1") == [("claim", None), ("approve", "client confirmed by phone")]
    assert audit(rt) == [("ann", "withdrawal.claim", "withdrawal:T1"),
                         ("ann", "withdrawal.approve", "withdrawal:T1")]


def test_decide_directly_from_held_and_reject(staff: Staff) -> None:
    rt, ann = staff.rt, staff.actors["ann"]
    held(rt)
    assert wds.reject(rt, ann, "T1", "mule address").status == "rejected"
    assert status(rt, "T1") == "rejected"
    with pytest.raises(ConflictError, match="already rejected by ann"):
        wds.claim(rt, ann, "T1")


def test_escalated_goes_to_senior_officers(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt)
    wds.claim(rt, ann, "T1")
    assert wds.escalate(rt, ann, "T1", "pattern I do not know").status == "escalated"
    with pytest.raises(RefusedError, match="senior"):
        wds.approve(rt, ann, "T1", "x")
    with pytest.raises(RefusedError, match="senior"):
        wds.claim(rt, ann, "T1")
    assert wds.approve(rt, sue, "T1", "known travel").status == "approved"


def test_active_hold_refuses_approval_until_it_expires(staff: Staff) -> None:
    rt, ann = staff.rt, staff.actors["ann"]
    held(rt)
    with rt.sessions() as s:
        account_id = s.scalar(select(Withdrawal.account_id).where(Withdrawal.external_id == "T1"))
    with rt.transaction() as s:
        s.add(Hold(account_id=account_id, kind="security_change", reason="client 2FA reset",
                   created_at=rt.clock(), expires_at=rt.clock() + timedelta(hours=48)))
    with pytest.raises(RefusedError, match="active security_change hold"):
        wds.approve(rt, ann, "T1", "fine")
    assert status(rt, "T1") == "held" and decisions(rt, "T1") == []
    # Not as fraud: a confirmed fraud would make its destination known-bad, and T2's
    # approval below would then need a second officer.
    assert wds.reject(rt, ann, "T1", "rejecting is allowed", outcome="benign",
                      outcome_reason="client cancelled").status == "rejected"
    held(rt, "T2")
    staff.clock.advance(hours=49)
    assert wds.approve(rt, ann, "T2", "hold is over").status == "approved"


def test_blocklisted_destination_cannot_be_approved(staff: Staff) -> None:
    rt, ann = staff.rt, staff.actors["ann"]
    held(rt)
    blocklist.add(rt, ann, "bc1qnewdestination", "scam report")
    with pytest.raises(RefusedError, match="blocklisted"):
        wds.approve(rt, ann, "T1", "fine")


def test_above_the_limit_needs_a_second_senior_officer(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1", amount="1.5")
    outcome = wds.approve(rt, ann, "T1", "big but expected")
    assert outcome.status == "in_review" and outcome.approval_id is not None
    assert status(rt, "T1") == "in_review"
    with pytest.raises(ConflictError, match="waits for four-eyes"):
        wds.approve(rt, ann, "T1", "again")
    with pytest.raises(RefusedError):  # the requester never approves their own request
        four_eyes.approve(rt, ann, outcome.approval_id, staff.next_code("ann"))
    done = four_eyes.approve(rt, sue, outcome.approval_id, staff.next_code("sue"))
    assert done.result["status"] == "approved"
    assert status(rt, "T1") == "approved"
    assert wds.show(rt, ann, "T1").decided_by == "sue"
    assert [d for d, _n in decisions(rt, "T1")] == ["request_approval", "approve"]


def request_status(rt: Runtime, request_id: object) -> tuple[str, str | None]:
    with rt.sessions() as s:
        request = s.get(ApprovalRequest, request_id)
        assert request is not None
        return request.status, request.decision_note


def test_rejected_meanwhile_the_request_is_withdrawn(staff: Staff) -> None:
    """Rejecting a withdrawal that waits for its four-eyes request withdraws the
    request in the same transaction: it leaves every inbox, and a senior trying it
    learns why before spending a code."""
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1", amount="1.5")
    outcome = wds.approve(rt, ann, "T1", "big")
    assert outcome.approval_id is not None
    wds.reject(rt, ann, "T1", "changed my mind")
    assert request_status(rt, outcome.approval_id) == (
        "withdrawn", "withdrawn: withdrawal T1 was rejected by ann")
    assert four_eyes.list_requests(rt, sue) == []
    code = staff.next_code("sue")
    with pytest.raises(ConflictError, match="already withdrawn by ann"):
        four_eyes.approve(rt, sue, outcome.approval_id, code)
    assert status(rt, "T1") == "rejected"
    with rt.sessions() as s:
        details = s.scalar(select(AuditLogEntry.details).where(
            AuditLogEntry.action == "withdrawal.reject"))
    assert details is not None
    assert json.loads(details)["withdrawn_request"] == str(outcome.approval_id)


def test_rejecting_while_a_senior_approves_the_request(
        staff: Staff, monkeypatch: pytest.MonkeyPatch) -> None:
    """The senior's approval takes the request's row, then the withdrawal's; a rejection
    arriving in between takes them in the same order, so it waits and then learns who
    won (before, it took the withdrawal's first: the two deadlocked, and the rejection
    failed with the database's raw error)."""
    from polysec_tui.services.officers import approvals

    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1", amount="1.5")
    opened = wds.approve(rt, ann, "T1", "big")
    assert opened.approval_id is not None
    request_id = opened.approval_id
    code = staff.next_code("sue")
    claimed, go = threading.Event(), threading.Event()
    real_claim = approvals._claim

    def claim_then_wait(*args: Any, **kwargs: Any) -> Any:
        request = real_claim(*args, **kwargs)  # the request's row is taken
        claimed.set()
        go.wait(30)
        return request

    monkeypatch.setattr(approvals, "_claim", claim_then_wait)
    results: dict[str, str] = {}

    def act(name: str, call: Callable[[], object]) -> None:
        try:
            call()
            results[name] = "done"
        except PolysecError as exc:
            results[name] = f"refused: {exc}"
        except Exception as exc:  # the deadlock, as it was
            results[name] = f"FAILED: {type(exc).__name__}"

    approving = threading.Thread(target=act, args=("approve", lambda: four_eyes.approve(
        rt, sue, request_id, code)))
    approving.start()
    assert claimed.wait(30)
    rejecting = threading.Thread(target=act, args=("reject", lambda: wds.reject(
        rt, ann, "T1", "fraud after all")))
    rejecting.start()
    rejecting.join(0.5)  # it waits for the approval's lock
    go.set()
    approving.join(60)
    rejecting.join(60)
    assert results == {"approve": "done", "reject": results["reject"]}, results
    assert results["reject"].startswith("refused: ") and "approved by sue" in results[
        "reject"], results
    assert status(rt, "T1") == "approved"
    assert request_status(rt, request_id)[0] == "executed"


def test_a_lockdown_withdraws_the_requests_of_what_it_rejects(staff: Staff) -> None:
    from polysec_tui.services.clients import protection

    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1", amount="1.5")
    opened = wds.approve(rt, ann, "T1", "big")
    assert opened.approval_id is not None
    protection.lockdown(rt, sue, "A1", "confirmed takeover", staff.next_code("sue"))
    assert status(rt, "T1") == "rejected"
    assert request_status(rt, opened.approval_id) == (
        "withdrawn", "withdrawn: withdrawal T1 was rejected by sue (account lockdown)")


def test_escalated_meanwhile_the_request_cannot_approve_the_new_claim(staff: Staff) -> None:
    """Escalating withdraws the request and forgets it: a senior who claims the
    escalated withdrawal reviews it afresh, and the old request approves nothing."""
    rt, ann, sue, sam = (staff.rt, staff.actors["ann"], staff.actors["sue"],
                         staff.actors["sam"])
    held(rt, "T1", amount="1.5")
    outcome = wds.approve(rt, ann, "T1", "big")
    assert outcome.approval_id is not None
    wds.escalate(rt, ann, "T1", "not sure: a senior please decide")
    assert request_status(rt, outcome.approval_id)[0] == "withdrawn"
    wds.claim(rt, sam, "T1")
    assert wds.show(rt, sam, "T1").approval_id is None
    with pytest.raises(ConflictError, match="withdrawn"):
        four_eyes.approve(rt, sue, outcome.approval_id, staff.next_code("sue"))
    assert status(rt, "T1") == "in_review"
    wds.release(rt, sam, "T1")  # no request holds the claim any more
    assert status(rt, "T1") == "escalated"


def test_a_decision_from_a_stale_view_is_refused(staff: Staff) -> None:
    """A decision that says what it was taken on (the console's) is refused when the
    withdrawal changed since, naming the change; the CLI's, which says nothing, is not."""
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    held(rt, "T1")
    seen = wds.show(rt, sue, "T1").seen
    assert seen == wds.Seen(0, "held")
    wds.claim(rt, ann, "T1")
    wds.escalate(rt, ann, "T1", "DO NOT APPROVE: sim swap")
    with pytest.raises(ConflictError, match=re.escape(
            "ann recorded escalate: DO NOT APPROVE: sim swap; it is escalated now (it was "
            "held)")):
        wds.approve(rt, sue, "T1", "looks fine", seen=seen)
    with pytest.raises(ConflictError, match="changed since you looked"):
        wds.claim(rt, sue, "T1", seen=seen)
    assert status(rt, "T1") == "escalated"
    fresh = wds.show(rt, sue, "T1").seen
    assert wds.claim(rt, sue, "T1", seen=fresh).status == "in_review"
    with pytest.raises(ConflictError, match="claimed by you already"):
        wds.claim(rt, sue, "T1")
    assert wds.reject(rt, sue, "T1", "fraud", seen=wds.show(rt, sue, "T1").seen
                      ).status == "rejected"


def test_self_approved_counts_only_approvals(staff: Staff) -> None:
    from polysec_tui.services.operations import evidence

    rt, ann = staff.rt, staff.actors["ann"]
    held(rt, "T1", amount="1.5")
    wds.approve(rt, ann, "T1", "big")
    wds.reject(rt, ann, "T1", "changed my mind")
    with rt.sessions() as s:
        figures = evidence._four_eyes(s, {}, FIXED_NOW - timedelta(days=1),
                                      FIXED_NOW + timedelta(days=1))
    assert figures["self_approved"] == 0
    assert figures["by_kind_and_status"] == {wds.APPROVAL_KIND: {"withdrawn": 1}}


def test_two_officers_deciding_at_once_one_wins(staff: Staff) -> None:
    rt = staff.rt
    held(rt)
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def decide(name: str) -> None:
        barrier.wait(timeout=30)
        try:
            verb = wds.approve if name == "sue" else wds.reject
            results[name] = verb(rt, staff.actors[name], "T1", f"{name} decides").status
        except ConflictError as exc:
            results[name] = f"conflict: {exc}"

    threads = [threading.Thread(target=decide, args=(n,)) for n in ("sue", "sam")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    outcomes = sorted(v.split(":")[0] for v in results.values())
    assert outcomes in (["approved", "conflict"], ["conflict", "rejected"]), results
    winner = next(n for n, v in results.items() if not v.startswith("conflict"))
    loser = next(v for v in results.values() if v.startswith("conflict"))
    assert f"by {winner}" in loser
    assert len(decisions(rt, "T1")) == 1
    verb = "approve" if winner == "sue" else "reject"
    assert [a for _o, a, _t in audit(rt)] == [f"withdrawal.{verb}"]


def test_permissions(staff: Staff) -> None:
    rt = staff.rt
    held(rt)
    with pytest.raises(RefusedError):
        wds.claim(rt, staff.actors["cron"], "T1")
    with pytest.raises(RefusedError):
        wds.list_queue(rt, staff.actors["cron"])
    blocklist.add(rt, staff.actors["ann"], "bc1qbad", "phishing")
    with pytest.raises(RefusedError):
        blocklist.remove(rt, staff.actors["ann"], "bc1qbad", "mistake")
    blocklist.remove(rt, staff.actors["sue"], "bc1qbad", "false positive, ticket 7")
    assert blocklist.list_blocked(rt, staff.actors["ann"]) == []
    with rt.sessions() as s:
        actions = [(e.officer, e.action) for e in s.scalars(
            select(AuditLogEntry).where(AuditLogEntry.action.like("blocklist.%")))]
    assert actions == [("ann", "blocklist.add"), ("sue", "blocklist.remove")]


# ----------------------------------------------------------------------------- CLI


def test_cli_screen_list_show_decide(cli_staff: Staff, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rt = cli_staff.rt
    request(rt, "T1", **SUSPICIOUS)  # type: ignore[arg-type]
    ann_token, _ = cli_staff.login("ann")
    sam_token, _ = cli_staff.login("sam")
    monkeypatch.setenv("POLYSEC_TOKEN", ann_token)
    result = run_cli(capsys, "withdrawals", "screen", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["screened"] == 0  # screened already: idempotent
    result = run_cli(capsys, "withdrawals", "list", "--json")
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert listed["total"] == 1 and listed["items"][0]["external_id"] == "T1"
    assert listed["items"][0]["status"] == "held"
    result = run_cli(capsys, "withdrawals", "show", "T1", "--json")
    shown = json.loads(result.out)
    assert [f["rule"] for f in shown["flags"]] == ["ip_not_seen", "new_country",
                                                   "new_destination"]
    assert run_cli(capsys, "withdrawals", "claim", "T1").code == 0
    monkeypatch.setenv("POLYSEC_TOKEN", sam_token)
    lost = run_cli(capsys, "withdrawals", "approve", "T1", "--note", "ok")
    assert lost.code == 4 and "claimed by ann" in lost.err
    monkeypatch.setenv("POLYSEC_TOKEN", ann_token)
    result = run_cli(capsys, "withdrawals", "approve", "T1", "--note", "called client",
                     "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["status"] == "approved"
    monkeypatch.setenv("POLYSEC_TOKEN", sam_token)
    late = run_cli(capsys, "withdrawals", "reject", "T1", "--note", "no")
    assert late.code == 4 and "already approved by ann" in late.err
    assert run_cli(capsys, "withdrawals", "show", "nope").code == 2
    assert run_cli(capsys, "withdrawals", "approve", "T1").code == 2  # --note is required


def test_cli_blocklist(cli_staff: Staff, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ann_token, _ = cli_staff.login("ann")
    monkeypatch.setenv("POLYSEC_TOKEN", ann_token)
    feed = tmp_path / "block.txt"
    feed.write_text("# scam list\nbc1qone,ransomware\n\nbc1qtwo\nbc1qone\n", encoding="utf-8")
    result = run_cli(capsys, "blocklist", "import", str(feed), "--reason", "feed 2026-11",
                     "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"read": 3, "added": 2}
    assert run_cli(capsys, "blocklist", "add", "bc1qtwo", "--reason", "x").out.strip() == (
        "bc1qtwo was blocklisted already")
    listed = json.loads(run_cli(capsys, "blocklist", "list", "--json").out)
    assert {e["address"]: e["reason"] for e in listed} == {"bc1qone": "ransomware",
                                                           "bc1qtwo": "feed 2026-11"}
    refused = run_cli(capsys, "blocklist", "remove", "bc1qone", "--reason", "oops")
    assert refused.code == 3
    bad = tmp_path / "bad.txt"
    bad.write_text("bc1qthree\n" + "SECRET-LINE-" * 12 + ",too long\n", encoding="utf-8")
    rejected = run_cli(capsys, "blocklist", "import", str(bad), "--reason", "r")
    assert rejected.code == 2 and "line 2:" in rejected.err
    assert "SECRET" not in rejected.err  # the file's lines are never echoed
    assert "bc1qthree" not in run_cli(capsys, "blocklist", "list").out  # all or nothing


def test_the_amount_sort_never_compares_assets(staff: Staff) -> None:
    """Without prices 5,000 DOGE is not "more" than 2 BTC: the amount sort groups the
    assets and puts the largest first within each."""
    rt, ann = staff.rt, staff.actors["ann"]
    request(rt, "D1", asset="DOGE", amount="5000")
    request(rt, "B1", amount="0.4")
    request(rt, "B2", amount="0.3")
    items = wds.list_queue(rt, ann, status="pending", sort="amount", limit=1000).items
    assets = [i.asset for i in items]
    assert assets == sorted(assets)  # grouped by asset, never interleaved
    for asset in set(assets):
        amounts = [i.amount for i in items if i.asset == asset]
        assert amounts == sorted(amounts, reverse=True), asset
    assert "DOGE" in assets and assets[0] != "DOGE"
