"""The console in a real terminal: `polysec tui` runs inside tmux, driven with send-keys
and read with capture-pane. Log in, open the queue, reject the held withdrawal, and see
the dashboard's figure change."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select, update

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Withdrawal, WithdrawalScreening
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.runtime import Runtime
from tests.support.helpers import account, ingest, withdrawal

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux not installed; .ci/run installs it")

PASSWORD = "a-long-Officer-passphrase"


class Tmux:
    """One console in a tmux server of its own (``-L``): on the shared default server,
    one xdist worker's last session ending stops the server while the other worker's
    ``new-session`` connects to it, which then fails."""

    def __init__(self, name: str, command: str, env: dict[str, str]) -> None:
        self.name = name
        self.tmux = ["tmux", "-L", name]
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        subprocess.run([*self.tmux, "new-session", "-d", "-s", name, "-x", "120", "-y", "36",
                        f"env {exports} {command}"], check=True)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)
        time.sleep(0.3)  # as a person types: one terminal read per key or word

    def text(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, "-l", *keys], check=True)
        time.sleep(0.3)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(self, test: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if test(shown):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"waited {timeout:.0f} s for {what}; the screen:\n{shown}")

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Tmux, str]]:
    keyring = tmp_path / "keyring.json"
    write_new_keyring(keyring, Keyring.generate())
    url = f"sqlite:///{tmp_path / 'polysec.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = Runtime(Settings(url, keyring), engine, load_keyring(keyring))
    secret = officers.bootstrap_admin(rt, "chief", PASSWORD).secret
    ingest(rt, "accounts", account("A1"))
    ingest(rt, "withdrawals", withdrawal("W1"), withdrawal("W2"))
    with rt.transaction() as s:
        s.execute(update(Withdrawal).where(Withdrawal.external_id == "W1")
                  .values(status="held"))
        s.add(WithdrawalScreening(
            withdrawal_id=s.scalar(select(Withdrawal.id).where(Withdrawal.external_id == "W1")),
            screened_at=datetime.now(UTC), risk_score=80.0))
    engine.dispose()
    env = {"POLYSEC_DB_URL": url, "POLYSEC_KEYRING": str(keyring),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "TERM": "xterm-256color",
           "HOME": os.environ.get("HOME", str(tmp_path))}
    tmux = Tmux(f"polysec-{uuid.uuid4().hex[:8]}", f"{sys.executable} -m polysec_tui tui", env)
    try:
        yield tmux, secret
    finally:
        tmux.kill()


def held_figure(screen: str) -> int | None:
    match = re.search(r"(\d+) held", screen)
    return int(match.group(1)) if match else None


def log_in(tmux: Tmux, secret: str) -> str:
    """chief's login, typed; the dashboard as it then shows."""
    tmux.wait_for(lambda s: "officer name" in s, "the login screen")
    tmux.text("chief")
    tmux.keys("Tab")
    tmux.text(PASSWORD)
    tmux.keys("Tab")
    tmux.text(pyotp.TOTP(secret).now())
    tmux.keys("Enter")
    return tmux.wait_for(lambda s: held_figure(s) is not None, "the dashboard")


def test_login_queue_decide_and_the_dashboard_follows(console) -> None:
    tmux, secret = console
    shown = log_in(tmux, secret)
    assert held_figure(shown) == 1
    assert PASSWORD not in shown
    tmux.keys("4")
    tmux.wait_for(lambda s: "W1" in s, "the queue with W1")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "Claim" in s and "W1" in s, "the withdrawal detail")
    tmux.keys("c")
    tmux.wait_for(lambda s: "claimed by chief" in s, "the claim")
    tmux.keys("x")
    tmux.wait_for(lambda s: "note" in s.lower(), "the note prompt")
    tmux.text("destination tied to a phishing kit")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "rejected" in s, "the rejection")
    tmux.keys("1")
    shown = tmux.wait_for(lambda s: held_figure(s) == 0, "the dashboard to show 0 held")
    assert "Dashboard" in shown


NOTE = "IDV-7781 case 42"  # digits and letters: each one a key elsewhere


def title(screen: str) -> str:
    """The screen's name in the top bar (after "polysec")."""
    first = screen.splitlines()[0].split()
    return " ".join(first[1:first.index(next(w for w in first if "://" in w))])


