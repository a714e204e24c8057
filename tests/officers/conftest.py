"""Fixtures of the officer tests (test_officers.py, test_officer_grants.py): a clock the
tests move, and the staff of tests.support.officers on each database. The console's
login tests define their own `staff` (with a client account)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.officers import MovableClock, Staff, make_staff


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(FIXED_NOW)


@pytest.fixture
def staff(settings, clock) -> Iterator[Staff]:
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    yield made
    rt.engine.dispose()
