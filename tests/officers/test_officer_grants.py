"""No officer can grant themselves a second pair of eyes (issue 16): every privilege grant
needs the asker's fresh code and a second, independent senior or admin; an officer
granted at someone's request never decides that someone's requests (nor they theirs);
a newly granted officer decides nothing for 24 hours; the set-up is the one exception.
On every engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import ApprovalRequest, Officer, OfficerGrant
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import four_eyes
from polysec_tui.services.officers import approvals, sessions
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.runtime import Runtime
from tests.support.officers import PASSWORDS, MovableClock, Staff

NEW_PASSWORD = "a-new-Officer-passphrase-9"


def officer_row(rt: Runtime, name: str) -> Officer | None:
    with rt.sessions() as s:
        return s.scalars(select(Officer).where(Officer.name == name)).first()


def the(rt: Runtime, name: str) -> Officer:
    officer = officer_row(rt, name)
    assert officer is not None
    return officer


def approve(staff: Staff, who: str, request_id) -> approvals.Executed:
    return four_eyes.approve(staff.rt, staff.actors[who], request_id, staff.next_code(who))


def adopt(staff: Staff, name: str, enrolment, password: str) -> None:
    """Log the new officer in (after the hand-over) and keep its actor."""
    staff.secrets[name] = enrolment.secret
    assert PASSWORDS.setdefault(name, password) == password
    _token, staff.actors[name] = sessions.login(staff.rt, name, password, staff.next_code(name))


# --------------------------------------------------------------- the reported attack


def test_one_admin_alone_cannot_make_a_shadow_to_approve_its_own_requests(staff):
    """The report: root adds `shadow` as admin, logs in as shadow and approves its own
    request to reset sam's authenticator. Now: adding shadow only opens a request;
    root cannot approve it; and even once a second admin has let shadow in, shadow
    can never approve root's requests, not even after days."""
    rt, root = staff.rt, staff.actors["root"]
    with pytest.raises(RefusedError, match="fresh authenticator code"):
        officers.add_officer(rt, root, "shadow", "admin", NEW_PASSWORD, "", "helper")
    done = officers.add_officer(rt, root, "shadow", "admin", NEW_PASSWORD,
                                staff.next_code("root"), "a helper for the night shift")
    assert done.request_id is not None and done.enrolment is not None
    assert officer_row(rt, "shadow") is None  # nothing to log in as yet
    with pytest.raises(RefusedError, match="cannot decide their own request"):
        approve(staff, "root", done.request_id)

    approve(staff, "admin2", done.request_id)  # a second admin lets shadow in
    adopt(staff, "shadow", done.enrolment, NEW_PASSWORD)
    reset = officers.request_totp_reset(rt, root, "sam", "lost phone", staff.next_code("root"))
    assert reset.request_id is not None
    with pytest.raises(RefusedError, match="root asked for a privilege grant of shadow"):
        approve(staff, "shadow", reset.request_id)
    staff.clock.advance(hours=30)
    _token, staff.actors["shadow"] = staff.login("shadow")
    with pytest.raises(RefusedError, match="can never be each other's second pair of eyes"):
        approve(staff, "shadow", reset.request_id)
    # ... nor root shadow's: the tie holds both ways.
    own = officers.request_totp_reset(rt, staff.actors["shadow"], "sue", "lost phone",
                                      staff.next_code("shadow"))
    _token, staff.actors["root"] = staff.login("root")
    with pytest.raises(RefusedError, match="second pair of eyes"):
        approve(staff, "root", own.request_id)
    # Every refusal came before any change: sam's authenticator is the old one.
    staff.login("sam")


def test_a_chain_of_shadows_needs_a_second_honest_approval_each_time(staff):
    """shadow1, asked for by root, cannot be approved for by root: so root cannot use a
    first shadow to create a second one that would be independent of root."""
    rt, root = staff.rt, staff.actors["root"]
    first = officers.add_officer(rt, root, "shadow1", "admin", NEW_PASSWORD,
                                 staff.next_code("root"), "night shift")
    approve(staff, "admin2", first.request_id)
    staff.clock.advance(hours=25)
    adopt(staff, "shadow1", first.enrolment, NEW_PASSWORD)
    _token, staff.actors["root"] = staff.login("root")
    second = officers.add_officer(rt, staff.actors["shadow1"], "shadow2", "senior",
                                  NEW_PASSWORD, staff.next_code("shadow1"), "night shift")
    with pytest.raises(RefusedError, match="second pair of eyes"):
        approve(staff, "root", second.request_id)