def test_typing_into_every_form_stays_on_the_screen(console) -> None:
    """On every screen with a form, a case note of digits and letters typed into it
    arrives whole, and no key of it switches the screen or acts on it."""
    tmux, secret = console
    log_in(tmux, secret)

    def typed(where: str, expected_title: str, box: str = "") -> None:
        tmux.text(NOTE)
        shown = tmux.wait_for(lambda s: NOTE in s, f"the note typed into {where}")
        assert title(shown) == expected_title, (where, shown)
        assert not box or box in shown, (where, shown)

    def home() -> None:
        tmux.keys("Escape")
        tmux.keys("Escape")
        tmux.keys("Escape")
        tmux.wait_for(lambda s: title(s) == "Dashboard", "the dashboard again")

    tmux.keys("2")
    tmux.wait_for(lambda s: title(s) == "Account", "the account screen")
    typed("the account lookup", "Account")
    home()
    tmux.keys("3")
    tmux.wait_for(lambda s: title(s) == "Audit log", "the audit log")
    tmux.keys("/")
    typed("the audit log filter", "Audit log")
    home()
    tmux.keys("4")
    tmux.wait_for(lambda s: "W1" in s, "the queue")
    tmux.keys("/")
    typed("the queue filter", "Withdrawals")
    tmux.keys("Escape")  # closes the filter line, stays on the queue
    shown = tmux.wait_for(lambda s: NOTE not in s, "the filter line to close")
    assert title(shown) == "Withdrawals"
    tmux.keys("Enter")
    tmux.wait_for(lambda s: title(s) == "Withdrawal", "the withdrawal detail")
    for key, box in (("x", "Reject"), ("F", "Freeze withdrawals"),
                     ("i", "Attach to an incident")):
        tmux.keys(key)
        tmux.wait_for(lambda s, box=box: box in s, box)
        typed(box, "Withdrawal", box)
        tmux.keys("Escape")
        tmux.wait_for(lambda s: NOTE not in s, f"{box} to close")
    tmux.keys("f")
    tmux.wait_for(lambda s: title(s) == "2FA reset", "the 2FA reset form")
    typed("the 2FA reset form", "2FA reset")
    home()
    tmux.keys("4")
    tmux.wait_for(lambda s: "W1" in s, "the queue")
    tmux.keys("I")  # attach W1 to a new incident titled with the note
    tmux.wait_for(lambda s: "Attach to an incident" in s, "the attach dialog")
    tmux.text(NOTE)
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "attached" in s, "the attachment")
    home()
    tmux.keys("0")
    tmux.wait_for(lambda s: NOTE in s, "the incident in the list")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: title(s) == "Incident", "the incident")
    tmux.keys("n")
    tmux.text("client called 0800 555 1234")
    shown = tmux.wait_for(lambda s: "client called 0800 555 1234" in s, "the incident note")
    assert title(shown) == "Incident"


