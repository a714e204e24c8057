"""Client 2FA reset: identity proofing, four-eyes approval, one-transaction execution and
the withdrawal hold, on every database."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select, text

from polysec_tui.db.models import (
    Account,
    AuditLogEntry,
    ClientSession,
)
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import four_eyes
from polysec_tui.services.clients import twofa
from polysec_tui.services.clients.twofa import Proof
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.runtime import Runtime
from tests.support.cli import run_cli
from tests.support.helpers import account, ingest
from tests.support.officers import Staff, make_staff
from tests.support.twofa import CLIENT_SECRET, PROOF, make_client, make_runtime


def _open(staff: Staff, who: str = "ann", ident: str = "A1",
          proof: Proof = PROOF) -> uuid.UUID:
    opened = twofa.request_reset(staff.rt, staff.actors[who], ident,
                                 "client lost their phone", "called from registered number; "
                                 "video call case C-1", proof)
    return opened.request.id


def _raw(rt: Runtime, sql: str, **params: Any) -> Any:
    with rt.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def _a1(rt: Runtime) -> Any:
    return _raw(rt, "SELECT id FROM accounts WHERE external_id = 'A1'")[0][0]


def _snapshot(rt: Runtime) -> dict[str, Any]:
    """Everything an execution would change, read with plain SQL."""
    return {
        "totp": _raw(rt, "SELECT secret_enc FROM totp_enrolments ORDER BY enrolled_at"),
        "flags": _raw(rt, "SELECT external_id, twofa_reenrol_required FROM accounts "
                          "ORDER BY external_id"),
        "sessions": _raw(rt, "SELECT external_id, revoked_at FROM client_sessions "
                             "ORDER BY external_id"),
        "holds": _raw(rt, "SELECT count(*) FROM holds")[0][0],
        "events": _raw(rt, "SELECT count(*) FROM security_events")[0][0],
        "outbox": _raw(rt, "SELECT count(*) FROM client_notifications")[0][0],
        "requests": _raw(rt, "SELECT status FROM approval_requests ORDER BY created_at"),
        # Authentication attempts (the step-up code check) are audited on their own.
        "audit": _raw(rt, "SELECT action FROM audit_log WHERE action NOT LIKE 'auth.%' "
                          "ORDER BY seq"),
    }


# --------------------------------------------------------------------------- the flow


def test_the_whole_flow(staff):
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    before = twofa.status(rt, ann, "a1.doe@example.com")  # by exact email
    assert before.enrolled and before.enrolled_at is not None
    assert not before.reenrolment_required and before.hold_until is None
    assert [e["kind"] for e in before.events] == ["2fa_enabled"]
    assert CLIENT_SECRET not in json.dumps(before.as_dict(), default=str)

    opened = twofa.request_reset(rt, ann, "A1", "client lost their phone",
                                 "video call, case C-1", PROOF)
    request_id = opened.request.id
    risk = opened.risk
    assert [a["kind"] for a in risk.anomalies] == ["new_country"]
    assert [w["id"] for w in risk.pending_withdrawals] == ["W1"]
    assert [c["kind"] for c in risk.security_changes] == ["password_change"]
    assert opened.request.risk == {"anomalies": 1, "pending_withdrawals": 1,
                                   "security_changes": 1, "active_holds": 0}
    assert opened.request.proofs == {"id_document": "IDV-2026-0042", "liveness": "LIVE-77",
                                     "history_questions": "passed"}
    assert opened.request.expires_at == staff.clock() + timedelta(hours=24)
    assert twofa.status(rt, ann, "A1").pending_request == request_id
    # The same id is the four-eyes request `polysec approvals` shows.
    assert four_eyes.get_request(rt, sue, request_id).description == \
        "reset the 2FA of account A1"

    done = twofa.approve(rt, sue, request_id, staff.next_code("sue"))
    now = staff.clock()
    assert done.result["sessions_revoked"] == 2 and done.result["secret_rows_destroyed"] == 1

    # The secret is gone from the raw table, in every form.
    a1 = _a1(rt)
    assert _raw(rt, "SELECT count(*) FROM totp_enrolments")[0][0] == 1  # A2's only
    assert _raw(rt, "SELECT count(*) FROM totp_enrolments WHERE account_id = :a",
                a=a1)[0][0] == 0
    after = twofa.status(rt, ann, "A1")
    assert not after.enrolled and after.reenrolment_required
    assert after.hold_until == now + timedelta(hours=48) and after.pending_request is None
    assert after.events[0]["kind"] == "2fa_reset"
    sessions = dict(_raw(rt, "SELECT external_id, revoked_reason FROM client_sessions"))
    assert sessions == {"sess-1": "2fa_reset", "sess-2": "2fa_reset", "sess-old": "logout"}
    holds = _raw(rt, "SELECT kind, expires_at, created_by FROM holds")
    assert len(holds) == 1 and holds[0][0] == "security_change"
    outbox = _raw(rt, "SELECT kind, payload, sent_at FROM client_notifications")
    assert len(outbox) == 1 and outbox[0][0] == "2fa_reset" and outbox[0][2] is None
    payload = outbox[0][1] if isinstance(outbox[0][1], dict) else json.loads(outbox[0][1])
    assert payload["request"] == str(request_id)
    assert CLIENT_SECRET not in json.dumps(payload)

    view = twofa.get_request(rt, ann, request_id)
    assert (view.status, view.requester, view.decided_by) == ("executed", "ann", "sue")
    # Nothing secret in the audit log: not the secret, not its ciphertext, not a code.
    details = " ".join(d for (d,) in _raw(rt, "SELECT details FROM audit_log"))
    assert CLIENT_SECRET not in details and CLIENT_SECRET.lower() not in details
    actions = [a for (a,) in _raw(rt, "SELECT action FROM audit_log ORDER BY seq")]
    assert "twofa.reset_request" in actions
    assert actions[-2:] == ["twofa.reset", "approval.execute"]  # the executing transaction
    with rt.sessions() as s:
        targets = set(s.scalars(select(AuditLogEntry.target)
                                .where(AuditLogEntry.action.like("twofa.%"))))
    assert targets == {"account:A1"}  # the account timeline shows them
    assert rt.audit.verify(rt.engine).ok


def test_secret_ciphertext_is_not_kept_anywhere(staff):
    rt = staff.rt
    (blob,) = _raw(rt, "SELECT secret_enc FROM totp_enrolments WHERE account_id = :a",
                   a=_a1(rt))[0]
    request_id = _open(staff)
    twofa.approve(rt, staff.actors["sue"], request_id, staff.next_code("sue"))
    hexed = bytes(blob).hex()
    for (details,) in _raw(rt, "SELECT details FROM audit_log"):
        assert hexed not in details
    for (payload,) in _raw(rt, "SELECT payload FROM approval_requests"):
        assert hexed not in json.dumps(payload, default=str)


def test_deny_changes_nothing_but_the_request(staff):
    rt = staff.rt
    request_id = _open(staff)
    before = _snapshot(rt)
    with pytest.raises(InputError, match="reason"):
        twofa.deny(rt, staff.actors["sue"], request_id, "  ", staff.next_code("sue"))
    twofa.deny(rt, staff.actors["sue"], request_id, "caller failed the callback",
               staff.next_code("sue"))
    after = _snapshot(rt)
    assert after["requests"] == [("denied",)]
    assert {k: v for k, v in after.items() if k not in ("requests", "audit")} == \
        {k: v for k, v in before.items() if k not in ("requests", "audit")}
    view = twofa.get_request(rt, staff.actors["ann"], request_id)
    assert view.decision_note == "caller failed the callback"
    with pytest.raises(ConflictError, match="already denied by sue"):
        twofa.approve(rt, staff.actors["sam"], request_id, staff.next_code("sam"))


# -------------------------------------------------------------------------- refusals


def test_self_approval_is_refused(staff):
    request_id = _open(staff, "sue")
    with pytest.raises(RefusedError, match="cannot decide their own request"):
        twofa.approve(staff.rt, staff.actors["sue"], request_id, staff.next_code("sue"))
    with pytest.raises(RefusedError, match="cannot decide their own request"):
        twofa.deny(staff.rt, staff.actors["sue"], request_id, "no", staff.next_code("sue"))
    assert twofa.get_request(staff.rt, staff.actors["sue"], request_id).status == "pending"


def test_analyst_approval_is_refused(staff):
    request_id = _open(staff, "sam")
    with pytest.raises(RefusedError, match="ann \\(analyst\\) may not approve"):
        twofa.approve(staff.rt, staff.actors["ann"], request_id, staff.next_code("ann"))
    with pytest.raises(RefusedError):
        twofa.approve(staff.rt, staff.actors["cron"], request_id, "123456")
    with pytest.raises(RefusedError, match=r"may not twofa\.request"):  # automation
        twofa.request_reset(staff.rt, staff.actors["cron"], "A2", "lost", "call", PROOF)
    assert twofa.status(staff.rt, staff.actors["ann"], "A1").enrolled


def test_expired_request_is_refused(staff):
    request_id = _open(staff)
    before = _snapshot(staff.rt)
    staff.clock.advance(hours=24, seconds=1)
    with pytest.raises(RefusedError, match="expired"):
        twofa.approve(staff.rt, staff.actors["sue"], request_id, staff.next_code("sue"))
    assert _snapshot(staff.rt) == before
    assert twofa.get_request(staff.rt, staff.actors["sue"], request_id).status == "expired"
    assert twofa.list_requests(staff.rt, staff.actors["sue"], pending_only=True) == []
    # An expired request does not block a new one.
    assert _open(staff) != request_id


def test_configured_expiry_and_hold(settings, clock):
    rt = make_runtime(settings, clock, {"twofa": {"request_ttl_hours": 2, "hold_hours": 6}})
    try:
        staff = make_staff(rt, clock)
        make_client(rt)
        first = _open(staff)
        assert twofa.get_request(rt, staff.actors["ann"], first).expires_at == \
            clock() + timedelta(hours=2)
        clock.advance(hours=2, minutes=1)
        with pytest.raises(RefusedError, match="expired"):
            twofa.approve(rt, staff.actors["sue"], first, staff.next_code("sue"))
        done = twofa.approve(rt, staff.actors["sue"], _open(staff), staff.next_code("sue"))
        assert done.result["hold_until"] == (clock() + timedelta(hours=6)).isoformat()
    finally:
        rt.engine.dispose()


def test_bad_config_is_an_input_error(settings, clock):
    rt = make_runtime(settings, clock, {"twofa": {"hold_hours": 0}})
    try:
        with pytest.raises(InputError, match=r"\[twofa\] hold_hours must be a positive"):
            twofa.Policy.from_settings(rt)
        rt.settings = dataclasses.replace(rt.settings, options={"twofa": {"holdhours": 2}})
        with pytest.raises(InputError, match="unknown"):
            twofa.Policy.from_settings(rt)
    finally:
        rt.engine.dispose()


def test_a_replayed_code_is_refused(staff):
    rt, sue = staff.rt, staff.actors["sue"]
    first, second = _open(staff, ident="A1"), _open(staff, ident="A2")
    code = staff.next_code("sue")
    twofa.approve(rt, sue, first, code)
    before = _snapshot(rt)
    with pytest.raises(RefusedError, match="authentication failed"):
        twofa.approve(rt, sue, second, code)  # same code, same time step
    assert _snapshot(rt) == before
    assert twofa.get_request(rt, sue, second).status == "pending"
    twofa.approve(rt, sue, second, staff.next_code("sue"))


def test_a_wrong_code_is_refused(staff):
    request_id = _open(staff)
    before = _snapshot(staff.rt)
    with pytest.raises(RefusedError):
        twofa.approve(staff.rt, staff.actors["sue"], request_id, "000000")
    with pytest.raises(RefusedError, match="fresh authenticator code"):
        twofa.approve(staff.rt, staff.actors["sue"], request_id, "")
    assert _snapshot(staff.rt) == before


def test_no_proof_is_refused(staff):
    rt, ann = staff.rt, staff.actors["ann"]
    with pytest.raises(RefusedError, match="no identity proof recorded"):
        twofa.request_reset(rt, ann, "A1", "lost phone", "called", Proof())
    with pytest.raises(RefusedError, match="no identity proof recorded"):
        twofa.request_reset(rt, ann, "A1", "lost phone", "called", Proof(liveness="  "))
    with pytest.raises(RefusedError, match="needs at least 2"):
        twofa.request_reset(rt, ann, "A1", "lost phone", "called", Proof(liveness="L-1"))
    with pytest.raises(InputError, match="evidence"):
        twofa.request_reset(rt, ann, "A1", "lost phone", " ", PROOF)
    with pytest.raises(InputError, match="reason"):
        twofa.request_reset(rt, ann, "A1", "", "called", PROOF)
    assert twofa.list_requests(rt, ann) == []


def test_one_proof_is_enough_when_configured(settings, clock):
    rt = make_runtime(settings, clock, {"twofa": {"min_proofs": 1}})
    try:
        staff = make_staff(rt, clock)
        make_client(rt)
        opened = twofa.request_reset(rt, staff.actors["ann"], "A1", "lost", "called",
                                     Proof(kyc_reference="KYC-9"))
        assert opened.request.proofs == {"kyc_reference": "KYC-9"}
    finally:
        rt.engine.dispose()


def test_duplicates_and_unenrolled_accounts_are_conflicts(staff):
    request_id = _open(staff)
    with pytest.raises(ConflictError, match=f"pending 2FA reset request already: {request_id}"):
        _open(staff, "sam")
    with pytest.raises(ConflictError, match="no authenticator enrolled"):
        _open(staff, ident="A3")
    with pytest.raises(InputError, match="no account 'nobody'"):
        _open(staff, ident="nobody")
    twofa.approve(staff.rt, staff.actors["sue"], request_id, staff.next_code("sue"))
    with pytest.raises(ConflictError, match="already executed by sue"):
        twofa.approve(staff.rt, staff.actors["sam"], request_id, staff.next_code("sam"))
    with pytest.raises(ConflictError, match="no authenticator enrolled"):
        _open(staff)  # reset already: nothing left to reset


def test_other_kinds_are_not_2fa_resets(staff):
    request_id = officers.request_totp_reset(staff.rt, staff.actors["root"], "sue", "lost",
                                             staff.next_code("root")).request_id
    assert request_id is not None
    with pytest.raises(InputError, match="is not a 2FA reset"):
        twofa.approve(staff.rt, staff.actors["admin2"], request_id, staff.next_code("admin2"))


def test_a_failure_midway_changes_nothing(staff, monkeypatch):
    rt = staff.rt
    request_id = _open(staff)
    before = _snapshot(rt)
    real_append = rt.audit.append

    def failing_append(session: Any, **kwargs: Any) -> Any:
        if kwargs.get("action") == "twofa.reset":  # after every change was flushed
            raise RuntimeError("disk full")
        return real_append(session, **kwargs)

    monkeypatch.setattr(rt.audit, "append", failing_append)
    with pytest.raises(RuntimeError, match="disk full"):
        twofa.approve(rt, staff.actors["sue"], request_id, staff.next_code("sue"))
    assert _snapshot(rt) == before
    assert twofa.status(rt, staff.actors["ann"], "A1").enrolled
    monkeypatch.setattr(rt.audit, "append", real_append)
    twofa.approve(rt, staff.actors["sue"], request_id, staff.next_code("sue"))
    assert not twofa.status(rt, staff.actors["ann"], "A1").enrolled


def test_the_hold_covers_its_window_and_not_after(staff):
    rt = staff.rt
    twofa.approve(rt, staff.actors["sue"], _open(staff), staff.next_code("sue"))
    placed = staff.clock()
    a1 = uuid.UUID(str(twofa.status(rt, staff.actors["ann"], "A1").account_id))
    with rt.sessions() as s:
        assert twofa.security_hold_until(s, a1, placed + timedelta(hours=47, minutes=59)) \
            == placed + timedelta(hours=48)
        assert twofa.security_hold_until(s, a1, placed + timedelta(hours=48)) is None
    staff.clock.advance(hours=48)
    assert twofa.status(rt, staff.actors["ann"], "A1").hold_until is None
    risk = twofa.risk_context(rt, staff.actors["ann"], "A1")
    assert risk.active_holds == []


def test_listing_hides_nothing_and_filters_own(staff):
    rt = staff.rt
    mine = _open(staff, "sue", "A1")
    theirs = _open(staff, "ann", "A2")
    listed = twofa.list_requests(rt, staff.actors["sue"], pending_only=True,
                                 exclude_requester=staff.actors["sue"].officer_id)
    assert [v.id for v in listed] == [theirs]
    assert {v.id for v in twofa.list_requests(rt, staff.actors["sue"])} == {mine, theirs}


# ------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(staff, cli_env, monkeypatch):
    """`polysec twofa` in-process, on the staff's database and pinned clock."""
    from polysec_tui.commands import common
    from polysec_tui.commands import twofa as command

    real = common.runtime_of

    def runtime_of(ctx: Any) -> Runtime:
        rt = real(ctx)
        rt.clock = staff.clock
        return rt

    monkeypatch.setattr(common, "runtime_of", runtime_of)
    monkeypatch.setattr(command, "runtime_of", runtime_of)

    def as_officer(name: str) -> None:
        token, _actor = staff.login(name)
        monkeypatch.setenv("POLYSEC_TOKEN", token)

    return as_officer