# ---------------------------------------------------------------- every kind of grant


def _grant(staff: Staff, kind: str, code: str):
    """Ask for one grant as root; returns (Granted, check that it took effect)."""
    rt, root = staff.rt, staff.actors["root"]
    if kind == "create senior":
        done = officers.add_officer(rt, root, "carol", "senior", NEW_PASSWORD, code, "hire")
        return done, lambda: officer_row(rt, "carol") is not None
    if kind == "promote":
        done = officers.set_role(rt, root, "ann", "senior", code, "promotion")
        return done, lambda: the(rt, "ann").role == "senior"
    if kind == "enable":
        officers.set_disabled(rt, root, "ann", True)
        done = officers.request_enable(rt, root, "ann", code, "back from leave")
        return done, lambda: not the(rt, "ann").disabled
    if kind == "totp reset":
        done = officers.request_totp_reset(rt, root, "ann", "lost phone", code)
        secret_before = the(rt, "ann").totp_secret_enc
        return done, lambda: the(rt, "ann").totp_secret_enc != secret_before
    assert kind == "password reset"
    done = officers.request_password_reset(rt, root, "ann", "forgotten", code, NEW_PASSWORD)
    before = the(rt, "ann").password_hash
    return done, lambda: the(rt, "ann").password_hash != before


GRANTS = ["create senior", "promote", "enable", "totp reset", "password reset"]


@pytest.mark.parametrize("kind", GRANTS)
def test_a_grant_needs_a_fresh_code(staff, kind):
    with pytest.raises(RefusedError):
        _grant(staff, kind, "000000")
    with staff.rt.sessions() as s:
        assert s.scalars(select(ApprovalRequest)).first() is None
    assert officer_row(staff.rt, "carol") is None
    assert the(staff.rt, "ann").role == "analyst"


@pytest.mark.parametrize("kind", GRANTS)
def test_a_grant_takes_effect_only_when_an_independent_officer_approves(staff, kind):
    done, took_effect = _grant(staff, kind, staff.next_code("root"))
    assert done.request_id is not None and not took_effect()
    with pytest.raises(RefusedError, match="cannot decide their own request"):
        approve(staff, "root", done.request_id)
    with pytest.raises(RefusedError, match="may not approve"):
        approve(staff, "ann", done.request_id)
    approve(staff, "sue", done.request_id)
    assert took_effect()
    with staff.rt.sessions() as s:
        grant = s.scalars(select(OfficerGrant).where(OfficerGrant.request_id == done.request_id)
                          ).one()
    assert (grant.requested_by, grant.approved_by) == (staff.actors["root"].officer_id,
                                                       staff.actors["sue"].officer_id)
    listed = {v.name: v for v in officers.list_officers(staff.rt, staff.actors["sam"])}
    assert listed["carol" if kind == "create senior" else "ann"].granted_by == ("root",)


def test_no_one_approves_a_grant_to_themselves(staff):
    rt = staff.rt
    reset = officers.request_password_reset(rt, staff.actors["root"], "sue", "forgotten",
                                            staff.next_code("root"), NEW_PASSWORD)
    with pytest.raises(RefusedError, match="grant to themselves"):
        approve(staff, "sue", reset.request_id)
    done = officers.set_role(rt, staff.actors["root"], "sue", "admin", staff.next_code("root"),
                             "head of shift")
    with pytest.raises(RefusedError, match="needs an approver with role admin"):
        approve(staff, "sam", done.request_id)
    approve(staff, "admin2", done.request_id)
    assert the(rt, "sue").role == "admin"


