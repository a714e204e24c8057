"""The dashboard's sample data: a small, deterministic dataset placed around the 24-hour
window's edges relative to the pinned clock (FIXED_NOW), its record builders, and the
`pinned_cli` fixture (`polysec status` with the clock pinned and an officer logged in)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from polysec_tui.crypto import totp
from polysec_tui.db.models import Withdrawal
from polysec_tui.services.feed.ingest import Ingestor
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW

TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits, test value


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def ago(**kw: float) -> str:
    return iso(FIXED_NOW - timedelta(**kw))


def ingest(rt: Runtime, kind: str, records: list[dict[str, Any]]) -> None:
    report = Ingestor(rt, kind).run(enumerate(records, 1))
    assert report.bad_count == 0, report.bad
    assert report.inserted == len(records)


def account(external_id: str, *, totp: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": external_id, "created_at": "2026-01-02T03:04:05Z",
                           "email": f"{external_id}@example.com", "country": "DE"}
    if totp:
        doc |= {"totp_secret": TOTP, "totp_enrolled_at": "2026-01-03T00:00:00Z"}
    return doc


def login(ext: str, acct: str, at: str, ok: bool, ip: str, **extra: Any) -> dict[str, Any]:
    return {"id": ext, "account": acct, "at": at, "success": ok, "ip": ip, **extra}


def load_sample(rt: Runtime) -> None:
    """A small, deterministic dataset (the TUI tests and snapshots use it too)."""
    ingest(rt, "accounts", [
        account("acc-001", totp=True), account("acc-002", totp=True),
        account("acc-003", totp=True), account("acc-004", totp=False),
        account("acc-005", totp=False),
    ])
    ingest(rt, "logins", [
        login("l1", "acc-001", ago(hours=1), True, "10.0.0.1"),
        login("l2", "acc-001", ago(hours=2), False, "203.0.113.7", failure_reason="bad_password",
              city="Lagos", country="NG", user_agent="Mozilla/5.0 (X11; Linux x86_64)"),
        # exactly 24 h ago: inside the window
        login("l3", "acc-002", ago(hours=24), False, "203.0.113.7",
              failure_reason="bad_password"),
        # one second before the window
        login("l4", "acc-002", ago(hours=24, seconds=1), False, "198.51.100.9"),
        login("l5", "acc-003", ago(hours=3), False, "198.51.100.20", failure_reason="bad_totp",
              city="Porto", country="PT"),
        login("l6", "acc-003", ago(hours=23, minutes=59), True, "10.0.0.3"),
        # after the clock: not counted
        login("l7", "acc-004", iso(FIXED_NOW + timedelta(minutes=1)), True, "10.0.0.4"),
        login("l8", "acc-004", iso(FIXED_NOW), False, "192.0.2.1",
              failure_reason="bad_password"),
    ])
    ingest(rt, "security-events", [
        {"id": "s1", "account": "acc-002", "at": ago(minutes=30), "kind": "new_device",
         "ip": "203.0.113.7", "device_id": "dev-9"},
        {"id": "s2", "account": "acc-003", "at": ago(hours=5), "kind": "password_change"},
    ])
    ingest(rt, "withdrawals", [
        {"id": "w1", "account": "acc-001", "at": ago(minutes=10), "asset": "BTC",
         "amount": "0.5", "address": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
         "ip": "10.0.0.1"},
        {"id": "w2", "account": "acc-002", "at": ago(minutes=20), "asset": "ETH",
         "amount": "3.25", "address": "0x52908400098527886E0F7030069857D2E4169EE7",
         "ip": "203.0.113.7"},
        {"id": "w3", "account": "acc-003", "at": ago(days=2), "asset": "USDT",
         "amount": "1500", "address": "TNPeeaaFB7K9cmo4uQpcU32zGK8G1NYqeL", "ip": "10.0.0.3"},
    ])
    with rt.transaction() as session:
        session.execute(update(Withdrawal).where(Withdrawal.external_id == "w2")
                        .values(status="held"))


@pytest.fixture
def pinned_cli(monkeypatch: pytest.MonkeyPatch, runtime: Runtime,
               cli_env: dict[str, str]) -> None:
    """`polysec status` on the real CLI path, with the runtime's clock pinned and an
    officer logged in (POLYSEC_TOKEN carries the session token)."""
    from polysec_tui.commands import common, status

    def runtime_of(ctx: Any) -> Runtime:
        rt = common.runtime_of(ctx)
        rt.clock = lambda: FIXED_NOW
        return rt

    monkeypatch.setattr(status, "runtime_of", runtime_of)
    enrolment = officers.bootstrap_admin(runtime, "chief", "a-long-Admin-passphrase")
    token, _actor = sessions.login(runtime, "chief", "a-long-Admin-passphrase",
                                   totp.code_at(enrolment.secret, FIXED_NOW))
    cli_env["POLYSEC_TOKEN"] = token