def test_cli_flow_json_and_exit_codes(staff, cli, capsys):
    cli("ann")
    status = run_cli(capsys, "twofa", "status", "A1", "--json")
    assert status.code == 0, status.err
    doc = json.loads(status.out)
    assert doc["enrolled"] is True and doc["account"] == "A1"
    assert CLIENT_SECRET not in status.out and "secret" not in status.out

    no_proof = run_cli(capsys, "twofa", "reset", "A1", "--reason", "lost phone",
                       "--evidence", "called")
    assert no_proof.code == 3 and no_proof.err.count("\n") == 1
    assert "no identity proof recorded" in no_proof.err

    opened = run_cli(capsys, "twofa", "reset", "A1", "--reason", "lost phone", "--evidence",
                     "video call C-1", "--id-document", "IDV-1", "--history-questions",
                     "--json")
    assert opened.code == 0, opened.err
    doc = json.loads(opened.out)
    request_id = doc["request"]["id"]
    assert doc["request"]["proofs"] == {"id_document": "IDV-1", "history_questions": "passed"}
    assert [w["id"] for w in doc["risk"]["pending_withdrawals"]] == ["W1"]

    text_reset = run_cli(capsys, "twofa", "reset", "A2", "--reason", "lost phone",
                         "--evidence", "video call C-2", "--liveness", "L-2", "--kyc-reference",
                         "K-2")
    assert text_reset.code == 0 and "risk context: 0 login anomalies" in text_reset.out

    analyst = run_cli(capsys, "twofa", "approve", request_id, "--code",
                      staff.code("ann", 1))
    assert analyst.code == 3 and "may not approve" in analyst.err
    assert analyst.err.count("\n") == 1 and "Traceback" not in analyst.err

    listed = run_cli(capsys, "twofa", "list", "--json")
    assert listed.code == 0
    assert {r["status"] for r in json.loads(listed.out)} == {"pending"}

    cli("sue")
    code = staff.next_code("sue")
    approved = run_cli(capsys, "twofa", "approve", request_id, "--code", code, "--json")
    assert approved.code == 0, approved.err
    result = json.loads(approved.out)
    assert result["account"] == "A1" and result["sessions_revoked"] == 2
    assert CLIENT_SECRET not in approved.out

    again = run_cli(capsys, "twofa", "approve", request_id, "--code", staff.next_code("sue"))
    assert again.code == 4 and "already executed by sue" in again.err
    assert again.err.count("\n") == 1

    cli("sam")
    other = json.loads(run_cli(capsys, "twofa", "list", "--pending", "--json").out)
    assert len(other) == 1
    replay = run_cli(capsys, "twofa", "deny", other[0]["id"], "--reason", "x", "--code",
                     staff.code("sam"))  # the step `login` just used
    assert replay.code == 3 and "authentication failed" in replay.err
    bad_id = run_cli(capsys, "twofa", "approve", "not-a-uuid", "--code", "123456")
    assert bad_id.code == 2
    denied = run_cli(capsys, "twofa", "deny", other[0]["id"], "--reason", "no callback",
                     "--code", staff.next_code("sam"))
    assert denied.code == 0, denied.err

    after = json.loads(run_cli(capsys, "twofa", "status", "A1", "--json").out)
    assert after["enrolled"] is False and after["reenrolment_required"] is True
    assert after["hold_until"] is not None
    shown = json.loads(run_cli(capsys, "twofa", "show", request_id, "--json").out)
    assert shown["status"] == "executed" and shown["risk"]["pending_withdrawals"] == 1
    assert [h["kind"] for h in shown["risk_now"]["active_holds"]] == ["security_change"]
    shown_text = run_cli(capsys, "twofa", "show", request_id)
    assert shown_text.code == 0 and "1 active holds" in shown_text.out
    # Aligned text, never a Python dict: nested tables indented under their label.
    assert "{" not in shown_text.out and "'" not in shown_text.out
    assert "\nproofs:\n  " in shown_text.out
    assert re.search(r"\nstatus +executed\n", shown_text.out)