def test_a_newly_granted_officer_decides_nothing_for_24_hours(staff):
    rt = staff.rt
    done = officers.set_role(rt, staff.actors["admin2"], "ann", "senior",
                             staff.next_code("admin2"), "promotion")
    approve(staff, "root", done.request_id)
    _token, staff.actors["ann"] = staff.login("ann")  # a fresh session, now as senior
    unrelated = officers.request_totp_reset(rt, staff.actors["root"], "sam", "lost phone",
                                            staff.next_code("root"))
    with pytest.raises(RefusedError, match="keeps this officer from deciding requests until"):
        approve(staff, "ann", unrelated.request_id)
    staff.clock.advance(hours=23)
    _token, staff.actors["ann"] = staff.login("ann")
    later = officers.request_totp_reset(rt, staff.actors["root"], "sue", "lost phone",
                                        staff.next_code("root"))
    assert later.request_id is not None
    with pytest.raises(RefusedError, match="keeps this officer"):
        approve(staff, "ann", later.request_id)
    staff.clock.advance(hours=1, seconds=30)
    _token, staff.actors["ann"] = staff.login("ann")
    approve(staff, "ann", later.request_id)  # root asked, not admin2: independent


def test_denying_is_open_to_a_tied_or_new_officer(staff):
    """Only approving needs independent eyes: a denial stops a grant, so the officer a
    suspect admin asked for (or any new officer) may still deny the suspect's requests."""
    rt = staff.rt
    done = officers.add_officer(rt, staff.actors["root"], "shadow", "admin", NEW_PASSWORD,
                                staff.next_code("root"), "night shift")
    approve(staff, "admin2", done.request_id)
    adopt(staff, "shadow", done.enrolment, NEW_PASSWORD)
    suspect = officers.request_totp_reset(rt, staff.actors["root"], "sam", "lost phone",
                                          staff.next_code("root"))
    assert suspect.request_id is not None
    four_eyes.deny(rt, staff.actors["shadow"], suspect.request_id, "call sam first",
                   staff.next_code("shadow"))
    assert four_eyes.get_request(rt, staff.actors["root"], suspect.request_id).status == "denied"
    with rt.sessions() as s:  # the secret it carried is gone with it
        assert s.get(ApprovalRequest, suspect.request_id).sealed_enc is None


def test_a_request_dies_with_a_disabled_requester(staff):
    """The asker holds the new credentials: disabling the asker must stop the grant."""
    rt = staff.rt
    made = officers.add_officer(rt, staff.actors["admin2"], "shadow", "admin", NEW_PASSWORD,
                                staff.next_code("admin2"), "night shift")
    officers.set_disabled(rt, staff.actors["root"], "admin2", True)
    with pytest.raises(RefusedError, match="admin2, who asked, is disabled"):
        approve(staff, "root", made.request_id)
    assert officer_row(rt, "shadow") is None
    assert made.request_id is not None
    four_eyes.deny(rt, staff.actors["root"], made.request_id, "asker disabled",
                   staff.next_code("root"))


def test_a_request_dies_with_a_demoted_requesters_rights(staff):
    rt = staff.rt
    by_root = officers.request_totp_reset(rt, staff.actors["root"], "sue", "lost phone",
                                          staff.next_code("root"))
    officers.set_role(rt, staff.actors["admin2"], "root", "senior", staff.next_code("admin2"),
                      "stepped down")
    with pytest.raises(RefusedError, match="root, who asked, is senior now and may no longer"):
        approve(staff, "sam", by_root.request_id)


def test_the_approver_role_follows_the_officer_as_it_is_now(staff):
    rt = staff.rt
    reset = officers.request_password_reset(rt, staff.actors["root"], "sue", "forgotten",
                                            staff.next_code("root"), NEW_PASSWORD)
    raised = officers.set_role(rt, staff.actors["admin2"], "sue", "admin",
                               staff.next_code("admin2"), "head of shift")
    approve(staff, "root", raised.request_id)  # sue is an admin now
    with pytest.raises(RefusedError, match="needs an approver with role admin"):
        approve(staff, "sam", reset.request_id)


def test_lowering_a_role_is_at_once_and_ends_the_sessions(staff):
    rt = staff.rt
    token, _ = staff.login("sue")
    done = officers.set_role(rt, staff.actors["root"], "sue", "analyst",
                             staff.next_code("root"), "moved team")
    assert done.request_id is None and the(rt, "sue").role == "analyst"
    with pytest.raises(RefusedError, match="session ended"):
        sessions.authenticate(rt, token)
    with pytest.raises(RefusedError, match="own role"):
        officers.set_role(rt, staff.actors["root"], "root", "senior", staff.next_code("root"),
                          "x")


