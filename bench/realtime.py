"""Real-time monitoring benchmark: `polysec watch` under a steady feed, and a kill -9.

Builds a fresh database (SQLite in a temp dir, or ``--postgres URL``: a new database on
that server, dropped at the end), an automation officer and its token, and starts two
`polysec watch` processes (the second stands by). Then `polysec simulate`'s generator
feeds ``--rate`` events a second (logins, sessions, security events, withdrawals, new
accounts, an attack every ``--attack-every`` seconds) through the ingest path, one
transaction per tick, for ``--minutes``. Halfway, the watcher holding the lease is
killed with SIGKILL.

Measured:

* **latency**: from the commit of a tick to the moment its logins' findings (the login
  checkpoint passed them, in the transaction that wrote the findings) and its
  withdrawals' verdicts and holds are committed, so readable by any console. A poller
  reads both every 50 ms (so figures are at most 50 ms late). p50/p95/p99 over events;
  the ticks from 10 s before to 30 s after the kill are reported apart (the takeover);
* **the watchers**: CPU seconds per wall second and peak RSS (VmHWM) of each process;
* **the takeover**: seconds from the SIGKILL to the standby holding the lease;
* **missed**: logins above the checkpoint and withdrawals without a verdict once the
  feed has stopped and the standby has caught up (must be 0). Written twice is 0 by
  construction (findings unique per login and kind, a verdict per withdrawal, the
  checkpoint moving in the findings' transaction); the figures show the row counts.

    .venv/bin/python bench/realtime.py                       # SQLite, 500/s, 10 min
    .venv/bin/python bench/realtime.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/realtime.py --minutes 1           # a quick look

Progress goes to stderr; the figures are one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.db.models import (
    AnalysisCheckpoint,
    LoginAnomaly,
    LoginEvent,
    Officer,
    WatcherLease,
    Withdrawal,
    WithdrawalScreening,
)
from polysec_tui.services.officers import registry, sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime, utc_now
from polysec_tui.synthetic.simulate import SimSpec, Simulator

ROOT = Path(__file__).resolve().parents[1]
POLL = 0.05


class TimedSimulator(Simulator):
    """Notes, after each tick's commit, when it committed and the ids it reached."""

    ticks: list[tuple[float, int, int, int, int]]  # (commit, login hi, withdrawal hi, n, m)

    def _tick(self, n: int) -> None:
        logins_before = self.report.inserted["logins"]
        withdrawals_before = self.report.inserted["withdrawals"]
        super()._tick(n)
        committed = time.monotonic()
        with self.rt.sessions() as s:
            hi_login = s.scalar(select(func.max(LoginEvent.id))) or 0
            hi_withdrawal = s.scalar(select(func.max(Withdrawal.id))) or 0
        self.ticks.append((committed, hi_login, hi_withdrawal,
                           self.report.inserted["logins"] - logins_before,
                           self.report.inserted["withdrawals"] - withdrawals_before))


class Poller(threading.Thread):
    """How far judgement has got, every 50 ms: (time, login checkpoint, highest
    withdrawal with a verdict)."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(daemon=True)
        self.rt = rt
        self.seen: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with self.rt.sessions() as s:
                cp = s.scalar(select(AnalysisCheckpoint.login_id).where(
                    AnalysisCheckpoint.name == "logins")) or 0
                screened = s.scalar(select(func.max(WithdrawalScreening.withdrawal_id))) or 0
            self.seen.append((time.monotonic(), int(cp), int(screened)))
            self.stop.wait(POLL)


def latencies(ticks: list[tuple[float, int, int, int, int]],
              seen: list[tuple[float, int, int]]) -> list[tuple[float, float, int]]:
    """(commit time, latency, events) per tick and kind, from the poller's samples."""
    out: list[tuple[float, float, int]] = []
    j_login = j_withdrawal = 0
    for committed, hi_login, hi_withdrawal, n_logins, n_withdrawals in ticks:
        if n_logins:
            while j_login < len(seen) and (seen[j_login][0] < committed
                                           or seen[j_login][1] < hi_login):
                j_login += 1
            if j_login < len(seen):
                out.append((committed, seen[j_login][0] - committed, n_logins))
        if n_withdrawals:
            while j_withdrawal < len(seen) and (seen[j_withdrawal][0] < committed
                                                or seen[j_withdrawal][2] < hi_withdrawal):
                j_withdrawal += 1
            if j_withdrawal < len(seen):
                out.append((committed, seen[j_withdrawal][0] - committed, n_withdrawals))
    return out


