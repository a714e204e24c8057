"""`polysec demo`: deterministic, realistic, fed through ingest, with attack ground truth."""

from __future__ import annotations

import getpass
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from polysec_tui.cli import main
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, write_new_keyring
from polysec_tui.db.models import (
    Account,
    AssetPrice,
    Balance,
    DatabaseInfo,
    DemoScenario,
    DemoScenarioEvent,
    LoginEvent,
    SecurityEvent,
    TotpEnrolment,
    Withdrawal,
)
from polysec_tui.services.runtime import Runtime, open_runtime
from polysec_tui.synthetic.demo import build_demo
from polysec_tui.synthetic.generator import DemoSpec
from polysec_tui.synthetic.reference import COUNTRY_BY_CODE
from tests.support.sshd import needs_sshd

ANCHOR = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANCHOR_TEXT = "2026-11-20T12:00:00Z"


def _settings(tmp_path: Path, name: str) -> Settings:
    keyring = tmp_path / f"{name}-keyring.json"
    return Settings(db_url=f"sqlite:///{tmp_path / name}.db", keyring_path=keyring)


def _columns(row: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in skip}


def snapshot(rt: Runtime) -> dict[str, Any]:
    """The logical content: plaintexts instead of ciphertexts, external ids instead of
    internal UUIDs and serial ids (those differ between runs by design)."""
    dec = rt.cipher.decrypt
    with rt.sessions() as s:
        ext = dict(s.execute(select(Account.id, Account.external_id)).all())
        balances: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for b in s.scalars(select(Balance)):
            balances[ext[b.account_id]][b.asset] = b.amount
        totp = {
            ext[t.account_id]: (dec(t.secret_enc, table="totp_enrolments", column="secret",
                                    row_id=t.id), t.enrolled_at)
            for t in s.scalars(select(TotpEnrolment))
        }
        accounts = []
        for a in s.scalars(select(Account).order_by(Account.external_id)):
            pii = {
                col: None if getattr(a, f"{col}_enc") is None else dec(
                    getattr(a, f"{col}_enc"), table="accounts", column=col, row_id=a.id)
                for col in ("email", "full_name", "phone", "date_of_birth", "address")
            }
            accounts.append((a.external_id, a.created_at, a.country, a.status, pii,
                             balances.get(a.external_id), totp.get(a.external_id)))

        def events(model: Any) -> list[dict[str, Any]]:
            # Core rows, not ORM objects: tens of thousands of them, read three times.
            table = model.__table__
            rows = []
            for row in s.execute(select(table).order_by(table.c.id)).mappings():
                cols = {k: v for k, v in row.items() if k not in ("id", "account_id")}
                cols["account"] = ext[row["account_id"]]
                rows.append(cols)
            return rows

        return {
            "accounts": accounts,
            "logins": events(LoginEvent),
            "security_events": events(SecurityEvent),
            "withdrawals": events(Withdrawal),
            "prices": [tuple(r) for r in s.execute(
                select(AssetPrice.asset, AssetPrice.currency, AssetPrice.at, AssetPrice.price)
                .order_by(AssetPrice.asset, AssetPrice.at))],
            "scenarios": [_columns(r, ()) for r in
                          s.scalars(select(DemoScenario).order_by(DemoScenario.id))],
            "scenario_events": sorted(
                tuple(r) for r in s.execute(select(DemoScenarioEvent.scenario_id,
                                                   DemoScenarioEvent.event_type,
                                                   DemoScenarioEvent.external_id))),
            "info": dict(s.execute(select(DatabaseInfo.key, DatabaseInfo.value)).all()),
        }


def _generate(settings: Settings, seed: int) -> dict[str, Any]:
    result = build_demo(settings, DemoSpec(accounts=5000, days=30, seed=seed, anchor=ANCHOR))
    assert not result.reused
    rt = open_runtime(settings)
    try:
        return snapshot(rt)
    finally:
        rt.engine.dispose()