def test_cli_expired_and_self_approval_exit_3(staff, cli, capsys):
    cli("sue")
    opened = run_cli(capsys, "twofa", "reset", "A1", "--reason", "lost phone", "--evidence",
                     "video call", "--id-document", "IDV-1", "--kyc-reference", "K-1",
                     "--json")
    request_id = json.loads(opened.out)["request"]["id"]
    own = run_cli(capsys, "twofa", "approve", request_id, "--code", staff.next_code("sue"))
    assert own.code == 3 and "cannot decide their own request" in own.err
    staff.clock.advance(hours=25)
    cli("sam")
    expired = run_cli(capsys, "twofa", "approve", request_id, "--code", staff.next_code("sam"))
    assert expired.code == 3 and "expired" in expired.err
    assert expired.err.count("\n") == 1


def test_status_of_unknown_account_is_exit_2(staff, cli, capsys):
    cli("ann")
    result = run_cli(capsys, "twofa", "status", "nobody@example.com")
    assert result.code == 2 and "no account" in result.err


def test_session_table_shape_is_usable_by_the_platform(staff):
    """The platform writes sessions and reads revocations with plain SQL."""
    rt = staff.rt
    with rt.sessions() as s:
        active = s.scalar(select(func.count()).select_from(ClientSession)
                          .where(ClientSession.revoked_at.is_(None)))
    assert active == 2


