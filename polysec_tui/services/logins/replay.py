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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, MetaData, Table, func, insert, select
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
from polysec_tui.services.logins.rules import FINDING_COLUMNS, SOURCE_KINDS, Thresholds
from polysec_tui.services.runtime import Runtime

COPY_ROWS = 5_000
# (detector, login external id) -> (the alert subject the finding belongs to, its account)
Findings = dict[tuple[str, str], tuple[str, uuid.UUID]]


@dataclass(frozen=True)
class Replayed:
    logins: int  # logins of the period
    days: float  # how much of the period the logins cover: from the first login on
    findings: list[Findings]  # per set of thresholds, in the order given
    seconds: float
    # Per set, every finding up to the period's end as screening reads it
    # (`screening.FINDING_COLUMNS`): what screening is replayed with.
    rows: list[list[tuple[Any, ...]]] = field(default_factory=list)


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
            rows: list[list[tuple[Any, ...]]] = []
            a = LoginAnomaly
            for t in sets:
                with sessions() as session, session.begin():
                    anomalies.replay_full(session, until, t)
                    found.append(_findings(session, since, until))
                    rows.append([tuple(r) for r in session.execute(
                        select(*(getattr(a, name) for name in FINDING_COLUMNS)))])
            with sessions() as session:
                logins = int(session.scalar(select(func.count()).select_from(LoginEvent)
                                            .where(LoginEvent.at >= since,
                                                   LoginEvent.at < until)) or 0)
                first = session.scalar(select(func.min(LoginEvent.at)))
        finally:
            scratch.dispose()
    start = since if first is None else max(since, first)
    days = max(0.0, (until - start).total_seconds() / 86_400) if logins else 0.0
    return Replayed(logins, round(days, 2), found, time.monotonic() - began, rows)


def _copy(source: Engine, scratch: Engine, until: datetime) -> None:
    """What the detectors read, as it stands, up to ``until``, in one read snapshot. A
    SQLite database is attached to the scratch one and copied by the engine itself
    (``INSERT ... SELECT``: the same schema, stored alike); a server's rows come through
    SQLAlchemy, each value converted by its column's type."""
    copied: list[tuple[Table, bool]] = [
        (cast(Table, Account.__table__), False), (cast(Table, LoginEvent.__table__), True),
        (cast(Table, SecurityEvent.__table__), True), (cast(Table, IpList.__table__), False),
        (cast(Table, IpListRange.__table__), False), (cast(Table, AsnCategory.__table__), False),
    ]
    with scratch.connect() as dst:
        # On the driver's connection, outside a transaction (SQLite ignores these pragmas
        # and refuses ATTACH inside one), before SQLAlchemy's BEGIN (db/engine.py).
        # Foreign keys off: the copy keeps only what the detectors read (an IP list's
        # importing officer, for one, is not copied). No journal: a scratch file.
        raw = dst.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("PRAGMA journal_mode = OFF")
        raw.execute("PRAGMA synchronous = OFF")
        # The indexes are built after the copy, from sorted keys: inserting into seven of
        # them in random order took longer than the two analyses together.
        names = [table.name for table, _by_time in copied]
        indexes = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({', '.join('?' for _ in names)})", names).fetchall()
        for name, _sql in indexes:
            raw.execute(f'DROP INDEX "{name}"')
        try:
            _copy_rows(source, dst, copied, until)
        finally:
            for _name, sql in indexes:
                raw.execute(sql)


def _copy_rows(source: Engine, dst: Connection, copied: list[tuple[Table, bool]],
               until: datetime) -> None:
    raw = dst.connection.driver_connection
    assert raw is not None
    path = source.url.database
    if source.dialect.name == "sqlite" and path and path != ":memory:":
        raw.execute("ATTACH DATABASE ? AS live", (path,))
        try:
            live = MetaData()
            with dst.begin():
                for table, by_time in copied:
                    src = table.to_metadata(live, schema="live")
                    rows = select(*src.c)
                    if by_time:
                        rows = rows.where(src.c.at < until)
                    dst.execute(insert(table).from_select([c.name for c in table.c], rows))
        finally:
            raw.execute("DETACH DATABASE live")
        return
    with source.connect() as src_conn, dst.begin():
        src_conn.execution_options(isolation_level="REPEATABLE READ")
        for table, by_time in copied:
            stmt = select(table)
            if by_time:
                stmt = stmt.where(table.c.at < until)
            for part in _chunks(src_conn.execution_options(yield_per=COPY_ROWS)
                                .execute(stmt.order_by(*table.primary_key.columns))):
                dst.execute(insert(table), part)


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
        found[(kind, ext)] = (subject, account_id)
    return found


def alert_outcomes(session: Session, since: datetime) -> dict[str, tuple[str, set[str]]]:
    """The latest outcome recorded on each alert since ``since``, by its subject
    (``account:<uuid>``, ``source:...``), with the detectors that had fired in it."""
    latest: dict[str, tuple[str, set[str]]] = {}
    for subject, outcome, rules in session.execute(
            select(CaseOutcome.subject, CaseOutcome.outcome, CaseOutcome.rules)
            .where(CaseOutcome.subject.like("alert:%"), CaseOutcome.at >= since)
            .order_by(CaseOutcome.at, CaseOutcome.id)):
        fired = rules.get("fired", []) if isinstance(rules, dict) else []
        latest[subject.removeprefix("alert:")] = (
            outcome, {r.removeprefix("detector:") for r in fired
                      if isinstance(r, str) and r.startswith("detector:")})
    return latest
