"""Officers with known authenticator secrets and a clock the tests can move."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import pytest

from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime

PASSWORDS = {
    "root": "first-Admin-passphrase-1",
    "admin2": "second-Admin-passphrase",
    "sue": "senior-one-Passphrase-42",
    "sam": "senior-two-Passphrase-43",
    "ann": "analyst-Passphrase-number-7",
}


class MovableClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Staff:
    rt: Runtime
    clock: MovableClock
    secrets: dict[str, str]
    actors: dict[str, Actor]

    def code(self, name: str, offset_steps: int = 0) -> str:
        when = self.clock() + timedelta(seconds=30 * offset_steps)
        return pyotp.TOTP(self.secrets[name]).at(when)

    def next_code(self, name: str) -> str:
        """Move the clock to the next 30 s step (a code is accepted once) and give it."""
        self.clock.advance(seconds=30)
        return self.code(name)

    def login(self, name: str) -> tuple[str, Actor]:
        return sessions.login(self.rt, name, PASSWORDS[name], self.next_code(name))


def make_staff(rt: Runtime, clock: MovableClock) -> Staff:
    enrolment = officers.bootstrap_admin(rt, "root", PASSWORDS["root"])
    staff = Staff(rt, clock, {"root": enrolment.secret}, {})
    _token, root = staff.login("root")
    staff.actors["root"] = root
    # Seeded as staff of a month's standing: independent of root and of each other, and
    # past the 24 hours in which a newly granted officer decides nothing.
    made = officers.seed_officers(
        rt, [(name, role, PASSWORDS.get(name)) for name, role in (
            ("admin2", "admin"), ("sue", "senior"), ("sam", "senior"), ("ann", "analyst"),
            ("cron", "automation"))],
        clock() - timedelta(days=30))
    for name, enrolment in made.items():
        staff.secrets[name] = enrolment.secret
        _token, staff.actors[name] = staff.login(name)
    token, _ = sessions.create_token(rt, root, "cron")
    staff.actors["cron"] = sessions.authenticate(rt, token)
    return staff


def commands_use_clock(monkeypatch: pytest.MonkeyPatch, clock: MovableClock) -> None:
    """Run in-process `polysec` commands on ``clock``, so step-up codes computed from it
    are fresh and in their time step."""
    from polysec_tui.commands import common
    from polysec_tui.crypto.keyring import load_keyring
    from polysec_tui.db.engine import make_engine

    monkeypatch.setattr(common, "open_runtime", lambda settings: Runtime(
        settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
        clock=clock))