def test_the_hold_blocks_a_withdrawal_approval_during_its_window_and_not_after(staff):
    """Through the review service: the reset's hold refuses the approval for 48 h."""
    from polysec_tui.services.withdrawals import review as withdrawals

    rt, sam = staff.rt, staff.actors["sam"]
    with rt.engine.begin() as conn:  # screening held it for review
        conn.execute(text("UPDATE withdrawals SET status = 'held' WHERE external_id = 'W1'"))
    twofa.approve(rt, staff.actors["sue"], _open(staff), staff.next_code("sue"))
    withdrawals.claim(rt, sam, "W1")
    staff.clock.advance(hours=47, minutes=59)
    with pytest.raises(RefusedError, match="active security_change hold"):
        withdrawals.approve(rt, sam, "W1", "client confirmed by phone")
    assert _raw(rt, "SELECT status FROM withdrawals WHERE external_id = 'W1'") == \
        [("in_review",)]
    staff.clock.advance(minutes=2)
    assert withdrawals.approve(rt, sam, "W1", "client confirmed by phone").status == \
        "approved"


def test_sessions_come_in_through_ingest_and_a_reset_revokes_them(staff):
    rt = staff.rt
    report = ingest(rt, "sessions",
                    {"id": "web-9", "account": "A2", "at": "2026-11-19T08:00:00Z",
                     "ip": "198.51.100.4", "device_id": "dev-2"},
                    {"id": "web-8", "account": "A2", "at": "2026-11-18T08:00:00Z",
                     "revoked_at": "2026-11-18T09:00:00Z"},
                    {"id": "web-9", "account": "A2", "at": "2026-11-19T08:00:00Z"})
    assert (report.inserted, report.duplicates) == (2, 1)
    bad = ingest(rt, "sessions", {"id": "x", "account": "A2", "at": "2026-11-19T08:00:00"},
                 skip_bad=True)
    assert bad.bad_count == 1 and "time zone" in bad.bad[0].reason
    done = twofa.approve(rt, staff.actors["sue"], _open(staff, ident="A2"),
                         staff.next_code("sue"))
    assert done.result["sessions_revoked"] == 1
    assert dict(_raw(rt, "SELECT external_id, revoked_reason FROM client_sessions "
                         "WHERE external_id LIKE 'web-%'")) == {"web-9": "2fa_reset",
                                                                "web-8": "ended"}


