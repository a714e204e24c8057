"""Officer identity: TOTP, login, lockout, sessions, roles, four-eyes, masking."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import func, select

from polysec_tui.crypto import totp
from polysec_tui.crypto.passwords import check_policy, hash_password, verify_password
from polysec_tui.db.models import ApprovalRequest, AuditLogEntry, Officer
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import four_eyes
from polysec_tui.services.clients import accounts
from polysec_tui.services.clients.masking import mask_email, mask_phone
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import require
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest
from tests.support.officers import PASSWORDS, Staff

# RFC 6238 appendix B, SHA-1, secret "12345678901234567890", 8 digits.
RFC6238 = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
           (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]


def audit_actions(rt: Runtime) -> list[tuple[str, str, str]]:
    with rt.sessions() as s:
        rows = s.execute(select(AuditLogEntry.officer, AuditLogEntry.action,
                                AuditLogEntry.details).order_by(AuditLogEntry.seq))
        return [(o, a, d) for o, a, d in rows]


# ------------------------------------------------------------------------------ TOTP


@pytest.mark.parametrize(("unix", "expected"), RFC6238)
def test_rfc6238_reference_vectors(unix, expected):
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    when = datetime.fromtimestamp(unix, UTC)
    step = unix // 30
    assert totp.matching_step(secret, expected, when, digits=8) == step
    # The 6-digit code is the same truncation, modulo 10**6.
    assert totp.matching_step(secret, expected[-6:], when) == step
    assert totp.matching_step(secret, expected, when + timedelta(seconds=90), digits=8) is None


def test_window_is_one_step_each_way():
    secret = totp.new_secret()
    now = FIXED_NOW
    at = pyotp.TOTP(secret).at
    step = int(now.timestamp()) // 30
    assert totp.matching_step(secret, at(now - timedelta(seconds=30)), now) == step - 1
    assert totp.matching_step(secret, at(now + timedelta(seconds=30)), now) == step + 1
    assert totp.matching_step(secret, at(now - timedelta(seconds=60)), now) is None
    assert totp.matching_step(secret, "12345", now) is None
    assert len(secret) * 5 >= 160  # base32: 5 bits a character


def test_password_hashing_and_policy(monkeypatch):
    from polysec_tui.crypto import passwords

    monkeypatch.setattr(passwords, "SCRYPT_LOG2_N", 15)  # the real cost, not the tests'
    stored = hash_password("a sufficiently long one")
    assert stored.startswith("scrypt$15$8$1$")
    assert verify_password("a sufficiently long one", stored)
    assert not verify_password("a sufficiently long onE", stored)
    assert not verify_password("anything", None)
    for weak, reason in [("short", "too short"), ("passwordpassword", "common passwords"),
                         ("Password123!", "common passwords"),
                         ("my-name-is-alice", "officer name"), ("aaaaaaaaaaaaaa", "too few")]:
        with pytest.raises(InputError, match=reason):
            check_policy(weak, name="alice")


# ----------------------------------------------------------------------------- login


def test_login_replay_and_stale_codes(staff):
    rt, clock = staff.rt, staff.clock
    code = staff.next_code("ann")
    token, actor = sessions.login(rt, "ann", PASSWORDS["ann"], code)
    assert actor.role == "analyst" and sessions.authenticate(rt, token).name == "ann"
    with pytest.raises(RefusedError) as replayed:
        sessions.login(rt, "ann", PASSWORDS["ann"], code)
    assert str(replayed.value) == sessions.CODE_REUSED  # says so: wait for the next code
    with pytest.raises(RefusedError) as wrong_password:  # nothing said of the password
        sessions.login(rt, "ann", "wrong-password-xyz", code)
    assert str(wrong_password.value) == sessions.CODE_REUSED
    clock.advance(seconds=30)
    two_steps_ago = staff.code("ann", offset_steps=-2)
    with pytest.raises(RefusedError, match=r"^authentication failed$"):
        sessions.login(rt, "ann", PASSWORDS["ann"], two_steps_ago)
    results = [d for o, a, d in audit_actions(rt) if a == "auth.login" and o == "ann"]
    assert results[-3:] == ['{"result":"replayed"}', '{"result":"failed"}',
                            '{"result":"failed"}']


def test_errors_never_say_which_factor(staff):
    rt = staff.rt
    messages = set()
    for name, password, code in [("ann", "wrong-password-xyz", staff.next_code("ann")),
                                 ("ann", PASSWORDS["ann"], "000000"),
                                 ("nobody", "whatever-password", "123456")]:
        with pytest.raises(RefusedError) as err:
            sessions.login(rt, name, password, code)
        messages.add(str(err.value))
    assert messages == {"authentication failed"}
    audited = [(o, d) for o, a, d in audit_actions(rt) if a == "auth.login"]
    assert ("nobody", '{"result":"failed"}') in audited


def test_lockout_after_five_failures_and_its_expiry(staff):
    rt, clock = staff.rt, staff.clock
    for _ in range(5):
        with pytest.raises(RefusedError):
            sessions.login(rt, "ann", "wrong-password-xyz", staff.next_code("ann"))
    # Locked: even the right factors are refused, with the same message.
    with pytest.raises(RefusedError, match=r"^authentication failed$"):
        sessions.login(rt, "ann", PASSWORDS["ann"], staff.next_code("ann"))
    clock.advance(minutes=15)
    _token, actor = sessions.login(rt, "ann", PASSWORDS["ann"], staff.next_code("ann"))
    assert actor.name == "ann"
    assert any(d == '{"result":"locked"}' for o, a, d in audit_actions(rt) if o == "ann")


def test_idle_lock_unlock_and_absolute_expiry(staff):
    rt, clock = staff.rt, staff.clock
    token, actor = staff.login("sue")
    clock.advance(minutes=16)
    with pytest.raises(RefusedError, match="locked after 15 minutes idle"):
        sessions.authenticate(rt, token)
    assert sessions.session_state(rt, actor) is not None
    with pytest.raises(RefusedError):
        sessions.unlock(rt, actor, "wrong-password-xyz", staff.next_code("sue"))
    sessions.unlock(rt, actor, PASSWORDS["sue"], staff.next_code("sue"))
    assert sessions.authenticate(rt, token).name == "sue"
    for _ in range(12 * 4):  # keep it busy: idle never triggers, expiry does
        clock.advance(minutes=15)
        try:
            sessions.authenticate(rt, token)
        except RefusedError as exc:
            assert "expired" in str(exc)
            break
    else:
        pytest.fail("session never expired")


def test_disabling_ends_sessions_at_once(staff):
    rt = staff.rt
    token, _ = staff.login("ann")
    ended = officers.set_disabled(rt, staff.actors["root"], "ann", True)
    assert ended >= 2  # the fixture's session and this one
    with pytest.raises(RefusedError):
        sessions.authenticate(rt, token)
    with pytest.raises(RefusedError, match=r"^authentication failed$"):
        sessions.login(rt, "ann", PASSWORDS["ann"], staff.next_code("ann"))


def test_automation_token(staff):
    rt = staff.rt
    cron = staff.actors["cron"]
    require(cron, "backup.run")
    require(cron, "audit.run")
    for permission in ("read", "review", "approve", "pii.reveal", "officers.manage"):
        with pytest.raises(RefusedError, match="cron \\(automation\\) may not"):
            require(cron, permission)
    token, token_id = sessions.create_token(rt, staff.actors["root"], "cron")
    with rt.sessions() as s:
        stored = s.scalars(select(func.count()).select_from(Officer)).one()
    assert stored
    sessions.revoke_token(rt, staff.actors["root"], token_id)
    with pytest.raises(RefusedError, match="session ended"):
        sessions.authenticate(rt, token)
    with pytest.raises(InputError, match="tokens are for automation officers"):
        sessions.create_token(rt, staff.actors["root"], "ann")


# ----------------------------------------------------------------- authorisation in services


def test_analyst_is_refused_by_the_services(staff):
    rt, ann = staff.rt, staff.actors["ann"]
    ingest(rt, "accounts", account("A1"))
    with pytest.raises(RefusedError):
        officers.add_officer(rt, ann, "eve", "admin", "some-long-passphrase-1",
                             staff.next_code("ann"), "wants power")
    with pytest.raises(RefusedError):
        officers.set_disabled(rt, ann, "sue", True)
    with pytest.raises(RefusedError):
        accounts.reveal(rt, ann, "A1", "email", "customer called")
    request_id = _totp_reset(staff, "sue")
    with pytest.raises(RefusedError):
        four_eyes.approve(rt, ann, request_id, staff.next_code("ann"))
    assert accounts.summary(rt, ann, "A1").masked["email"] == "a***@e***.com"


# ---------------------------------------------------------------------------- four-eyes


def _totp_reset(staff: Staff, name: str, asker: str = "root") -> uuid.UUID:
    done = officers.request_totp_reset(staff.rt, staff.actors[asker], name, "phone lost",
                                       staff.next_code(asker))
    assert done.request_id is not None
    return done.request_id


def test_four_eyes_totp_reset(staff):
    rt, root, sam = staff.rt, staff.actors["root"], staff.actors["sam"]
    old_secret = staff.secrets["sue"]
    done = officers.request_totp_reset(rt, root, "sue", "phone lost", staff.next_code("root"))
    request_id, enrolment = done.request_id, done.enrolment
    assert request_id is not None
    # The asker holds the new authenticator for the hand-over; it is not in force yet.
    assert enrolment is not None and enrolment.officer == "sue"
    assert enrolment.secret != old_secret
    staff.login("sue")  # the old one still works
    with pytest.raises(RefusedError, match="cannot decide their own request"):
        four_eyes.approve(rt, root, request_id, staff.next_code("root"))
    with pytest.raises(RefusedError, match="cannot approve a grant to themselves"):
        four_eyes.approve(rt, staff.actors["sue"], request_id, staff.next_code("sue"))
    with pytest.raises(RefusedError):  # a wrong code: refused, nothing executed
        four_eyes.approve(rt, sam, request_id, "000000")
    four_eyes.approve(rt, sam, request_id, staff.next_code("sam"))
    with pytest.raises(ConflictError, match="already executed by sam"):
        four_eyes.approve(rt, sam, request_id, staff.next_code("sam"))
    staff.secrets["sue"] = enrolment.secret
    staff.login("sue")  # the new one is in force
    actions = [a for _o, a, _d in audit_actions(rt)]
    assert actions.count("approval.execute") == 1
    assert actions.count("officer.totp_reset") == 1
    assert not any(enrolment.secret in d for _o, _a, d in audit_actions(rt))
    # An admin's new credentials need an admin's approval.
    admin_reset = _totp_reset(staff, "admin2")
    with pytest.raises(RefusedError, match="needs an approver with role admin"):
        four_eyes.approve(rt, sam, admin_reset, staff.next_code("sam"))


def test_expired_request_is_refused(staff):
    rt = staff.rt
    request_id = _totp_reset(staff, "sue")
    staff.clock.advance(hours=25)
    with pytest.raises(RefusedError, match="expired"):
        four_eyes.approve(rt, staff.actors["admin2"], request_id, staff.next_code("admin2"))
    assert four_eyes.list_requests(rt, staff.actors["admin2"]) == []


def test_deny(staff):
    rt = staff.rt
    request_id = _totp_reset(staff, "sue")
    four_eyes.deny(rt, staff.actors["admin2"], request_id, "call her first",
                   staff.next_code("admin2"))
    view = four_eyes.get_request(rt, staff.actors["root"], request_id)
    assert (view.status, view.decided_by) == ("denied", "admin2")


RACERS = {"admin2": "racing-first-Passphrase", "admin3": "racing-second-Passphrase"}


def _race_worker(settings, name, secret, request_id, barrier, results):
    from polysec_tui.services.runtime import open_runtime

    rt = open_runtime(settings)
    try:
        _token, actor = sessions.login(rt, name, RACERS[name], pyotp.TOTP(secret).now())
        code = pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30))
        barrier.wait(timeout=30)
        four_eyes.approve(rt, actor, request_id, code)
        results.put((name, "executed"))
    except ConflictError as exc:
        results.put((name, f"conflict: {exc}"))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put((name, f"error: {type(exc).__name__}: {exc}"))
    finally:
        rt.engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_two_processes_approving_at_once_execute_once(settings):
    from polysec_tui.services.runtime import open_runtime

    rt = open_runtime(settings)  # a real clock: the workers use real codes
    try:
        root_enrol = officers.bootstrap_admin(rt, "root", PASSWORDS["root"])
        _t, root = sessions.login(rt, "root", PASSWORDS["root"],
                                  pyotp.TOTP(root_enrol.secret).now())
        made = officers.seed_officers(
            rt, [(name, "admin", password) for name, password in RACERS.items()],
            datetime.now(UTC) - timedelta(days=30))
        secrets_ = {name: enrolment.secret for name, enrolment in made.items()}
        # root asks to reset its own authenticator; admin2 and admin3 race to approve.
        code = pyotp.TOTP(root_enrol.secret).at(datetime.now(UTC) + timedelta(seconds=30))
        request_id = officers.request_totp_reset(rt, root, "root", "race test",
                                                 code).request_id
    finally:
        rt.engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_race_worker,
                           args=(settings, n, secrets_[n], request_id, barrier, results))
               for n in ("admin2", "admin3")]
    for w in workers:
        w.start()
    outcomes = dict(results.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=30)
    assert sorted(o.split(":")[0] for o in outcomes.values()) == ["conflict", "executed"], outcomes
    winner = next(n for n, o in outcomes.items() if o == "executed")
    loser_message = next(o for o in outcomes.values() if o.startswith("conflict"))
    assert f"already executed by {winner}" in loser_message
    rt = open_runtime(settings)
    try:
        with rt.sessions() as s:
            executed = s.scalar(select(func.count()).select_from(AuditLogEntry)
                                .where(AuditLogEntry.action == "approval.execute"))
            status = s.scalar(select(ApprovalRequest.status))
        assert (executed, status) == (1, "executed")
    finally:
        rt.engine.dispose()


# ------------------------------------------------------------------------------ masking


def test_masking_and_audited_reveal(staff):
    rt = staff.rt
    ingest(rt, "accounts", account("A1", email="jane.doe@gmail.com", phone="+49 170 1234512"))
    view = accounts.summary(rt, staff.actors["ann"], "jane.doe@gmail.com")
    assert view.masked["email"] == "j***@g***.com"
    assert view.masked["phone"] == "+49 *** *** 12"
    assert "jane" not in str(view.as_dict())
    with pytest.raises(InputError, match="reason"):
        accounts.reveal(rt, staff.actors["sue"], "A1", "phone", "")
    assert accounts.reveal(rt, staff.actors["sue"], "A1", "phone",
                           "client on the phone, ticket 123") == "+49 170 1234512"
    entry = [(o, a, d) for o, a, d in audit_actions(rt) if a == "pii.reveal"]
    assert entry == [("sue", "pii.reveal",
                      '{"field":"phone","reason":"client on the phone, ticket 123"}')]


def test_mask_shapes():
    assert mask_email("a@b") == "a***@***"
    assert mask_phone("12345") == "***"
    assert mask_phone("030 1234567") == "*** *** 67"


def test_parallel_logins_with_one_code_let_one_in_and_count_the_replays(settings):
    """Six consoles send the same code at once: one session, five refusals, each audited
    as a replay and counted toward the lockout; no deadlock, no internal error."""
    import threading

    from polysec_tui.services.runtime import open_runtime

    rt = open_runtime(settings)
    try:
        enrolment = officers.bootstrap_admin(rt, "root", PASSWORDS["root"])
        code = pyotp.TOTP(enrolment.secret).now()
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def attempt() -> None:
            own = open_runtime(settings)
            try:
                barrier.wait(timeout=30)
                sessions.login(own, "root", PASSWORDS["root"], code)
                outcomes.append("ok")
            except RefusedError as exc:
                outcomes.append(str(exc))
            except Exception as exc:  # reported, and fails the test below
                outcomes.append(f"error: {type(exc).__name__}")
            finally:
                own.engine.dispose()

        threads = [threading.Thread(target=attempt) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # Four are told the code was used; the fifth failure in a row locks the officer
        # out, and a lockout says nothing more than that authentication failed.
        assert sorted(outcomes) == sorted(["authentication failed", "ok",
                                           *[sessions.CODE_REUSED] * 4]), outcomes
        results = [json.loads(d)["result"] for _o, a, d in audit_actions(rt)
                   if a == "auth.login"]
        assert results.count("ok") == 1 and len(results) == 6
        assert set(results) <= {"ok", "replayed", "locked"}
        with rt.sessions() as s:
            locked = s.scalar(select(Officer.locked_until).where(Officer.name == "root"))
        assert locked is not None  # five failures in a row: the lockout
    finally:
        rt.engine.dispose()
