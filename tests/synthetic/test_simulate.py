"""`polysec simulate`: live activity through ingest, at a rate, with attacks, on every engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import (
    Account,
    ClientSession,
    DemoScenario,
    DemoScenarioEvent,
    LoginEvent,
    SecurityEvent,
    Withdrawal,
)
from polysec_tui.services.runtime import Runtime
from tests.support.cli import run_cli

TABLES = {"accounts": Account, "logins": LoginEvent, "security-events": SecurityEvent,
          "sessions": ClientSession, "withdrawals": Withdrawal}


def _runtime(settings: Settings) -> Runtime:
    return Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path))


def _counts(settings: Settings) -> dict[str, int]:
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            return {kind: int(s.scalar(select(func.count()).select_from(model)) or 0)
                    for kind, model in TABLES.items()}
    finally:
        rt.engine.dispose()


def _simulate(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    result = run_cli(capsys, "simulate", "--json", *args)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert isinstance(report, dict)
    return report


def test_a_run_writes_about_rate_times_duration_all_committed(
        settings: Settings, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    began = time.monotonic()
    result = run_cli(capsys, "simulate", "--json", "--rate", "40", "--duration", "2",
                     "--attack-every", "0", "--seed", "11", "--report-every", "0.5")
    took = time.monotonic() - began
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["stopped"] == "duration"
    # 40/s for 2 s (one record at t=0): about 81, fewer only if the database lagged.
    assert 60 <= report["events"] <= 81, report
    assert took < 6
    assert report["duplicates"] == 0 and report["attacks"] == []
    counts = _counts(settings)
    assert counts == report["inserted"]
    assert sum(counts.values()) == report["events"]  # everything reported is committed
    assert counts["logins"] > 0 and counts["sessions"] > 0 and counts["accounts"] > 0
    progress = [line for line in result.err.splitlines() if " events (" in line]
    assert len(progress) >= 2, result.err  # a one-line summary every 0.5 s on stderr
    assert all(line.startswith("simulate: ") for line in progress)


def test_logins_and_withdrawals_look_like_the_platform(
        settings: Settings, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _simulate(capsys, "--rate", "5000", "--events", "600", "--attack-every", "0",
              "--seed", "5")
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            logins = list(s.scalars(select(LoginEvent)))
            withdrawals = list(s.scalars(select(Withdrawal)))
    finally:
        rt.engine.dispose()
    assert logins and withdrawals
    for login in logins:
        assert login.ip and login.asn and login.country and len(login.country) == 2
        assert login.latitude is not None and login.longitude is not None
        assert login.user_agent and login.device_type in ("desktop", "mobile", "tablet")
    assert any(not login.success for login in logins)  # the odd typo
    for w in withdrawals:
        assert isinstance(w.amount, Decimal) and w.amount > 0
        assert w.status == "pending" and w.address and w.login_external_id


def test_attacks_arrive_within_their_period(
        settings: Settings, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    began = datetime.now(UTC).replace(microsecond=0)
    report = _simulate(capsys, "--rate", "60", "--duration", "2.5", "--attack-every", "1",
                       "--seed", "21")
    assert report["attacks"], report
    first = report["attacks"][0]
    assert first["kind"] == "brute_force"
    started = datetime.fromisoformat(first["started_at"])
    # The first attack is due after 1 s of traffic (60 records); allow a slow machine.
    assert began <= started <= began + timedelta(seconds=2.5)
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            scenario = s.get(DemoScenario, first["id"])
            assert scenario is not None and scenario.kind == "brute_force"
            assert scenario.source_ip == first["source_ip"]
            ids = set(s.scalars(select(DemoScenarioEvent.external_id).where(
                DemoScenarioEvent.scenario_id == first["id"])))
            burst = list(s.scalars(select(LoginEvent).where(
                LoginEvent.ip == first["source_ip"])))
    finally:
        rt.engine.dispose()
    assert len(burst) >= 20 and ids == {login.external_id for login in burst}
    assert not any(login.success for login in burst)
    assert len({login.account_id for login in burst}) == 1


def test_account_takeover_story(
        settings: Settings, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # An attack every 0.05 s at 2000/s = every 100 records: brute force, stuffing, takeover.
    report = _simulate(capsys, "--rate", "2000", "--events", "420", "--attack-every", "0.05",
                       "--seed", "8")
    kinds = [a["kind"] for a in report["attacks"]]
    assert kinds[:3] == ["brute_force", "credential_stuffing", "account_takeover"]
    ato = report["attacks"][2]
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            account = s.scalars(select(Account).where(
                Account.external_id == ato["account"])).one()
            events = dict(s.execute(select(DemoScenarioEvent.external_id,
                                           DemoScenarioEvent.event_type).where(
                DemoScenarioEvent.scenario_id == ato["id"])).all())
            logins = list(s.scalars(select(LoginEvent).where(
                LoginEvent.external_id.in_(events)).order_by(LoginEvent.at)))
            kinds_seen = set(s.scalars(select(SecurityEvent.kind).where(
                SecurityEvent.external_id.in_(events))))
            withdrawal = s.scalars(select(Withdrawal).where(
                Withdrawal.external_id.in_(events))).one()
            earlier = set(s.scalars(select(Withdrawal.address).where(
                Withdrawal.account_id == account.id, Withdrawal.id != withdrawal.id)))
    finally:
        rt.engine.dispose()
    assert len(logins) == 2 and all(login.success for login in logins)
    home, away = logins
    assert home.country != away.country and away.ip == ato["source_ip"]
    assert home.device_id != away.device_id
    gap = away.at - home.at
    assert timedelta(minutes=9) <= gap <= timedelta(minutes=41)  # far too fast to travel
    assert {"new_device", "2fa_change"} <= kinds_seen
    assert withdrawal.ip == ato["source_ip"] and withdrawal.address not in earlier
    assert withdrawal.available_balance is not None
    share = withdrawal.amount / withdrawal.available_balance
    assert Decimal("0.9") < share < Decimal("1")


def _logical(settings: Settings) -> dict[str, Any]:
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            ext = dict(s.execute(select(Account.id, Account.external_id)).all())
            return {
                "accounts": sorted(ext.values()),
                "logins": sorted((x.external_id, ext[x.account_id], x.ip, x.success,
                                  x.device_id or "") for x in s.scalars(select(LoginEvent))),
                "withdrawals": sorted((x.external_id, ext[x.account_id], x.asset,
                                       str(x.amount.normalize()), x.address)
                                      for x in s.scalars(select(Withdrawal))),
                "security": sorted((x.external_id, x.kind)
                                   for x in s.scalars(select(SecurityEvent))),
                "scenarios": sorted((x.kind, x.account_external_id or "", x.source_ip or "")
                                    for x in s.scalars(select(DemoScenario))),
            }
    finally:
        rt.engine.dispose()


def _other_sqlite(tmp_path: Path, name: str) -> Settings:
    url = f"sqlite:///{tmp_path / name}.db"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    keyring = tmp_path / f"{name}-keyring.json"
    write_new_keyring(keyring, Keyring.generate())
    return Settings(db_url=url, keyring_path=keyring)


def test_the_same_seed_gives_the_same_records(
        settings: Settings, cli_env: dict[str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--rate", "3000", "--events", "350", "--attack-every", "0.04")
    _simulate(capsys, *args, "--seed", "99")
    other = _other_sqlite(tmp_path, "again")
    again = run_cli(capsys, "--db", other.db_url, "--keyring", str(other.keyring_path),
                    "simulate", "--json", *args, "--seed", "99")
    assert again.code == 0, again.err
    third = _other_sqlite(tmp_path, "third")
    different = run_cli(capsys, "--db", third.db_url, "--keyring", str(third.keyring_path),
                        "simulate", "--json", *args, "--seed", "100")
    assert different.code == 0, different.err
    first = _logical(settings)
    assert first["logins"] and first["withdrawals"] and len(first["scenarios"]) == 2
    assert first == _logical(other)
    assert _logical(third)["logins"] != first["logins"]


def test_the_same_seed_again_is_all_duplicates(
        settings: Settings, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--rate", "3000", "--events", "150", "--attack-every", "0", "--seed", "4")
    first = _simulate(capsys, *args)
    second = _simulate(capsys, *args)
    assert sum(first["inserted"].values()) == 150
    assert sum(second["inserted"].values()) == 0 and second["duplicates"] == 150
    assert sum(_counts(settings).values()) == 150


def test_ctrl_c_stops_cleanly_while_a_reader_watches(
        settings: Settings, cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYSEC_")}
    env.update(cli_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "polysec_tui", "simulate", "--json", "--rate", "50",
         "--attack-every", "0", "--seed", "3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(seen) < 3 or seen[-1] <= seen[0]):
            seen.append(sum(_counts(settings).values()))  # another connection, mid-run
            time.sleep(0.4)
        assert seen[-1] > seen[0] > 0 or seen[-1] > 0, seen  # the data arrives as it goes
        assert len(set(seen)) >= 2, seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["stopped"] == "interrupted"
    assert sum(_counts(settings).values()) == report["events"] > 0
    assert b"Traceback" not in err


@pytest.mark.parametrize(("args", "needle"), [
    (("--rate", "0"), "--rate"),
    (("--rate", "fast"), "--rate"),
    (("--rate", "nan"), "--rate"),
    (("--duration", "-3"), "--duration"),
    (("--attack-every", "-1"), "--attack-every"),
    (("--population", "10"), "--population"),
    (("--seed", "x1"), "--seed"),
    (("--events", "0"), "--events"),
])
def test_bad_arguments_exit_2_with_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, args: tuple[str, ...],
        needle: str) -> None:
    result = run_cli(capsys, "--db", f"sqlite:///{tmp_path / 'none.db'}", "--keyring",
                     str(tmp_path / "none.json"), "simulate", *args)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polysec: error:") and needle in lines[0]
    assert not (tmp_path / "none.db").exists()  # refused before touching any database


def test_on_the_demo_database_the_demo_clients_carry_on(
        settings: Settings, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from polysec_tui.synthetic.demo import build_demo
    from polysec_tui.synthetic.generator import DemoSpec

    anchor = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # Two weeks of history, so that the devices a client owns have appeared in it: with
    # five days the familiar share sat at 0.79 to 0.83 depending on the hour of the run.
    build_demo(settings, DemoSpec(accounts=60, days=14, seed=3, anchor=anchor))
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            demo_accounts = set(s.scalars(select(Account.external_id)))
            demo_logins = {x.external_id for x in s.scalars(select(LoginEvent))}
            demo_devices = set(s.execute(select(LoginEvent.account_id, LoginEvent.device_id)))
            demo_scenarios = int(s.scalar(select(func.max(DemoScenario.id))) or 0)
    finally:
        rt.engine.dispose()
    report = _simulate(capsys, "--rate", "5000", "--events", "400", "--attack-every", "0.02",
                       "--seed", "1")
    assert report["attacks"] and report["attacks"][0]["id"] == demo_scenarios + 1
    rt = _runtime(settings)
    try:
        with rt.sessions() as s:
            ext = dict(s.execute(select(Account.id, Account.external_id)).all())
            attack_ids = set(s.scalars(select(DemoScenarioEvent.external_id).where(
                DemoScenarioEvent.scenario_id > demo_scenarios)))
            live = [x for x in s.scalars(select(LoginEvent))
                    if x.external_id not in demo_logins and x.external_id not in attack_ids]
    finally:
        rt.engine.dispose()
    new_accounts = set(ext.values()) - demo_accounts
    assert report["inserted"]["accounts"] == len(new_accounts)  # sign-ups only
    assert all(a.startswith("S") for a in new_accounts)
    on_demo = [x for x in live if ext[x.account_id] in demo_accounts]
    assert len(on_demo) > 100
    # The same clients on the same devices they used in the demo's history.
    familiar = sum((x.account_id, x.device_id) in demo_devices for x in on_demo)
    assert familiar / len(on_demo) > 0.8, (familiar, len(on_demo))


def test_demo_flag_without_a_demo_database_says_what_to_do(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("POLYSEC_DB_URL", raising=False)
    monkeypatch.delenv("POLYSEC_KEYRING", raising=False)
    result = run_cli(capsys, "simulate", "--demo", "--events", "1")
    assert result.code == 2
    assert result.err.strip() == ("polysec: error: no demo database yet: run "
                                  "`polysec demo --no-tui` first")
