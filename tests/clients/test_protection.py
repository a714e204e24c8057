"""Freeze, unfreeze (four-eyes), lockdown (one transaction, idempotent), client reports
and incidents, on every database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import (
    Account,
    ApiKey,
    AuditLogEntry,
    ClientNotification,
    ClientSession,
    Hold,
    Incident,
    ReviewDecision,
    Withdrawal,
)
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import four_eyes
from polysec_tui.services.clients import incidents, protection
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import review as withdrawals
from tests.support import FIXED_NOW
from tests.support.cli import run_cli
from tests.support.helpers import account, ingest, withdrawal
from tests.support.officers import MovableClock, Staff, commands_use_clock, make_staff


@pytest.fixture
def staff(settings) -> Iterator[Staff]:
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    ingest(rt, "accounts", account("A1"), account("A2"))
    ingest(rt, "withdrawals", *[withdrawal(f"W{i}", at=f"2026-11-20T0{i}:00:00Z")
                                for i in range(1, 6)],
           withdrawal("X1", acct="A2"))
    with rt.transaction() as s:
        a1 = s.scalar(select(Account.id).where(Account.external_id == "A1"))
        for status, ext in (("held", "W2"), ("in_review", "W3"), ("escalated", "W4"),
                            ("approved", "W5")):
            s.execute(update(Withdrawal).where(Withdrawal.external_id == ext)
                      .values(status=status))
        for i in range(3):
            s.add(ClientSession(external_id=f"S{i}", account_id=a1, created_at=FIXED_NOW,
                                revoked_at=FIXED_NOW if i == 2 else None))
            s.add(ApiKey(external_id=f"K{i}", account_id=a1, created_at=FIXED_NOW,
                         can_withdraw=True))
    yield made
    rt.engine.dispose()


def counts(rt: Runtime) -> dict[str, object]:
    with rt.sessions() as s:
        a1 = s.scalar(select(Account).where(Account.external_id == "A1"))
        assert a1 is not None
        return {
            "live_sessions": s.scalar(select(func.count()).select_from(ClientSession)
                                      .where(ClientSession.revoked_at.is_(None))),
            "live_keys": s.scalar(select(func.count()).select_from(ApiKey)
                                  .where(ApiKey.revoked_at.is_(None))),
            "open_withdrawals": sorted(s.scalars(select(Withdrawal.external_id).where(
                Withdrawal.account_id == a1.id,
                Withdrawal.status.in_(protection.OPEN_WITHDRAWAL_STATES)))),
            "status": a1.status, "password_reset": a1.password_reset_required,
            "notifications": s.scalar(select(func.count()).select_from(ClientNotification)),
            "incidents": s.scalar(select(func.count()).select_from(Incident)),
            "freeze_holds": s.scalar(select(func.count()).select_from(Hold)
                                     .where(Hold.kind == "freeze",
                                            Hold.released_at.is_(None))),
        }


def test_lockdown_leaves_nothing_behind_and_is_idempotent(staff):
    rt, sue = staff.rt, staff.actors["sue"]
    plan = protection.lockdown_plan(rt, sue, "A1")
    assert plan["sessions_to_revoke"] == 2 and plan["api_keys_to_revoke"] == 3
    assert plan["withdrawals_to_reject"] == ["W1", "W2", "W3", "W4"]
    result = protection.lockdown(rt, sue, "a1.doe@example.com", "confirmed takeover",
                                 staff.next_code("sue"))
    assert result.withdrawals_rejected == ["W1", "W2", "W3", "W4"]
    assert (result.sessions_revoked, result.api_keys_revoked, result.froze) == (2, 3, True)
    after = counts(rt)
    assert after == {"live_sessions": 0, "live_keys": 0, "open_withdrawals": [],
                     "status": "locked", "password_reset": True, "notifications": 1,
                     "incidents": 1, "freeze_holds": 1}
    with rt.sessions() as s:
        assert s.scalar(select(Withdrawal.status).where(Withdrawal.external_id == "W5")) \
            == "approved"  # decided before: untouched
        assert s.scalar(select(Withdrawal.status).where(Withdrawal.external_id == "X1")) \
            == "pending"  # another account's
        notes = s.scalars(select(ReviewDecision.note)).all()
        assert len(notes) == 4 and all("lockdown" in n for n in notes)
    detail = incidents.show(rt, sue, result.incident)
    assert ("account", "A1") in detail.links and ("withdrawal", "W3") in detail.links
    again = protection.lockdown(rt, sue, "A1", "again", staff.next_code("sue"))
    assert again.already_locked and again.incident == result.incident
    assert counts(rt) == after  # no second notification, incident or hold
    with rt.sessions() as s:
        actions = s.scalars(select(AuditLogEntry.action)
                            .where(AuditLogEntry.action == "account.lockdown")).all()
    assert len(actions) == 2  # the repeat is audited too


def test_a_failure_in_the_middle_changes_nothing(staff, monkeypatch):
    before = counts(staff.rt)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(incidents, "open_in", broken)
    with pytest.raises(RuntimeError):
        protection.lockdown(staff.rt, staff.actors["sue"], "A1", "takeover",
                            staff.next_code("sue"))
    assert counts(staff.rt) == before


def test_lockdown_needs_a_fresh_code(staff):
    with pytest.raises(RefusedError):
        protection.lockdown(staff.rt, staff.actors["sue"], "A1", "takeover", "123456")
    assert counts(staff.rt)["status"] == "active"


def test_freeze_blocks_approval_and_unfreeze_needs_another_senior(staff):
    rt, sue, sam = staff.rt, staff.actors["sue"], staff.actors["sam"]
    assert protection.freeze(rt, staff.actors["ann"], "A1", "suspicious logins")
    assert not protection.freeze(rt, sue, "A1", "again")  # already frozen
    withdrawals.claim(rt, sue, "W2")
    with pytest.raises(RefusedError, match="freeze hold"):
        withdrawals.approve(rt, sue, "W2", "looks fine")
    request = protection.request_unfreeze(rt, sue, "A1", "client verified on video call")
    with pytest.raises(RefusedError, match="four-eyes"):
        four_eyes.approve(rt, sue, request, staff.next_code("sue"))
    with pytest.raises(RefusedError):
        four_eyes.approve(rt, staff.actors["ann"], request, staff.next_code("ann"))
    four_eyes.approve(rt, sam, request, staff.next_code("sam"))
    after = counts(rt)
    assert after["freeze_holds"] == 0 and after["status"] == "active"
    with pytest.raises(ConflictError, match="not frozen"):
        protection.request_unfreeze(rt, sue, "A1", "again")


def test_a_locked_account_cannot_simply_be_unfrozen(staff):
    protection.lockdown(staff.rt, staff.actors["sue"], "A1", "takeover",
                        staff.next_code("sue"))
    with pytest.raises(RefusedError, match="locked down"):
        protection.request_unfreeze(staff.rt, staff.actors["sam"], "A1", "done")


def test_client_report_and_the_incident_lifecycle(staff):
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    number = protection.report(rt, ann, "A1", "phone", "I did not log in from Lagos [b]x[/b]")
    detail = incidents.show(rt, ann, number)
    assert detail.summary.source == "client_report" and detail.summary.accounts == ["A1"]
    kinds = [t.kind for t in detail.timeline]
    assert "note" in kinds and "withdrawal" in kinds and "audit_entry" in kinds
    assert any("Lagos [b]x[/b]" in t.text for t in detail.timeline)
    linked = incidents.link_many(rt, ann, number, [("withdrawal", "X1"), ("withdrawal", "X1"),
                                                   ("withdrawal", "nope")])
    assert [(r.added, r.error) for r in linked] == [(True, None), (False, None),
                                                    (False, "no withdrawal nope")]
    with pytest.raises(InputError, match="--outcome"):
        incidents.set_state(rt, sue, number, "closed")
    incidents.set_state(rt, sue, number, "contained", owner="sue", note_text="frozen")
    assert [i.id for i in incidents.list_incidents(rt, ann)] == [number]
    incidents.set_state(rt, sue, number, "closed", outcome="client_error")
    assert incidents.list_incidents(rt, ann) == []
    assert incidents.list_incidents(rt, ann, state="closed")[0].outcome == "client_error"
    with pytest.raises(ConflictError):
        incidents.set_state(rt, sue, number, "closed", outcome="false_alarm")
    with pytest.raises(RefusedError):
        incidents.open_incident(rt, staff.actors["cron"], title="x", severity="low",
                                accounts=[])
    assert incidents.open_count(rt) == 0


def test_the_commands(staff, cli_env, capsys, monkeypatch):
    token, _ = staff.login("sue")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    commands_use_clock(monkeypatch, staff.clock)
    plan = run_cli(capsys, "accounts", "lockdown", "A1", "--reason", "takeover", "--dry-run",
                   "--json")
    assert plan.code == 0, plan.err
    assert json.loads(plan.out)["withdrawals_to_reject"] == ["W1", "W2", "W3", "W4"]
    done = run_cli(capsys, "accounts", "lockdown", "A1", "--reason", "takeover", "--json",
                   "--code", staff.next_code("sue"))
    assert done.code == 0, done.err
    incident = json.loads(done.out)["incident"]
    listed = run_cli(capsys, "incidents", "list", "--json")
    assert [i["id"] for i in json.loads(listed.out)] == [incident]
    shown = run_cli(capsys, "incidents", "show", str(incident), "--json")
    assert json.loads(shown.out)["source"] == "lockdown"
    assert run_cli(capsys, "incidents", "note", str(incident), "called the client").code == 0
    linked = run_cli(capsys, "incidents", "link", str(incident), "withdrawal", "X1", "nope")
    assert linked.code == 2 and linked.out == "withdrawal X1 linked\n"
    assert linked.err.strip() == "polysec: error: no withdrawal nope"
    closed = run_cli(capsys, "incidents", "close", str(incident), "--outcome",
                     "confirmed_takeover")
    assert closed.code == 0, closed.err
    missing = run_cli(capsys, "incidents", "show", "999")
    assert missing.code == 2 and missing.err.strip() == "polysec: error: no incident 999"
    frozen = run_cli(capsys, "accounts", "freeze", "A2", "--reason", "odd")
    assert frozen.code == 0 and "frozen" in frozen.out


def test_screening_flags_a_frozen_account(staff):
    from polysec_tui.db.models import WithdrawalFlag
    from polysec_tui.services.withdrawals import screening

    protection.freeze(staff.rt, staff.actors["sue"], "A2", "suspicious logins")
    ingest(staff.rt, "withdrawals", withdrawal("X2", acct="A2", at="2026-11-20T11:30:00Z"))
    screening.screen(staff.rt, staff.actors["cron"])
    with staff.rt.sessions() as s:
        x2 = s.scalar(select(Withdrawal).where(Withdrawal.external_id == "X2"))
        assert x2 is not None and x2.status == "held"
        flags = s.scalars(select(WithdrawalFlag.explanation).where(
            WithdrawalFlag.withdrawal_id == x2.id, WithdrawalFlag.rule == "account_frozen")
        ).all()
    assert len(flags) == 1 and flags[0].startswith("account is frozen (freeze hold #")


def test_request_ids_by_their_first_characters(staff, cli_env, capsys, monkeypatch):
    """The CLI takes the 8 characters the console shows; a prefix of two requests is
    refused with both named; your own request is refused before any code is asked."""
    import uuid

    from polysec_tui.db.models import ApprovalRequest

    sue, sam = staff.actors["sue"], staff.actors["sam"]
    for ref in ("A1", "A2"):
        protection.freeze(staff.rt, sue, ref, "odd logins")
    first = protection.request_unfreeze(staff.rt, sam, "A1", "client verified")
    second = protection.request_unfreeze(staff.rt, sam, "A2", "client verified")
    shared = "4cb6c42e-0000-4000-8000-00000000000"
    with staff.rt.transaction() as s:
        for old, n in ((first, 1), (second, 2)):
            s.execute(update(ApprovalRequest).where(ApprovalRequest.id == old)
                      .values(id=uuid.UUID(f"{shared}{n}")))
    token, _ = staff.login("sue")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    commands_use_clock(monkeypatch, staff.clock)
    one = run_cli(capsys, "approvals", "show", f"{shared}1"[:36], "--json")
    assert one.code == 0 and json.loads(one.out)["id"] == f"{shared}1"
    text = run_cli(capsys, "approvals", "show", f"{shared}1")
    assert text.code == 0 and "\nreason" in text.out and "{" not in text.out
    both = run_cli(capsys, "approvals", "show", "4CB6C42E")
    assert both.code == 2
    assert both.err.strip() == (f"polysec: error: 4cb6c42e matches 2 requests ({shared}1, "
                                f"{shared}2); type more of the id")
    for bad in ("4cb6c42", "4cb6c42e-zz", "ffffffff"):
        refused = run_cli(capsys, "approvals", "show", bad)
        assert refused.code == 2 and refused.err.count("\n") == 1, bad
    assert "no request ffffffff" in refused.err
    token, _ = staff.login("sam")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    own = run_cli(capsys, "approvals", "deny", f"{shared}2"[:8] + "-0000-4000-8000-000000000002",
                  "--reason", "changed my mind")  # no --code: refused before it is asked
    assert own.code == 3 and "cannot decide their own request" in own.err


def test_a_new_incident_and_its_links_are_one_transaction(staff, monkeypatch):
    """Attaching to a new incident opens it and links in one transaction: a failure
    while linking leaves no empty incident behind."""
    sue = staff.actors["sue"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(incidents, "add_link", broken)
    with pytest.raises(RuntimeError):
        incidents.open_with_links(staff.rt, sue, title="mule ring", severity="high",
                                  things=[("withdrawal", "W1")])
    assert incidents.list_incidents(staff.rt, sue, state=None) == []
    monkeypatch.undo()
    number, results = incidents.open_with_links(staff.rt, sue, title="mule ring",
                                                severity="high",
                                                things=[("withdrawal", "W1"),
                                                        ("alert", "source:AS" + "9" * 40)])
    assert [(r.added, r.error) for r in results] == [
        (True, None), (False, f"no alert source:AS{'9' * 40}")]
    assert [i.id for i in incidents.list_incidents(staff.rt, sue)] == [number]