def percentiles(samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    values = sorted(v for _t, v, n in samples for _ in range(n))
    if not values:
        return {"events": 0}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"events": len(values), "p50_s": round(q[49], 3), "p95_s": round(q[94], 3),
            "p99_s": round(q[98], 3), "max_s": round(values[-1], 3)}


def proc_figures(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) and peak RSS of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) // 1024
    return {"cpu_s": cpu, "peak_rss_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--attack-every", type=float, default=20.0)
    parser.add_argument("--population", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="run on a fresh database on this PostgreSQL server")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="polysec-realtime-"))
    url = (_create_database(args.postgres) if args.postgres
           else f"sqlite:///{work / 'polysec.db'}")
    keyring = work / "keyring.json"
    write_new_keyring(keyring, Keyring.generate())
    engine = make_engine(url)
    migrate.upgrade(engine)
    rt = Runtime(Settings(db_url=url, keyring_path=keyring), engine, load_keyring(keyring),
                 clock=utc_now)
    watchers: list[subprocess.Popen[bytes]] = []
    try:
        token = _automation_token(rt)
        env = {**os.environ, "POLYSEC_DB_URL": url, "POLYSEC_KEYRING": str(keyring),
               "POLYSEC_TOKEN": token, "XDG_CONFIG_HOME": str(work / "xdg"),
               "PYTHONPATH": str(ROOT)}
        for name in ("first", "second"):
            watchers.append(subprocess.Popen(
                [sys.executable, "-m", "polysec_tui", "watch", "--log-format", "json"],
                env=env, stdout=subprocess.DEVNULL,
                stderr=(work / f"{name}.log").open("wb")))
            time.sleep(2)  # the first takes the lease; the second stands by
        poller = Poller(rt)
        poller.start()
        duration = args.minutes * 60
        sim = TimedSimulator(rt, SimSpec(rate=args.rate, duration=duration / 2,
                                         seed=args.seed, attack_every=args.attack_every,
                                         population=args.population, report_every=30))
        sim.ticks = []
        progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
        sim.run(progress=progress)
        holder_pid = _holder_pid(rt)
        killed = next(w for w in watchers if w.pid == holder_pid)
        standby = next(w for w in watchers if w is not killed)
        killed_figures = proc_figures(killed.pid)
        killed_at = time.monotonic()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        second_half = TimedSimulator(rt, SimSpec(rate=args.rate, duration=duration / 2,
                                                 seed=args.seed + 1,
                                                 attack_every=args.attack_every,
                                                 population=args.population,
                                                 report_every=30))
        second_half.ticks = []
        takeover: list[float] = []

        def watch_lease() -> None:
            while time.monotonic() - killed_at < 60:
                if _holder_pid(rt) == standby.pid:
                    takeover.append(time.monotonic() - killed_at)
                    return
                time.sleep(0.05)

        lease_thread = threading.Thread(target=watch_lease, daemon=True)
        lease_thread.start()
        second_half.run(progress=progress)
        fed_until = time.monotonic()
        caught_up = _wait_caught_up(rt, 180)
        poller.stop.set()
        poller.join()
        lease_thread.join()
        standby_figures = proc_figures(standby.pid)
        wall_first = killed_at - poller.seen[0][0]
        wall_second = time.monotonic() - poller.seen[0][0]
        ticks = sim.ticks + second_half.ticks
        samples = latencies(ticks, poller.seen)
        # Events committed just before the kill wait for the takeover too.
        around = [s for s in samples if killed_at - 10 <= s[0] <= killed_at + 30]
        steady = [s for s in samples if s not in around]
        with rt.sessions() as s:
            max_login = s.scalar(select(func.max(LoginEvent.id))) or 0
            checkpoint = s.scalar(select(AnalysisCheckpoint.login_id).where(
                AnalysisCheckpoint.name == "logins")) or 0
            withdrawals = s.scalar(select(func.count()).select_from(Withdrawal)) or 0
            verdicts = s.scalar(select(func.count()).select_from(WithdrawalScreening)) or 0
            findings = s.scalar(select(func.count()).select_from(LoginAnomaly)) or 0
            distinct = s.scalar(select(func.count()).select_from(
                select(LoginAnomaly.kind, LoginAnomaly.login_event_id).distinct().subquery()))
            logins = s.scalar(select(func.count()).select_from(LoginEvent)) or 0
        out = {
            "engine": engine.dialect.name, "rate": args.rate, "minutes": args.minutes,
            "events_fed": sim.report.events + second_half.report.events,
            "logins": logins, "withdrawals": withdrawals,
            "attacks": len(sim.report.attacks) + len(second_half.report.attacks),
            "latency_steady": percentiles(steady),
            "latency_around_kill": percentiles(around),
            "takeover_s": round(takeover[0], 2) if takeover else None,
            "caught_up_s_after_feed": caught_up,
            "missed": int(max_login - checkpoint) + int(withdrawals - verdicts),
            "findings": findings, "findings_distinct": distinct, "verdicts": verdicts,
            "killed_watcher": {"cpu_share": round(killed_figures["cpu_s"] / wall_first, 3),
                               "peak_rss_mib": killed_figures["peak_rss_mib"]},
            "standby_watcher": {"cpu_share": round(standby_figures["cpu_s"] / wall_second, 3),
                                "peak_rss_mib": standby_figures["peak_rss_mib"]},
            "fed_seconds": round(fed_until - poller.seen[0][0], 1),
        }
        print(json.dumps(out, indent=2))
    finally:
        for w in watchers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    w.kill()
        rt.engine.dispose()
        if args.postgres:
            _drop_database(args.postgres, url)


