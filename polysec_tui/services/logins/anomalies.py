"""Login anomaly detection: `polysec logins analyze` and the anomaly list.

Two passes over the logins a run has not seen yet (``id`` above the checkpoint):

* The **window pass** streams the logins of the period in time order, starting one
  look-back (24 h) before the first new login so that windows reach into what earlier
  runs processed: brute_force, credential_stuffing, password_spraying and
  success_after_failures. Sliding windows over a time-ordered stream are done in
  Python: SQLite and MariaDB have no ``RANGE BETWEEN INTERVAL ... PRECEDING`` frames,
  and the stream is one indexed range scan of a few columns.
* The **profile pass** streams the new successful logins per account in time order
  and compares each with the account's history (``login_histories``, one row an
  account, kept up to date incrementally) and the population
  (``login_feature_counts``): new_device, new_country, new_asn, risky_login (Freeman
  et al., NDSS 2016) and impossible_travel (great-circle speed between consecutive
  located successful logins, computed in Python on every engine; the history row keeps
  each account's last one).

A batch run feeds only the windows that can fire (``_window_candidates``). A
``--full`` run re-detects everything: its profile pass counts every login's history
column by column (``columnar``, numpy) and rebuilds the profile and population tables
from the same arrays.

A run locks the checkpoint row first (an UPDATE, held to the end of the run's
transaction): concurrent runs wait for each other and never process the same logins
twice. Findings are unique on ``(kind, login_event_id)``, so overlapping windows and
repeated runs never duplicate them. The run is audited in its own transaction.
Formulas, thresholds and their sources: docs/anomalies.md.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from bisect import bisect_left, insort
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    AnalysisCheckpoint,
    LoginAnomaly,
    LoginEvent,
    RuleSet,
    RuleSetLoginShadow,
    SecurityEvent,
)
from polysec_tui.errors import InputError
from polysec_tui.services.logins import campaigns
from polysec_tui.services.logins.rules import (
    _G,
    _H,
    _L,
    ALPHA_FEATURES,
    DEFAULTS,
    DISTINCT,
    HISTORY_CAP,
    NOVEL,
    RISK_FEATURES,
    SUSPICIOUS_LOGINS,
    TOTAL,
    Finding,
    Login,
    Profile,
    Thresholds,
    check_login,
    fit_alpha,
    flag,
    history_key,
    is_exit,
    located_login,
    no_cycle_collection,
    smoothed_share,
)
from polysec_tui.services.logins.thresholds import in_force as thresholds_in_force
from polysec_tui.services.logins.thresholds import shadows as thresholds_in_shadow
from polysec_tui.services.networks import reputation
from polysec_tui.services.networks.reputation import Reputation
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import fmt_duration, ordinal

KINDS = (
    "brute_force",
    "credential_stuffing",
    "password_spraying",
    "impossible_travel",
    "new_device",
    "new_country",
    "new_asn",
    "success_after_failures",
    "risky_login",
    "ip_reputation",
    "anonymizing_network",
    "forgotten_password",
    "distributed_attack",
)
# A brute-force burst that the client closed with a password reset from their own device
# or address becomes this (low, never alerted): the client forgot their password.
FORGOTTEN = "forgotten_password"
SEVERITIES = ("low", "medium", "high", "critical")
CHECKPOINT = "logins"

_A = cast(Table, LoginAnomaly.__table__)
_C = cast(Table, AnalysisCheckpoint.__table__)
_S = cast(Table, RuleSetLoginShadow.__table__)
log = logging.getLogger(__name__)

STREAM_BATCH = 20_000
CHUNK = 500


@dataclass
class AnalysisReport:
    full: bool
    from_login_id: int
    to_login_id: int
    logins: int
    successful_logins: int
    new_anomalies: dict[str, int] = field(default_factory=dict)
    # brute-force findings turned forgotten_password (or back) by a reset's evidence
    reclassified: int = 0
    # campaign findings not stored: the network's genuine subscribers (``_subscribers``)
    subscribers: int = 0
    seconds: float = 0.0
    rule_set: int | None = None  # the version whose thresholds judged (none: defaults)

    def as_dict(self) -> dict[str, Any]:
        return {
            "full": self.full, "from_login_id": self.from_login_id,
            "to_login_id": self.to_login_id, "logins": self.logins,
            "successful_logins": self.successful_logins,
            "new_anomalies": dict(sorted(self.new_anomalies.items())),
            "new_anomalies_total": sum(self.new_anomalies.values()),
            "reclassified": self.reclassified,
            "subscribers_spared": self.subscribers,
            "rule_set": self.rule_set,
            "seconds": round(self.seconds, 3),
        }


# =========================================================================== the run


def analyze(rt: Runtime, actor: Actor, *, full: bool = False,
            thresholds: Thresholds | None = None) -> AnalysisReport:
    """Analyse the logins newer than the checkpoint (all of them with ``full``), by the
    thresholds of the rule set in force (or ``thresholds``); audited."""
    require(actor, "logins.analyze")
    with rt.transaction() as session:
        report = _analyze_in(session, rt.clock(), full, WindowState(thresholds))
        rt.audit.append(session, officer=actor.name, action="logins.analyze", at=rt.clock(),
                        target=None, details=report.as_dict() | {"seconds": None})
    return report


def replay_full(session: Session, now: datetime, t: Thresholds) -> AnalysisReport:
    """A full run by thresholds ``t`` in the caller's transaction, not audited: a rule
    set's backtest, on a scratch copy of the data (services/logins/replay.py)."""
    return _analyze_in(session, now, True, WindowState(t))


def analyze_new(rt: Runtime, windows: WindowState, limit: int) -> AnalysisReport:
    """The watcher's pass: the logins newer than the checkpoint, fed on top of the
    windows it keeps (which this pass brings up to date). Not audited one by one: the
    watcher's start and stop are, and its figures are on the lease row. At most
    ``limit`` logins, so that a backlog is worked off in short transactions. On an
    error the windows are left incomplete: the caller resets them."""
    with rt.transaction() as session:
        return _analyze_in(session, rt.clock(), False, windows, limit)


def _analyze_in(session: Session, now: datetime, full: bool, windows: WindowState,
                limit: int | None = None) -> AnalysisReport:
    """One run in the caller's transaction: findings and the checkpoint move together."""
    began = time.monotonic()
    last_login, last_sev = _lock_checkpoint(session)
    version = windows.follow(session)
    thresholds = windows.t
    if full:
        for table in (_A, _H, _G):
            session.execute(delete(table))
        last_login = last_sev = 0
    hi = int(session.scalar(select(func.coalesce(func.max(_L.id), 0))) or 0)
    if limit is not None:
        hi = min(hi, last_login + limit)
    hi_sev = int(session.scalar(select(func.coalesce(func.max(SecurityEvent.id), 0))) or 0)
    report = AnalysisReport(full, last_login, max(hi, last_login), 0, 0, rule_set=version)
    if hi > last_login:
        findings: dict[tuple[str, int], Finding] = {}
        lists = reputation.load(session)
        with no_cycle_collection():
            theirs = {} if full else _shadow_passes(session, now, last_login, hi, windows,
                                                    lists)
            report.logins = _window_pass(session, last_login, hi, windows, findings)
            if full:
                from polysec_tui.services.logins import columnar  # numpy: only when needed

                report.successful_logins = columnar.profile_pass_full(
                    session, hi, thresholds, findings, lists)
            else:
                report.successful_logins = _profile_pass(session, last_login, hi,
                                                         thresholds, findings, lists)
            campaigns.judge(session, last_login, hi, full, now, thresholds, findings)
            report.subscribers = _spare_subscribers(session, findings)
            for version, found in theirs.items():
                _record_shadow(session, version, findings, found, report.logins, now)
            report.new_anomalies = _store(session, findings.values(), now)
        bursts = {f.account_id for f in findings.values() if f.kind == "brute_force"}
    else:
        bursts = set()
    report.reclassified = _forgotten_passwords(session, last_login, hi, last_sev, hi_sev,
                                               full, bursts, thresholds)
    session.execute(
        update(_C).where(_C.c.name == CHECKPOINT)
        .values(login_id=max(hi, last_login), security_event_id=hi_sev, updated_at=now)
    )
    report.seconds = time.monotonic() - began
    return report


