"""The detector service (`polysec watch`): its findings are the batch commands' findings,
one watcher holds the lease and a standby takes over, nothing is judged twice, and
officers see whether monitoring runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import (
    AuditLogEntry,
    LoginAnomaly,
    LoginEvent,
    Officer,
    WatcherLease,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.errors import InputError
from polysec_tui.services.feed.ingest import Ingestor
from polysec_tui.services.logins import anomalies
from polysec_tui.services.monitoring import alerts, watcher
from polysec_tui.services.monitoring.watcher import WatchConfig, Watcher
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime, utc_now
from polysec_tui.services.withdrawals import screening
from tests.support import FIXED_NOW, ROOT
from tests.support.helpers import account, ingest_records, login, security_event, withdrawal
from tests.support.officers import MovableClock

CRON = Actor(uuid.UUID(int=1), "cron", "automation")
ANN = Actor(uuid.UUID(int=2), "ann", "analyst")
T0 = FIXED_NOW - timedelta(days=2)
FAST = WatchConfig(poll_seconds=0.05, heartbeat_seconds=0.2, lease_seconds=0.8,
                   standby_seconds=0.1)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def quiet(_event: str, **_fields: Any) -> None:
    pass


def arrivals() -> list[dict[str, list[dict[str, Any]]]]:
    """A shift's feed in four deliveries, in time order: ordinary history, then brute
    force, stuffing, spraying, travel, a takeover and its withdrawal, with bursts and a
    spraying run that cross the deliveries' boundaries."""
    accts = [f"A{i:02d}" for i in range(30)]
    history = [login(f"{a}-h{d}", a, at=at(-1440 * (6 - d)), device_id=f"dev-{a}",
                     ip=f"203.0.113.{i}") for i, a in enumerate(accts) for d in range(6)]
    usual = [withdrawal(f"{a}-w{d}", a, at=at(-1440 * (5 - d) + 5), ip=f"203.0.113.{i}",
                        amount="0.10", address=f"bc1q{a.lower()}home")
             for i, a in enumerate(accts[:10]) for d in range(3)]
    first = {"accounts": [account(a) for a in accts], "logins": history,
             "security-events": [], "withdrawals": usual}
    second = {"accounts": [], "security-events": [], "withdrawals": [], "logins": [
        *[login(f"bf{i}", "A01", at=at(i), success=False, ip="198.51.100.7")
          for i in range(3)],  # the burst goes on in the next delivery
        *[login(f"st{i}", accts[i], at=at(10 + i * 0.25), success=i == 17, ip="192.0.2.66",
                asn=14061) for i in range(20)],
        *[login(f"sp{i}", accts[i], at=at(30 + i * 25), success=False, ip="192.0.2.99",
                asn=16276) for i in range(12)],
    ]}
    third = {"accounts": [], "logins": [
        *[login(f"bf{i}", "A01", at=at(i), success=False, ip="198.51.100.7")
          for i in range(3, 7)],
        *[login(f"sp{i}", accts[i], at=at(30 + i * 25), success=False, ip="192.0.2.99",
                asn=16276) for i in range(12, 25)],
        login("tr1", "A02", at=at(400), device_id="dev-A02", ip="203.0.113.2"),
        login("tr2", "A02", at=at(430), country="AU", city="Sydney", lat=-33.87, lon=151.21,
              ip="1.128.0.9", asn=1221, device_id="dev-A02"),
        *[login(f"saf{i}", "A04", at=at(500 + i), success=False, ip="198.51.100.44")
          for i in range(6)],
        login("saf-ok", "A04", at=at(507), ip="100.64.9.9", asn=9009, device_id="dev-evil",
              country="NG", city="Lagos", lat=6.52, lon=3.38),
    ], "security-events": [security_event("se1", "A04", at=at(510), kind="email_change")],
       "withdrawals": [
        withdrawal("takeover", "A04", at=at(515), ip="100.64.9.9", amount="4.5",
                   address="bc1qattackerwallet"),
        withdrawal("A05-usual", "A05", at=at(520), ip="203.0.113.5", amount="0.10",
                   address="bc1qa05home"),
    ]}
    fourth = {"accounts": [], "security-events": [], "logins": [
        login("nd1", "A03", at=at(600), device_id="dev-new", ip="203.0.113.3"),
        login("late1", "A06", at=at(610), ip="203.0.113.6", device_id="dev-A06"),
    ], "withdrawals": [withdrawal("A06-w", "A06", at=at(611), ip="203.0.113.6",
                                  amount="0.10", address="bc1qa06home")]}
    return [first, second, third, fourth]


