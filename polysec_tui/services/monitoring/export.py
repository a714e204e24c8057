"""The SIEM export: officer audit entries, alerts (opened, grown, acknowledged) and the
watcher's health, streamed to syslog collectors and signed webhooks as they happen.

An officer's action never waits for a SIEM: it only appends its audit entry, as always.
The watcher that holds the lease (`polysec watch`) runs the :class:`Exporter` in a thread
of its own, in two steps:

- **produce**: copy new audit entries into the outbox (``export_events``), add an event
  for each alert that opened or grew since the last look and for each acknowledgement,
  and a health event every ``health_seconds`` (and at once when the watcher's state
  changes), in one transaction with the ``audit`` cursor. One writer at a time (the
  lease, and the cursor's row lock), so outbox ids commit in order.
- **deliver**, per destination: the events after its cursor, in order; the cursor moves
  in a short transaction after they certainly arrived (no lock is held while sending).
  A syslog collector that is down is retried with backoff for as long as it takes:
  nothing is skipped, and everything arrives in order once it is back. A webhook event
  is retried ``max_attempts`` times with backoff (or refused for good by a 4xx), then
  set aside in ``export_dead_letters`` and the stream goes on; `polysec export retry`
  sends the dead letters again.

Delivery is at least once: a batch cut off mid-way, or a lease handed over mid-send, is
sent again; each event carries its outbox id (syslog ``sequenceId``, the webhook's
``Polysec-Event-Id``) for the SIEM to drop repeats. docs/siem.md has the formats and the
collector's set-up.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from polysec_tui.config import Settings
from polysec_tui.db.models import (
    AuditLogEntry,
    ExportAlertState,
    ExportCursor,
    ExportDeadLetter,
    ExportEvent,
)
from polysec_tui.errors import InputError
from polysec_tui.services.monitoring import alerts, siem, watcher
from polysec_tui.services.monitoring.siem import DeliveryFailed, Event
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.screening import ScreeningConfig, load_config

TYPES = ("audit", "alert.opened", "alert.grown", "alert.acknowledged", "watcher.health")
AUDIT_CURSOR = "audit"
COPY_BATCH = 1_000  # audit entries copied per transaction
SYSLOG_BATCH = 500  # messages per syslog connection
WEBHOOK_BATCH = 50  # events per destination per turn (then the others get theirs)
ERROR_MAX = 400
ALERT_SEVERITY = {"critical": "critical", "high": "error"}
NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
Log = Callable[..., None]


@dataclass(frozen=True)
class Destination:
    """``[export.syslog.NAME]`` or ``[export.webhook.NAME]``."""

    name: str  # "syslog.siem", "webhook.soc"
    syslog: siem.SyslogTarget | None = None
    webhook: siem.WebhookTarget | None = None
    max_attempts: int = 8  # webhook: then a dead letter (syslog retries for ever)

    @property
    def cursor(self) -> str:
        return f"to:{self.name}"

    @property
    def where(self) -> str:
        if self.syslog is not None:
            scheme = "syslog+tls" if self.syslog.tls else "syslog"
            return f"{scheme}://{self.syslog.host}:{self.syslog.port}"
        assert self.webhook is not None
        parts = urlsplit(self.webhook.url)
        # No query and no path: either may hold a token.
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


@dataclass(frozen=True)
class ExportConfig:
    """``[export]``; docs/siem.md says why each default."""

    destinations: tuple[Destination, ...] = ()
    poll_seconds: float = 1.0  # how often to look for new audit entries
    alerts_seconds: float = 5.0  # how often to look at the alerts
    health_seconds: float = 60.0  # a health event at least this often
    retry_max_seconds: float = 300.0  # the longest wait between two attempts
    keep_days: int = 30  # delivered events stay in the outbox this long

    @classmethod
    def from_settings(cls, settings: Settings) -> ExportConfig:
        raw = dict(settings.section("export"))
        syslogs = _table(raw.pop("syslog", {}), "export.syslog")
        webhooks = _table(raw.pop("webhook", {}), "export.webhook")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in {"poll_seconds", "alerts_seconds", "health_seconds",
                           "retry_max_seconds", "keep_days"}:
                raise InputError(f"config: [export] has no setting {key!r}")
            values[key] = _seconds(value, f"[export] {key}", whole=key == "keep_days")
        destinations = [_syslog(name, _table(table, f"export.syslog.{name}"))
                        for name, table in syslogs.items()]
        destinations += [_webhook(name, _table(table, f"export.webhook.{name}"))
                         for name, table in webhooks.items()]
        return cls(destinations=tuple(destinations), **values)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"config: [{where}] must be a table")
    return value


def _name(name: str, where: str) -> str:
    if not NAME.fullmatch(name):
        raise InputError(f"config: [{where}]: a destination's name is 1 to 32 letters, "
                         "digits, - or _")
    return name


def _seconds(value: Any, where: str, *, whole: bool = False) -> Any:
    if whole:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3_650:
            raise InputError(f"config: {where} must be a whole number of days from 1 to 3650")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value <= 86_400):
        raise InputError(f"config: {where} must be a number of seconds above 0")
    return float(value)


def _known(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(f"config: [{where}] has no setting {unknown[0]!r}")


def _text(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InputError(f"config: [{where}] {key} must be a non-empty string")
    return value


def _syslog(name: str, table: dict[str, Any]) -> Destination:
    where = f"export.syslog.{_name(name, 'export.syslog')}"
    _known(table, {"address", "protocol", "tls", "ca_file", "cert_file", "key_file",
                   "server_name", "facility", "app_name", "timeout_seconds"}, where)
    address = _text(table, "address", where)
    if address is None:
        raise InputError(f"config: [{where}] needs address = \"host:port\"")
    host, port = _host_port(address, where)
    protocol = table.get("protocol", "tcp")
    if protocol not in ("tcp", "relp"):
        raise InputError(f"config: [{where}] protocol must be \"tcp\" or \"relp\"")
    tls = table.get("tls", False)
    if not isinstance(tls, bool):
        raise InputError(f"config: [{where}] tls must be true or false")
    files = {key: _file(table, key, where) for key in ("ca_file", "cert_file", "key_file")}
    server_name = _text(table, "server_name", where)
    if not tls and (any(files.values()) or server_name):
        raise InputError(f"config: [{where}] ca_file, cert_file, key_file and server_name "
                         "need tls = true")
    if files["key_file"] and not files["cert_file"]:
        raise InputError(f"config: [{where}] key_file needs cert_file")
    facility = table.get("facility", "authpriv")
    if not isinstance(facility, str) or facility not in siem.FACILITIES:
        raise InputError(f"config: [{where}] facility must be one of "
                         f"{', '.join(siem.FACILITIES)}")
    app_name = _text(table, "app_name", where) or "polysec"
    target = siem.SyslogTarget(
        host=host, port=port, protocol=protocol, tls=tls, ca_file=files["ca_file"],
        cert_file=files["cert_file"], key_file=files["key_file"], server_name=server_name,
        facility=siem.FACILITIES[facility], app_name=app_name,
        timeout_seconds=_seconds(table.get("timeout_seconds", 10), f"[{where}] timeout_seconds"))
    if tls:
        try:  # the CA, certificate and key are read now: a bad file stops the start
            siem.tls_context(target)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise InputError(f"config: [{where}] TLS files: "
                             f"{getattr(exc, 'reason', None) or exc.__class__.__name__}"
                             ) from None
    return Destination(f"syslog.{name}", syslog=target)


def _webhook(name: str, table: dict[str, Any]) -> Destination:
    where = f"export.webhook.{_name(name, 'export.webhook')}"
    _known(table, {"url", "secret_file", "max_attempts", "timeout_seconds", "ca_file"}, where)
    url = _text(table, "url", where)
    if url is None or not _usable_url(url):
        raise InputError(f"config: [{where}] needs url = \"https://host[:port]/path\" "
                         "(no user or password in it, no spaces)")
    secret_file = _file(table, "secret_file", where)
    if secret_file is None:
        raise InputError(f"config: [{where}] needs secret_file (the HMAC key, 0600)")
    attempts = table.get("max_attempts", 8)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
        raise InputError(f"config: [{where}] max_attempts must be a whole number from 1 to 100")
    ca_file = _file(table, "ca_file", where)
    if ca_file:
        try:
            ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, OSError, ValueError):
            raise InputError(f"config: [{where}] ca_file {ca_file}: not a CA certificate "
                             "file") from None
    target = siem.WebhookTarget(
        url=url, secret=_secret(Path(secret_file), where), ca_file=ca_file,
        timeout_seconds=_seconds(table.get("timeout_seconds", 10), f"[{where}] timeout_seconds"))
    return Destination(f"webhook.{name}", webhook=target, max_attempts=attempts)


def _usable_url(url: str) -> bool:
    """http(s), a host, a numeric port if any, no credentials (they would show in
    status and logs; put a token in the path or query, which status never shows),
    nothing that is not printable ASCII."""
    if not url.isascii() or any(not 33 <= ord(c) <= 126 for c in url):
        return False
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and parts.username is None and parts.password is None)


def _host_port(address: str, where: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise InputError(f"config: [{where}] address must be \"host:port\"")
    return host, int(port)


def _file(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _text(table, key, where)
    if value is not None and not Path(value).is_file():
        raise InputError(f"config: [{where}] {key}: no such file {value}")
    return value


def _secret(path: Path, where: str) -> bytes:
    """The webhook's HMAC key: a file only its owner may read, of 32 bytes or more."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"config: [{where}] secret_file {path} must be readable by its "
                         f"owner only (chmod 600; it is {stat.S_IMODE(mode):o})")
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise InputError(f"config: [{where}] secret_file {path} must hold at least 32 "
                         "bytes (e.g. `openssl rand -hex 32`)")
    return secret