def _shadow_passes(session: Session, now: datetime, lo: int, hi: int, windows: WindowState,
                   lists: Reputation) -> dict[int, dict[tuple[str, int], Finding]]:
    """The findings on the logins ``lo < id <= hi`` of each proposal in shadow
    (`thresholds.shadows`), by its version. Each is judged as the live pass would be,
    with windows of its own, writing no history or population count, in a savepoint
    rolled back after it (the campaigns' checkpoint it moved, anything else it wrote):
    the live pass then starts from the state this one started from. A proposal that
    fails is skipped for the pass (logged): it must never stop the detectors."""
    running = thresholds_in_shadow(session, now, windows.t)
    windows.keep_shadows({version for version, _t in running})
    found: dict[int, dict[tuple[str, int], Finding]] = {}
    for version, t in running:
        state = windows.shadow_state(version, t)
        theirs: dict[tuple[str, int], Finding] = {}
        nested = session.begin_nested()
        try:
            _window_pass(session, lo, hi, state, theirs)
            _profile_pass(session, lo, hi, t, theirs, lists, store=False)
            campaigns.judge(session, lo, hi, False, now, t, theirs)
            _spare_subscribers(session, theirs)
            found[version] = theirs
        except Exception as exc:
            state.reset()
            log.warning("rule set v%s in shadow failed on logins %s to %s and is skipped "
                        "for this pass: %s", version, lo + 1, hi,
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        finally:
            nested.rollback()
            session.expire_all()
    return found


def _record_shadow(session: Session, version: int, ours: Mapping[tuple[str, int], Finding],
                   theirs: Mapping[tuple[str, int], Finding], logins: int,
                   now: datetime) -> None:
    """Where the proposal ``version`` disagreed with the thresholds in force (a finding
    of one alone, or at another severity), and the logins it judged."""
    rows = []
    for kind, login_id in sorted(ours.keys() | theirs.keys(), key=lambda k: (k[1], k[0])):
        live, shadow = ours.get((kind, login_id)), theirs.get((kind, login_id))
        live_severity = None if live is None else live.severity
        shadow_severity = None if shadow is None else shadow.severity
        if live_severity != shadow_severity:
            rows.append({"rule_set_id": version, "login_event_id": login_id, "kind": kind,
                         "judged_at": now, "live_severity": live_severity,
                         "shadow_severity": shadow_severity})
    for start in range(0, len(rows), 5000):
        _insert_ignoring(session, _S, rows[start : start + 5000],
                         ["rule_set_id", "login_event_id", "kind"])
    session.execute(update(RuleSet).where(RuleSet.id == version)
                    .values(shadow_logins=func.coalesce(RuleSet.shadow_logins, 0) + logins))


def _lock_checkpoint(session: Session) -> tuple[int, int]:
    """Take the checkpoint row's lock (UPDATE first), creating the row if missing."""
    bump = update(_C).where(_C.c.name == CHECKPOINT).values(runs=_C.c.runs + 1)
    if session.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
        row = {"name": CHECKPOINT, "login_id": 0, "security_event_id": 0, "runs": 0}
        _insert_ignoring(session, _C, [row], ["name"])
        session.execute(bump)
    login_id, sev_id = session.execute(
        select(_C.c.login_id, _C.c.security_event_id).where(_C.c.name == CHECKPOINT)
    ).one()
    return int(login_id), int(sev_id)


def _insert_ignoring(session: Session, table: Table, rows: list[dict[str, Any]],
                     keys: Sequence[str]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    else:
        stmt = mysql.insert(table)
        stmt = stmt.on_duplicate_key_update({keys[0]: table.c[keys[0]]})
    session.execute(stmt, rows)


def _upsert_adding(session: Session, table: Table, rows: list[dict[str, Any]],
                   keys: Sequence[str]) -> None:
    """Insert the rows, or add their ``count`` to the stored one."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt: Any
    if dialect in ("sqlite", "postgresql"):
        stmt = (sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table))
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={"count": table.c.count + stmt.excluded.count})
    else:
        stmt = mysql.insert(table)
        stmt = stmt.on_duplicate_key_update({"count": table.c.count + stmt.inserted.count})
    for start in range(0, len(rows), 5000):
        session.execute(stmt, rows[start : start + 5000])


def _upsert_replacing(session: Session, table: Table, rows: list[dict[str, Any]],
                      keys: Sequence[str]) -> None:
    """Insert the rows, or replace the stored row's other columns with theirs."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    columns = [name for name in rows[0] if name not in keys]
    stmt: Any
    if dialect in ("sqlite", "postgresql"):
        stmt = (sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table))
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns})
    else:
        stmt = mysql.insert(table)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns})
    for start in range(0, len(rows), 5000):
        session.execute(stmt, rows[start : start + 5000])


def _store(session: Session, findings: Iterable[Finding], now: datetime) -> dict[str, int]:
    """Insert the findings not stored yet; return the new ones per kind."""
    pending = {(f.kind, f.login_id): f for f in findings}
    login_ids = sorted({login_id for _kind, login_id in pending})
    for start in range(0, len(login_ids), CHUNK):
        chunk = login_ids[start : start + CHUNK]
        for kind, login_id in session.execute(
            select(_A.c.kind, _A.c.login_event_id).where(_A.c.login_event_id.in_(chunk))
        ):
            pending.pop((kind, login_id), None)
            if kind == FORGOTTEN:  # a replayed burst that a reset closed already
                pending.pop(("brute_force", login_id), None)
    rows = [
        {"kind": f.kind, "severity": f.severity, "score": float(f.score),
         "account_id": f.account_id, "login_event_id": f.login_id, "at": f.at,
         "source_ip": f.ip, "source_asn": f.asn, "explanation": f.explanation,
         "details": f.details, "detected_at": now}
        for f in sorted(pending.values(), key=lambda f: (f.at, f.login_id, f.kind))
    ]
    for start in range(0, len(rows), 5000):
        _insert_ignoring(session, _A, rows[start : start + 5000], ["kind", "login_event_id"])
    return dict(Counter(str(row["kind"]) for row in rows))


SOURCE_KINDS = ("credential_stuffing", "password_spraying")