def deliver(rt: Runtime, delivery: dict[str, list[dict[str, Any]]]) -> None:
    for kind in ("accounts", "logins", "security-events", "withdrawals"):
        if delivery[kind]:
            ingest_records(rt, kind, delivery[kind])


def outcome(rt: Runtime) -> dict[str, Any]:
    """Everything detection decided, by the platform's ids (comparable across databases)."""
    with rt.sessions() as s:
        found = sorted(s.execute(
            select(LoginAnomaly.kind, LoginEvent.external_id, LoginAnomaly.severity,
                   LoginAnomaly.explanation)
            .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)).all())
        verdicts = sorted(s.execute(
            select(Withdrawal.external_id, Withdrawal.status, WithdrawalScreening.risk_score)
            .join(WithdrawalScreening, WithdrawalScreening.withdrawal_id == Withdrawal.id)
        ).all())
        flags = sorted(s.execute(
            select(Withdrawal.external_id, WithdrawalFlag.rule, WithdrawalFlag.explanation)
            .join(Withdrawal, Withdrawal.id == WithdrawalFlag.withdrawal_id)).all())
    return {"anomalies": found, "verdicts": verdicts, "flags": flags}


def twin(tmp_path: Path, keyring_path: Path, clock: Any) -> Runtime:
    """A second, SQLite database with the same keys, for the batch commands."""
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    return Runtime(Settings(db_url=url, keyring_path=keyring_path), engine,
                   load_keyring(keyring_path), clock=clock)


def test_the_watcher_finds_exactly_what_the_batch_commands_find(runtime, tmp_path,
                                                                keyring_path):
    batch = twin(tmp_path, keyring_path, runtime.clock)
    w = Watcher(runtime, CRON, config=FAST, log=quiet)
    try:
        for delivery in arrivals():
            deliver(runtime, delivery)
            while w.step() == "more":
                pass
            deliver(batch, delivery)  # the cron rhythm: the batch commands after each
            anomalies.analyze(batch, CRON)
            screening.screen(batch, CRON)
        watched, batched = outcome(runtime), outcome(batch)
    finally:
        batch.engine.dispose()
    assert watched == batched
    kinds = {kind for kind, *_ in watched["anomalies"]}
    assert {"brute_force", "credential_stuffing", "password_spraying", "impossible_travel",
            "success_after_failures", "new_device"} <= kinds
    # the brute force and the spraying crossed a delivery: every attempt is a finding
    assert sum(k == "brute_force" and e.startswith("bf")
               for k, e, *_ in watched["anomalies"]) == 7
    assert sum(k == "password_spraying" for k, *_ in watched["anomalies"]) == 25
    status = {ext: st for ext, st, _risk in watched["verdicts"]}
    assert status["takeover"] == "held" and status["A05-usual"] == "pending"
    assert len(watched["verdicts"]) == 33  # every withdrawal judged once


def test_windows_kept_between_passes_equal_one_pass_over_the_stream(runtime):
    """Logins arriving in time order, cut into deliveries at arbitrary points (inside
    every burst): the windows the watcher keeps give what one pass over the whole stream
    gives (a full batch run)."""
    deliveries = arrivals()
    ingest_records(runtime, "accounts", deliveries[0]["accounts"])
    stream = sorted((rec for d in deliveries for rec in d["logins"]), key=lambda r: r["at"])
    w = Watcher(runtime, CRON, config=FAST, log=quiet)
    for start in range(0, len(stream), 7):
        ingest_records(runtime, "logins", stream[start : start + 7])
        assert w.step() == "idle"
    assert w.windows.rebuilds == 1  # once, at the start: then only what arrived is read
    window_kinds = ("brute_force", "credential_stuffing", "password_spraying",
                    "success_after_failures")
    watched = [a for a in outcome(runtime)["anomalies"] if a[0] in window_kinds]
    assert {a[0] for a in watched} == set(window_kinds)
    anomalies.analyze(runtime, CRON, full=True)
    assert [a for a in outcome(runtime)["anomalies"] if a[0] in window_kinds] == watched