def test_enabling_again_is_a_grant_but_clearing_a_lockout_is_not(staff):
    rt, root = staff.rt, staff.actors["root"]
    officers.set_disabled(rt, root, "ann", True)
    with pytest.raises(RefusedError, match="privilege grant"):
        officers.set_disabled(rt, root, "ann", False)
    for _ in range(5):
        with pytest.raises(RefusedError):
            sessions.login(rt, "sam", "a-wrong-password-here", staff.next_code("sam"))
    done = officers.request_enable(rt, root, "sam", staff.next_code("root"), "typo storm")
    assert done.request_id is None and the(rt, "sam").locked_until is None
    with pytest.raises(InputError, match="neither disabled nor locked"):
        officers.request_enable(rt, root, "sue", staff.next_code("root"), "x")


def test_two_requests_for_one_name_create_it_once(staff):
    rt, root = staff.rt, staff.actors["root"]
    first = officers.add_officer(rt, root, "carol", "senior", NEW_PASSWORD,
                                 staff.next_code("root"), "hire")
    second = officers.add_officer(rt, root, "carol", "admin", NEW_PASSWORD,
                                  staff.next_code("root"), "hire")
    approve(staff, "admin2", first.request_id)
    with pytest.raises(ConflictError, match="exists already"):
        approve(staff, "admin2", second.request_id)
    assert the(rt, "carol").role == "senior"


# -------------------------------------------------------------------------- bootstrap


@pytest.fixture
def alone(settings, clock) -> Iterator[Staff]:
    """A console right after `polysec init`: one admin, nobody else."""
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    enrolment = officers.bootstrap_admin(rt, "root", PASSWORDS["root"])
    made = Staff(rt, clock, {"root": enrolment.secret}, {})
    _token, made.actors["root"] = made.login("root")
    yield made
    rt.engine.dispose()


def test_the_first_admin_adds_the_second_admin_once(alone):
    rt, root = alone.rt, alone.actors["root"]
    with pytest.raises(RefusedError):  # even at set-up, a fresh code
        officers.add_officer(rt, root, "admin2", "admin", NEW_PASSWORD, "123456", "set-up")
    done = officers.add_officer(rt, root, "admin2", "admin", PASSWORDS["admin2"],
                                alone.next_code("root"), "set-up: the second admin")
    assert done.request_id is None and the(rt, "admin2").role == "admin"
    adopt(alone, "admin2", done.enrolment, PASSWORDS["admin2"])
    # Once: the next approving officer is a request, also when the second admin is gone.
    officers.set_disabled(rt, root, "admin2", True)
    again = officers.add_officer(rt, root, "admin3", "admin", NEW_PASSWORD,
                                 alone.next_code("root"), "another")
    assert again.request_id is not None and officer_row(rt, "admin3") is None


def test_the_set_up_pair_approves_for_each_other_after_the_quarantine(alone):
    rt, root = alone.rt, alone.actors["root"]
    done = officers.add_officer(rt, root, "admin2", "admin", PASSWORDS["admin2"],
                                alone.next_code("root"), "set-up")
    adopt(alone, "admin2", done.enrolment, PASSWORDS["admin2"])
    # The first admin approves the second one's requests at once ...
    senior = officers.add_officer(rt, alone.actors["admin2"], "sue", "senior", NEW_PASSWORD,
                                  alone.next_code("admin2"), "first senior")
    approve(alone, "root", senior.request_id)
    # ... the second one the first one's after 24 hours.
    reset = officers.request_totp_reset(rt, root, "sue", "lost phone", alone.next_code("root"))
    with pytest.raises(RefusedError, match="keeps this officer"):
        approve(alone, "admin2", reset.request_id)
    alone.clock.advance(hours=23, minutes=59)
    _token, alone.actors["root"] = alone.login("root")
    again = officers.request_totp_reset(rt, alone.actors["root"], "sue", "lost phone",
                                        alone.next_code("root"))
    alone.clock.advance(minutes=2)
    _token, alone.actors["admin2"] = alone.login("admin2")
    approve(alone, "admin2", again.request_id)


def test_an_analyst_or_automation_officer_is_added_at_once_with_a_code(alone):
    rt, root = alone.rt, alone.actors["root"]
    for name, role in (("ann", "analyst"), ("cron", "automation")):
        done = officers.add_officer(rt, root, name, role,
                                    None if role == "automation" else NEW_PASSWORD,
                                    alone.next_code("root"), "hire")
        assert done.request_id is None and the(rt, name).role == role
    # An analyst then raised to senior is a grant like any other.
    raised = officers.set_role(rt, root, "ann", "senior", alone.next_code("root"), "promotion")
    assert raised.request_id is not None