def _spare_subscribers(session: Session, findings: dict[tuple[str, int], Finding]) -> int:
    """Keep the per-source campaign findings off a network's genuine subscribers: a
    stuffing burst from a carrier's shared address or a whole ASN takes in every attempt
    from it, the clients' own among them. An attempt is likely the client's when its
    account had logged in successfully before it from the same device and the same
    network (ASN, else address), in a login no detector judged someone else's. A device
    id is the client's to send and an intruder's to copy, hence both; and a success is
    never dropped, only lowered (low: no alert, no weight in screening's story), since a
    copied device id on the victim's carrier would otherwise hide the stolen password
    that worked. Failures are dropped. Returns how many findings were dropped or
    lowered."""
    candidates = {f.login_id: f for (kind, _), f in findings.items() if kind in SOURCE_KINDS}
    if not candidates:
        return 0
    devices: dict[int, str] = {}
    ids = sorted(candidates)
    for start in range(0, len(ids), CHUNK):
        devices.update(session.execute(
            select(_L.id, _L.device_id)
            .where(_L.id.in_(ids[start : start + CHUNK]), _L.device_id.is_not(None))).all())
    if not devices:
        return 0
    wanted: dict[uuid.UUID, set[str]] = defaultdict(set)
    for login_id, device in devices.items():
        wanted[candidates[login_id].account_id].add(device)
    latest = max(candidates[login_id].at for login_id in devices)
    # Successes judged someone else's, stored or found in this run, vouch for nothing.
    doubted = {login_id for (kind, login_id) in findings if kind in SUSPICIOUS_LOGINS}
    judged_else = select(_A.c.id).where(_A.c.login_event_id == _L.id,
                                        _A.c.kind.in_(SUSPICIOUS_LOGINS)).exists()
    first_seen: dict[tuple[uuid.UUID, str, Any], datetime] = {}
    accounts = sorted(wanted, key=str)
    for start in range(0, len(accounts), CHUNK):
        chunk = accounts[start : start + CHUNK]
        for login_id, acc, device, asn, ip, at in session.execute(
                select(_L.id, _L.account_id, _L.device_id, _L.asn, _L.ip, _L.at)
                .where(_L.account_id.in_(chunk), _L.success.is_(True), _L.at < latest,
                       _L.device_id.in_(sorted({d for a in chunk for d in wanted[a]})),
                       ~judged_else)):
            if device in wanted[acc] and login_id not in doubted:
                key = (acc, device, asn if asn is not None else ip)
                seen = first_seen.get(key)
                first_seen[key] = at if seen is None else min(seen, at)
    spared = 0
    for login_id, device in devices.items():
        f = candidates[login_id]
        seen = first_seen.get((f.account_id, device, f.asn if f.asn is not None else f.ip))
        if seen is None or seen >= f.at:
            continue
        for kind in SOURCE_KINDS:
            found = findings.get((kind, login_id))
            if found is None:
                continue
            spared += 1
            if found.severity != "critical":  # a failure: the subscriber's own typo
                del findings[(kind, login_id)]
                continue
            found.severity = "low"
            found.explanation += (
                "; from the device and network this account logged in from before: likely "
                "one of the network's own subscribers (low: a device id can be copied)")
            found.details = {**found.details, "likely_subscriber": True}
    return spared


_JUDGED = ("brute_force", FORGOTTEN)


def _forgotten_passwords(session: Session, lo: int, hi: int, sev_lo: int, sev_hi: int,
                         full: bool, bursts: set[uuid.UUID], t: Thresholds) -> int:
    """Which brute-force bursts the client closed with a password reset, judged again
    for every account whose evidence changed in this run: a new brute-force finding, a
    new password reset, or a new successful login dated before one of its bursts (all of
    them in a full run). The verdict is a function of the stored data alone, so the
    watcher and a batch run end the same whatever the order things arrived in. Returns
    the number of findings whose kind changed."""
    se = SecurityEvent
    dirty = set(bursts)
    if full:
        dirty.update(session.scalars(select(_A.c.account_id).distinct()
                                     .where(_A.c.kind.in_(_JUDGED))))
    else:
        judged = select(_A.c.id).where(_A.c.kind.in_(_JUDGED))
        if sev_hi > sev_lo:
            dirty.update(session.scalars(
                select(se.account_id).distinct()
                .where(se.kind == "password_reset", se.id > sev_lo, se.id <= sev_hi,
                       judged.where(_A.c.account_id == se.account_id).exists())))
        if hi > lo:
            dirty.update(session.scalars(
                select(_L.account_id).distinct()
                .where(_L.id > lo, _L.id <= hi, _L.success.is_(True),
                       judged.where(_A.c.account_id == _L.account_id,
                                    _A.c.at > _L.at).exists())))
    changes: list[dict[str, Any]] = []
    accounts = sorted(dirty, key=str)
    for start in range(0, len(accounts), CHUNK):
        changes.extend(_judge_bursts(session, accounts[start : start + CHUNK], t))
    for start in range(0, len(changes), CHUNK):
        session.execute(
            update(_A).where(_A.c.id == bindparam("row_id")).values(
                kind=bindparam("kind"), severity=bindparam("severity"),
                explanation=bindparam("explanation"), details=bindparam("details")),
            changes[start : start + CHUNK])
    return len(changes)


def _judge_bursts(session: Session, accounts: list[uuid.UUID],
                  t: Thresholds) -> list[dict[str, Any]]:
    """The changes of kind for these accounts' brute-force findings (see
    ``_forgotten_passwords``). A burst: the account's brute-force findings, each within
    ``saf_window`` of the one before. It is a forgotten password when

    - a password reset came within ``saf_window`` after its last failure;
    - it has at most twice the brute-force threshold of failures, none of them high;
    - every failure came from the reset's device, from a network (ASN, else address)
      the client had logged in from successfully before the burst, and the reset from
      one of the failures' addresses; the device too had logged in successfully before
      the burst (a reset without a device: every failure from its address, known so).

    A device id is the client's to send (and an intruder's to copy): the networks must
    be the client's as well."""
    se = SecurityEvent
    le = cast(Table, LoginEvent.__table__)
    findings: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in session.execute(
            select(_A.c.id, _A.c.account_id, _A.c.at, _A.c.kind, _A.c.severity,
                   _A.c.explanation, _A.c.details, _L.ip, _L.asn, _L.device_id)
            .select_from(_A.join(le, _L.id == _A.c.login_event_id))
            .where(_A.c.account_id.in_(accounts), _A.c.kind.in_(_JUDGED))
            .order_by(_A.c.account_id, _A.c.at, _A.c.id)):
        findings[row.account_id].append(row)
    resets: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for reset in session.execute(
            select(se.account_id, se.at, se.ip, se.device_id)
            .where(se.kind == "password_reset", se.account_id.in_(accounts))
            .order_by(se.account_id, se.at)):
        resets[reset.account_id].append(reset)
    # When the client first logged in successfully from each device, network, address.
    first_seen: dict[tuple[uuid.UUID, str, Any], datetime] = {}
    for acc, device, asn, ip, at in session.execute(
            select(_L.account_id, _L.device_id, _L.asn, _L.ip, func.min(_L.at))
            .where(_L.account_id.in_(accounts), _L.success.is_(True))
            .group_by(_L.account_id, _L.device_id, _L.asn, _L.ip)):
        for key in (("device", device), ("asn", asn), ("ip", ip)):
            if key[1] is not None:
                seen = first_seen.get((acc, *key))
                first_seen[(acc, *key)] = at if seen is None else min(seen, at)
    changes: list[dict[str, Any]] = []
    for acc, rows in findings.items():
        for burst in _bursts(rows, t.saf_window):
            closing = next((r for r in resets.get(acc, ())
                            if burst[-1].at <= r.at <= burst[-1].at + t.saf_window), None)
            forgotten = closing is not None and _forgotten(acc, burst, closing, first_seen, t)
            for row in burst:
                change = _reclassified(row, forgotten, closing, burst[-1].at)
                if change is not None:
                    changes.append(change)
    return changes


def _bursts(rows: list[Any], gap: timedelta) -> Iterator[list[Any]]:
    burst: list[Any] = []
    for row in rows:
        if burst and row.at - burst[-1].at > gap:
            yield burst
            burst = []
        burst.append(row)
    if burst:
        yield burst


def _original(row: Any) -> tuple[str, str]:
    """A finding's severity and explanation as brute force."""
    if row.kind == FORGOTTEN:
        kept = (row.details or {}).get("brute_force") or {}
        return str(kept.get("severity", "medium")), str(kept.get("explanation", ""))
    return str(row.severity), str(row.explanation)


def _forgotten(acc: uuid.UUID, burst: list[Any], reset: Any,
               first_seen: dict[tuple[uuid.UUID, str, Any], datetime],
               t: Thresholds) -> bool:
    if len(burst) > 2 * t.brute_force_failures:
        return False
    if any(_original(row)[0] != "medium" for row in burst):
        return False
    began = burst[0].at

    def known(kind: str, value: Any) -> bool:
        seen = first_seen.get((acc, kind, value))
        return seen is not None and seen < began

    if reset.device_id is None:
        return reset.ip is not None and all(row.ip == reset.ip for row in burst) and known(
            "ip", reset.ip)
    return (all(row.device_id == reset.device_id for row in burst)
            and known("device", reset.device_id)
            and reset.ip in {row.ip for row in burst}
            and all(known("asn", row.asn) if row.asn is not None else known("ip", row.ip)
                    for row in burst))


