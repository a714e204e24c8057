"""The review team of the withdrawal tests: officers with known codes on a movable clock,
and an account with a history screening judges against."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.screening import build_history


@pytest.fixture
def staff(runtime: Runtime) -> Staff:
    runtime.clock = clock = MovableClock(FIXED_NOW)
    made = make_staff(runtime, clock)
    build_history(runtime)
    return made


@pytest.fixture
def cli_staff(settings: Settings, cli_env: dict[str, str]) -> Staff:
    # A clock near the real time: the CLI checks sessions against it.
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=MovableClock(datetime.now(UTC)))
    made = make_staff(rt, rt.clock)  # type: ignore[arg-type]
    build_history(rt)
    return made
