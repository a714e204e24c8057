"""DashboardService and `polysec status` on every database, with a dataset placed around
the 24-hour window's edges relative to the pinned clock (FIXED_NOW)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from polysec_tui.cli import cli
from polysec_tui.crypto import totp
from polysec_tui.db.models import DatabaseInfo, Withdrawal
from polysec_tui.errors import RefusedError
from polysec_tui.services.feed.ingest import Ingestor
from polysec_tui.services.monitoring.dashboard import DashboardService
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.conftest import FIXED_NOW

TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits, test value
# The service checks the actor's permission only; it needs no session for that.
READER = Actor(uuid.uuid4(), "reader", "analyst")


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


def test_empty_database(runtime: Runtime) -> None:
    s = DashboardService(runtime, READER).summary()
    assert (s.accounts, s.accounts_2fa, s.coverage_pct) == (0, 0, None)
    assert (s.logins_ok_24h, s.logins_failed_24h, s.failing_ips_24h) == (0, 0, 0)
    assert (s.withdrawals_pending, s.withdrawals_held) == (0, 0)
    assert s.events == ()
    assert s.as_of == FIXED_NOW
    assert s.demo is False


def test_figures(runtime: Runtime) -> None:
    load_sample(runtime)
    s = DashboardService(runtime, READER).summary()
    assert (s.accounts, s.accounts_2fa, s.coverage_pct) == (5, 3, 60.0)
    # ok: l1, l6 (l7 is after the clock); failed: l2, l3 (edge), l5, l8 (edge), not l4
    assert (s.logins_ok_24h, s.logins_failed_24h) == (2, 4)
    assert s.failing_ips_24h == 3  # 203.0.113.7 twice, 198.51.100.20, 192.0.2.1
    assert (s.withdrawals_pending, s.withdrawals_held) == (2, 1)
    assert s.database == runtime.database_label


def test_newest_events_merge_and_order(runtime: Runtime) -> None:
    load_sample(runtime)
    events = DashboardService(runtime, READER).summary().events
    assert [(e.source, e.kind, e.account) for e in events] == [
        ("login", "failed", "acc-004"),          # l8, now
        ("withdrawal", "pending", "acc-001"),    # w1, -10 min
        ("withdrawal", "held", "acc-002"),       # w2, -20 min
        ("security", "new_device", "acc-002"),   # s1, -30 min
        ("login", "failed", "acc-001"),          # l2, -2 h
        ("login", "failed", "acc-003"),          # l5, -3 h
        ("security", "password_change", "acc-003"),  # s2, -5 h
        ("login", "failed", "acc-002"),          # l3, -24 h
        ("login", "failed", "acc-002"),          # l4, -24 h 1 s (older events are listed too)
        ("withdrawal", "pending", "acc-003"),    # w3, -2 days
    ]
    assert events[0].at == FIXED_NOW
    assert events[1].detail == "0.5 BTC to bc1qxy2k…fjhx0wlh from 10.0.0.1"
    assert events[3].detail == "from 203.0.113.7 device dev-9"
    assert events[4].detail == ("bad_password from 203.0.113.7 (Lagos, NG) "
                                "Mozilla/5.0 (X11; Linux x86_64)")
    assert events[9].detail.startswith("1500 USDT to ")


def test_newest_is_limited(runtime: Runtime) -> None:
    load_sample(runtime)
    events = DashboardService(runtime, READER, newest=3).summary().events
    assert [e.kind for e in events] == ["failed", "pending", "held"]


def test_window_moves_with_the_clock(runtime: Runtime) -> None:
    load_sample(runtime)
    later = DashboardService(runtime, READER,
                             clock=lambda: FIXED_NOW + timedelta(hours=2)).summary()
    # l7 (now +1 min) joins; l6 (-23:59) and l3 (-24 h) fall out
    assert (later.logins_ok_24h, later.logins_failed_24h) == (2, 3)


def test_demo_flag(runtime: Runtime) -> None:
    with runtime.transaction() as session:
        session.add(DatabaseInfo(key="demo", value="true"))
    assert DashboardService(runtime, READER).summary().demo is True


def test_untrusted_text_is_made_printable(runtime: Runtime) -> None:
    ingest(runtime, "accounts", [account("acc-red", totp=False)])
    ingest(runtime, "logins", [
        login("x1", "acc-red", ago(minutes=1), False, "192.0.2.50",
              user_agent="UA\x1b]8;;http://evil\x07link\x1b]8;;\x07\r\nX\x07\u202eZ",
              city="[link=http://x]y[/link]"),
    ])
    (event,) = DashboardService(runtime, READER).summary().events
    assert event.account == "acc-red"
    # Escapes shown, not acted on; markup kept as literal text (the renderers never
    # parse it).
    assert event.detail == ("failed from 192.0.2.50 ([link=http://x]y[/link]) "
                            "UA\\x1b]8;;http://evil\\x07link\\x1b]8;;\\x07\\r\\nX"
                            "\\x07\\u202eZ")


def test_summary_needs_read(runtime: Runtime) -> None:
    robot = Actor(uuid.uuid4(), "cron", "automation")
    with pytest.raises(RefusedError, match="may not read"):
        DashboardService(runtime, robot).summary()


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


@pytest.mark.usefixtures("pinned_cli")
def test_status_json(runtime: Runtime, cli_env: dict[str, str]) -> None:
    load_sample(runtime)
    result = CliRunner().invoke(cli, ["status", "--json"], env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["accounts"] == 5 and doc["accounts_2fa"] == 3
    assert doc["two_factor_coverage_pct"] == 60.0
    assert doc["logins_failed_24h"] == 4 and doc["failing_ips_24h"] == 3
    assert doc["withdrawals_held"] == 1 and doc["withdrawals_pending"] == 2
    assert doc["database"] == runtime.database_label
    assert doc["demo"] is False and doc["window_hours"] == 24
    assert len(doc["events"]) == 10
    assert set(doc["events"][0]) == {"at", "source", "kind", "account", "detail"}
    assert datetime.fromisoformat(doc["as_of"]) == FIXED_NOW


@pytest.mark.usefixtures("pinned_cli")
def test_status_text(runtime: Runtime, cli_env: dict[str, str]) -> None:
    load_sample(runtime)
    result = CliRunner().invoke(cli, ["status", "--events", "3"], env=cli_env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[2] == "accounts      5, with 2FA 3 (60.0 %)"
    assert lines[4] == "withdrawals   2 pending, 1 held"
    assert "newest events (UTC)" in lines
    assert lines[3] == "logins 24 h   2 ok, 4 failed from 3 distinct IP(s)"
    assert "\x1b" not in result.output


def test_status_needs_a_schema(tmp_path: Any, keyring_path: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from polysec_tui.cli import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", f"sqlite:///{tmp_path / 'empty.db'}", "--keyring", str(keyring_path),
              "status"])
    assert exit_info.value.code == 2


def test_status_needs_a_login(runtime: Runtime, cli_env: dict[str, str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from polysec_tui.cli import main

    monkeypatch.delenv("POLYSEC_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["status"])
    assert exit_info.value.code == 3


def test_amounts_are_decimal_strings(runtime: Runtime) -> None:
    load_sample(runtime)
    doc = DashboardService(runtime, READER).summary().as_dict()
    assert all(isinstance(e["detail"], str) for e in doc["events"])
    assert Decimal("3.25") and "3.25 ETH" in doc["events"][2]["detail"]
