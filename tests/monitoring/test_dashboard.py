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

from polysec_tui.cli import cli
from polysec_tui.db.models import DatabaseInfo
from polysec_tui.errors import RefusedError
from polysec_tui.services.monitoring.dashboard import DashboardService
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.dashboard import account, ago, ingest, load_sample, login

# The service checks the actor's permission only; it needs no session for that.
READER = Actor(uuid.uuid4(), "reader", "analyst")


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