def _reclassified(row: Any, forgotten: bool, reset: Any,
                  last_failure: datetime) -> dict[str, Any] | None:
    """The update that gives ``row`` its kind, or None if it has it."""
    if forgotten == (row.kind == FORGOTTEN):
        return None
    severity, explanation = _original(row)
    details = {k: v for k, v in (row.details or {}).items()
               if k not in ("brute_force", "password_reset_at")}
    if not forgotten:
        return {"row_id": row.id, "kind": "brute_force", "severity": severity,
                "explanation": explanation, "details": details}
    what = "device" if reset.device_id is not None else "address"
    return {"row_id": row.id, "kind": FORGOTTEN, "severity": "low",
            "explanation": f"{explanation}; then a password reset "
                           f"{_minutes(reset.at - last_failure)} later from the client's "
                           f"own {what} and network: a forgotten password, not a brute "
                           "force",
            "details": {**details, "password_reset_at": reset.at.isoformat(),
                        "brute_force": {"severity": severity, "explanation": explanation}}}


def _stream(session: Session, stmt: Select[Any]) -> Iterator[Any]:
    result = session.execute(stmt, execution_options={"yield_per": STREAM_BATCH})
    yield from result


# ====================================================================== window pass


@dataclass(slots=True)
class _Attempt:
    id: int
    account_id: uuid.UUID
    at: datetime
    success: bool
    ip: str
    asn: int | None
    stuffed: bool = False  # its IP was in a stuffing burst when it was fed (the ASN reads it)


@dataclass
class _Source:
    """The attempts of one IP or ASN in the last day and in the short window."""

    day: deque[_Attempt] = field(default_factory=deque)
    short: deque[_Attempt] = field(default_factory=deque)
    day_fail_accounts: Counter[uuid.UUID] = field(default_factory=Counter)
    short_fail_accounts: Counter[uuid.UUID] = field(default_factory=Counter)
    short_failures: int = 0
    day_failures: int = 0
    stuffing_until: datetime | None = None
    last_stuffing: datetime | None = None
    spraying: bool = False


class WindowState:
    """The sliding windows of the window detectors, fed logins in time order.

    A batch run builds one from the look-back and drops it. The watcher keeps one
    between its passes (with a ``lateness``), so a pass reads only the logins that
    arrived since the last one. A login older than one already fed (the platform delivers
    some late: a typo's failure after the success, a takeover's first login) replays
    only the windows it belongs to (its account, IP and network) from the attempts of
    the last look-back plus ``lateness``, which the state keeps in time order; the other
    windows take the pass on top. A full rebuild (one look-back read from the database)
    happens when the watcher starts, after an error, when another run moved the
    checkpoint, or for a login later than ``lateness``."""

    def __init__(self, t: Thresholds | None = None, lateness: timedelta | None = None) -> None:
        self.t = t or DEFAULTS
        self.pinned = t is not None  # else the rule set in force's (see ``follow``)
        self.version: int | None = None
        self.lateness = lateness  # None: keep no attempts for replays (a batch run)
        self.rebuilds = 0  # look-back reads (the watcher's figure: should stay rare)
        self.replays = 0  # passes with late logins that replayed their windows only
        # The proposals' in shadow, by version: each moves with its own passes (a
        # checkpoint it missed makes it rebuild, as these do).
        self.shadows: dict[int, WindowState] = {}
        self.reset()

    def follow(self, session: Session) -> int | None:
        """Take the thresholds of the rule set in force, unless pinned; windows kept
        under other thresholds are dropped (the next pass rebuilds them). Returns the
        version judging (none: pinned or the defaults)."""
        if self.pinned:
            return None
        t, version = thresholds_in_force(session)
        if t != self.t:
            self.t = t
            self.reset()
        self.version = version
        return version

    def shadow_state(self, version: int, t: Thresholds) -> WindowState:
        """The windows of the proposal ``version`` in shadow (`_shadow_passes`), kept
        beside these as long as these are, under its thresholds ``t``."""
        state = self.shadows.get(version)
        if state is None or state.t != t:
            state = self.shadows[version] = WindowState(t, self.lateness)
        return state

    def keep_shadows(self, versions: set[int]) -> None:
        """Drop the windows of proposals no longer in shadow."""
        for version in set(self.shadows) - versions:
            del self.shadows[version]

    def reset(self) -> None:
        self.accounts_fail: dict[uuid.UUID, deque[_Attempt]] = {}
        self.sources: dict[tuple[str, str | int], _Source] = {}
        self.resets: dict[uuid.UUID, list[datetime]] = {}
        self.login_id = -1  # the checkpoint this state is complete up to (-1: none)
        self.security_event_id = 0  # password resets read up to this id
        self.last_at: datetime | None = None  # the newest login fed
        # Every attempt fed since ``recent_since``, in (at, id) order, from index
        # ``recent_from`` on: what a replay reads instead of the database.
        self.recent: list[_Attempt] = []
        self.recent_from = 0
        self.recent_since: datetime | None = None

    def continues(self, lo: int, first_new: datetime) -> bool:
        """Whether the logins after checkpoint ``lo``, the oldest at ``first_new``, can be
        fed on top of this state (replaying the windows of late ones) with the result a
        fresh look-back would give."""
        if self.login_id != lo or lo <= 0:
            return False
        if self.last_at is None or first_new >= self.last_at:
            return True
        return (self.recent_since is not None
                and first_new - self.t.lookback >= self.recent_since)

    def read_resets(self, session: Session, start: datetime | None) -> None:
        stmt = select(SecurityEvent.id, SecurityEvent.account_id, SecurityEvent.at).where(
            SecurityEvent.kind == "password_reset", SecurityEvent.id > self.security_event_id)
        if start is not None:
            stmt = stmt.where(SecurityEvent.at >= start)
        for sev_id, account_id, at in session.execute(stmt):
            self.resets.setdefault(account_id, []).append(at)
            self.security_event_id = max(self.security_event_id, int(sev_id))

    def feed(self, a: _Attempt, new: bool, findings: dict[tuple[str, int], Finding],
             only: _Candidates | None = None) -> None:
        """One attempt, in time order: every window it belongs to (of the ``only``
        candidates, when given)."""
        self.last_at = a.at
        if only is None or a.account_id in only.accounts:
            self._feed_account(a, new, findings)
        if only is None or a.ip in only.ips:
            a.stuffed = self._feed_source(("ip", a.ip), a, new, findings, False)
        if a.asn is not None and (only is None or a.asn in only.asns):
            self._feed_source(("asn", a.asn), a, new, findings, a.stuffed)
        if self.lateness is not None:
            recent = self.recent
            if recent and (a.at, a.id) < (recent[-1].at, recent[-1].id):
                insort(recent, a, lo=self.recent_from, key=_attempt_order)
            else:
                recent.append(a)

    def feed_pass(self, attempts: Sequence[_Attempt], lo: int,
                  findings: dict[tuple[str, int], Finding]) -> None:
        """The attempts of one pass (ids above ``lo``, in (at, id) order) on top of this
        state: the windows of late attempts are replayed with every attempt they hold,
        as a fresh look-back would feed them; the rest take the attempts on top."""
        last = self.last_at
        late = [a for a in attempts if last is not None and a.at < last]
        if not late:
            for a in attempts:
                self.feed(a, True, findings)
            self.evict()
            return
        assert last is not None
        self.replays += 1
        for a in attempts:
            insort(self.recent, a, lo=self.recent_from, key=_attempt_order)
        self.last_at = max(last, attempts[-1].at)
        # Accounts and IPs first: an IP's stuffing bursts are an input of its network.
        accounts = {a.account_id for a in late}
        ips = {a.ip for a in late}
        networks = {a.asn for a in late if a.asn is not None}
        held = self._held(lambda a: a.account_id in accounts or a.ip in ips)
        for acc in accounts:
            self.accounts_fail.pop(acc, None)
        for a in held:
            if a.account_id in accounts:
                self._feed_account(a, a.id > lo, findings)
        for a in attempts:
            if a.account_id not in accounts:
                self._feed_account(a, True, findings)
        for ip in ips:
            self.sources.pop(("ip", ip), None)
        for a in held:
            if a.ip in ips:
                was = a.stuffed
                a.stuffed = self._feed_source(("ip", a.ip), a, a.id > lo, findings, False)
                if a.id <= lo and a.stuffed != was and a.asn is not None:
                    networks.add(a.asn)  # judged already: its network replays too
        for a in attempts:
            if a.ip not in ips:
                a.stuffed = self._feed_source(("ip", a.ip), a, True, findings, False)
        for asn in networks:
            self.sources.pop(("asn", asn), None)
        for a in self._held(lambda a: a.asn in networks):
            assert a.asn is not None
            self._feed_source(("asn", a.asn), a, a.id > lo, findings, a.stuffed)
        for a in attempts:
            if a.asn is not None and a.asn not in networks:
                self._feed_source(("asn", a.asn), a, True, findings, a.stuffed)
        self.evict()

    def _held(self, wanted: Callable[[_Attempt], bool]) -> list[_Attempt]:
        return [a for a in islice(self.recent, self.recent_from, None) if wanted(a)]

    def evict(self) -> None:
        """Forget the attempts older than the look-back plus the lateness."""
        if self.lateness is None or self.last_at is None:
            return
        bound = self.last_at - self.t.lookback - self.lateness
        if self.recent_since is not None and bound <= self.recent_since:
            return
        cut = bisect_left(self.recent, bound, lo=self.recent_from, key=_at)
        self.recent_from = cut
        self.recent_since = bound
        if cut > len(self.recent) // 2:
            del self.recent[:cut]
            self.recent_from = 0

    def _feed_account(self, a: _Attempt, new: bool,
                      findings: dict[tuple[str, int], Finding]) -> None:
        t = self.t
        fails = self.accounts_fail.get(a.account_id)
        if fails is not None:
            while fails and a.at - fails[0].at > t.saf_window:
                fails.popleft()
        if a.success:
            if new and fails and len(fails) >= t.saf_failures:
                _success_after_failures(a, fails, self.resets.get(a.account_id, ()), t,
                                        findings)
            if fails is not None:
                fails.clear()
        else:
            if fails is None:
                fails = self.accounts_fail[a.account_id] = deque()
            fails.append(a)
            if new:
                _brute_force(a, fails, t, findings)

    def _feed_source(self, key: tuple[str, str | int], a: _Attempt, new: bool,
                     findings: dict[tuple[str, int], Finding], stuffed: bool) -> bool:
        """The IP's or the network's windows; ``stuffed``: the attempt's IP is in a
        stuffing burst, which a network's spraying must not count as its own."""
        source = self.sources.get(key)
        if source is None:
            source = self.sources[key] = _Source()
        if stuffed:
            source.last_stuffing = a.at
        return _source_attempt(key, source, a, new, self.t, findings)

    def prune(self, now: datetime, *, above: int) -> None:
        """Forget windows that can no longer fire, once there are more than ``above``."""
        t = self.t
        if len(self.accounts_fail) + len(self.sources) <= above:
            return
        for acc in [k for k, d in self.accounts_fail.items()
                    if not d or now - d[-1].at > t.saf_window]:
            del self.accounts_fail[acc]
        for key in [k for k, s in self.sources.items()
                    if not s.day or now - s.day[-1].at > t.spraying_window]:
            del self.sources[key]
        horizon = now - t.lookback
        for acc in [k for k, at in self.resets.items() if max(at) < horizon]:
            del self.resets[acc]


