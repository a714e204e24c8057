"""The login detectors replayed under other thresholds: the login half of a rule set's
backtest (`polysec rules backtest`, services/withdrawals/rulesets.py).

A replay must not touch the live database: a full analysis rewrites the findings and
the account histories, and holding those tables (SQLite: the whole file) for minutes
would stop ingest and the watcher. So the logins and security events up to the end of
the period, the accounts and the IP lists are copied into a scratch SQLite file in a
private temporary directory, removed afterwards, and each set of thresholds runs a full
analysis there, as `logins analyze --full` would, over every login up to the period's
end (the detectors that judge an account's history need all of it). The findings on
logins of the period are compared, and weighed against the outcomes officers recorded
on the alerts they made: an alert is an account's (``account:<uuid>``) or, for a
campaign, its source's (``source:<ip or ASn>``). The IP lists are today's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, Table, func, insert, select
from sqlalchemy.orm import Session

from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, session_factory
from polysec_tui.db.models import (
    Account,
    AsnCategory,
    CaseOutcome,
    IpList,
    IpListRange,
    LoginAnomaly,
    LoginEvent,
    SecurityEvent,
)
from polysec_tui.services.logins import anomalies
from polysec_tui.services.logins.rules import SOURCE_KINDS, Thresholds
from polysec_tui.services.runtime import Runtime

COPY_ROWS = 5_000
# (detector, login external id) -> the alert subject the finding belongs to
Findings = dict[tuple[str, str], str]


@dataclass(frozen=True)
class Replayed:
    logins: int  # logins of the period
    findings: list[Findings]  # per set of thresholds, in the order given
    seconds: float


def replay(rt: Runtime, sets: list[Thresholds], since: datetime,
           until: datetime) -> Replayed:
    """The findings each of ``sets`` makes on the logins of ``[since, until)``."""
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="polysec-replay-") as tmp:
        scratch = make_engine(f"sqlite:///{Path(tmp) / 'replay.db'}")
        try:
            migrate.upgrade(scratch)
            _copy(rt.engine, scratch, until)
            sessions = session_factory(scratch)
            found: list[Findings] = []
            for t in sets:
                with sessions() as session, session.begin():
                    anomalies.replay_full(session, until, t)
                    found.append(_findings(session, since, until))
            with sessions() as session:
                logins = int(session.scalar(select(func.count()).select_from(LoginEvent)
                                            .where(LoginEvent.at >= since,
                                                   LoginEvent.at < until)) or 0)
        finally:
            scratch.dispose()
    return Replayed(logins, found, time.monotonic() - began)


def _copy(source: Engine, scratch: Engine, until: datetime) -> None:
    """What the detectors read, as it stands, up to ``until``; in one read snapshot on
    PostgreSQL and MariaDB (on SQLite each table as it is when read)."""
    tables: list[tuple[Table, object]] = [
        (Account.__table__, None),  # type: ignore[list-item]
        (LoginEvent.__table__, LoginEvent.at < until),  # type: ignore[list-item]
        (SecurityEvent.__table__, SecurityEvent.at < until),  # type: ignore[list-item]
        (IpList.__table__, None), (IpListRange.__table__, None),  # type: ignore[list-item]
        (AsnCategory.__table__, None),  # type: ignore[list-item]
    ]
    with source.connect() as src, scratch.connect() as dst:
        if source.dialect.name != "sqlite":
            src.execution_options(isolation_level="REPEATABLE READ")
        # A login may name an account created after the accounts were read.
        # Outside a transaction, or SQLite ignores it: on the driver's connection, before
        # SQLAlchemy's BEGIN (db/engine.py).
        dst.connection.driver_connection.execute(  # type: ignore[union-attr]
            "PRAGMA foreign_keys = OFF")
        with dst.begin():
            for table, where in tables:
                stmt = select(table)
                if where is not None:
                    stmt = stmt.where(where)  # type: ignore[arg-type]
                for rows in _chunks(src.execution_options(yield_per=COPY_ROWS)
                                    .execute(stmt.order_by(*table.primary_key.columns))):
                    dst.execute(insert(table), rows)


def _chunks(result: object) -> Iterator[list[dict[str, object]]]:
    for part in result.partitions():  # type: ignore[attr-defined]
        yield [dict(row._mapping) for row in part]


def _findings(session: Session, since: datetime, until: datetime) -> Findings:
    a, le = LoginAnomaly, LoginEvent
    found: Findings = {}
    for kind, ext, account_id, ip, asn, details in session.execute(
            select(a.kind, le.external_id, a.account_id, a.source_ip, a.source_asn, a.details)
            .join(le, le.id == a.login_event_id)
            .where(le.at >= since, le.at < until)):
        if kind in SOURCE_KINDS:
            named = details.get("source") if isinstance(details, dict) else None
            subject = f"source:{named or ip or (f'AS{asn}' if asn is not None else '?')}"
        else:
            subject = f"account:{account_id}"
        found[(kind, ext)] = subject
    return found


def alert_outcomes(session: Session, since: datetime) -> dict[str, str]:
    """The latest outcome recorded on each alert since ``since``, by its subject
    (``account:<uuid>``, ``source:...``)."""
    latest: dict[str, str] = {}
    for subject, outcome in session.execute(
            select(CaseOutcome.subject, CaseOutcome.outcome)
            .where(CaseOutcome.subject.like("alert:%"), CaseOutcome.at >= since)
            .order_by(CaseOutcome.at, CaseOutcome.id)):
        latest[subject.removeprefix("alert:")] = outcome
    return latest