def _automation_token(rt: Runtime) -> str:
    registry.bootstrap_admin(rt, "root", "a-long-bench-passphrase")
    registry.seed_officers(rt, [("watch-bot", "automation", None)],
                           utc_now() - timedelta(days=1))
    with rt.sessions() as s:
        root = s.scalars(select(Officer.id).where(Officer.name == "root")).one()
    token, _ = sessions.create_token(rt, Actor(root, "root", "admin"), "watch-bot")
    return token


def _holder_pid(rt: Runtime) -> int | None:
    with rt.sessions() as s:
        lease = s.get(WatcherLease, "detector")
        return None if lease is None or lease.holder is None else lease.pid


def _wait_caught_up(rt: Runtime, timeout: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with rt.sessions() as s:
            max_login = s.scalar(select(func.max(LoginEvent.id))) or 0
            cp = s.scalar(select(AnalysisCheckpoint.login_id).where(
                AnalysisCheckpoint.name == "logins")) or 0
            withdrawals = s.scalar(select(func.count()).select_from(Withdrawal)) or 0
            verdicts = s.scalar(select(func.count()).select_from(WithdrawalScreening)) or 0
        if cp >= max_login and verdicts >= withdrawals:
            return round(time.monotonic() - began, 2)
        time.sleep(0.1)
    return None


def _create_database(server: str) -> str:
    name = f"polysec_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return parse_url(server).set(database=name).render_as_string(hide_password=False)


def _drop_database(server: str, url: str) -> None:
    name = parse_url(url).database
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


if __name__ == "__main__":
    main()
