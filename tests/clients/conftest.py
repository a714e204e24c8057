"""Fixtures of the 2FA reset tests (test_twofa.py, test_tui_twofa.py): a clock the tests
move, and officers on a database holding the client of tests.support.twofa. Modules with
other clients (protection) define their own `staff`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import FIXED_NOW
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.twofa import make_client, make_runtime


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(FIXED_NOW)


@pytest.fixture
def staff(settings, clock) -> Iterator[Staff]:
    rt = make_runtime(settings, clock)
    made = make_staff(rt, clock)
    make_client(rt)
    yield made
    rt.engine.dispose()