def test_same_seed_gives_same_logical_data_and_another_seed_differs(tmp_path):
    first = _generate(_settings(tmp_path, "one"), seed=7)
    second = _generate(_settings(tmp_path, "two"), seed=7)
    # Realistic volumes for 5000 accounts over 30 days.
    assert len(first["accounts"]) == 5000
    assert len(first["logins"]) > 40_000
    assert len(first["withdrawals"]) > 1000
    assert len({a[2] for a in first["accounts"]}) >= 25
    # Hourly USD prices of every asset the withdrawals use, from before the first day.
    prices = first["prices"]
    assert {p[0] for p in prices} >= {w["asset"] for w in first["withdrawals"]}
    assert {p[1] for p in prices} == {"USD"} and len(prices) >= 9 * 30 * 24
    assert min(p[2] for p in prices) < min(w["requested_at"] for w in first["withdrawals"])
    for part in first:
        assert first[part] == second[part], f"{part} differs between two runs of one seed"

    other = _generate(_settings(tmp_path, "three"), seed=8)
    assert other["accounts"] != first["accounts"]
    assert other["logins"] != first["logins"]
    assert other["scenarios"] != first["scenarios"]


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _counts(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Account, Balance, TotpEnrolment, LoginEvent, SecurityEvent,
                          Withdrawal, DemoScenario, DemoScenarioEvent)}


def test_scenarios_are_in_the_event_tables_and_a_rerun_reuses(cli_env, runtime, capsys):
    argv = ["demo", "--no-tui", "--accounts", "300", "--days", "10", "--anchor", ANCHOR_TEXT]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "generated" in out and "attack scenarios injected" in out

    with runtime.sessions() as s:
        scenarios = s.scalars(select(DemoScenario).order_by(DemoScenario.id)).all()
        kinds = {sc.kind for sc in scenarios}
        assert {"brute_force", "credential_stuffing", "password_spraying",
                "impossible_travel", "account_takeover"} <= kinds
        logins = {r.external_id: r for r in s.scalars(select(LoginEvent))}
        security = {r.external_id: r for r in s.scalars(select(SecurityEvent))}
        withdrawals = {r.external_id: r for r in s.scalars(select(Withdrawal))}
        ext = dict(s.execute(select(Account.id, Account.external_id)).all())
        balances = {(ext[b.account_id], b.asset): b.amount for b in s.scalars(select(Balance))}
        info = dict(s.execute(select(DatabaseInfo.key, DatabaseInfo.value)).all())
        members: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for ev in s.scalars(select(DemoScenarioEvent)):
            members[ev.scenario_id].append((ev.event_type, ev.external_id))

    assert info["demo"] == "true" and info["seed"] == "7" and info["accounts"] == "300"
    tables = {"login": logins, "security_event": security, "withdrawal": withdrawals}
    for sc in scenarios:
        assert members[sc.id], f"scenario {sc.id} has no events"
        for event_type, external_id in members[sc.id]:
            assert external_id in tables[event_type], f"{event_type} {external_id} missing"
        # In the last days before the anchor, where the dashboard looks.
        assert ANCHOR - timedelta(days=4) <= sc.started_at < ANCHOR
        attempts = [logins[e] for t, e in members[sc.id] if t == "login"]
        if sc.kind == "brute_force":
            assert 30 <= len(attempts) <= 60
            assert {a.ip for a in attempts} == {sc.source_ip}
            assert {ext[a.account_id] for a in attempts} == {sc.account_external_id}
            assert not any(a.success for a in attempts)
            assert max(a.at for a in attempts) - min(a.at for a in attempts) < timedelta(minutes=30)
        elif sc.kind == "credential_stuffing":
            assert {a.ip for a in attempts} == {sc.source_ip}
            assert len({a.account_id for a in attempts}) >= 100
            assert 0 < sum(a.success for a in attempts) <= 5
            assert max(a.at for a in attempts) - min(a.at for a in attempts) < timedelta(hours=1)
        elif sc.kind == "password_spraying":
            per_account: dict[Any, int] = defaultdict(int)
            for a in attempts:
                per_account[a.account_id] += 1
            assert len(per_account) >= 100 and max(per_account.values()) <= 2
            assert max(a.at for a in attempts) - min(a.at for a in attempts) > timedelta(hours=3)
        elif sc.kind == "impossible_travel":
            home, far = sorted(attempts, key=lambda a: a.at)
            assert home.success and far.success and far.at - home.at < timedelta(hours=1)
            assert (COUNTRY_BY_CODE[home.country].continent
                    != COUNTRY_BY_CODE[far.country].continent)
        elif sc.kind == "account_takeover":
            success = [a for a in attempts if a.success]
            assert len(success) == 1
            attacker = success[0]
            kinds_seen = [security[e].kind for t, e in members[sc.id] if t == "security_event"]
            assert "2fa_change" in kinds_seen and "new_device" in kinds_seen
            (wd,) = [withdrawals[e] for t, e in members[sc.id] if t == "withdrawal"]
            assert wd.login_external_id == attacker.external_id and wd.ip == attacker.ip
            assert wd.device_id == attacker.device_id
            assert wd.available_balance == balances[(sc.account_external_id, wd.asset)]
            assert Decimal("0.93") < wd.amount / wd.available_balance < Decimal("0.97")
            # A destination this client never used, from an IP and device never seen.
            earlier = [w for w in withdrawals.values()
                       if w.account_id == wd.account_id and w.requested_at < wd.requested_at]
            assert wd.address not in {w.address for w in earlier}
            own = {e for _t, e in members[sc.id]}
            before = [a for a in logins.values() if a.account_id == attacker.account_id
                      and a.at < attacker.at and a.external_id not in own]
            assert attacker.ip not in {a.ip for a in before}
            assert attacker.device_id not in {a.device_id for a in before}

    # Normal traffic in the last 24 hours, not only attacks.
    in_attacks = {e for evs in members.values() for _t, e in evs}
    recent = [a for a in logins.values()
              if a.at >= ANCHOR - timedelta(days=1) and a.external_id not in in_attacks]
    assert len(recent) > 50
    # Every routine withdrawal names a successful login of its own account.
    for wd in withdrawals.values():
        login = logins[wd.login_external_id]
        assert login.success and login.account_id == wd.account_id and login.ip == wd.ip
        assert login.at <= wd.requested_at and wd.amount <= wd.available_balance

    counts = _counts(runtime)
    assert _run(argv) == 0
    assert "reused" in capsys.readouterr().out
    assert _counts(runtime) == counts