# ------------------------------------------------------------------------ producing


@dataclass
class _Health:
    next_at: float = 0.0
    last: tuple[Any, ...] | None = None


@dataclass
class _Backoff:
    next_at: float = 0.0
    failing: bool = False


@dataclass
class Exporter:
    """Produces the outbox and delivers it (module docstring). ``step`` does one turn;
    :meth:`run` turns until ``stop``, while ``active()`` (the watcher holds the lease)."""

    rt: Runtime
    config: ExportConfig
    log: Log
    watch: watcher.WatchConfig = field(default_factory=watcher.WatchConfig)
    clock: Callable[[], float] = time.monotonic
    host: str = field(default_factory=lambda: socket.gethostname()[:255])
    _alerts_at: float = 0.0
    _health: _Health = field(default_factory=_Health)
    _backoff: dict[str, _Backoff] = field(default_factory=dict)
    _pruned_at: float = 0.0
    screening: ScreeningConfig = field(init=False)

    def __post_init__(self) -> None:
        self.screening = load_config(self.rt.settings)

    def run(self, stop: threading.Event, active: Callable[[], bool]) -> None:
        while not stop.is_set():
            busy = False
            if active():
                try:
                    busy = self.step()
                except Exception as exc:  # the database, mostly: try again shortly
                    self.log("export.error", level="error", error=_reason(exc))
                    stop.wait(5.0)
                    continue
            if not busy:
                stop.wait(self.config.poll_seconds)

    def step(self) -> bool:
        """Produce, then deliver to each destination whose backoff allows. True when
        work was left behind (a bounded batch)."""
        more = self.produce()
        for destination in self.config.destinations:
            try:
                more = self.deliver(destination) or more
            except Exception as exc:  # the database: this destination waits, not the others
                self.log("export.error", level="error", destination=destination.name,
                         error=_reason(exc))
                self._backoff[destination.name] = _Backoff(self.clock() + 5.0, True)
        if self.clock() - self._pruned_at > 3600:
            self._pruned_at = self.clock()
            self.prune()
        return more

    def produce(self) -> bool:
        now = self.rt.clock()
        tick = self.clock()
        # The alerts are worked out in a read transaction first: on SQLite the write
        # transaction below holds the database's one write lock, which officers'
        # actions wait for.
        found: list[alerts.Alert] | None = None
        if tick >= self._alerts_at:
            self._alerts_at = tick + self.config.alerts_seconds
            with self.rt.sessions() as session:
                found = alerts.current(session, now, self.screening)
        with self.rt.transaction() as session:
            cursor = _cursor(session, AUDIT_CURSOR, now, lock=True)
            entries = session.scalars(
                select(AuditLogEntry).where(AuditLogEntry.seq > cursor.position)
                .order_by(AuditLogEntry.seq).limit(COPY_BATCH)).all()
            for entry in entries:
                session.add(_audit_event(entry))
                if entry.action == "alert.acknowledge":
                    session.add(_acknowledged_event(entry))
                cursor.position = entry.seq
            if entries:
                cursor.updated_at = now
                session.flush()
            if found is not None:
                _alert_events(session, found)
            status = watcher.status(session, now, self.watch)
            state = (status.running, status.stale, status.last_error)
            if tick >= self._health.next_at or state != self._health.last:
                session.add(_health_event(status, now, self._health.last))
                self._health = _Health(tick + self.config.health_seconds, state)
        return len(entries) == COPY_BATCH

    # ------------------------------------------------------------------ delivering

    def deliver(self, destination: Destination) -> bool:
        backoff = self._backoff.setdefault(destination.name, _Backoff())
        if self.clock() < backoff.next_at:
            return False
        now = self.rt.clock()
        with self.rt.transaction() as session:
            cursor = _cursor(session, destination.cursor, now)
            position, attempts = cursor.position, cursor.attempts
        limit = SYSLOG_BATCH if destination.syslog is not None else WEBHOOK_BATCH
        with self.rt.sessions() as session:
            events = [Event(e.id, e.at, e.type, e.severity, e.body) for e in session.scalars(
                select(ExportEvent).where(ExportEvent.id > position)
                .order_by(ExportEvent.id).limit(limit))]
        if not events:
            return False
        if destination.syslog is not None:
            return self._deliver_syslog(destination, events, position, attempts, backoff)
        return self._deliver_webhook(destination, events, position, attempts, backoff)

    def _deliver_syslog(self, destination: Destination, events: list[Event],
                        position: int, attempts: int, backoff: _Backoff) -> bool:
        assert destination.syslog is not None
        try:
            siem.send_syslog(destination.syslog, events, hostname=self.host,
                             procid=str(os.getpid()))
        except DeliveryFailed as failed:
            self._failed(destination, position, attempts + 1, str(failed), backoff)
            return False
        self._advance(destination, position, events[-1].id, backoff)
        return len(events) == SYSLOG_BATCH

    def _deliver_webhook(self, destination: Destination, events: list[Event],
                         position: int, attempts: int, backoff: _Backoff) -> bool:
        assert destination.webhook is not None
        for event in events:
            try:
                siem.send_webhook(destination.webhook, event)
            except DeliveryFailed as failed:
                attempts += 1
                if not failed.permanent and attempts < destination.max_attempts:
                    self._failed(destination, position, attempts, str(failed), backoff)
                    return False
                if not self._dead_letter(destination, position, event, attempts, str(failed)):
                    return False
                self.log("export.dead_letter", level="error", destination=destination.name,
                         event=event.id, attempts=attempts, error=str(failed))
                position, attempts = event.id, 0
                continue
            if not self._advance(destination, position, event.id, backoff):
                return False
            position, attempts = event.id, 0
        return len(events) == WEBHOOK_BATCH

    def _advance(self, destination: Destination, position: int, to: int,
                 backoff: _Backoff) -> bool:
        """Move the cursor from ``position`` to ``to`` unless someone else moved it (a
        lease handed over mid-send): False then, and the next turn reads it again."""
        now = self.rt.clock()
        with self.rt.transaction() as session:
            moved = _changed(session, update(ExportCursor).where(
                ExportCursor.name == destination.cursor, ExportCursor.position == position)
                .values(position=to, updated_at=now, delivered_at=now, attempts=0,
                        last_error=None, last_error_at=None))
        if backoff.failing:
            self.log("export.recovered", destination=destination.name, where=destination.where)
        # Deliveries are not logged one by one (`polysec watch` logs events of note).
        self._backoff[destination.name] = _Backoff()
        return bool(moved)

    def _failed(self, destination: Destination, position: int, attempts: int, reason: str,
                backoff: _Backoff) -> None:
        now = self.rt.clock()
        with self.rt.transaction() as session:
            session.execute(
                update(ExportCursor).where(ExportCursor.name == destination.cursor,
                                           ExportCursor.position == position)
                .values(attempts=attempts, last_error=reason[:ERROR_MAX], last_error_at=now))
        wait = min(self.config.retry_max_seconds, 2.0 ** min(attempts - 1, 20))
        if not backoff.failing:
            self.log("export.failed", level="warning", destination=destination.name,
                     where=destination.where, error=reason, retry_s=wait)
        self._backoff[destination.name] = _Backoff(self.clock() + wait, True)

    def _dead_letter(self, destination: Destination, position: int, event: Event,
                     attempts: int, reason: str) -> bool:
        """Set the event aside and move past it, in one transaction."""
        now = self.rt.clock()
        with self.rt.transaction() as session:
            moved = _changed(session, update(ExportCursor).where(
                ExportCursor.name == destination.cursor, ExportCursor.position == position)
                .values(position=event.id, updated_at=now, attempts=0,
                        last_error=reason[:ERROR_MAX], last_error_at=now))
            if not moved:
                return False
            session.add(ExportDeadLetter(destination=destination.name, event_id=event.id,
                                         attempts=attempts, error=reason[:ERROR_MAX],
                                         failed_at=now))
        self._backoff[destination.name] = _Backoff()
        return True

    def prune(self) -> int:
        """Delete the events every configured destination has, older than
        ``keep_days``, unless a dead letter still needs them."""
        now = self.rt.clock()
        names = [d.cursor for d in self.config.destinations]
        if not names:
            return 0
        with self.rt.transaction() as session:
            positions = list(session.scalars(
                select(ExportCursor.position).where(ExportCursor.name.in_(names))))
            if len(positions) < len(names):
                return 0
            waiting = select(ExportDeadLetter.event_id)
            return _changed(session, delete(ExportEvent).where(
                ExportEvent.id <= min(positions),
                ExportEvent.at < now - timedelta(days=self.config.keep_days),
                ExportEvent.id.not_in(waiting)))