def _attempt_order(a: _Attempt) -> tuple[datetime, int]:
    return (a.at, a.id)


def _at(a: _Attempt) -> datetime:
    return a.at


def _window_pass(session: Session, lo: int, hi: int, state: WindowState,
                 findings: dict[tuple[str, int], Finding]) -> int:
    """Feed the logins ``lo < id <= hi`` to the window detectors: on top of ``state``
    where it continues from ``lo``, else into a fresh state that first reads one
    look-back (plus the state's lateness) of older logins (judged already, so they only
    fill the windows)."""
    cols = (_L.id, _L.account_id, _L.at, _L.success, _L.ip, _L.asn)
    # Not min(at): PostgreSQL would walk the index of at from its start until it met the
    # range of ids (0.4 s at 1,000,000 logins); of an expression it reads the range.
    first = session.scalar(select(func.min(func.coalesce(_L.at, _L.at)))
                           .where(_L.id > lo, _L.id <= hi))
    if first is None:
        return 0
    if state.continues(lo, first):
        state.read_resets(session, None)
        stmt = (select(*cols).where(_L.id > lo, _L.id <= hi).order_by(_L.at, _L.id))
        attempts = [_Attempt(r[0], r[1], r[2], bool(r[3]), r[4], r[5])
                    for r in session.execute(stmt)]
        state.feed_pass(attempts, lo, findings)
        state.login_id = hi
        return len(attempts)
    state.reset()
    state.rebuilds += 1
    start = None if lo == 0 else first - state.t.lookback - (state.lateness or timedelta())
    where = _L.id <= hi if start is None else and_(_L.at >= start, _L.id <= hi)
    state.read_resets(session, start)
    state.recent_since = start if start is not None else datetime.min.replace(tzinfo=UTC)
    # A batch run's state is dropped after the run: only the windows that can fire need
    # feeding. The watcher keeps its state for the next passes, so it feeds them all.
    only = None if state.lateness is not None else _window_candidates(session, start, hi,
                                                                       state.t)
    processed = int(session.scalar(select(func.count()).select_from(LoginEvent)
                                   .where(_L.id > lo, _L.id <= hi)) or 0)
    if only is not None and only.few():
        where = and_(where, or_(*only.filters()))
    stmt = select(*cols).where(where).order_by(_L.at, _L.id)
    fed = 0
    for row in _stream(session, stmt):
        if only is not None and not only.holds(row[1], row[4], row[5]):
            continue
        a = _Attempt(row[0], row[1], row[2], bool(row[3]), row[4], row[5])
        state.feed(a, a.id > lo, findings, only)
        state.prune(a.at, above=200_000)
        fed += 1
        if not fed % STREAM_BATCH:
            state.evict()
    state.evict()
    state.login_id = hi
    return processed