def test_a_login_older_than_one_judged_replays_its_windows(runtime):
    ingest_records(runtime, "accounts", [account("A1"), account("A2")])
    w = Watcher(runtime, CRON, config=FAST, log=quiet)
    ingest_records(runtime, "logins", [
        *[login(f"b{i}", "A1", at=at(i), success=False, ip="198.51.100.7") for i in (0, 1, 5)],
        login("other", "A2", at=at(6), ip="203.0.113.9")])
    w.step()
    # arriving late, earlier than b5: judged in time order, as a batch run judges them
    # (fed on top of b5, the burst would take b5 in too), from the attempts in memory
    ingest_records(runtime, "logins", [
        login(f"b{i}", "A1", at=at(i), success=False, ip="198.51.100.7") for i in (2, 3, 4)])
    w.step()
    assert (w.windows.rebuilds, w.windows.replays) == (1, 1)
    brute = [ext for kind, ext, *_ in outcome(runtime)["anomalies"] if kind == "brute_force"]
    assert sorted(brute) == ["b0", "b1", "b2", "b3", "b4"]
    # later than the lateness the watcher keeps attempts for: one look-back read
    w.windows.lateness = timedelta(minutes=30)
    ingest_records(runtime, "logins", [login("far", "A2", at=at(8 * 60))])
    w.step()
    ingest_records(runtime, "logins", [login("too-late", "A2", at=at(6.5))])
    w.step()
    assert (w.windows.rebuilds, w.windows.replays) == (2, 1)


def test_a_late_login_that_starts_a_stuffing_burst_replays_the_network_too(runtime):
    """The late login carries no network, but makes its IP's earlier attempts a stuffing
    burst: the network of those attempts must not then count them as its own spraying."""
    accts = [f"S{i:02d}" for i in range(30)]
    ingest_records(runtime, "accounts", [account(a) for a in accts])
    w = Watcher(runtime, CRON, config=FAST, log=quiet)
    ingest_records(runtime, "logins", [
        login(f"x{i}", accts[i], at=at(i * 0.5), success=False, ip="192.0.2.50", asn=16276)
        for i in range(14)])  # 14 accounts from one IP in 7 minutes: one short of a burst
    w.step()
    ingest_records(runtime, "logins", [
        login("late", accts[14], at=at(3.2), success=False, ip="192.0.2.50", asn=None),
        *[login(f"y{i}", accts[15 + i], at=at(60 + i * 30), success=False,
                ip=f"192.0.3.{i}", asn=16276) for i in range(15)]])
    w.step()
    assert w.windows.replays == 1
    # the network's 29 failed accounts in a day would be spraying, but the IP's burst
    # (complete only with the late login, at x13) makes it stuffing's network
    assert outcome(runtime)["anomalies"] == []