def _changed(session: Session, statement: Any) -> int:
    """Rows an UPDATE or DELETE changed."""
    return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]


def _cursor(session: Session, name: str, now: datetime, *, lock: bool = False) -> ExportCursor:
    """The cursor ``name``, created at 0 the first time (two first exporters may race)."""
    query = select(ExportCursor).where(ExportCursor.name == name)
    cursor = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if cursor is not None:
        return cursor
    try:
        with session.begin_nested():
            session.add(ExportCursor(name=name, position=0, updated_at=now, attempts=0))
    except IntegrityError:
        pass
    return session.scalars(query.with_for_update() if lock else query).one()


def _audit_event(entry: AuditLogEntry) -> ExportEvent:
    body = siem.body_of({
        "type": "audit", "seq": entry.seq, "at": entry.at.isoformat(),
        "officer": entry.officer, "action": entry.action, "target": entry.target,
        "details": _details(entry.details), "hash": entry.hash})
    return ExportEvent(at=entry.at, type="audit", severity="notice", audit_seq=entry.seq,
                       body=body)


def _acknowledged_event(entry: AuditLogEntry) -> ExportEvent:
    details = _details(entry.details)
    key = (entry.target or "").removeprefix("alert:")
    doc: dict[str, Any] = {"type": "alert.acknowledged", "at": entry.at.isoformat(), "key": key,
           "officer": entry.officer, "audit_seq": entry.seq,
           **{k: details.get(k) for k in ("outcome", "through", "events", "severity",
                                          "title", "note") if k in details}}
    return ExportEvent(at=entry.at, type="alert.acknowledged", severity="notice",
                       body=siem.body_of(doc))