def test_cli_text_output_shows_terminal_escapes_inert(staff, cli, capsys):
    """Ingest refuses such an id today; one already stored (or written by another
    program) is still shown with its escapes visible, never acted on."""
    from sqlalchemy import update


    hostile = "acc-\x1b[2J\x1b]0;pwned\x07x"
    ingest(staff.rt, "accounts", account("acc-plain", email="h@example.com",
                                         totp_secret=pyotp.random_base32(32),
                                         totp_enrolled_at="2025-03-01T10:00:00Z"))
    with staff.rt.transaction() as session:
        session.execute(update(Account).where(Account.external_id == "acc-plain")
                        .values(external_id=hostile))
    cli("ann")
    opened = run_cli(capsys, "twofa", "reset", "h@example.com", "--reason", "lost\x1b[31m",
                     "--evidence", "call", "--id-document", "ID-1", "--liveness", "L-1")
    assert opened.code == 0, opened.err
    outputs = [opened.out]
    for args in (["status", "h@example.com"], ["list"]):
        result = run_cli(capsys, "twofa", *args)
        assert result.code == 0, result.err
        outputs.append(result.out)
    request_id = outputs[-1].split()[0]
    outputs.append(run_cli(capsys, "twofa", "show", request_id).out)
    for out in outputs:
        assert "\x1b" not in out and "\x07" not in out
    # Shown, not removed: an id that differs by a hidden character is seen to differ.
    assert "account            acc-\\x1b[2J\\x1b]0;pwned\\x07x" in outputs[1]
    assert "lost\\x1b[31m" in outputs[-1]


