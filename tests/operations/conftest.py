"""Fixtures of the backup tests (test_backups.py, test_backup_signing.py): a backup
identity, and officers on a database with a few clients and a [backup] configuration
that trusts this host's signing key. Modules with officers of their own (keys, audit
checks, host audits, shipping) define their own `staff`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from polysec_tui.backup.envelope import Identity
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.backups import backup_options
from tests.support.helpers import account, ingest, login, withdrawal
from tests.support.officers import MovableClock, Staff, make_staff


@pytest.fixture
def identity() -> Identity:
    return Identity.generate()


@pytest.fixture
def staff(settings, tmp_path, identity) -> Iterator[Staff]:
    options = backup_options(tmp_path, identity)
    configured = dataclasses.replace(settings, options=options)
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(configured, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    ingest(rt, "accounts", account("A1"), account("A2", full_name="Zoë \u2603 O'Brien\n"),
           account("A3", phone=None))
    ingest(rt, "logins", login("L1"), login("L2", acct="A2", ip="2001:db8::1"))
    ingest(rt, "withdrawals", withdrawal("W1", amount="123456789.123456789012345678"))
    yield made
    rt.engine.dispose()