def _details(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"value": value}


def _alert_events(session: Session, current: list[alerts.Alert]) -> None:
    """An event for each alert that opened or grew (more events, or a higher severity)
    since the last look; the state of the alerts that left the window is forgotten, so
    one that comes back opens again."""
    found = {a.key: a for a in current}
    known = {s.key: s for s in session.scalars(select(ExportAlertState))}
    for key, alert in sorted(found.items(), key=lambda item: (item[1].at, item[0])):
        before = known.get(key)
        rank = alerts.SEVERITY_RANK.get(alert.severity, 0)
        previous = 0
        if before is None:
            kind = "alert.opened"
            session.add(ExportAlertState(key=key, events=alert.events, severity=alert.severity))
        elif alert.events > before.events or rank > alerts.SEVERITY_RANK.get(before.severity, 0):
            kind, previous = "alert.grown", before.events
            before.events, before.severity = alert.events, alert.severity
        else:  # no news; a window that slid past old events lowers the mark
            before.events, before.severity = alert.events, alert.severity
            continue
        doc = {"type": kind, **alert.as_dict(), "previous_events": previous}
        session.add(ExportEvent(at=alert.at, type=kind,
                                severity=ALERT_SEVERITY.get(alert.severity, "warning"),
                                body=siem.body_of(doc)))
    gone = [key for key in known if key not in found]
    if gone:
        session.execute(delete(ExportAlertState).where(ExportAlertState.key.in_(gone)))