# ----------------------------------------------------------------------------- races

RACERS = {"sue": "senior-one-Passphrase-42", "sam": "senior-two-Passphrase-43"}


def _race_worker(settings: Any, name: str, secret: str, request_id: uuid.UUID,
                 barrier: Any, results: Any) -> None:
    from datetime import UTC, datetime

    from polysec_tui.services.officers import sessions
    from polysec_tui.services.runtime import open_runtime

    rt = open_runtime(settings)
    try:
        _token, actor = sessions.login(rt, name, RACERS[name], pyotp.TOTP(secret).now())
        code = pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30))
        barrier.wait(timeout=60)
        twofa.approve(rt, actor, request_id, code)
        results.put((name, "executed"))
    except ConflictError as exc:
        results.put((name, f"conflict: {exc}"))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put((name, f"error: {type(exc).__name__}: {exc}"))
    finally:
        rt.engine.dispose()


def test_two_seniors_approving_at_once_reset_once(settings):
    import multiprocessing

    from polysec_tui.services.officers import sessions
    from polysec_tui.services.runtime import open_runtime

    rt = open_runtime(settings)  # a real clock: the workers use real codes
    try:
        root_enrol = officers.bootstrap_admin(rt, "root", "first-Admin-passphrase-1")
        _t, root = sessions.login(rt, "root", "first-Admin-passphrase-1",
                                  pyotp.TOTP(root_enrol.secret).now())
        from datetime import UTC, datetime, timedelta

        made = officers.seed_officers(
            rt, [(name, "senior", password) for name, password in RACERS.items()],
            datetime.now(UTC) - timedelta(days=30))
        secrets_ = {name: enrolment.secret for name, enrolment in made.items()}
        make_client(rt)
        request_id = twofa.request_reset(rt, root, "A1", "race", "video call",
                                         PROOF).request.id
    finally:
        rt.engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_race_worker,
                           args=(settings, n, secrets_[n], request_id, barrier, results))
               for n in RACERS]
    for w in workers:
        w.start()
    outcomes = dict(results.get(timeout=180) for _ in workers)
    for w in workers:
        w.join(timeout=30)
    assert sorted(o.split(":")[0] for o in outcomes.values()) == ["conflict", "executed"], \
        outcomes
    winner = next(n for n, o in outcomes.items() if o == "executed")
    assert any(f"already executed by {winner}" in o for o in outcomes.values())
    rt = open_runtime(settings)
    try:
        assert _raw(rt, "SELECT count(*) FROM holds")[0][0] == 1
        assert _raw(rt, "SELECT count(*) FROM client_notifications")[0][0] == 1
        assert _raw(rt, "SELECT count(*) FROM security_events WHERE kind = '2fa_reset'"
                    )[0][0] == 1
        assert _raw(rt, "SELECT count(*) FROM audit_log WHERE action = 'twofa.reset'"
                    )[0][0] == 1
        assert rt.audit.verify(rt.engine).ok
    finally:
        rt.engine.dispose()