def shuffled_feed(seed: int) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """Two days of ordinary logins with brute forces, stuffing and spraying bursts,
    delivered in pieces of random size where one login in eight comes late (one to 40
    minutes after its time, inside a burst as often as not)."""
    import random

    rnd = random.Random(seed)
    accts = [f"R{i:02d}" for i in range(40)]
    events: list[tuple[float, dict[str, Any]]] = []

    def add(minute: float, acct: str, ok: bool, ip: str, asn: int) -> None:
        ext = f"e{len(events)}"
        events.append((minute, login(ext, acct, at=at(minute), success=ok, ip=ip, asn=asn,
                                     device_id=f"dev-{acct}")))

    for i, a in enumerate(accts):
        for _ in range(12):
            add(rnd.uniform(-1440, 1440), a, rnd.random() > 0.1, f"203.0.113.{i}", 3320)
    for _ in range(6):  # brute forces, some ending in a success
        a, t = rnd.choice(accts), rnd.uniform(-1400, 1400)
        for k in range(rnd.randint(4, 9)):
            add(t + k * 0.7, a, False, f"198.51.100.{rnd.randint(1, 3)}", 64500)
        if rnd.random() < 0.5:
            add(t + 8, a, True, "198.51.100.1", 64500)
    for burst in range(3):  # stuffing from one IP, or one network's many IPs
        t = rnd.uniform(-1400, 1400)
        for k, a in enumerate(rnd.sample(accts, 40 if burst == 1 else 24)):
            ip = f"192.0.2.{burst}" if burst != 1 else f"192.0.{burst}.{k}"
            add(t + k * 0.2, a, k == 17, ip, 14061 + burst)
    for k, a in enumerate(rnd.sample(accts, 26)):  # slow spraying over a day
        add(-600 + k * 40 + rnd.uniform(0, 5), a, False, "192.0.2.99", 16276)
    events.sort(key=lambda e: e[0])
    deliveries: list[list[dict[str, Any]]] = []
    pending: list[tuple[float, dict[str, Any]]] = []
    i = 0
    while i < len(events):
        size = rnd.randint(1, 40)
        piece, horizon = events[i : i + size], events[min(i + size, len(events)) - 1][0]
        i += size
        keep = [e for e in piece if rnd.random() < 0.875]
        pending += [(e[0] + rnd.uniform(1, 40), e[1]) for e in piece if e not in keep]
        due = [e for e in pending if e[0] <= horizon]
        pending = [e for e in pending if e[0] > horizon]
        deliveries.append([rec for _m, rec in keep + due])
    deliveries.append([rec for _m, rec in pending])
    return accts, [d for d in deliveries if d]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_late_logins_replayed_find_what_the_batch_commands_find(seed, runtime, tmp_path,
                                                                 keyring_path):
    """Deliveries with logins out of order: the windows the watcher replays give exactly
    what a batch `analyze` after each delivery gives."""
    accts, deliveries = shuffled_feed(seed)
    batch = twin(tmp_path, keyring_path, runtime.clock)
    w = Watcher(runtime, CRON, config=FAST, log=quiet)
    try:
        for rt in (runtime, batch):
            ingest_records(rt, "accounts", [account(a) for a in accts])
        for delivery in deliveries:
            ingest_records(runtime, "logins", delivery)
            while w.step() == "more":
                pass
            ingest_records(batch, "logins", delivery)
            anomalies.analyze(batch, CRON)
        watched, batched = outcome(runtime), outcome(batch)
    finally:
        batch.engine.dispose()
    assert w.windows.replays > 5 and w.windows.rebuilds == 1
    assert watched["anomalies"] == batched["anomalies"]
    kinds = {kind for kind, *_ in watched["anomalies"]}
    assert {"brute_force", "credential_stuffing", "password_spraying"} <= kinds


# ---------------------------------------------------------------------- the lease


def lease_runtime(settings: Settings, clock: MovableClock) -> Runtime:
    return Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                   clock=clock)


def test_one_watcher_holds_the_lease_and_a_standby_takes_over(settings):
    clock = MovableClock(FIXED_NOW)
    rt = lease_runtime(settings, clock)
    try:
        first = Watcher(rt, CRON, config=WatchConfig(), log=quiet)
        second = Watcher(rt, CRON, config=WatchConfig(), log=quiet)
        assert first.step() == "idle" and second.step() == "standby"
        clock.advance(seconds=5)  # within the lease: the holder beats, the standby waits
        assert first.step() == "idle" and second.step() == "standby"
        ingest_records(rt, "accounts", [account("A1")])
        ingest_records(rt, "logins", [login("l1", "A1", at=at(0))])
        clock.advance(seconds=7)  # the holder died without a word
        assert second.step() == "idle"
        with rt.sessions() as s:
            judged = s.scalar(select(func.count()).select_from(LoginAnomaly))
            took = s.scalars(select(AuditLogEntry.details).where(
                AuditLogEntry.action == "watch.lease")).all()
        assert anomalies.checkpoint(rt)["login_id"] > 0 and judged == 0
        assert [json.loads(d)["took_over"] for d in took] == [False, True]
        # the old holder wakes up: it has lost the lease and judges nothing
        ingest_records(rt, "logins", [login("l2", "A1", at=at(1))])
        assert first.step() == "standby"
        assert anomalies.checkpoint(rt)["login_id"] < _max_login(rt)
        status = monitoring(rt)
        assert status.running and status.lag_events == 1
    finally:
        rt.engine.dispose()