def _health_event(status: watcher.WatcherStatus, now: datetime,
                  before: tuple[Any, ...] | None) -> ExportEvent:
    severity = ("critical" if status.stale else "error"
                if status.last_error and (before is None or before[2] != status.last_error)
                else "info")
    doc = {"type": "watcher.health", "at": now.isoformat(), **status.as_dict()}
    return ExportEvent(at=now, type="watcher.health", severity=severity, body=siem.body_of(doc))


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [exc.__class__.__name__])[0][:ERROR_MAX]


# ----------------------------------------------------------------- status, retry


@dataclass(frozen=True)
class DestinationStatus:
    name: str
    where: str
    delivered_to: int  # the outbox id it has
    waiting: int  # events after it
    delivered_at: datetime | None
    attempts: int
    last_error: str | None
    last_error_at: datetime | None
    dead_letters: int

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items()}


def status(rt: Runtime, actor: Actor, config: ExportConfig) -> dict[str, Any]:
    require(actor, "auditlog.read")
    with rt.sessions() as session:
        head = session.scalar(select(func.max(ExportEvent.id))) or 0
        audit_head = session.scalar(select(func.max(AuditLogEntry.seq))) or 0
        cursors = {c.name: c for c in session.scalars(select(ExportCursor))}
        dead: dict[str, int] = {name: n for name, n in session.execute(
            select(ExportDeadLetter.destination, func.count())
            .group_by(ExportDeadLetter.destination))}
    copied = cursors.get(AUDIT_CURSOR)
    rows = []
    for d in config.destinations:
        c = cursors.get(d.cursor)
        position = c.position if c is not None else 0
        rows.append(DestinationStatus(
            d.name, d.where, position, max(0, head - position),
            c.delivered_at if c else None, c.attempts if c else 0,
            c.last_error if c else None, c.last_error_at if c else None,
            int(dead.get(d.name, 0))))
    return {"outbox_head": head,
            "audit_waiting": max(0, audit_head - (copied.position if copied else 0)),
            "destinations": [r.as_dict() for r in rows]}


