"""The detector service (`polysec watch`): every event judged within seconds of arrival.

One loop, one process holding the lease:

* **Wake.** On PostgreSQL a LISTEN connection (:mod:`monitoring.live`: the triggers of
  migration 0006 notify at each commit of an ingest); on SQLite and MariaDB a poll every
  ``poll_seconds``. Either way the question "is there anything new" is two primary-key
  maxima compared with the checkpoints: near free when idle.
* **Judge.** The logins newer than the login checkpoint go through every login detector
  (:func:`anomalies.analyze_new`: the window detectors on sliding windows this process
  keeps between passes, so a pass reads only what arrived; the profile detectors as the
  batch run does them), then the withdrawals above the screening watermark through
  screening (:func:`screening.screen_new`). The code is the batch commands' code; `polysec
  logins analyze` and `withdrawals screen` stay for backfills and cron, and may run
  alongside (both take the same checkpoint locks; findings are unique, so nothing is
  written twice). A pass takes at most ``PASS_LOGINS`` logins and ``PASS_WITHDRAWALS``
  withdrawals, so a backlog is worked off in short transactions with heartbeats between.
* **Lease.** One row (``watcher_lease``): the holder renews its heartbeat every
  ``heartbeat_seconds``; a standby takes the lease over when the heartbeat is older than
  ``lease_seconds``. Findings and the login checkpoint move in one transaction, verdicts
  are written only for withdrawals still unscreened, so a holder killed at any moment
  leaves nothing half-done and its successor repeats nothing. A holder that finds its
  lease taken (it was paused longer than the lease) stops judging and becomes a standby.
* **Seen.** The lease row carries what the dashboard shows (:func:`status`): who holds
  it, when it last had nothing waiting, how much it judged in the last minute, its last
  error. When events wait and no watcher has caught up for ``stale_after_seconds``, the
  dashboard raises a critical alert (:mod:`monitoring.alerts`).

Times on the lease are the watcher hosts' clocks: keep them in NTP sync (a standby whose
clock runs ahead takes over early; both then judge, which is safe but wasteful).
This module never imports textual.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from polysec_tui.config import Settings
from polysec_tui.db.models import AnalysisCheckpoint, LoginEvent, WatcherLease, Withdrawal
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.logins import anomalies
from polysec_tui.services.monitoring.live import ChangeListener, listener_for
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.officers.sessions import session_state
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import review, screening

LEASE = "detector"
PASS_LOGINS = 50_000
PASS_WITHDRAWALS = 5_000
CLAIMS_SECONDS = 15.0  # how often idle claims are returned to the queue
ERROR_MAX = 400
Log = Callable[..., None]  # log(event, **fields): one line per event of note


@dataclass(frozen=True)
class WatchConfig:
    """``[watch]`` in the configuration file; docs/monitoring.md says why each default."""

    poll_seconds: float = 0.5  # SQLite, MariaDB: how often to look for new events
    heartbeat_seconds: float = 2.0
    lease_seconds: float = 6.0  # a heartbeat older than this: the holder is dead
    standby_seconds: float = 1.0  # how often a standby tries the lease
    stale_after_seconds: float = 120.0  # events waiting this long unjudged: critical alert
    sweep_seconds: float = 600.0  # re-screen below the watermark (late commits)
    lateness_seconds: float = 3600.0  # a login this late replays its windows only
    required: bool = False  # alert on a database where no watcher ever ran, too

    @classmethod
    def from_settings(cls, settings: Settings) -> WatchConfig:
        raw = settings.section("watch")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(f"config: [watch] has no setting {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "required":
                if not isinstance(value, bool):
                    raise InputError("config: [watch] required must be true or false")
            elif (isinstance(value, bool) or not isinstance(value, int | float)
                  or not 0 < value <= 86_400):
                raise InputError(f"config: [watch] {name} must be a number of seconds "
                                 "above 0")
            values[name] = value
        config = cls(**values)
        if config.heartbeat_seconds * 2 > config.lease_seconds:
            raise InputError("config: [watch] lease_seconds must be at least twice "
                             "heartbeat_seconds")
        return config


@dataclass(frozen=True)
class WatcherStatus:
    """What officers see of monitoring (the dashboard, `polysec status --json`)."""

    running: bool  # a holder renewed its heartbeat within the lease time
    ever_ran: bool  # a watcher has held the lease on this database
    host: str | None
    pid: int | None
    since: datetime | None  # when the holder took the lease
    heartbeat_at: datetime | None
    lag_events: int  # logins and withdrawals not judged yet
    lag_seconds: float | None  # how long events have waited (None: nothing waits)
    judged_last_minute: int
    judged_total: int
    last_error: str | None
    last_error_at: datetime | None
    stale: bool  # events wait and nothing judged them for stale_after_seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(session: Session, now: datetime, config: WatchConfig) -> WatcherStatus:
    """Read by any console: the lease row and two primary-key maxima."""
    lease = session.get(WatcherLease, LEASE)
    login_cp = session.scalar(select(AnalysisCheckpoint.login_id)
                              .where(AnalysisCheckpoint.name == anomalies.CHECKPOINT)) or 0
    max_login = session.scalar(select(func.max(LoginEvent.id))) or 0
    max_withdrawal = session.scalar(select(func.max(Withdrawal.id))) or 0
    screened_to = lease.withdrawal_id if lease is not None else 0
    lag = max(0, max_login - login_cp) + max(0, max_withdrawal - screened_to)
    if lease is None:
        stale = config.required and lag > 0
        return WatcherStatus(False, False, None, None, None, None, lag, None, 0, 0, None,
                             None, stale)
    running = (lease.holder is not None and lease.heartbeat_at is not None
               and now - lease.heartbeat_at <= timedelta(seconds=config.lease_seconds))
    waited_from = lease.caught_up_at or lease.acquired_at
    lag_seconds = None
    if lag and waited_from is not None:
        lag_seconds = max(0.0, (now - waited_from).total_seconds())
    stale = lag > 0 and (lag_seconds is None or lag_seconds > config.stale_after_seconds)
    return WatcherStatus(
        running, True, lease.host if running else None, lease.pid if running else None,
        lease.acquired_at if running else None, lease.heartbeat_at, lag, lag_seconds,
        lease.judged_last_minute if running else 0, lease.judged_total, lease.last_error,
        lease.last_error_at, stale)


def describe(status: WatcherStatus, now: datetime) -> str:
    """One line for the dashboard and `polysec status`, the state first (it must read
    at 80 columns)."""
    waiting = "caught up"
    if status.lag_events:
        waiting = f"{status.lag_events:,} waiting"
        if status.lag_seconds is not None:
            waiting += f" {_ago(status.lag_seconds)}"
    if status.running:
        line = (f"live, {waiting}, {status.judged_last_minute:,} judged/min; watcher on "
                f"{status.host} (pid {status.pid})")
    elif status.ever_ran:
        beat = ("" if status.heartbeat_at is None else
                f" (last seen {_ago((now - status.heartbeat_at).total_seconds())} ago)")
        line = f"STOPPED, {waiting}: no watcher runs{beat}"
    else:
        line = f"off, {waiting}: no `polysec watch` on this database"
    if status.last_error and status.last_error_at is not None:
        age = (now - status.last_error_at).total_seconds()
        if age < 3600:
            line += f"; last error {_ago(age)} ago: {status.last_error}"
    return line


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


class LeaseLost(Exception):
    """Another watcher holds the lease now."""


class Watcher:
    """One `polysec watch` process. :meth:`run` returns when ``stop`` is set (after the
    pass under way) or the officer's session can no longer act (RefusedError)."""

    def __init__(self, rt: Runtime, actor: Actor, *, config: WatchConfig,
                 log: Log, stop: threading.Event | None = None) -> None:
        require(actor, "logins.analyze")
        require(actor, "withdrawals.screen")
        self.rt = rt
        self.actor = actor
        self.config = config
        self.log = log
        self.stop = stop or threading.Event()
        self.host = socket.gethostname()[:128]
        self.holder = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.screening = screening.load_config(rt.settings)
        self.windows = anomalies.WindowState(
            lateness=timedelta(seconds=config.lateness_seconds))
        self.holding = False
        self.after = 0  # the screening watermark
        self.judged: deque[tuple[float, int]] = deque()  # (monotonic, events) of passes
        self.judged_total = 0
        self.last_heartbeat = 0.0
        self.last_sweep = 0.0
        self.last_claims = 0.0
        self.last_session_check = 0.0
        self.caught_up = False
        self.listener: ChangeListener | None = None

    # ----------------------------------------------------------------------- the loop

    def run(self) -> None:
        self._audit("watch.start", {"host": self.host, "pid": os.getpid()})
        self.log("watch.start", host=self.host, pid=os.getpid(), holder=self.holder,
                 database=self.rt.database_label)
        backoff = 1.0
        try:
            while not self.stop.is_set():
                try:
                    state = self.step()
                    backoff = 1.0
                except SQLAlchemyError as exc:
                    self.windows.reset()
                    self._close_listener()
                    reason = _reason(exc)
                    self.log("error", level="error", error=reason, retry_s=backoff)
                    self._record_error(reason)
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if state == "standby":
                    self.stop.wait(self.config.standby_seconds)
                elif state == "idle":
                    self._wait()
        finally:
            self._close_listener()
            self._release()
            self.log("watch.stop", holder=self.holder, judged=self.judged_total)
            self._audit("watch.stop", {"host": self.host, "pid": os.getpid(),
                                       "judged": self.judged_total})

    def step(self) -> str:
        """One turn of the loop: take or renew the lease, judge what waits. Returns
        "standby" (another watcher holds the lease), "more" (a bounded pass left work
        behind) or "idle" (caught up)."""
        self._check_session()
        if not self.holding:
            self._try_lease()
            if not self.holding:
                return "standby"
        try:
            self._beat()
            return "more" if self._pass() else "idle"
        except LeaseLost:
            self.holding = False
            self.windows.reset()
            self.log("lease.lost", level="warning", holder=self.holder)
            return "standby"

    def _check_session(self) -> None:
        """An officer disabled or a token revoked stops the watcher within a minute."""
        if self.actor.session_id is None:
            return
        now = time.monotonic()
        if now - self.last_session_check < 60:
            return
        self.last_session_check = now
        problem = session_state(self.rt, self.actor)
        if problem:
            raise RefusedError(f"the watcher's session cannot act: {problem}")

    def _wait(self) -> None:
        """Until something may have arrived: a notification on PostgreSQL (woken at least
        every heartbeat), the poll interval elsewhere."""
        timeout = min(self.config.heartbeat_seconds, self.config.poll_seconds)
        if self.rt.engine.dialect.name == "postgresql":
            if self.listener is None:
                self.listener = listener_for(self.rt.engine)
            if self.listener is not None:
                try:
                    self.listener.wait(self.config.heartbeat_seconds)
                except Exception as exc:  # the driver's own errors: fall back to the poll
                    self.log("listen.error", level="warning", error=_reason(exc))
                    self._close_listener()
                    self.stop.wait(timeout)
                return
        self.stop.wait(timeout)

    def _close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    # ---------------------------------------------------------------------- the lease

    def _try_lease(self) -> None:
        now = self.rt.clock()
        expired = now - timedelta(seconds=self.config.lease_seconds)
        with self.rt.transaction() as session:
            if session.get(WatcherLease, LEASE) is None:
                try:
                    with session.begin_nested():  # two first watchers may race to create it
                        session.add(WatcherLease(name=LEASE, withdrawal_id=0, judged_total=0,
                                                 judged_last_minute=0))
                except IntegrityError:
                    pass
            lease = session.scalars(select(WatcherLease).where(WatcherLease.name == LEASE)
                                    .with_for_update()).one()
            previous = lease.holder
            free = (lease.holder is None or lease.holder == self.holder
                    or lease.heartbeat_at is None or lease.heartbeat_at < expired)
            if not free:
                return
            lease.holder, lease.host, lease.pid = self.holder, self.host, os.getpid()
            lease.acquired_at = lease.heartbeat_at = now
            lease.caught_up_at = None
            lease.judged_last_minute = 0
            self.after = lease.withdrawal_id
            self.rt.audit.append(session, officer=self.actor.name, action="watch.lease",
                                 at=now, target=f"watcher:{LEASE}",
                                 details={"host": self.host, "pid": os.getpid(),
                                          "took_over": previous is not None})
        self.holding = True
        self.windows.reset()  # rebuilt once, from the database, by the first pass
        self.last_heartbeat = time.monotonic()
        self.last_sweep = time.monotonic()
        self.log("lease.acquired", holder=self.holder, took_over_from=previous,
                 screened_to=self.after)

    def _beat(self, force: bool = False) -> None:
        now_m = time.monotonic()
        if not force and now_m - self.last_heartbeat < self.config.heartbeat_seconds:
            return
        while self.judged and now_m - self.judged[0][0] > 60:
            self.judged.popleft()
        values: dict[str, Any] = {
            "heartbeat_at": self.rt.clock(), "withdrawal_id": self.after,
            "judged_total": self.judged_total,
            "judged_last_minute": sum(n for _t, n in self.judged)}
        if self.caught_up:
            values["caught_up_at"] = self.rt.clock()
        self._update(values)
        self.last_heartbeat = now_m

    def _update(self, values: dict[str, Any]) -> None:
        with self.rt.transaction() as session:
            done = session.execute(update(WatcherLease).where(
                WatcherLease.name == LEASE, WatcherLease.holder == self.holder).values(values))
            if done.rowcount == 0:  # type: ignore[attr-defined]
                raise LeaseLost()

    def _release(self) -> None:
        if not self.holding:
            return
        self.holding = False
        try:
            with self.rt.transaction() as session:
                session.execute(update(WatcherLease).where(
                    WatcherLease.name == LEASE, WatcherLease.holder == self.holder).values(
                    holder=None, host=None, pid=None, heartbeat_at=self.rt.clock(),
                    withdrawal_id=self.after, judged_total=self.judged_total,
                    judged_last_minute=0))
        except SQLAlchemyError as exc:  # the standby takes over when the lease expires
            self.log("lease.release_failed", level="warning", error=_reason(exc))

    def _record_error(self, reason: str) -> None:
        if not self.holding:
            return
        # The database may be what failed: then the log line carries the error.
        with contextlib.suppress(SQLAlchemyError, LeaseLost):
            self._update({"last_error": reason[:ERROR_MAX], "last_error_at": self.rt.clock()})

    # ----------------------------------------------------------------------- the pass

    def _pending(self) -> tuple[bool, bool]:
        """(logins waiting, withdrawals waiting): primary-key maxima."""
        with self.rt.sessions() as session:
            cp = session.scalar(select(AnalysisCheckpoint.login_id).where(
                AnalysisCheckpoint.name == anomalies.CHECKPOINT)) or 0
            max_login = session.scalar(select(func.max(LoginEvent.id))) or 0
            max_withdrawal = session.scalar(select(func.max(Withdrawal.id))) or 0
        return max_login > cp, max_withdrawal > self.after

    def _pass(self) -> bool:
        """Judge what waits; True when a bounded pass may have left more behind."""
        logins, withdrawals = self._pending()
        sweep = time.monotonic() - self.last_sweep >= self.config.sweep_seconds
        more = False
        judged = 0
        lost = threading.Event()
        if logins:
            self._fence()
            try:
                with self._keepalive(lost):
                    report = anomalies.analyze_new(self.rt, self.windows, PASS_LOGINS)
            except BaseException:
                self.windows.reset()
                raise
            judged += report.logins
            more = report.to_login_id - report.from_login_id >= PASS_LOGINS
            if report.new_anomalies:
                self.log("anomalies", logins=report.logins, found=report.new_anomalies,
                         to_login_id=report.to_login_id, seconds=round(report.seconds, 3))
        if (withdrawals or sweep) and not lost.is_set():
            self._fence()
            with self._keepalive(lost):
                screened, left = self._screen(sweep)
            judged += screened
            more = more or left
        if time.monotonic() - self.last_claims >= CLAIMS_SECONDS and not lost.is_set():
            self.last_claims = time.monotonic()
            expired = review.expire_claims(self.rt, self.actor)
            if expired:
                self.log("claims_expired", withdrawals=len(expired), first=expired[0])
        self.judged_total += judged
        if judged:
            self.judged.append((time.monotonic(), judged))
        if lost.is_set():
            raise LeaseLost()
        was_caught_up = self.caught_up
        self.caught_up = not more
        if judged or self.caught_up != was_caught_up:
            self._beat(force=True)
        return more

    def _screen(self, sweep: bool) -> tuple[int, bool]:
        """Screen the withdrawals above the watermark (and, on a sweep, any left
        without a verdict below it): the number judged, and whether more may wait."""
        judged = 0
        if sweep:
            self.last_sweep = time.monotonic()
            swept, _after, _left = screening.screen_new(self.rt, self.screening, 0,
                                                        PASS_WITHDRAWALS)
            judged += swept.screened
            self._log_screening(swept, sweep=True)
        report, self.after, left = screening.screen_new(self.rt, self.screening,
                                                        self.after, PASS_WITHDRAWALS)
        self._log_screening(report, sweep=False)
        return judged + report.screened, left

    @contextlib.contextmanager
    def _keepalive(self, lost: threading.Event) -> Iterator[None]:
        """A pass may outlast the lease (a rebuild of the windows, a backlog, a loaded
        host): a thread renews the heartbeat meanwhile, so that the standby does not take
        over from a holder that is working. A lease found taken meanwhile sets ``lost``;
        the pass counts what it wrote (sound: findings and verdicts are never doubled)
        and then gives the lease up."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.config.heartbeat_seconds):
                try:
                    self._update({"heartbeat_at": self.rt.clock()})
                except LeaseLost:
                    lost.set()
                    return
                except SQLAlchemyError:
                    pass  # the pass meets the same error and reports it

        thread = threading.Thread(target=renew, name="polysec-watch-keepalive", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _fence(self) -> None:
        """Judge only while holding the lease, checked just before: a holder paused
        longer than the lease has lost it, and must find out before it writes."""
        self._beat(force=True)

    def _log_screening(self, report: screening.ScreenReport, *, sweep: bool) -> None:
        if report.screened:
            self.log("screened", withdrawals=report.screened, held=report.held,
                     hits=report.hits, sweep=sweep, seconds=round(report.seconds, 3))

    def _audit(self, action: str, details: dict[str, Any]) -> None:
        try:
            with self.rt.transaction() as session:
                self.rt.audit.append(session, officer=self.actor.name, action=action,
                                     at=self.rt.clock(), target=f"watcher:{LEASE}",
                                     details=details)
        except SQLAlchemyError as exc:
            self.log("audit.error", level="error", error=_reason(exc))


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:ERROR_MAX]