def monitoring(rt: Runtime) -> watcher.WatcherStatus:
    with rt.sessions() as s:
        return watcher.status(s, rt.clock(), WatchConfig())


def _max_login(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.max(LoginEvent.id))) or 0)


def _run(w: Watcher) -> threading.Thread:
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    return thread


def _until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_two_watchers_judge_every_event_once_and_survive_the_holders_death(settings):
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=utc_now)
    stops = [threading.Event(), threading.Event()]
    pair = [Watcher(rt, CRON, config=FAST, log=quiet, stop=stop) for stop in stops]
    threads = [_run(w) for w in pair]
    try:
        ingest_records(rt, "accounts", [account(f"A{i}") for i in range(5)])
        sent = 0
        for round_ in range(4):
            ingest_records(rt, "logins", [
                login(f"l{round_}-{i}", f"A{i % 5}", at=at(round_ * 10 + i),
                      success=i % 3 != 0) for i in range(10)])
            ingest_records(rt, "withdrawals", [
                withdrawal(f"w{round_}", f"A{round_}", at=at(round_ * 10 + 9))])
            sent += 11
            time.sleep(0.1)
        _until(lambda: sum(w.judged_total for w in pair) >= sent
               and _unjudged(rt) == 0)
        holder = next(w for w in pair if w.holding)
        other = next(w for w in pair if w is not holder)
        holder._release = lambda: None  # type: ignore[method-assign]  # kill -9: no goodbye
        stops[pair.index(holder)].set()
        threads[pair.index(holder)].join(10)
        died = time.monotonic()
        ingest_records(rt, "logins", [login(f"after-{i}", "A1", at=at(100 + i))
                                      for i in range(5)])
        ingest_records(rt, "withdrawals", [withdrawal("after-w", "A1", at=at(106))])
        sent += 6
        # A watcher counts a pass just after its commit: wait for the count too.
        _until(lambda: other.holding and _unjudged(rt) == 0
               and sum(w.judged_total for w in pair) >= sent)
        assert time.monotonic() - died < 10  # taken over within seconds
        time.sleep(1)  # a second judgement of the same events would show by now
        assert sum(w.judged_total for w in pair) == sent  # nothing twice, nothing lost
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(10)
        rt.engine.dispose()


def _unjudged(rt: Runtime) -> int:
    with rt.sessions() as s:
        withdrawals = s.scalar(select(func.count()).select_from(Withdrawal)) or 0
        screened = s.scalar(select(func.count()).select_from(WithdrawalScreening)) or 0
    return int(_max_login(rt) - anomalies.checkpoint(rt)["login_id"] + withdrawals - screened)


# ------------------------------------------------------------------- seen by officers


def test_a_watcher_that_stopped_while_events_wait_is_a_critical_alert(settings):
    clock = MovableClock(FIXED_NOW)
    rt = lease_runtime(settings, clock)
    try:
        ingest_records(rt, "accounts", [account("A1")])
        ingest_records(rt, "logins", [login("l1", "A1", at=at(0))])
        cfg = screening.load_config(rt.settings)
        with rt.sessions() as s:  # no watcher ever ran here: cron may be the design
            assert not watcher.status(s, clock(), WatchConfig()).stale
            assert [a.kind for a in alerts.unacknowledged(s, clock(), cfg)] == []
        w = Watcher(rt, CRON, config=WatchConfig(), log=quiet)
        w.step()
        ingest_records(rt, "logins", [login("l2", "A1", at=at(1))])
        clock.advance(seconds=60)
        status = monitoring(rt)
        assert not status.running and status.lag_events == 1 and not status.stale
        clock.advance(seconds=90)
        status = monitoring(rt)
        assert status.stale and status.lag_seconds is not None and status.lag_seconds > 120
        with rt.sessions() as s:
            found = alerts.unacknowledged(s, clock(), cfg)
        assert [(a.kind, a.severity) for a in found] == [("monitoring", "critical")]
        assert "1 event(s)" in found[0].detail
        with pytest.raises(InputError, match="clears itself"):
            alerts.acknowledge(rt, ANN, found[0].key, outcome="benign")
        w.step()  # judged again: the alert is gone
        with rt.sessions() as s:
            assert alerts.unacknowledged(s, clock(), cfg) == []
    finally:
        rt.engine.dispose()