def test_reset_with_an_explicit_db_is_refused(tmp_path, capsys):
    db = tmp_path / "mine.db"
    keyring = tmp_path / "k.json"
    code = _run(["--db", f"sqlite:///{db}", "--keyring", str(keyring),
                 "demo", "--no-tui", "--reset"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--reset" in err and err.startswith("polysec: error:")
    assert not db.exists() and not keyring.exists()  # refused before touching anything


def test_reset_regenerates_the_embedded_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("POLYSEC_DB_URL", raising=False)
    monkeypatch.delenv("POLYSEC_KEYRING", raising=False)
    monkeypatch.delenv("POLYSEC_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    base = ["demo", "--no-tui", "--accounts", "60", "--days", "5", "--anchor", ANCHOR_TEXT]
    assert _run(base) == 0
    assert (tmp_path / "xdg" / "polysec" / "demo.db").exists()
    assert (tmp_path / "xdg" / "polysec" / "demo-keyring.json").exists()
    assert _run([*base, "--seed", "9"]) == 0
    assert "reused" in capsys.readouterr().out
    assert _run([*base, "--seed", "9", "--reset"]) == 0
    out = capsys.readouterr().out
    assert "generated: seed 9, 60 accounts" in out


def test_demo_refuses_a_database_with_real_accounts(tmp_path, capsys):
    settings = _settings(tmp_path, "real")
    write_new_keyring(settings.keyring_path, Keyring.generate())
    build_demo(settings, DemoSpec(accounts=50, days=5, anchor=ANCHOR))
    rt = open_runtime(settings)
    try:
        with rt.transaction() as s:  # now it looks like a production database
            s.execute(delete(DatabaseInfo))
    finally:
        rt.engine.dispose()
    code = _run(["--db", settings.db_url, "--keyring", str(settings.keyring_path),
                 "demo", "--no-tui", "--accounts", "50", "--days", "5"])
    assert code == 2
    assert "not demo data" in capsys.readouterr().err


def test_the_demo_can_make_verify_and_restore_a_backup(tmp_path, monkeypatch, capsys):
    """`polysec demo` makes its own backup keys beside the demo keyring (marked demo-only,
    owner-only) and puts them in the demo's [backup]: a new user's first backup works."""
    import stat

    from polysec_tui.config import resolve_settings
    from polysec_tui.services.operations import backups

    monkeypatch.delenv("POLYSEC_DB_URL", raising=False)
    monkeypatch.delenv("POLYSEC_KEYRING", raising=False)
    monkeypatch.delenv("POLYSEC_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert _run(["demo", "--no-tui", "--accounts", "50", "--days", "5", "--anchor",
                 ANCHOR_TEXT]) == 0
    home = tmp_path / "xdg" / "polysec"
    for name in ("demo-backup-identity.key", "demo-backup-signing.key"):
        key = home / name
        assert key.read_text().startswith("# DEMO ONLY")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    settings = resolve_settings(None, None, None).for_demo()
    assert settings.section("backup")["dir"] == str(home / "demo-backups")
    assert "backup" not in resolve_settings(None, None, None).options  # not the real one
    rt = open_runtime(settings)
    try:
        actor = _ada(rt)
        made = backups.create_backup(rt, actor)
        config = backups.BackupConfig.from_settings(settings)
        report = backups.verify_backup(rt, actor, made.path, config.load_identity())
        assert report.ok, report.reason
    finally:
        rt.engine.dispose()


def _ada(rt: Runtime) -> Any:
    """The demo's admin, as an actor."""
    from polysec_tui.db.models import Officer
    from polysec_tui.services.officers.auth import Actor

    with rt.sessions() as s:
        ada = s.scalar(select(Officer).where(Officer.name == "ada"))
        assert ada is not None
    return Actor(ada.id, ada.name, ada.role)


@needs_sshd
def test_the_demo_ships_to_its_own_sftp_server_while_it_runs(tmp_path, monkeypatch):
    """While the console is open the demo runs a private sshd on loopback (SFTP only, its
    own key only) and puts it in the demo's [backup]: the console's ship works as a real
    exchange's. Nothing else can log in, and the server is gone afterwards."""
    import socket

    import paramiko

    from polysec_tui.config import resolve_settings
    from polysec_tui.services.operations import backups
    from polysec_tui.synthetic.demo_sftp import demo_sftp

    for name in ("POLYSEC_DB_URL", "POLYSEC_KEYRING", "POLYSEC_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert _run(["demo", "--no-tui", "--accounts", "50", "--days", "5", "--anchor",
                 ANCHOR_TEXT]) == 0
    home = tmp_path / "xdg" / "polysec"
    settings = resolve_settings(None, None, None).for_demo()
    assert "ship_to" not in settings.section("backup")  # only while the demo runs
    with demo_sftp(settings) as offsite:
        assert offsite.unavailable is None and offsite.url is not None
        config = backups.BackupConfig.from_settings(offsite.settings)
        assert config.ship_to == offsite.url and offsite.url.startswith("sftp://")
        port = int(offsite.url.split(":")[2].split("/")[0])
        rt = open_runtime(offsite.settings)
        try:
            actor = _ada(rt)
            made = backups.create_backup(rt, actor)
            to, known_hosts, identity = config.shipping()
            shipped = backups.ship_backup(rt, actor, made.path, to, known_hosts=known_hosts,
                                          identity=identity)
            assert shipped.size_bytes == made.path.stat().st_size
        finally:
            rt.engine.dispose()
        assert (home / "demo-offsite" / made.path.name).read_bytes() == made.path.read_bytes()
        # Another key is refused: the server takes the demo's key only.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            transport = paramiko.Transport(sock)
            transport.start_client(timeout=10)
            with pytest.raises(paramiko.AuthenticationException):
                transport.auth_publickey(getpass.getuser(), paramiko.RSAKey.generate(2048))
            transport.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not list((home / "demo-sftp").glob("run-*"))  # this run's files are gone


def test_without_sshd_the_demo_says_why_it_cannot_ship(tmp_path, monkeypatch):
    from polysec_tui.config import demo_backup
    from polysec_tui.synthetic import demo_sftp as module

    monkeypatch.setattr(module, "find_sshd", lambda: None)
    keyring = tmp_path / "demo-keyring.json"
    from polysec_tui.synthetic.demo import ensure_demo_backup_keys

    ensure_demo_backup_keys(keyring)
    settings = Settings("sqlite://", keyring, demo=True,
                        options={"backup": demo_backup(keyring)})
    with module.demo_sftp(settings) as offsite:
        assert offsite.url is None and offsite.settings is settings
        assert offsite.unavailable is not None and "openssh-server" in offsite.unavailable


def test_a_demo_into_a_database_with_officers_says_what_it_did_not_run(tmp_path, capsys):
    """`polysec demo --db URL` on a database that has officers fills the data but cannot
    analyse or screen as its admin ada: it says so, and what to run instead."""
    from polysec_tui.db import migrate
    from polysec_tui.db.engine import make_engine
    from polysec_tui.services.officers import registry as officers

    settings = _settings(tmp_path, "staffed")
    write_new_keyring(settings.keyring_path, Keyring.generate())
    engine = make_engine(settings.db_url)
    migrate.upgrade(engine)
    engine.dispose()
    rt = open_runtime(settings)
    try:
        officers.bootstrap_admin(rt, "chief", "a-long-Officer-passphrase")
    finally:
        rt.engine.dispose()
    code = _run(["--db", settings.db_url, "--keyring", str(settings.keyring_path),
                 "demo", "--no-tui", "--accounts", "50", "--days", "5"])
    assert code == 0
    out = capsys.readouterr().out
    assert "already had officers" in out and "polysec logins analyze --full" in out


def test_the_console_lists_the_demo_scenarios(tmp_path, monkeypatch, capsys):
    """Dashboard D lists the attacks the demo injected (the list the demo prints when
    its console closes), and enter opens the victim's timeline; elsewhere D is no key."""
    import pyotp

    from polysec_tui.app import PolysecApp
    from polysec_tui.config import resolve_settings
    from polysec_tui.db.models import Officer
    from polysec_tui.screens.dashboard import DashboardScreen
    from polysec_tui.screens.scenarios import DemoScenariosScreen
    from polysec_tui.screens.timeline import TimelineScreen
    from polysec_tui.services.officers import sessions
    from polysec_tui.synthetic.demo import DEMO_OFFICERS, scenarios
    from tests.support.tui import idle, sync

    monkeypatch.delenv("POLYSEC_DB_URL", raising=False)
    monkeypatch.delenv("POLYSEC_KEYRING", raising=False)
    monkeypatch.delenv("POLYSEC_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert _run(["demo", "--no-tui", "--accounts", "60", "--days", "5", "--anchor",
                 ANCHOR_TEXT]) == 0
    rt = open_runtime(resolve_settings(None, None, None).for_demo())
    name, _role, password = DEMO_OFFICERS[-1]
    with rt.sessions() as s:
        secret = sessions.officer_secret(rt, s.query(Officer).filter_by(name=name).one())
    assert secret is not None
    session = sessions.login(rt, name, password, pyotp.TOTP(secret).now())
    injected = scenarios(rt)
    assert injected

    @sync
    async def drive() -> None:
        app = PolysecApp(rt, session=session)
        async with app.run_test(size=(140, 40)) as pilot:
            await idle(pilot)
            assert isinstance(app.screen, DashboardScreen)
            await pilot.press("D")
            for _ in range(50):
                await idle(pilot)
                if isinstance(app.screen, DemoScenariosScreen) and app.screen.found:
                    break
            screen = app.screen
            assert isinstance(screen, DemoScenariosScreen)
            assert len(screen.found) == len(injected)
            await pilot.press("enter")
            for _ in range(50):
                await idle(pilot)
                if isinstance(app.screen, TimelineScreen):
                    break
            assert isinstance(app.screen, TimelineScreen)

    try:
        drive()
    finally:
        rt.engine.dispose()


@needs_sshd
def test_the_demo_s_sftp_server_ends_with_the_demo_even_killed(tmp_path):
    """A demo killed (SIGKILL, a closed terminal) leaves no SSH server listening."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    script = f"""
import time
from pathlib import Path
from polysec_tui.config import Settings, demo_backup
from polysec_tui.synthetic.demo import ensure_demo_backup_keys
from polysec_tui.synthetic.demo_sftp import demo_sftp
keyring = Path({str(tmp_path / "demo-keyring.json")!r})
ensure_demo_backup_keys(keyring)
settings = Settings("sqlite://", keyring, demo=True, options={{"backup": demo_backup(keyring)}})
with demo_sftp(settings) as offsite:
    print(offsite.url or offsite.unavailable, flush=True)
    time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        assert url.startswith("sftp://"), url
        port = int(url.split(":")[2].split("/")[0])
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the demo's sshd outlived the demo")
    finally:
        proc.kill()
        proc.wait()
