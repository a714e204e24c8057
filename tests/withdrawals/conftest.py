"""The review team of the withdrawal tests: officers with known codes on a movable clock,
and an account with a history screening judges against."""

from __future__ import annotations

import pytest

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