def test_watch_settings_are_checked():
    def settings(**watch: Any) -> Settings:
        return Settings(db_url="sqlite://", keyring_path=Path("k"), options={"watch": watch})

    assert WatchConfig.from_settings(settings(stale_after_seconds=30)).stale_after_seconds == 30
    for bad in ({"lease_seconds": 0}, {"poll_seconds": "1"}, {"nope": 1},
                {"lease_seconds": 3, "heartbeat_seconds": 2}, {"required": 1}):
        with pytest.raises(InputError):
            WatchConfig.from_settings(settings(**bad))



# ------------------------------------------------------------------- the service


class Service:
    """`polysec watch --log-format json` in a process of its own."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "polysec_tui", "watch", "--log-format", "json"],
            env=env, stdout=subprocess.PIPE, stderr=log.open("wb"))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def saw(self, event: str) -> bool:
        return any(e["event"] == event for e in self.events())


def test_watch_takes_over_after_kill_9_and_stops_cleanly_on_sigterm(settings, tmp_path):
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=utc_now)
    officers.bootstrap_admin(rt, "root", "a-long-Officer-passphrase")
    officers.seed_officers(rt, [("cron", "automation", None)], utc_now() - timedelta(days=1))
    with rt.sessions() as s:
        admin = Actor(s.scalars(select(Officer.id).where(Officer.name == "root")).one(),
                      "root", "admin")
    token, _ = sessions.create_token(rt, admin, "cron")
    config = tmp_path / "polysec.toml"
    config.write_text("[watch]\npoll_seconds = 0.1\nheartbeat_seconds = 0.3\n"
                      "lease_seconds = 1.5\nstandby_seconds = 0.2\n")
    env = {**os.environ, "POLYSEC_DB_URL": settings.db_url,
           "POLYSEC_KEYRING": str(settings.keyring_path), "POLYSEC_TOKEN": token,
           "POLYSEC_CONFIG": str(config), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    first = Service(env, tmp_path / "first.log")
    second: Service | None = None
    try:
        _until(lambda: first.saw("lease.acquired"))
        second = Service(env, tmp_path / "second.log")
        _until(lambda: second is not None and second.saw("watch.start"))
        ingest_records(rt, "accounts", [account("A1"), account("A2")])
        ingest_records(rt, "logins", [login(f"b{i}", "A1", at=at(i), success=False,
                                            ip="198.51.100.7") for i in range(5)])
        _until(lambda: _count(rt, LoginAnomaly) == 5)
        first.proc.kill()  # kill -9: no goodbye, the lease stays taken until it expires
        first.proc.wait(10)
        ingest_records(rt, "logins", [login(f"b{i}", "A1", at=at(i), success=False,
                                            ip="198.51.100.7") for i in range(5, 8)])
        ingest_records(rt, "withdrawals", [withdrawal("W1", "A2", at=at(9))])
        _until(lambda: _unjudged(rt) == 0 and _count(rt, WithdrawalScreening) == 1)
        assert _count(rt, LoginAnomaly) == 8  # the burst's new attempts, each once
        took = [e for e in second.events() if e["event"] == "lease.acquired"]
        assert len(took) == 1 and took[0]["took_over_from"]
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(15) == 0
        assert second.events()[-1]["event"] == "watch.stop"
        assert second.proc.stdout is not None and second.proc.stdout.read() == b""
        with rt.sessions() as s:
            lease = s.get(WatcherLease, watcher.LEASE)
            assert lease is not None and lease.holder is None  # released on SIGTERM
    finally:
        for service in (first, second):
            if service is not None and service.proc.poll() is None:
                service.proc.kill()
                service.proc.wait(10)
        rt.engine.dispose()


def _count(rt: Runtime, model: Any) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_the_documented_systemd_service_verifies(tmp_path):
    doc = (ROOT / "docs" / "bastion.md").read_text()
    section = doc.split("## Monitoring: the detector service", 1)[1]
    unit = section.split("```ini\n", 1)[1].split("```", 1)[0]
    options = dict(line.split("=", 1) for line in unit.splitlines()
                   if "=" in line and not line.startswith("#"))
    assert options["ExecStart"] == "/opt/polysec/venv/bin/polysec watch --log-format json"
    for key, value in {"Restart": "always", "KillSignal": "SIGTERM", "User": "polysec",
                       "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "EnvironmentFile": "/etc/polysec/watch.env"}.items():
        assert options[key] == value, key
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed: the unit's options were checked above")
    fake = tmp_path / "polysec"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    path = tmp_path / "polysec-watch.service"
    path.write_text(unit.replace("/opt/polysec/venv/bin/polysec", str(fake)))
    checked = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
    path.write_text(unit.replace("Restart=always", "Restart=allways"))
    broken = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                            check=False)
    assert "allways" in broken.stderr  # the check can fail


def test_ingests_take_turns_so_ids_arrive_in_commit_order(runtime):
    """A detector that judged every id up to N must never see a lower id commit later:
    an ingest waits for the one under way, and its ids come after all of that one's."""
    ingest_records(runtime, "accounts", [account("A1")])
    first_open = threading.Event()
    finish_first = threading.Event()

    def long_ingest() -> None:
        with runtime.transaction() as session:
            Ingestor(runtime, "logins").run_in(session, enumerate(
                [login(f"long{i}", "A1", at=at(i)) for i in range(3)], 1))
            first_open.set()
            finish_first.wait(20)

    thread = threading.Thread(target=long_ingest)
    thread.start()
    try:
        assert first_open.wait(20)
        second = threading.Thread(target=ingest_records, args=(
            runtime, "logins", [login("short", "A1", at=at(9))]))
        second.start()
        time.sleep(0.5)
        assert second.is_alive()  # waits for its turn
        assert _max_login(runtime) == 0  # nothing committed yet: nothing to judge
    finally:
        finish_first.set()
        thread.join(20)
    second.join(20)
    with runtime.sessions() as s:
        ids = dict(s.execute(select(LoginEvent.external_id, LoginEvent.id)).all())
    assert ids["short"] > max(ids[f"long{i}"] for i in range(3))