@dataclass(frozen=True)
class DeadLetterView:
    id: int
    destination: str
    event_id: int
    type: str
    at: datetime
    attempts: int
    error: str
    failed_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items()}


def dead_letters(rt: Runtime, actor: Actor, destination: str | None = None) -> list[DeadLetterView]:
    require(actor, "auditlog.read")
    query = (select(ExportDeadLetter, ExportEvent.type, ExportEvent.at)
             .join(ExportEvent, ExportEvent.id == ExportDeadLetter.event_id)
             .order_by(ExportDeadLetter.id))
    if destination is not None:
        query = query.where(ExportDeadLetter.destination == destination)
    with rt.sessions() as session:
        return [DeadLetterView(d.id, d.destination, d.event_id, kind, at, d.attempts, d.error,
                               d.failed_at) for d, kind, at in session.execute(query)]


def retry(rt: Runtime, actor: Actor, config: ExportConfig, *,
          destination: str | None = None) -> tuple[int, int]:
    """Send the dead letters again (of one destination, or all), oldest first: each one
    delivered is removed, each failure recorded on it. Returns (delivered, failed);
    audited. A dead letter of a destination no longer configured stays."""
    require(actor, "export.manage")
    targets = {d.name: d for d in config.destinations if d.webhook is not None}
    if destination is not None and destination not in targets:
        raise InputError(f"no webhook destination {destination!r} in [export] "
                         f"(configured: {', '.join(targets) or 'none'})")
    delivered = failed = 0
    for letter in dead_letters(rt, actor, destination):
        target = targets.get(letter.destination)
        if target is None:
            continue
        with rt.sessions() as session:
            event = session.get(ExportEvent, letter.event_id)
            assert event is not None  # kept while a dead letter needs it (prune)
            sent = Event(event.id, event.at, event.type, event.severity, event.body)
        assert target.webhook is not None
        try:
            siem.send_webhook(target.webhook, sent)
        except DeliveryFailed as exc:
            failed += 1
            with rt.transaction() as session:
                session.execute(update(ExportDeadLetter)
                                .where(ExportDeadLetter.id == letter.id)
                                .values(attempts=ExportDeadLetter.attempts + 1,
                                        error=str(exc)[:ERROR_MAX], failed_at=rt.clock()))
            continue
        delivered += 1
        with rt.transaction() as session:
            session.execute(delete(ExportDeadLetter).where(ExportDeadLetter.id == letter.id))
    with rt.transaction() as session:
        rt.audit.append(session, officer=actor.name, action="export.retry", at=rt.clock(),
                        target=destination, details={"delivered": delivered,
                                                     "failed": failed})
    return delivered, failed