# ------------------------------------------------------------------------ the commands


def test_the_commands_ask_a_code_and_open_requests(staff, cli_env, monkeypatch, capsys):
    """`polysec officer add shadow --role admin` as an admin with only its session: no
    code, nothing; with a code, a request that the same admin cannot approve."""
    from tests.support.cli import run_cli
    from tests.support.officers import commands_use_clock

    token, _ = staff.login("root")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    commands_use_clock(monkeypatch, staff.clock)
    monkeypatch.setattr("sys.stdin", _Lines(NEW_PASSWORD))
    no_code = run_cli(capsys, "officer", "add", "shadow", "--role", "admin", "--reason", "x")
    assert no_code.code == 2 and "code required" in no_code.err
    monkeypatch.setattr("sys.stdin", _Lines(NEW_PASSWORD))
    wrong = run_cli(capsys, "officer", "add", "shadow", "--role", "admin", "--reason", "x",
                    "--code", "000000")
    assert wrong.code == 3 and wrong.err.strip() == "polysec: error: authentication failed"
    monkeypatch.setattr("sys.stdin", _Lines(NEW_PASSWORD))
    asked = run_cli(capsys, "officer", "add", "shadow", "--role", "admin", "--reason",
                    "night shift", "--code", staff.next_code("root"))
    assert asked.code == 0, asked.err
    assert "request " in asked.out and "otpauth://" in asked.out
    request_id = asked.out.split()[1]
    listed = run_cli(capsys, "officer", "list", "--json")
    assert "shadow" not in listed.out
    own = run_cli(capsys, "approvals", "approve", request_id, "--code", staff.next_code("root"))
    assert own.code == 3 and "cannot decide their own request" in own.err
    pending = run_cli(capsys, "approvals", "list", "--json")
    assert request_id in pending.out and "add officer shadow with role admin" in pending.out


class _Lines:
    """A stdin without a terminal that answers the password prompt."""

    def __init__(self, *lines: str) -> None:
        self._lines = [line + "\n" for line in lines]

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""


# ---------------------------------------------------------------- two consoles at once


def _in_parallel(settings: Any, clock: MovableClock,
                 calls: list[Callable[[Runtime], str]]) -> list[str]:
    """Run each call(rt) on its own runtime and connection, released together."""
    import threading

    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call: Callable[[Runtime], str]) -> None:
        rt = Runtime(settings, make_engine(settings.db_url),
                     load_keyring(settings.keyring_path), clock=clock)
        try:
            barrier.wait(timeout=30)
            outcomes.append(call(rt))
        except (ConflictError, RefusedError) as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # reported, and fails the test
            outcomes.append(f"error: {type(exc).__name__}: {exc}")
        finally:
            rt.engine.dispose()

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return sorted(outcomes)


def test_the_set_up_exception_is_taken_once_by_two_consoles(alone, settings, monkeypatch):
    monkeypatch.setattr(officers, "step_up", lambda rt, actor, code: None)  # not the point
    root = alone.actors["root"]

    def add(name: str) -> Callable[[Runtime], str]:
        def call(rt: Runtime) -> str:
            done = officers.add_officer(rt, root, name, "admin", NEW_PASSWORD, "-", "set-up")
            return "direct" if done.request_id is None else "request"
        return call

    assert _in_parallel(settings, alone.clock, [add("adm2"), add("adm3")]) == [
        "direct", "request"]
    with alone.rt.sessions() as s:
        kinds = s.scalars(select(OfficerGrant.kind).where(OfficerGrant.kind == "setup")).all()
    assert kinds == ["setup"]


def test_two_consoles_adding_one_name_give_a_conflict(alone, settings, monkeypatch):
    monkeypatch.setattr(officers, "step_up", lambda rt, actor, code: None)
    root = alone.actors["root"]

    def add(rt):
        officers.add_officer(rt, root, "ann", "analyst", NEW_PASSWORD, "-", "hire")
        return "added"

    first, second = _in_parallel(settings, alone.clock, [add, add])
    assert (first, second) == ("ConflictError: an officer named 'ann' exists already",
                               "added")