def test_the_demo_console_shows_a_simulated_brute_force_without_a_key_press(tmp_path):
    """`polysec demo` runs a watcher while its console is open: an attack that `polysec
    simulate --demo` writes in another terminal is judged and reaches the dashboard as
    an alert, while the officer touches nothing."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "TERM": "xterm-256color",
           "HOME": os.environ.get("HOME", str(tmp_path))}
    tmux = Tmux(f"polysec-{uuid.uuid4().hex[:8]}",
                f"{sys.executable} -m polysec_tui demo --accounts 100 --days 5 --seed 3", env)
    try:
        shown = tmux.wait_for(lambda s: re.search(r"sam +senior +\S+ +\d{6}", s) is not None,
                              "the demo's login hints", timeout=120)
        match = re.search(r"sam +senior +(\S+) +(\d{6})", shown)
        assert match is not None
        tmux.text("sam")
        tmux.keys("Tab")
        tmux.text(match.group(1))
        tmux.keys("Tab")
        tmux.text(match.group(2))
        tmux.keys("Enter")
        before = tmux.wait_for(lambda s: "Monitoring live" in s,
                               "the dashboard and its watcher")
        # The first attack comes after 100 events, the next after 200: 160 events hold
        # the brute force (20 to 40 attempts) and nothing newer that would cover it.
        simulated = subprocess.run(
            [sys.executable, "-m", "polysec_tui", "simulate", "--demo", "--rate", "200",
             "--events", "160", "--attack-every", "0.5", "--seed", "11", "--json"],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=True)
        attacks = json.loads(simulated.stdout)["attacks"]
        victim = next(a["account"] for a in attacks if a["kind"] == "brute_force")
        assert victim not in before
        shown = tmux.wait_for(lambda s: "brute force" in s and victim in s,
                              f"the brute force on {victim} on the dashboard", timeout=60)
        assert "Dashboard" in shown
    finally:
        tmux.kill()


def test_two_officers_in_two_consoles_four_eyes(tmp_path: Path) -> None:
    """alice asks to approve a withdrawal above the limit in her console; sam, whose
    inbox is open in his, sees the request appear by itself, approves it with his code,
    and alice's console tells her."""
    from datetime import timedelta

    keyring = tmp_path / "keyring.json"
    write_new_keyring(keyring, Keyring.generate())
    url = f"sqlite:///{tmp_path / 'polysec.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = Runtime(Settings(url, keyring), engine, load_keyring(keyring))
    officers.bootstrap_admin(rt, "chief", PASSWORD)
    made = officers.seed_officers(rt, [("alice", "analyst", PASSWORD),
                                       ("sam", "senior", PASSWORD)],
                                  datetime.now(UTC) - timedelta(days=30))
    ingest(rt, "accounts", account("A1"))
    ingest(rt, "withdrawals", withdrawal("W1", amount="5"))  # the BTC limit is 0.75
    with rt.transaction() as s:
        s.execute(update(Withdrawal).where(Withdrawal.external_id == "W1")
                  .values(status="held"))
        s.add(WithdrawalScreening(
            withdrawal_id=s.scalar(select(Withdrawal.id).where(Withdrawal.external_id == "W1")),
            screened_at=datetime.now(UTC), risk_score=80.0))
    engine.dispose()
    env = {"POLYSEC_DB_URL": url, "POLYSEC_KEYRING": str(keyring),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "TERM": "xterm-256color",
           "HOME": os.environ.get("HOME", str(tmp_path))}
    consoles = {name: Tmux(f"polysec-{name}-{uuid.uuid4().hex[:8]}",
                           f"{sys.executable} -m polysec_tui tui", env)
                for name in ("alice", "sam")}
    try:
        for name, tmux in consoles.items():
            tmux.wait_for(lambda s: "officer name" in s, f"{name}'s login screen")
            tmux.text(name)
            tmux.keys("Tab")
            tmux.text(PASSWORD)
            tmux.keys("Tab")
            tmux.text(pyotp.TOTP(made[name].secret).now())
            login_step = int(time.time() // 30)
            tmux.keys("Enter")
            tmux.wait_for(lambda s: held_figure(s) is not None, f"{name}'s dashboard")
        alice, sam = consoles["alice"], consoles["sam"]
        sam.keys("8")
        sam.wait_for(lambda s: "no pending requests" in s, "sam's empty inbox")

        alice.keys("4")
        alice.wait_for(lambda s: "W1" in s, "the queue with W1")
        alice.keys("Enter")
        alice.wait_for(lambda s: "Claim" in s and "W1" in s, "the withdrawal detail")
        alice.keys("c")
        alice.wait_for(lambda s: "claimed by alice" in s, "the claim")
        alice.keys("a")
        alice.wait_for(lambda s: "note" in s.lower(), "the note prompt")
        alice.text("client confirmed on a recorded call")
        alice.keys("Enter")
        alice.wait_for(lambda s: "four-eyes" in s and "request" in s, "the four-eyes request")

        shown = sam.wait_for(lambda s: "approve withdrawal W1" in s,
                             "the request in sam's inbox, without a key press", timeout=20)
        assert "alice" in shown and "5 BTC" in shown
        sam.keys("Tab")  # from the table to the code field
        while int(time.time() // 30) == login_step:  # a code is accepted once
            time.sleep(0.5)
        code = pyotp.TOTP(made["sam"].secret).now()
        sam.text(code)
        assert code not in sam.screen()
        sam.keys("Enter")
        sam.wait_for(lambda s: "approved and executed" in s, "sam's approval")

        alice.wait_for(lambda s: "sam approved your request" in s,
                       "the outcome in alice's console", timeout=20)
        alice.wait_for(lambda s: "W1  approved" in s, "alice's withdrawal detail, reloaded")
    finally:
        for tmux in consoles.values():
            tmux.kill()