def test_a_pass_longer_than_the_lease_keeps_it(settings, monkeypatch):
    """A slow pass (a rebuild of the windows, a loaded host) renews the heartbeat as it
    goes: the standby does not take over a holder that is working."""
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=utc_now)
    real = anomalies.analyze_new

    def slow(*args: Any) -> Any:
        time.sleep(3 * FAST.lease_seconds)
        return real(*args)

    monkeypatch.setattr(anomalies, "analyze_new", slow)
    try:
        holder = Watcher(rt, CRON, config=FAST, log=quiet)
        standby = Watcher(rt, CRON, config=FAST, log=quiet)
        assert holder.step() == "idle"
        ingest_records(rt, "accounts", [account("A1")])
        ingest_records(rt, "logins", [login("l1", "A1", at=at(0))])
        working = threading.Thread(target=holder.step)
        working.start()
        states = set()
        while working.is_alive():
            states.add(standby.step())
            time.sleep(FAST.standby_seconds)
        working.join()
        assert states == {"standby"} and holder.holding
        assert anomalies.checkpoint(rt)["login_id"] == _max_login(rt)
    finally:
        rt.engine.dispose()


def test_withdrawals_screened_by_another_run_move_the_watermark(runtime):
    """A database screened by cron or the demo's own run: the watcher looks at those
    withdrawals once, then its watermark stands past them and nothing shows as waiting."""
    ingest_records(runtime, "accounts", [account("A1")])
    ingest_records(runtime, "withdrawals", [withdrawal(f"W{i}", "A1") for i in range(3)])
    screening.screen(runtime, CRON)
    w = Watcher(runtime, CRON, config=FAST, log=quiet)
    assert w.step() == "idle"
    assert w.after == _newest_withdrawal(runtime) and w._pending() == (False, False)
    assert monitoring(runtime).lag_events == 0
    ingest_records(runtime, "withdrawals", [withdrawal("W9", "A1")])
    assert w.step() == "idle" and w.after == _newest_withdrawal(runtime)
    assert _count(runtime, WithdrawalScreening) == 4


def _newest_withdrawal(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.max(Withdrawal.id))) or 0)