@dataclass
class _Candidates:
    """The accounts, IPs and networks whose windows can fire in a period."""

    accounts: set[uuid.UUID]
    ips: set[str]
    asns: set[int]

    def holds(self, account_id: uuid.UUID, ip: str, asn: int | None) -> bool:
        return account_id in self.accounts or ip in self.ips or asn in self.asns

    def few(self) -> bool:
        """Few enough to select in SQL (indexed look-ups instead of the whole period)."""
        return len(self.accounts) + len(self.ips) <= 2 * CHUNK and len(self.asns) <= CHUNK

    def filters(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = [literal(False)]
        for col, values in ((_L.account_id, self.accounts), (_L.ip, self.ips),
                            (_L.asn, self.asns)):
            if values:
                found.append(col.in_(sorted(values, key=str)))
        return found


BUCKET = 600  # seconds: the candidates' failures and successes are counted in buckets


def _bucket(session: Session) -> ColumnElement[int]:
    """The login's ``at`` in BUCKET-second steps since 1970, in the engine's SQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        seconds: ColumnElement[Any] = sql_cast(func.strftime("%s", _L.at), Integer)
    elif dialect == "postgresql":
        seconds = func.extract("epoch", _L.at)
    else:
        seconds = func.timestampdiff(literal_column("SECOND"), "1970-01-01", _L.at)
    return sql_cast(func.floor(seconds / BUCKET), BigInteger)


def _window_candidates(session: Session, start: datetime | None, hi: int,
                       t: Thresholds) -> _Candidates:
    """The keys whose window detectors can fire on the logins ``at >= start, id <= hi``.

    Every window detector needs a number of failures within its window (brute force 5
    in 10 minutes, success after failures 5 in an hour, stuffing 15 accounts, or 40 on
    a network, in 10 minutes, spraying 20 accounts in a day, 100 failures of an IP in a
    day), and spraying needs 80 % of the day's attempts to fail. Counted in buckets, the
    failures of every bucket a window touches bound its failures from above, and the
    successes of the buckets it covers whole bound its successes from below: a key that
    stays under every bound cannot fire, so leaving its windows out changes no finding.
    Counting is two GROUP BYs: the failures, then the successes of the sources that
    failed often enough to spray."""
    bucket = _bucket(session)
    # "id + 0": on SQLite a bound on the rowid would make the scan read whole rows; the
    # indexes read (of failures; account_id, at, success, ip, country, asn) hold what
    # is counted.
    period = [_L.id + 0 <= hi] + ([_L.at >= start] if start is not None else [])
    fails: dict[str, dict[Any, Counter[int]]] = {"account": {}, "ip": {}, "asn": {}}
    # "= false", not "IS false": the partial index of failures is used only for the
    # condition it was created with.
    for acc, ip, asn, b, n in session.execute(
        select(_L.account_id, _L.ip, _L.asn, bucket, func.count())
        .where(_L.success == false(), *period)
        .group_by(_L.account_id, _L.ip, _L.asn, bucket)
    ):
        for kind, key in (("account", acc), ("ip", ip), ("asn", asn)):
            if key is not None:
                fails[kind].setdefault(key, Counter())[int(b)] += int(n)
    short = _touched(t.stuffing_window)
    day = _touched(t.spraying_window)
    accounts = {acc for acc, f in fails["account"].items()
                if _peak(f, _touched(t.brute_force_window)) >= t.brute_force_failures
                or _peak(f, _touched(t.saf_window)) >= t.saf_failures}
    sources: dict[str, set[Any]] = {"ip": set(), "asn": set()}
    spraying: dict[str, list[Any]] = {"ip": [], "asn": []}
    for kind, stuffing in (("ip", t.stuffing_accounts), ("asn", t.stuffing_asn_accounts)):
        for key, f in fails[kind].items():
            if _peak(f, short) >= stuffing or (
                    kind == "ip" and _peak(f, day) >= t.source_daily_failures):
                sources[kind].add(key)
            elif _peak(f, day) >= t.spraying_accounts:
                spraying[kind].append(key)
    for kind, col in (("ip", _L.ip), ("asn", _L.asn)):
        keys = sorted(spraying[kind], key=str)
        for first in range(0, len(keys), CHUNK):
            chunk = keys[first : first + CHUNK]
            ok: dict[Any, Counter[int]] = {key: Counter() for key in chunk}
            for key, b, n in session.execute(
                select(col, bucket, func.count())
                .where(_L.success.is_(True), col.in_(chunk), *period)
                .group_by(col, bucket)
            ):
                ok[key][int(b)] += int(n)
            sources[kind].update(key for key in chunk
                                 if _may_spray(fails[kind][key], ok[key], t))
    return _Candidates(accounts, sources["ip"], sources["asn"])


def _touched(window: timedelta) -> int:
    """How many buckets a window of this length ending anywhere can touch."""
    return math.ceil(window.total_seconds() / BUCKET) + 1


def _peak(counts: Counter[int], width: int) -> int:
    """The most counted in any ``width`` consecutive buckets."""
    keys = sorted(counts)
    best = total = 0
    low = 0
    for k in keys:
        total += counts[k]
        while keys[low] <= k - width:
            total -= counts[keys[low]]
            low += 1
        best = max(best, total)
    return best


def _may_spray(fails: Counter[int], ok: Counter[int], t: Thresholds) -> bool:
    """Whether a day window ending in some bucket can hold ``spraying_accounts`` failures
    with at most a quarter as many successes: failures counted over every bucket the
    window touches, successes over the buckets it covers whole."""
    span = t.spraying_window.total_seconds() / BUCKET
    touched, inner = math.ceil(span) + 1, math.floor(span) - 1
    low = min(min(fails), min(ok, default=min(fails))) - touched
    high = max(max(fails), max(ok, default=max(fails)))
    f_sum, s_sum = [0], [0]  # prefix sums over the buckets low .. high
    for j in range(low, high + 1):
        f_sum.append(f_sum[-1] + fails.get(j, 0))
        s_sum.append(s_sum[-1] + ok.get(j, 0))
    for k in sorted(set(fails) | set(ok)):
        i = k - low + 1  # prefix index just past bucket k
        f = f_sum[i] - f_sum[max(0, i - touched)]
        if f >= t.spraying_accounts and 4 * (s_sum[i - 1] - s_sum[max(0, i - 1 - inner)]) <= f:
            return True
    return False


def _minutes(delta: timedelta) -> str:
    return fmt_duration(delta.total_seconds())


def _brute_force(a: _Attempt, fails: deque[_Attempt], t: Thresholds,
                 findings: dict[tuple[str, int], Finding]) -> None:
    burst = [f for f in fails if a.at - f.at <= t.brute_force_window]
    if len(burst) < t.brute_force_failures:
        return
    ips = sorted({f.ip for f in burst})
    severity = "high" if len(burst) >= 4 * t.brute_force_failures else "medium"
    burst_text = (
        f"{len(burst)} failed logins on this account within "
        f"{_minutes(a.at - burst[0].at)} (threshold {t.brute_force_failures} in "
        f"{_minutes(t.brute_force_window)}) from {len(ips)} IP address(es)"
    )
    details = {"failures": len(burst), "window_s": t.brute_force_window.total_seconds(),
               "threshold": t.brute_force_failures, "ips": ips[:20],
               "first_at": burst[0].at.isoformat(), "last_at": a.at.isoformat()}
    # Every failure of the burst, the earlier ones included, each saying which attempt it
    # was: the first of a burst reads "1st of 5", not as if it had failed five times.
    for number, f in enumerate(burst, 1):
        flag(findings, Finding("brute_force", severity, float(len(burst)), f.account_id,
                                f.id, f.at, f.ip, f.asn,
                                f"{ordinal(number)} of {burst_text}",
                                {**details, "attempt": number}))


def _success_after_failures(a: _Attempt, fails: deque[_Attempt], resets: Iterable[datetime],
                            t: Thresholds, findings: dict[tuple[str, int], Finding]) -> None:
    if any(fails[0].at <= r <= a.at for r in resets):
        return  # the client reset the password by e-mail in between: a forgotten password
    ips = sorted({f.ip for f in fails})
    severity = "high" if a.ip not in ips or len(fails) >= 4 * t.saf_failures else "medium"
    explanation = (
        f"successful login after {len(fails)} failed attempts in the preceding "
        f"{_minutes(a.at - fails[0].at)} (threshold {t.saf_failures} in "
        f"{_minutes(t.saf_window)}) from {len(ips)} IP address(es)"
        + ("; the success came from another IP" if a.ip not in ips else "")
    )
    flag(findings, Finding(
        "success_after_failures", severity, float(len(fails)), a.account_id, a.id, a.at,
        a.ip, a.asn, explanation,
        {"failures": len(fails), "threshold": t.saf_failures, "failure_ips": ips[:20],
         "first_failure_at": fails[0].at.isoformat(),
         "failure_login_ids": [f.id for f in fails][-50:]},
    ))


def _source_attempt(key: tuple[str, str | int], s: _Source, a: _Attempt, new: bool,
                    t: Thresholds, findings: dict[tuple[str, int], Finding]) -> bool:
    """One attempt from an IP or ASN: slide its windows and check the many-account
    detectors (stuffing: fast; spraying: slow, few attempts per account). True when the
    attempt belongs to a stuffing burst."""
    while s.day and a.at - s.day[0].at > t.spraying_window:
        old = s.day.popleft()
        if not old.success:
            s.day_failures -= 1
            s.day_fail_accounts[old.account_id] -= 1
            if s.day_fail_accounts[old.account_id] <= 0:
                del s.day_fail_accounts[old.account_id]
    while s.short and a.at - s.short[0].at > t.stuffing_window:
        old = s.short.popleft()
        if not old.success:
            s.short_failures -= 1
            s.short_fail_accounts[old.account_id] -= 1
            if s.short_fail_accounts[old.account_id] <= 0:
                del s.short_fail_accounts[old.account_id]
    s.day.append(a)
    s.short.append(a)
    if not a.success:
        s.day_fail_accounts[a.account_id] += 1
        s.day_failures += 1
        s.short_fail_accounts[a.account_id] += 1
        s.short_failures += 1
    kind_name, value = key
    label = f"AS{value}" if kind_name == "asn" else str(value)
    needed = t.stuffing_accounts if kind_name == "ip" else t.stuffing_asn_accounts
    accounts = len(s.short_fail_accounts)
    share = s.short_failures / len(s.short)
    burst = accounts >= needed and share >= t.stuffing_failure_share
    if burst or (s.stuffing_until is not None and a.at <= s.stuffing_until):
        first = s.stuffing_until is None or a.at > s.stuffing_until
        s.stuffing_until = a.at + t.stuffing_window
        s.last_stuffing = a.at
        if not new:
            return True
        explanation = (
            f"{label} failed on {accounts} different accounts within "
            f"{_minutes(t.stuffing_window)} ({share:.0%} of its attempts failed; threshold "
            f"{needed} accounts)"
        )
        details = {"source": label, "accounts": accounts, "failure_share": round(share, 3),
                   "threshold": needed, "window_s": t.stuffing_window.total_seconds(),
                   "rule": "burst"}
        members = list(s.short) if first else [a]
        for m in members:
            _source_finding("credential_stuffing", m, explanation, details, findings)
        return True
    recently_stuffed = (s.last_stuffing is not None
                        and a.at - s.last_stuffing <= t.spraying_window)
    day_accounts = len(s.day_fail_accounts)
    day_failures = s.day_failures
    day_share = day_failures / len(s.day)
    if (not recently_stuffed and day_accounts >= t.spraying_accounts
            and day_failures / day_accounts <= t.spraying_max_attempts
            and day_share >= t.stuffing_failure_share):
        first = not s.spraying
        s.spraying = True
        if not new:
            return False
        explanation = (
            f"{label} failed on {day_accounts} accounts within "
            f"{_minutes(t.spraying_window)}, {day_failures / day_accounts:.1f} attempts per "
            f"account on average, {day_share:.0%} of its attempts failed (threshold "
            f"{t.spraying_accounts} accounts, at most {t.spraying_max_attempts:g} attempts "
            "each)"
        )
        details = {"source": label, "accounts": day_accounts, "failures": day_failures,
                   "threshold": t.spraying_accounts,
                   "window_s": t.spraying_window.total_seconds()}
        for m in (list(s.day) if first else [a]):
            _source_finding("password_spraying", m, explanation, details, findings)
        return False
    s.spraying = False
    if kind_name == "ip" and day_failures >= t.source_daily_failures and new:
        explanation = (
            f"{label} failed {day_failures} times within {_minutes(t.spraying_window)} on "
            f"{day_accounts} account(s) (threshold {t.source_daily_failures} failures per "
            "IP per day)"
        )
        _source_finding("credential_stuffing", a, explanation,
                        {"source": label, "failures": day_failures, "accounts": day_accounts,
                         "threshold": t.source_daily_failures, "rule": "daily_volume"},
                        findings)
    return False


def _source_finding(kind: str, m: _Attempt, explanation: str, details: dict[str, Any],
                    findings: dict[tuple[str, int], Finding]) -> None:
    if m.success:
        severity = "critical"
        explanation += "; this login SUCCEEDED from the attacking source"
    else:
        severity = "high" if kind == "credential_stuffing" else "medium"
    flag(findings, Finding(kind, severity, float(details["accounts"]), m.account_id, m.id,
                            m.at, m.ip, m.asn, explanation, details))


# ===================================================================== profile pass


# The population's count of each kind of network, per database: (read at, count, total).
_SHARES: dict[tuple[str, str, int], tuple[float, int, int]] = {}
SHARE_TTL = 600.0


class _Population:
    """p(x): successful logins with value x over all successful logins, add-one smoothed
    (an unseen value counts once more among V + 1 possible values)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.counts: dict[tuple[str, str], int] = {}
        self.total = 0
        self.distinct: dict[str, int] = {}
        self.delta: Counter[tuple[str, str]] = Counter()
        self.added = 0
        self.new_values: Counter[str] = Counter()
        self.shares: dict[str, float] = {}
        novel: Counter[str] = Counter()
        by_history: dict[str, dict[int, int]] = {f: {} for f in ALPHA_FEATURES}
        keys = {history_key(f): f for f in ALPHA_FEATURES}
        for feature, value, count in session.execute(
            select(_G.c.feature, _G.c.value, _G.c.count)
            .where(_G.c.feature.in_([TOTAL, DISTINCT, *keys]))
        ):
            if feature == TOTAL:
                self.total = int(count)
            elif feature in keys:
                if value == NOVEL:
                    novel[keys[feature]] = int(count)
                else:
                    by_history[keys[feature]][int(value)] = int(count)
            else:
                self.distinct[value] = int(count)
        # Fitted once, from the counts as the run begins (`alpha`).
        self.alphas = {f: alpha for f in ALPHA_FEATURES
                       if (alpha := fit_alpha(f, novel[f], by_history[f])) is not None}

    def load(self, logins: Sequence[Login]) -> None:
        """Fetch the counts of the values these logins carry (one indexed look-up per
        chunk of values)."""
        by_feature: dict[str, set[str]] = {}
        for login in logins:
            for feature, value in login.values().items():
                if feature in RISK_FEATURES and (feature, value) not in self.counts:
                    by_feature.setdefault(feature, set()).add(value)
        for feature, values in by_feature.items():
            wanted = sorted(values)
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                found = {value: count for value, count in self.session.execute(
                    select(_G.c.value, _G.c.count)
                    .where(_G.c.feature == feature, _G.c.value.in_(chunk))
                )}
                for value in chunk:
                    self.counts[(feature, value)] = int(found.get(value, 0))

    def p(self, feature: str, value: str) -> float:
        count = self.counts.get((feature, value), 0)
        return (count + 1) / (self.total + self.distinct.get(feature, 0) + 1)

    def alpha(self, feature: str) -> float | None:
        """As fitted from the counts when the run began."""
        return self.alphas.get(feature)

    def count_novelty(self, profile: Profile, values: dict[str, str]) -> None:
        """What fits alpha: a login with a history, by its length, and whether it
        carried a value new to its account (before the profile counts it in)."""
        if not 1 <= profile.n <= HISTORY_CAP:
            return
        length = str(profile.n)
        for feature in ALPHA_FEATURES:
            value = values.get(feature)
            if value is None:
                continue
            key = history_key(feature)
            self.delta[(key, length)] += 1
            if not profile.count(feature, value):
                self.delta[(key, NOVEL)] += 1

    def network_share(self, category: str, asns: Sequence[int]) -> float:
        """The share of the networks of one kind, as the stored counts stood when a run
        of this process last read them (at most ``SHARE_TTL`` seconds ago: a share moves
        slowly, and reading it costs a query per 500 networks of the kind)."""
        share = self.shares.get(category)
        if share is None:
            key = (str(self.session.get_bind().engine.url), category, hash(tuple(asns)))
            cached = _SHARES.get(key)
            if cached is None or time.monotonic() - cached[0] > SHARE_TTL:
                wanted = [str(asn) for asn in asns]
                count = 0
                for start in range(0, len(wanted), CHUNK):
                    chunk = wanted[start : start + CHUNK]
                    count += int(self.session.scalar(
                        select(func.coalesce(func.sum(_G.c.count), 0))
                        .where(_G.c.feature == "asn", _G.c.value.in_(chunk))) or 0)
                cached = _SHARES[key] = (time.monotonic(), count, self.total)
            _at, count, total = cached
            share = self.shares[category] = smoothed_share(count, total, category)
        return share

    def add(self, login: Login, values: dict[str, str]) -> None:
        """Each new login counts into the population as the run goes."""
        self.total += 1
        self.added += 1
        for feature, value in values.items():
            if feature not in RISK_FEATURES:
                continue
            key = (feature, value)
            if self.counts.get(key, 0) == 0:
                self.distinct[feature] = self.distinct.get(feature, 0) + 1
                self.new_values[feature] += 1
            self.counts[key] = self.counts.get(key, 0) + 1
            self.delta[key] += 1

    def save(self) -> None:
        if not self.delta:
            return
        rows = [{"feature": f, "value": v, "count": n} for (f, v), n in self.delta.items()]
        rows.append({"feature": TOTAL, "value": "*", "count": self.added})
        rows.extend({"feature": DISTINCT, "value": f, "count": n}
                    for f, n in self.new_values.items())
        _upsert_adding(self.session, _G, rows, ["feature", "value"])


def _profile_pass(session: Session, lo: int, hi: int, t: Thresholds,
                  findings: dict[tuple[str, int], Finding], lists: Reputation,
                  store: bool = True) -> int:
    """The profile detectors on the successful logins ``lo < id <= hi``; the accounts'
    histories and the population's counts brought up to date unless not ``store`` (a
    proposal in shadow: within a pass nothing reads back what it would have written,
    each account's logins being judged in one batch and the counts kept in memory)."""
    cols = (_L.id, _L.account_id, _L.at, _L.ip, _L.asn, _L.country, _L.city, _L.browser,
            _L.os, _L.device_type, _L.device_id, _L.latitude, _L.longitude)
    stmt = (select(*cols).where(_L.success.is_(True), _L.id > lo, _L.id <= hi)
            .order_by(_L.account_id, _L.at, _L.id))
    population = _Population(session)
    processed = 0
    batch: list[Login] = []
    current: uuid.UUID | None = None
    # Accounts are processed in batches: their history and the population counts of
    # their values are fetched set-based, one query per chunk.
    for row in _stream(session, stmt):
        login = Login(*row)
        if login.account_id != current and len(batch) >= STREAM_BATCH:
            _score_batch(session, batch, population, t, findings, lists, store)
            batch = []
        current = login.account_id
        batch.append(login)
        processed += 1
    if batch:
        _score_batch(session, batch, population, t, findings, lists, store)
    if store:
        population.save()
    return processed


def _score_batch(session: Session, batch: list[Login], population: _Population, t: Thresholds,
                 findings: dict[tuple[str, int], Finding], lists: Reputation,
                 store: bool = True) -> None:
    accounts = sorted({login.account_id for login in batch}, key=str)
    profiles = _load_profiles(session, accounts)
    population.load(batch)
    for login in batch:
        profile = profiles[login.account_id]
        values = login.values()
        check_login(login, values, profile, population, t, findings, lists)
        population.count_novelty(profile, values)
        population.add(login, values)
        profile.add(login, values, anchor=not is_exit(login, lists))
    if store:
        rows = [{"account_id": acc} | profile.row() for acc, profile in profiles.items()]
        _upsert_replacing(session, _H, rows, ["account_id"])


def _load_profiles(session: Session, accounts: list[uuid.UUID]) -> dict[uuid.UUID, Profile]:
    """The accounts' stored histories (an empty one for an account seen first)."""
    profiles: dict[uuid.UUID, Profile] = {}
    for start in range(0, len(accounts), CHUNK):
        chunk = accounts[start : start + CHUNK]
        for acc, logins, features, last_login_at, last_located in session.execute(
            select(_H.c.account_id, _H.c.logins, _H.c.features, _H.c.last_login_at,
                   _H.c.last_located)
            .where(_H.c.account_id.in_(chunk))
        ):
            last = None if last_located is None else located_login(acc, last_located)
            profiles[acc] = Profile(features, int(logins), last_login_at, last)
    return {acc: profiles.get(acc) or Profile() for acc in accounts}


@dataclass(frozen=True)
class AnomalyView:
    id: int
    kind: str
    severity: str
    score: float
    at: datetime
    account: str
    login: str
    source_ip: str | None
    source_asn: int | None
    explanation: str
    details: dict[str, Any]
    detected_at: datetime
    account_id: uuid.UUID  # the console's id of the account (opens its timeline)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def parse_since(text: str, now: datetime) -> datetime:
    """``24h``, ``30m``, ``7d``, ``2w`` before now, or an ISO 8601 time with a zone."""
    raw = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    if raw[:-1].isascii() and raw[:-1].isdigit() and raw[-1:].lower() in units:
        try:
            return now - timedelta(seconds=int(raw[:-1]) * units[raw[-1].lower()])
        except OverflowError:
            raise InputError(f"--since {text[:40]!r} reaches before the "
                             "year 1") from None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text[:40]!r}: use 30m, 24h, 7d or an "
                         "ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InputError(f"--since {text[:40]!r} has no time zone (add Z or "
                         "+00:00)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC is before the year 1
        raise InputError(f"--since {text[:40]!r} is before the year 1") from None


def list_anomalies(rt: Runtime, actor: Actor, *, since: datetime | None = None,
                   kind: str | None = None, account_id: uuid.UUID | None = None,
                   limit: int = 1000) -> list[AnomalyView]:
    """Newest first."""
    require(actor, "read")
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown anomaly kind {kind!r}; use one of {', '.join(KINDS)}")
    stmt = (
        select(_A, Account.external_id, _L.external_id)
        .join(Account, Account.id == _A.c.account_id)
        .join(LoginEvent, _L.id == _A.c.login_event_id)
        .order_by(_A.c.at.desc(), _A.c.id.desc())
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(_A.c.at >= since)
    if kind is not None:
        stmt = stmt.where(_A.c.kind == kind)
    if account_id is not None:
        stmt = stmt.where(_A.c.account_id == account_id)
    with rt.sessions() as session:
        return [_view(row) for row in session.execute(stmt)]


def anomalies_for_logins(session: Session,
                         login_ids: Sequence[int]) -> dict[int, list[AnomalyView]]:
    out: dict[int, list[AnomalyView]] = {}
    for start in range(0, len(login_ids), CHUNK):
        chunk = list(login_ids[start : start + CHUNK])
        stmt = (
            select(_A, Account.external_id, _L.external_id)
            .join(Account, Account.id == _A.c.account_id)
            .join(LoginEvent, _L.id == _A.c.login_event_id)
            .where(_A.c.login_event_id.in_(chunk))
            .order_by(_A.c.id)
        )
        for row in session.execute(stmt):
            view = _view(row)
            out.setdefault(row.login_event_id, []).append(view)
    return out


def _view(row: Any) -> AnomalyView:
    m = row._mapping
    return AnomalyView(
        m["id"], m["kind"], m["severity"], float(m["score"]), m["at"],
        row[-2], row[-1], m["source_ip"], m["source_asn"], m["explanation"],
        dict(m["details"] or {}), m["detected_at"], m["account_id"],
    )


def checkpoint(rt: Runtime) -> dict[str, Any]:
    with rt.sessions() as session:
        row = session.execute(select(_C).where(_C.c.name == CHECKPOINT)).first()
    if row is None:
        return {"login_id": 0, "security_event_id": 0, "runs": 0, "updated_at": None}
    return {"login_id": row.login_id, "security_event_id": row.security_event_id,
            "runs": row.runs, "updated_at": row.updated_at}
