"""Withdrawal screening: `polysec withdrawals screen`.

Every unscreened withdrawal is scored by a fixed set of rules. Each rule that fires
leaves one row in ``withdrawal_flags``: its stable name, its score (the rule's weight)
and an explanation that carries the numbers behind it. The sum of the scores is the
withdrawal's risk score (its ``withdrawal_screenings`` row); at or above
``hold_threshold`` a pending withdrawal becomes ``held`` and waits for an officer
(services/withdrawals.py).

Set-based: withdrawals are taken in batches of ids (``BATCH``) and each batch costs a
fixed number of queries, whatever its size. The first (:func:`_batch_rows`) reads the
batch with the login behind each request, its destination on the blocklist, its balance,
and one probe per history rule: an ``EXISTS`` (or a small count) over an index that stops
at its first match, answering whether the history vouches for the request (its IP,
country and network among the account's recent logins; activity in the dormancy window;
an earlier withdrawal to the address; earlier withdrawals of the asset that could make a
velocity hit or an outlier). Most rows pass every probe. For the rows that do not, one
query per rule reads the numbers the explanation carries, as before: the logins in the
window grouped by country and network (``ip_not_seen``, ``new_country``, ``new_asn``),
the earlier withdrawals of the asset (``amount_outlier``, ``velocity``,
``new_destination``), the last activity (``dormant``). One join each covers security
events and holds (``security_change_hold``), freezes (``account_frozen``) and the login
anomalies of the login behind the request (``risky_session``). Per-row windows
(``requested_at - 30 days``) are computed by the database (:class:`_Shifted` compiles to
each engine's date arithmetic); where a probe only pre-selects candidates for a decision
taken in Python, its window is a second wider so the two never disagree at the edge. The
median and MAD of ``amount_outlier`` are taken in Python, in ``Decimal``, because SQLite
and MariaDB have no portable ordered-set median.

Idempotent: only withdrawals without a verdict (``withdrawal_screenings``, one row per
withdrawal) are taken, hits are unique on ``(withdrawal_id, rule)``, and a batch's
verdict is recorded under a lock on the ``screening`` row of ``analysis_checkpoints``
for the withdrawals still unscreened, so two concurrent runs never record a withdrawal
twice. Judging only reads, so a large backlog
is judged by worker processes while the calling one records (:func:`screen`).
Thresholds and weights come from the ``[screening]`` table of the TOML configuration;
defaults and their reasons: docs/screening.md.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Float,
    Index,
    MetaData,
    String,
    Table,
    and_,
    case,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.pool import SingletonThreadPool, StaticPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from polysec_tui.config import Settings
from polysec_tui.db.engine import make_engine, session_factory
from polysec_tui.db.models import (
    Account,
    AnalysisCheckpoint,
    Balance,
    BlockedAddress,
    Hold,
    LoginAnomaly,
    LoginEvent,
    RuleSet,
    RuleSetShadow,
    SecurityEvent,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.db.types import UTCDateTime
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.feed.ingest import driver_insert
from polysec_tui.services.logins.rules import FINDING_COLUMNS, SUSPICIOUS_LOGINS
from polysec_tui.services.logins.thresholds import pending_proposals
from polysec_tui.services.networks import reputation
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import locks, sanctions
from polysec_tui.services.withdrawals.holds import hold_in_force
from polysec_tui.text import fmt_amount, fmt_duration

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

RULES = (
    "ip_not_seen",
    "new_country",
    "new_asn",
    "amount_outlier",
    "new_destination",
    "address_blocklisted",
    "security_change_hold",
    "velocity",
    "dormant",
    "drains_balance",
    "risky_session",
    "account_frozen",
    "address_sanctioned",
    "address_known_bad",
    "ip_reputation",
    "anonymizing_network",
    "structuring",
    "recent_anomalies",
)
# Rules that hold a withdrawal whatever the weights and the threshold: a destination on
# a sanctions list, or one that a confirmed fraud paid (services/withdrawals/sanctions).
ALWAYS_HOLD = frozenset({"address_sanctioned", "address_known_bad"})
ADDRESS_BOOK_KINDS = ("address_added", "address_whitelisted", "address_removed")
# What the client's normal explains (``_clients_normal``): a new address on the
# account's own network, the amount rules to the client's own wallet; and the rules that
# say the request may not be the client's, which keep those rules whole.
OWN_WALLET_RULES = ("drains_balance", "velocity", "amount_outlier")
LOCATION_RULES = ("ip_not_seen", "new_country", "new_asn")
STRANGER_SIGNS = ("ip_not_seen", "new_country", "new_asn", "risky_session",
                  "recent_anomalies", "security_change_hold", "anonymizing_network",
                  "ip_reputation", "dormant")
# Address-book saves that are a security change for a withdrawal to the saved address:
# the change that lets money out (an intruder saves their address, then waits).
PAYEE_SAVES = ("address_added", "address_whitelisted")
SECURITY_CHANGES = ("2fa_reset", "2fa_change", "2fa_disabled", "password_change",
                    "password_reset", "email_change", "phone_change")
# A security change's weight by where it was made from (see _security_rules).
USUAL, USUAL_NETWORK, UNKNOWN, FLAGGED = (
    "the client's usual device and network", "the client's usual network on a new device",
    "an unknown device or network", "a session the login detectors flagged")
TRUST_FACTORS = {USUAL: 0.25, USUAL_NETWORK: 0.6, UNKNOWN: 1.0, FLAGGED: 1.5}
SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
BATCH = 20_000
CHOSEN_BATCH = 1_000  # withdrawals judged by id list (`replay_with_findings`)
PARALLEL_FROM = 3  # batches of backlog from which worker processes pay off
SQLITE_CACHE_KIB = 65_536  # page cache of the screening connection

_T = TypeVar("_T")
log = logging.getLogger(__name__)

# Per-asset amounts above which an approval needs a second officer (about USD 50,000 at
# the demo's reference prices) and at which the 24 h velocity sum fires.
DEFAULT_APPROVAL_LIMITS: dict[str, Decimal] = {
    "BTC": Decimal("0.75"), "ETH": Decimal("15"), "USDT": Decimal("50000"),
    "USDC": Decimal("50000"), "SOL": Decimal("300"), "XRP": Decimal("90000"),
    "LTC": Decimal("600"), "DOGE": Decimal("330000"), "ADA": Decimal("110000"),
}
DEFAULT_WEIGHTS: dict[str, float] = {
    "ip_not_seen": 20, "new_country": 20, "new_asn": 10, "amount_outlier": 30,
    "new_destination": 15, "address_blocklisted": 100, "security_change_hold": 60,
    "velocity": 25, "dormant": 25, "drains_balance": 25, "risky_session": 35,
    "account_frozen": 100, "address_sanctioned": 1000, "address_known_bad": 100,
    "ip_reputation": 40, "anonymizing_network": 15, "structuring": 30,
    "recent_anomalies": 20,
}


@dataclass(frozen=True)
class ScreeningConfig:
    """Thresholds and weights; docs/screening.md explains each default."""

    hold_threshold: float = 50.0
    ip_history_days: int = 30
    geo_history_days: int = 180
    geo_min_history: int = 3
    amount_history_days: int = 180
    amount_min_history: int = 5
    amount_ratio: Decimal = Decimal("3")
    amount_robust_z: Decimal = Decimal("6")
    amount_mad_floor: Decimal = Decimal("0.1")  # MAD at least 10% of the median
    security_hold_hours: int = 24  # a change weighs fully this long ...
    security_fade_hours: int = 72  # ... then less and less, nothing from here on
    security_known_hours: int = 1  # a device or network the client used this long before
    velocity_window_hours: int = 24
    velocity_count: int = 5
    structuring_count: int = 3  # withdrawals to one new address in the velocity window
    address_book_known_hours: int = 24  # a saved address is history from this age
    address_book_trusted_days: int = 30  # ... and from this age whatever it came from
    own_wallet_payments: int = 2  # a destination paid this often, each payment ...
    own_wallet_days: int = 14  # ... this long before: the client's own wallet ...
    own_wallet_factor: float = 0.25  # ... where the amount rules weigh this share
    known_burst_factor: float = 0.5  # velocity of a burst to places paid as much before
    usual_network_factor: float = 0.25  # ip_not_seen on the account's own network
    trip_factor: float = 0.5  # a new place alone, paying where the client long paid as much
    young_device_days: int = 7  # a device this new to the account saving the destination
    vouch_hours: int = 24  # a login vouches for its address from this age (see _vouches)
    dormant_days: int = 90
    dormant_grace_hours: int = 24
    drain_share: Decimal = Decimal("0.9")
    risky_session_min_severity: str = "medium"
    review_sla_hours: float = 4.0
    claim_timeout_minutes: float = 30.0  # a claim without activity returns to the queue
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    approval_limits: dict[str, Decimal] = field(
        default_factory=lambda: dict(DEFAULT_APPROVAL_LIMITS))
    # The version of the rule set these thresholds and weights come from (`polysec
    # rules`), none for the configuration file's; not a key of [screening].
    rule_set: int | None = None

    def weight(self, rule: str) -> float:
        return float(self.weights.get(rule, DEFAULT_WEIGHTS[rule]))

    def approval_limit(self, asset: str) -> Decimal | None:
        return self.approval_limits.get(asset)

    @property
    def lookback_days(self) -> int:
        return max(self.ip_history_days, self.geo_history_days, self.amount_history_days,
                   -(-self.velocity_window_hours // 24), -(-self.security_fade_hours // 24))

    def fade(self, hours: float) -> float:
        """A security change's share of its weight ``hours`` after it: 1 within
        ``security_hold_hours``, then falling in a straight line to 0 at
        ``security_fade_hours`` (no cliff)."""
        if hours <= self.security_hold_hours:
            return 1.0
        span = self.security_fade_hours - self.security_hold_hours
        return max(0.0, 1.0 - (hours - self.security_hold_hours) / span) if span > 0 else 0.0

    def payee_fade(self, hours: float) -> float:
        """A save of the destination by the young device behind the request (an
        intruder's device, or a client's new phone), which fades until the save counts
        as history whatever made it (``address_book_trusted_days``): the intruder who
        saved their address can wait out ``security_fade_hours``."""
        if hours <= self.security_hold_hours:
            return 1.0
        span = self.address_book_trusted_days * 24 - self.security_hold_hours
        return max(0.0, 1.0 - (hours - self.security_hold_hours) / span) if span > 0 else 0.0

    @property
    def reactivation_hours(self) -> int:
        """How long after a dormant account woke up a withdrawal still weighs ``dormant``."""
        return max(self.dormant_grace_hours, self.security_fade_hours)

    def reactivation_fade(self, hours: float) -> float:
        """``dormant``'s share ``hours`` after the waking: 1 within
        ``dormant_grace_hours``, then falling in a straight line to 0 at
        ``reactivation_hours``."""
        if hours <= self.dormant_grace_hours:
            return 1.0
        span = self.reactivation_hours - self.dormant_grace_hours
        return max(0.0, 1.0 - (hours - self.dormant_grace_hours) / span) if span > 0 else 0.0


# What the configuration file keeps whatever rule set is in force: how the deployment
# runs (workers), the review's service levels, and the four-eyes limits, which are the
# approval policy rather than a detection threshold.
OPERATIONAL = frozenset({"workers", "review_sla_hours", "claim_timeout_minutes",
                         "approval_limits", "rule_set"})
# The thresholds and weights a rule set holds (`polysec rules propose`).
RULE_PARAMETERS = tuple(f.name for f in fields(ScreeningConfig) if f.name not in OPERATIONAL)


def load_config(settings: Settings) -> ScreeningConfig:
    """The ``[screening]`` table of the TOML file over the defaults; unknown keys and
    bad values are input errors (exit 2), never silently ignored. Where a rule set is
    in force its thresholds and weights replace the file's (:func:`in_force`)."""
    return parse_section(dict(settings.section("screening")), ScreeningConfig(),
                         "config: [screening]")


def parse_section(section: Mapping[str, Any], base: ScreeningConfig,
                  where: str) -> ScreeningConfig:
    """``base`` with the keys of ``section`` (a [screening] table) applied, validated;
    ``where`` names the table in errors."""
    changes: dict[str, Any] = {}
    known = {f.name: f for f in fields(ScreeningConfig) if f.name != "rule_set"}
    for key, raw in section.items():
        if key not in known:
            raise InputError(f"{where}: unknown key {key}")
        current = getattr(base, key)
        try:
            if key == "weights":
                if not isinstance(raw, dict) or set(raw) - set(RULES):
                    raise ValueError(f"rules are {', '.join(RULES)}")
                changes[key] = {**current, **{k: _number(v, MAX_WEIGHT, f"weights.{k}")
                                              for k, v in raw.items()}}
            elif key == "approval_limits":
                if not isinstance(raw, dict):
                    raise ValueError("a table of asset = amount")
                changes[key] = {**current, **{str(k).upper(): _positive(v)
                                              for k, v in raw.items()}}
            elif key == "risky_session_min_severity":
                if not isinstance(raw, str) or raw not in SEVERITY_RANK:
                    raise ValueError(f"one of {', '.join(SEVERITY_RANK)}")
                changes[key] = raw
            elif isinstance(current, Decimal):
                changes[key] = _positive(raw)
            elif isinstance(current, int):
                top = _whole_limit(key)
                if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= top:
                    raise ValueError(f"a whole number from 0 to {top:,}")
                changes[key] = raw
            else:
                changes[key] = _number(raw, MAX_NUMBER, "")
        except ValueError as exc:
            raise InputError(f"{where} {key}: {exc}") from None
    config = replace(base, **changes)
    if config.structuring_count < 2:
        raise InputError(f"{where} structuring_count: at least 2")
    if config.velocity_window_hours < 1:
        raise InputError(f"{where} velocity_window_hours: at least 1")
    if config.address_book_known_hours < 1:
        raise InputError(f"{where} address_book_known_hours: at least 1")
    for share in ("own_wallet_factor", "usual_network_factor", "known_burst_factor",
                  "trip_factor"):
        if not 0 <= getattr(config, share) <= 1:
            raise InputError(f"{where} {share}: a share from 0 to 1")
    if config.security_fade_hours < config.security_hold_hours:
        if "security_fade_hours" in section:
            raise InputError(f"{where} security_fade_hours must be at least "
                             "security_hold_hours")
        # A configuration from before the fade: its changes weigh whole for its hours.
        config = replace(config, security_fade_hours=config.security_hold_hours)
    return config


def parameters_of(cfg: ScreeningConfig) -> dict[str, Any]:
    """The rule parameters of ``cfg`` as JSON values (amounts as strings, exact)."""
    doc: dict[str, Any] = {}
    for name in RULE_PARAMETERS:
        value = getattr(cfg, name)
        if isinstance(value, Decimal):  # 3 and 3.0 are one value
            value = format(value.normalize(), "f")
        elif isinstance(value, dict):
            value = {k: float(v) for k, v in sorted(value.items())}
        doc[name] = value
    return doc


def with_rule_set(base: ScreeningConfig, version: int,
                  parameters: Mapping[str, Any]) -> ScreeningConfig:
    """``base`` (the file's configuration) under rule set ``version``."""
    known = {k: v for k, v in parameters.items() if k in RULE_PARAMETERS}
    cfg = parse_section(known, replace(base, weights=dict(DEFAULT_WEIGHTS)),
                        f"rule set v{version}:")
    return replace(cfg, rule_set=version)


def config_in_force(rt: Runtime) -> ScreeningConfig:
    """The configuration file's, under the rule set in force."""
    with rt.sessions() as session:
        return in_force(session, load_config(rt.settings), rt.clock())[0]


# Proposals judged in shadow at once: each one judges every batch again.
MAX_SHADOWS = 3


def in_force(session: Session, base: ScreeningConfig,
             now: datetime) -> tuple[ScreeningConfig, list[ScreeningConfig]]:
    """The configuration screening judges by (``base`` under the newest approved rule
    set, or ``base`` alone while none was approved) and those of the proposals running
    in shadow beside it (their four-eyes request still pending, not expired, and
    screening's parameters changed)."""
    live = session.execute(
        select(RuleSet.id, RuleSet.parameters).where(RuleSet.activated_at.is_not(None))
        .order_by(RuleSet.id.desc()).limit(1)).first()
    cfg = base if live is None else with_rule_set(base, live.id, live.parameters)
    shadows = [with_rule_set(base, version, parameters)
               for version, parameters in pending_proposals(session, now)]
    # A proposal of login thresholds alone judges withdrawals as the version in force:
    # no shadow, and no place taken from one that would.
    mine = parameters_of(cfg)
    return cfg, [shadow for shadow in shadows if parameters_of(shadow) != mine][:MAX_SHADOWS]


# Bounds of the configuration's numbers: far above any sensible value, low enough that
# no date arithmetic, count or weight can overflow on any engine.
MAX_WEIGHT = 10_000.0
MAX_NUMBER = 1_000_000.0
MAX_DECIMAL = Decimal("1e12")


def _whole_limit(key: str) -> int:
    if key == "workers":
        return 64
    if key.endswith("_days"):
        return 3_650
    if key.endswith("_hours"):
        return 87_600
    return 1_000_000


def _number(raw: Any, top: float, name: str) -> float:
    """A finite number from 0 to ``top`` (TOML gives int or float; bool is neither)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not (
            math.isfinite(raw) and 0 <= raw <= top):
        raise ValueError(f"{name + ': ' if name else ''}a number from 0 to {top:,.0f}")
    return float(raw)


def _positive(raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise ValueError(f"{str(raw)[:40]!r} is not a number")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"{str(raw)[:40]!r} is not a number") from None
    if not value.is_finite() or value <= 0 or value > MAX_DECIMAL:
        raise ValueError(f"{str(raw)[:40]!r} must be above 0 and at most {MAX_DECIMAL:,f}")
    return value


# ------------------------------------------------------------------ date arithmetic


class _Shifted(FunctionElement[datetime]):
    """``column + seconds`` on every engine (seconds is a compile-time integer)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "polysec_shifted"


def shifted(column: ColumnElement[datetime] | Any, seconds: int) -> _Shifted:
    return _Shifted(column, literal_column(str(int(seconds))))


@compiles(_Shifted)
def _shifted_default(element: _Shifted, compiler: SQLCompiler, **kw: Any) -> str:
    column, seconds = list(element.clauses)
    return (f"({compiler.process(column, **kw)} + "
            f"make_interval(secs => {compiler.process(seconds, **kw)}))")


@compiles(_Shifted, "sqlite")
def _shifted_sqlite(element: _Shifted, compiler: SQLCompiler, **kw: Any) -> str:
    column, seconds = list(element.clauses)
    # Same text layout as the stored values (UTCDateTime: six decimals), so they compare
    # as text; the shift is whole seconds, so the fraction is the column's own (%f has
    # three decimals: a value equal to the bound would compare greater), and the whole
    # seconds are shifted without it (strftime would round .9995 up a second).
    value = compiler.process(column, **kw)
    return (f"(strftime('%Y-%m-%d %H:%M:%S', substr({value}, 1, 19), "
            f"({compiler.process(seconds, **kw)}) || ' seconds') || substr({value}, 20))")


@compiles(_Shifted, "mysql")
@compiles(_Shifted, "mariadb")
def _shifted_mysql(element: _Shifted, compiler: SQLCompiler, **kw: Any) -> str:
    column, seconds = list(element.clauses)
    return (f"DATE_ADD({compiler.process(column, **kw)}, "
            f"INTERVAL {compiler.process(seconds, **kw)} SECOND)")


# ------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Hit:
    rule: str
    score: float
    explanation: str
    details: dict[str, Any]


@dataclass
class ScreenReport:
    screened: int = 0
    held: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rule_set: int | None = None  # the version judged by, none for the file's

    def as_dict(self) -> dict[str, Any]:
        return {"screened": self.screened, "held": self.held, "rule_set": self.rule_set,
                "hits": dict(sorted(self.hits.items())), "seconds": round(self.seconds, 3)}


def _fmt_time(at: datetime | None) -> str:
    return "never" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ========================================================================== the run


def screen(rt: Runtime, actor: Actor, *, config: ScreeningConfig | None = None,
           limit: int | None = None, workers: int | None = None) -> ScreenReport:
    """Screen every withdrawal not screened yet (at most ``limit``); audited.

    Each batch is judged (:func:`_judge`: reads only) apart from the writing of its
    verdict (:func:`_record`: one transaction, under the screening lock). When the
    backlog spans ``PARALLEL_FROM`` batches or more, ``workers`` processes (default
    ``[screening] workers``) judge the next batches on the other cores while this one
    writes; verdicts are written in batch order either way. ``config``: the file's
    configuration, under the rule set in force (:func:`in_force`).
    """
    require(actor, "withdrawals.screen")
    report, _last = _screen(rt, config or load_config(rt.settings), limit, workers, 0)
    with rt.transaction() as session:
        rt.audit.append(session, officer=actor.name, action="withdrawals.screen",
                        at=rt.clock(), target=None,
                        details=report.as_dict() | {"seconds": None})
    return report


def screen_new(rt: Runtime, config: ScreeningConfig, after: int,
               limit: int) -> tuple[ScreenReport, int, bool]:
    """The watcher's pass: at most ``limit`` unscreened withdrawals with an id above
    ``after``, judged as :func:`screen` judges them (not audited one by one). Returns
    the report, the watcher's next ``after`` and whether more may wait. When the pass
    took every unscreened withdrawal, the next ``after`` is the newest id there was when
    it began (ids commit in order: ingests take turns), past withdrawals another run
    screened, so they are not looked at again; else the last id judged."""
    with rt.sessions() as session:
        newest = int(session.scalar(select(func.max(Withdrawal.id))) or 0)
    taken: list[int] = []
    report, last = _screen(rt, config, limit, None, after, taken)
    if sum(taken) >= limit:
        return report, last, True
    return report, max(last, newest), False


def _screen(rt: Runtime, base: ScreeningConfig, limit: int | None, workers: int | None,
            after: int, taken: list[int] | None = None) -> tuple[ScreenReport, int]:
    """Judge and record the unscreened withdrawals by the rule set in force; each
    proposal in shadow judges the same batches, and where it disagrees that is
    recorded apart (:func:`_record_shadow`), holding nothing."""
    began = time.monotonic()
    report = ScreenReport()
    last = after
    with rt.sessions() as session:
        cfg, shadows = in_force(session, base, rt.clock())
    report.rule_set = cfg.rule_set
    batches = _batches(rt, limit, after)
    first = list(itertools.islice(batches, PARALLEL_FROM))
    n = cfg.workers if workers is None else workers
    if n < 1 or len(first) < PARALLEL_FROM or not _shareable(rt):
        n = 0
    pool: Executor = _worker_pool(rt, n) if n else _Inline()
    judge = _judge_in_worker if n else partial(_judge, rt.sessions)
    def write(judged: list[Future[_Verdict]]) -> None:
        verdict = judged[0].result()
        recorded = _record(rt, verdict, cfg, report)
        for shadow, future in zip(shadows, judged[1:], strict=True):
            if shadow.rule_set in failed:
                continue
            try:  # a proposal's failure never reaches the live verdicts
                _record_shadow(rt, recorded, (cfg, verdict), (shadow, future.result()))
            except Exception as exc:
                failed.add(shadow.rule_set)
                log.warning("rule set v%s in shadow failed and is skipped for this run: %s",
                            shadow.rule_set, str(exc).splitlines()[0][:200])

    failed: set[int | None] = set()

    try:
        verdicts: deque[list[Future[_Verdict]]] = deque()
        for ids in itertools.chain(first, batches):
            last = max(last, ids[-1])
            if taken is not None:
                taken.append(len(ids))
            verdicts.append([pool.submit(judge, ids, c) for c in (cfg, *shadows)])
            # Keep every worker busy while this process writes.
            if len(verdicts) > n:
                write(verdicts.popleft())
        while verdicts:
            write(verdicts.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.seconds = time.monotonic() - began
    return report, last


@dataclass(frozen=True)
class Replayed:
    """A withdrawal judged again (:func:`replay`): its score, the rules that fired and
    whether they would hold it (as if it were pending)."""

    score: float
    rules: frozenset[str]
    held: bool


def replay(rt: Runtime, configs: list[ScreeningConfig], since: datetime,
           until: datetime) -> Iterator[dict[int, list[Replayed]]]:
    """Judge again every withdrawal requested in ``[since, until)``, screened or not,
    under each of ``configs``, batch by batch: reads only. History is the database's
    as it is now (what was held since, lists imported since), so two configurations
    replayed together differ only by their parameters."""
    w = Withdrawal
    window = (since, until)

    def batches() -> Iterator[list[int]]:
        after = 0
        while True:
            with rt.sessions() as session:
                ids = list(session.scalars(
                    select(w.id).where(w.id > after, w.requested_at >= since,
                                       w.requested_at < until)
                    .order_by(w.id).limit(BATCH)))
            if not ids:
                return
            yield ids
            after = ids[-1]

    def replayed(verdicts: list[_Verdict]) -> dict[int, list[Replayed]]:
        judged: dict[int, list[Replayed]] = {}
        for wid in verdicts[0].judged:
            judged[wid] = []
            for cfg, verdict in zip(configs, verdicts, strict=True):
                found = verdict.hits.get(wid, [])
                score = round(sum(h.score for h in found), 2)
                judged[wid].append(Replayed(score, frozenset(h.rule for h in found),
                                            would_hold(score, found, cfg)))
        return judged

    # As _screen: worker processes judge while this one tallies, once it pays off.
    ids_iter = batches()
    first = list(itertools.islice(ids_iter, PARALLEL_FROM))
    n = configs[0].workers
    if n < 1 or len(first) * len(configs) < PARALLEL_FROM or not _shareable(rt):
        n = 0
    pool: Executor = _worker_pool(rt, n) if n else _Inline()
    judge = _judge_in_worker if n else partial(_judge, rt.sessions)
    try:
        pending: deque[list[Future[_Verdict]]] = deque()
        for ids in itertools.chain(first, ids_iter):
            pending.append([pool.submit(judge, ids, cfg, window) for cfg in configs])
            if len(pending) > n:
                yield replayed([f.result() for f in pending.popleft()])
        while pending:
            yield replayed([f.result() for f in pending.popleft()])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def replay_with_findings(rt: Runtime, sets: list[tuple[ScreeningConfig, list[tuple[Any, ...]]]],
                         since: datetime, until: datetime,
                         accounts: set[uuid.UUID] | None = None) -> dict[int, list[Replayed]]:
    """As `replay`, each configuration judging with the login findings paired with it
    instead of the stored ones (``FINDING_COLUMNS`` of a replay of the login detectors
    under a rule set's thresholds, services/logins/replay.py), over the
    withdrawals requested in ``[since, until)`` (of ``accounts`` alone, when given).

    On a connection of its own, in one read transaction: the findings go into a
    temporary table named as the anomalies' table, which every engine resolves before
    the real one for that connection alone (nothing else sees it, nothing is written
    to the database). The table is dropped by a statement that can drop a temporary
    table only, and the connection discarded, never returned to the pool where the
    table would hide the real one from its next user (except an in-memory SQLite
    database's single connection, which is the database)."""
    w = Withdrawal
    judged: dict[int, list[Replayed]] = {}
    window = and_(w.requested_at >= since, w.requested_at < until)
    conn = rt.engine.connect()
    shared = isinstance(rt.engine.pool, SingletonThreadPool | StaticPool)
    try:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # First, before any read: on MariaDB an index on the table commits.
            temp = _temporary_anomalies(conn)
            _tune(conn)
            ids: list[int] = []
            for part in ([None] if accounts is None else
                         _chunks(sorted(accounts, key=str))):
                chosen = window if part is None else and_(window, w.account_id.in_(part))
                ids.extend(conn.scalars(select(w.id).where(chosen)))
            ids.sort()
            session = Session(bind=conn)
            for cfg, findings in sets:
                conn.execute(temp.delete())
                for start in range(0, len(findings), 5000):
                    conn.execute(insert(temp), [
                        dict(zip(FINDING_COLUMNS, row, strict=True)) | {"id": start + i + 1}
                        for i, row in enumerate(findings[start:start + 5000])])
                # Chosen ids go by in a list, short enough for every engine's bound
                # parameters however often a rule's statement repeats it.
                step = BATCH if accounts is None else CHOSEN_BATCH
                for start in range(0, len(ids), step):
                    batch = ids[start:start + step]
                    verdict = _judge_in(session, w.id.in_(batch) if accounts is not None
                                        else and_(w.id >= batch[0], w.id <= batch[-1], window),
                                        cfg)
                    for wid in verdict.judged:
                        found = verdict.hits.get(wid, [])
                        score = round(sum(h.score for h in found), 2)
                        judged.setdefault(wid, []).append(Replayed(
                            score, frozenset(h.rule for h in found), would_hold(score, found, cfg)))
            session.close()
    finally:
        try:
            conn.rollback()
            conn.exec_driver_sql(_DROP_TEMPORARY[conn.dialect.name])
            conn.commit()
        except DBAPIError:
            if shared:  # the database's only connection: it must not keep the table
                raise
            # Else the connection is discarded below, and its temporary table with it;
            # an error of its own would only hide the one that brought us here.
        finally:
            if not shared:
                conn.invalidate()
            conn.close()
    return judged


def _no_privilege(exc: DBAPIError) -> bool:
    """Whether the server refused for want of a privilege (PostgreSQL's SQLSTATE 42501;
    MariaDB's 1044 and 1142), not for another reason."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "42501":
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return len(args) > 0 and args[0] in (1044, 1142)


# Statements that drop the temporary table and never the real one.
_DROP_TEMPORARY = {
    "sqlite": "DROP TABLE IF EXISTS temp.login_anomalies",
    "postgresql": "DROP TABLE IF EXISTS pg_temp.login_anomalies",
    "mysql": "DROP TEMPORARY TABLE IF EXISTS login_anomalies",
    "mariadb": "DROP TEMPORARY TABLE IF EXISTS login_anomalies",
}


def _temporary_anomalies(conn: Connection) -> Table:
    """A temporary ``login_anomalies`` on ``conn`` (see `replay_with_findings`) with the
    columns screening reads (a query that read another would fail, not read nothing)
    and the indexes it reads them by."""
    real = cast(Table, LoginAnomaly.__table__)
    temp = Table(real.name, MetaData(),
                 *(Column(c.name, c.type, primary_key=c.primary_key, autoincrement=False,
                          nullable=c.nullable) for c in real.columns
                   if c.name == "id" or c.name in FINDING_COLUMNS),
                 prefixes=["TEMPORARY"])
    Index("tmp_login_anomalies_account_at", temp.c.account_id, temp.c.at)
    Index("tmp_login_anomalies_login", temp.c.login_event_id)
    Index("tmp_login_anomalies_at", temp.c.at)
    try:
        temp.create(conn)
    except DBAPIError as exc:
        if not _no_privilege(exc):
            raise
        raise RefusedError(
            "a login backtest replays screening on a temporary table, which this database "
            "role may not create: grant it CREATE TEMPORARY TABLES (MariaDB) or TEMPORARY "
            "(PostgreSQL) on the database (docs/audit.md)") from exc
    return temp


def _batches(rt: Runtime, limit: int | None, after: int) -> Iterator[list[int]]:
    """The ids above ``after`` of the unscreened withdrawals, in batches of ``BATCH``,
    oldest first."""
    left = limit
    while left is None or left > 0:
        size = BATCH if left is None else min(BATCH, left)
        with rt.sessions() as session:
            ids = list(session.scalars(
                select(Withdrawal.id).where(Withdrawal.id > after, _unscreened())
                .order_by(Withdrawal.id).limit(size)))
        if not ids:
            return
        yield ids
        after = ids[-1]
        if left is not None:
            left -= len(ids)


def _unscreened() -> ColumnElement[bool]:
    """The withdrawal has no verdict yet (no row in ``withdrawal_screenings``)."""
    s = WithdrawalScreening
    return ~select(s.withdrawal_id).where(s.withdrawal_id == Withdrawal.id).exists()


class _Inline(Executor):
    """Runs each call at once, in this process (small backlogs, in-memory databases)."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # raised by result(), as a pool's future would
            future.set_exception(exc)
        return future


def _shareable(rt: Runtime) -> bool:
    """Whether other processes can open the database (not an in-memory SQLite one)."""
    url = rt.engine.url
    return url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")


_worker_sessions: sessionmaker[Session] | None = None


def _worker_pool(rt: Runtime, n: int) -> ProcessPoolExecutor:
    # Imported here: multiprocessing is not needed by the console, which imports this
    # module for its rule names and settings.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Spawned, not forked: a forked child would inherit this process's pooled
    # connections. The URL (password included) reaches the workers through a pipe.
    return ProcessPoolExecutor(
        n, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
        initargs=(rt.engine.url.render_as_string(hide_password=False),))


def _start_worker(url: str) -> None:
    global _worker_sessions
    _worker_sessions = session_factory(make_engine(url, create_dir=False))


def _judge_in_worker(ids: list[int], cfg: ScreeningConfig,
                     window: tuple[datetime, datetime] | None = None) -> _Verdict:
    assert _worker_sessions is not None, "not started by _worker_pool"
    return _judge(_worker_sessions, ids, cfg, window)


@dataclass
class _Row:
    id: int
    requested_at: datetime
    asset: str
    amount: Decimal
    available: Decimal | None
    address: str
    ip: str
    status: str
    login_ext: str | None
    country: str | None
    asn: int | None
    blocked_reason: str | None
    blocked_at: datetime | None
    # The probes of _batch_rows (index seeks, each stops at the first match).
    ip_seen: bool
    country_seen: bool
    asn_seen: bool
    active: bool
    destination_used: bool
    velocity_maybe: bool
    outlier_maybe: bool


@dataclass(frozen=True)
class _Verdict:
    """A judged batch: every withdrawal read, and the hits and status (as read) of those
    that scored. Plain data, so that it can cross from a worker process."""

    judged: list[int]
    hits: dict[int, list[Hit]]
    status: dict[int, str]
    # The sanctions lists as judged: when one was imported before the verdict is
    # recorded, the batch's destinations are looked up again then.
    lists_stamp: tuple[tuple[int, str, str], ...] = ()
    addresses: dict[int, str] = field(default_factory=dict)
    pending: frozenset[int] = frozenset()


def _judge(sessions: sessionmaker[Session], ids: list[int], cfg: ScreeningConfig,
           window: tuple[datetime, datetime] | None = None) -> _Verdict:
    """Run every rule over the unscreened withdrawals of the batch ``ids[0]..ids[-1]``
    (with ``window``: those requested in it, screened or not), in one snapshot; no
    writes."""
    w = Withdrawal
    in_batch = and_(w.id >= ids[0], w.id <= ids[-1],
                    _unscreened() if window is None
                    else and_(w.requested_at >= window[0], w.requested_at < window[1]))
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            # One snapshot for the batch's queries, as SQLite and MariaDB give.
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        _tune(session.connection())
        return _judge_in(session, in_batch, cfg)


def _tune(conn: Connection) -> None:
    """The engine's settings for judging, in the transaction begun."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # The probes seek all over the logins and withdrawals indexes; SQLite's
        # default page cache (2 MiB) would reread their upper pages every time.
        # The setting stays with the pooled connection: a ceiling, filled only as
        # pages are read, so nothing is allocated unless they are read again.
        conn.execute(text(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}"))
    if dialect == "postgresql":
        # psycopg prepares repeated statements; PostgreSQL's generic plan for
        # them guesses `status != $1` matches one row and nests loops over the
        # whole table. Plan each batch with its real values instead.
        conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        # The batch query's estimated cost (thousands of index probes) switches the
        # JIT on, and compiling its expressions took 3.1 s of a 3.8 s batch of
        # 20,000; the probes themselves are index seeks that gain nothing from it.
        conn.execute(text("SET LOCAL jit = off"))


def _judge_in(session: Session, in_batch: ColumnElement[bool],
              cfg: ScreeningConfig) -> _Verdict:
    """`_judge`'s work on the withdrawals ``in_batch``, in the session's transaction."""
    # Core rows straight from the connection: the Session's result path costs
    # about 4 % of judging a batch, for nothing (no objects are loaded).
    conn = session.connection()
    rows = _batch_rows(conn, in_batch, cfg)
    hits: dict[int, list[Hit]] = defaultdict(list)
    _login_rules(conn, rows, cfg, hits)
    _history_rules(conn, rows, cfg, hits)
    _security_rules(conn, rows, in_batch, cfg, hits)
    _frozen(conn, in_batch, cfg, hits)
    _risky_session(conn, rows, in_batch, cfg, hits)
    _recent_anomalies(conn, rows, in_batch, cfg, hits)
    _dormant(conn, rows, cfg, hits)
    _listed(session, rows, cfg, hits)
    _reputation(session, rows, cfg, hits)
    stamp = sanctions.lists_stamp(session)
    for row in rows.values():
        _row_rules(row, cfg, hits)
    _clients_normal(conn, rows, cfg, hits)
    order = {rule: i for i, rule in enumerate(RULES)}
    scored = {wid: sorted(found, key=lambda h: order[h.rule])
              for wid, found in hits.items() if found and wid in rows}
    return _Verdict(sorted(rows), scored, {wid: rows[wid].status for wid in scored}, stamp,
                    {wid: row.address for wid, row in rows.items()},
                    frozenset(wid for wid, row in rows.items() if row.status == "pending"))


def _record(rt: Runtime, verdict: _Verdict, cfg: ScreeningConfig,
            report: ScreenReport) -> dict[int, float]:
    """Write one verdict: the hits, each withdrawal's score and screening time, and
    ``held`` where a pending withdrawal scored at or above the threshold.

    Only withdrawals still unscreened are written (a concurrent run may have taken some
    meanwhile), and only those judged: one the platform committed later, with an id in
    the batch's range, waits for the next run. Everything is inserted, except the status
    of the few that are held: the withdrawal rows stay as they are. Returns the score
    of each withdrawal written."""
    w = Withdrawal
    table = cast(Table, Withdrawal.__table__)
    with rt.transaction() as session:
        now = rt.clock()
        locks.take(session, locks.SCREENING, now)
        unscreened: set[int] = set()
        for group in _chunks(_spans(verdict.judged), 100):
            unscreened.update(session.scalars(select(w.id).where(
                or_(*(w.id.between(lo, hi) for lo, hi in group)), _unscreened())))
        if not unscreened:
            return {}
        if sanctions.lists_stamp(session) != verdict.lists_stamp:
            verdict = _listed_since(session, verdict, unscreened, cfg)
        scores = dict.fromkeys(unscreened, 0.0)
        flags: list[dict[str, Any]] = []
        to_hold: list[int] = []
        for wid, found in verdict.hits.items():
            if wid not in unscreened:
                continue
            scores[wid] = score = round(sum(h.score for h in found), 2)
            if verdict.status[wid] == "pending" and would_hold(score, found, cfg):
                to_hold.append(wid)
            for h in found:
                report.hits[h.rule] = report.hits.get(h.rule, 0) + 1
                flags.append({"withdrawal_id": wid, "rule": h.rule, "score": h.score,
                              "explanation": h.explanation, "details": h.details,
                              "created_at": now})
        _insert(session, cast(Table, WithdrawalScreening.__table__),
                [{"withdrawal_id": wid, "screened_at": now, "risk_score": score,
                  "rule_set": cfg.rule_set} for wid, score in sorted(scores.items())])
        if flags:
            _insert(session, cast(Table, WithdrawalFlag.__table__), flags)
        for chunk in _chunks(to_hold):
            # Only those still pending: an officer may have claimed one since it was
            # judged. Filtered here, not by `status = 'pending'` in the UPDATE's WHERE:
            # SQLite would then scan the status index (every pending withdrawal).
            held = [wid for wid, now_status in session.execute(
                select(table.c.id, table.c.status)
                .where(table.c.id.in_(chunk)).with_for_update())
                    if now_status == "pending"]
            if held:
                session.execute(update(table).where(table.c.id.in_(held))
                                .values(status="held"))
            report.held += len(held)
        report.screened += len(unscreened)
    return scores


def would_hold(score: float, found: list[Hit], cfg: ScreeningConfig) -> bool:
    """Whether hits ``found`` scoring ``score`` hold a pending withdrawal."""
    return score >= cfg.hold_threshold or any(h.rule in ALWAYS_HOLD for h in found)


def _record_shadow(rt: Runtime, recorded: Mapping[int, float],
                   live: tuple[ScreeningConfig, _Verdict],
                   shadow: tuple[ScreeningConfig, _Verdict]) -> None:
    """Count the withdrawals a proposal in shadow judged (those the live verdict
    recorded, read by both) and keep those where it disagreed: another hold decision
    (as if each were pending) or other rules fired."""
    if not recorded:
        return
    (live_cfg, live_verdict), (cfg, verdict) = live, shadow
    assert cfg.rule_set is not None
    rows: list[dict[str, Any]] = []
    now = rt.clock()
    compared = sorted(set(recorded) & set(verdict.judged))  # both snapshots read it
    if not compared:
        return
    for wid in compared:
        ours, theirs = live_verdict.hits.get(wid, []), verdict.hits.get(wid, [])
        ours_score = round(sum(h.score for h in ours), 2)
        theirs_score = round(sum(h.score for h in theirs), 2)
        ours_held = would_hold(ours_score, ours, live_cfg)
        theirs_held = would_hold(theirs_score, theirs, cfg)
        ours_rules = sorted({h.rule for h in ours})
        theirs_rules = sorted({h.rule for h in theirs})
        if ours_held != theirs_held or ours_rules != theirs_rules:
            rows.append({"rule_set_id": cfg.rule_set, "withdrawal_id": wid, "judged_at": now,
                         "live_score": ours_score, "shadow_score": theirs_score,
                         "live_held": ours_held, "shadow_held": theirs_held,
                         "live_rules": ours_rules, "shadow_rules": theirs_rules})
    with rt.transaction() as session:
        session.execute(update(RuleSet).where(RuleSet.id == cfg.rule_set)
                        .values(shadow_judged=RuleSet.shadow_judged + len(compared)))
        if rows:
            session.execute(insert(RuleSetShadow), rows)


def _listed_since(session: Session, verdict: _Verdict, unscreened: set[int],
                  cfg: ScreeningConfig) -> _Verdict:
    """The verdict with the hits of a sanctions list imported after the batch was judged
    (under the screening lock, which the import also takes: no list changes until this
    verdict is recorded)."""
    wanted = {wid: verdict.addresses[wid] for wid in unscreened if wid in verdict.addresses}
    listed = sanctions.listings(session, wanted.values())
    hits = {wid: list(found) for wid, found in verdict.hits.items()}
    status = dict(verdict.status)
    for wid, address in wanted.items():
        on = listed.get(address)
        if not on or any(h.rule == "address_sanctioned" for h in hits.get(wid, ())):
            continue
        hits.setdefault(wid, []).append(_sanctioned_hit(cfg, address, on))
        status.setdefault(wid, "pending" if wid in verdict.pending else "other")
    return replace(verdict, hits=hits, status=status)


def _spans(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted ids as runs of consecutive ids: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    spans: list[tuple[int, int]] = []
    for i in ids:
        if spans and spans[-1][1] == i - 1:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    return spans


def _insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Rows with the same keys, through the driver's bulk path where there is one."""
    writer = driver_insert(session.get_bind().dialect, table, tuple(rows[0]))
    if writer is None:
        session.execute(insert(table), rows)
    else:
        writer.execute(session.connection(), rows)


class _Real(FunctionElement[float]):
    """An ``Amount`` column as a number SQL can compare (SQLite stores the exact decimal
    as text). Only for pre-filters: the rules themselves compare ``Decimal`` in Python."""

    type = Float()
    inherit_cache = True
    name = "polysec_real"


@compiles(_Real)
def _real_default(element: _Real, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return str(compiler.process(column, **kw))


@compiles(_Real, "sqlite")
def _real_sqlite(element: _Real, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"CAST({compiler.process(column, **kw)} AS REAL)"


def _batch_rows(conn: Connection, in_batch: Any, cfg: ScreeningConfig) -> dict[int, _Row]:
    """The batch with everything the rules need per row, in one query.

    Where the request came from: the login behind it, else (the platform did not name
    it) the country and network of the request IP's most recent login (any account),
    one index seek on ``(ip, at)``. Then one probe per rule that the history can vouch
    against, each an ``EXISTS`` (or a small count) that stops at its first match over
    the covering indexes of migration 0007: the request IP among the account's recent
    successful logins, its country, its network (usually one login vouches for all
    three); any activity between ``dormant_days`` and the reactivation window; an earlier
    withdrawal to the address; enough withdrawals of the asset in the velocity window,
    or a sum near its approval limit; and whether the earlier
    amounts could make this one an outlier at all (enough of them, and at least half of
    them at or below ``amount / amount_ratio``: necessary for the median to be). Only
    the rows whose probe fails are looked at further, by the rule functions below.
    """
    w = Withdrawal
    behind = aliased(LoginEvent, name="behind")
    by_ip = aliased(LoginEvent, name="by_ip")
    geo = aliased(LoginEvent, name="geo")
    past = aliased(LoginEvent, name="past")
    h = aliased(Withdrawal, name="h")
    day = 86_400
    latest = (select(by_ip.id).where(by_ip.ip == w.ip, by_ip.at <= w.requested_at)
              .order_by(by_ip.at.desc()).limit(1).scalar_subquery())
    named = behind.id.is_not(None)
    country = case((named, behind.country), else_=geo.country)
    asn = case((named, behind.asn), else_=geo.asn)
    ref_at = func.coalesce(behind.at, w.requested_at)
    req = w.requested_at

    def logins(*where: Any) -> Any:
        return (select(past.id)
                .where(past.account_id == w.account_id, past.success.is_(True),
                       _not_suspicious(past), *where)
                .exists())

    def vouching(*where: Any) -> Any:
        return logins(_vouches(past, ref_at, cfg), *where)

    geo_window = (past.at >= shifted(req, -cfg.geo_history_days * day), past.at < ref_at)
    ip_seen = vouching(past.ip == w.ip, past.at >= shifted(req, -cfg.ip_history_days * day),
                       past.at < ref_at)
    country_seen = vouching(past.country == country, *geo_window)
    asn_seen = vouching(past.asn == asn, *geo_window)
    # Usually one login vouches for all three at once (same IP, country and network, in
    # the shorter of the two windows): one probe instead of three.
    all_seen = vouching(
        past.ip == w.ip, or_(country.is_(None), past.country == country),
        or_(asn.is_(None), past.asn == asn),
        past.at >= shifted(req, -min(cfg.ip_history_days, cfg.geo_history_days) * day),
        past.at < ref_at)
    one: ColumnElement[int] = literal_column("1")
    two: ColumnElement[int] = literal_column("2")
    zero: ColumnElement[int] = literal_column("0")
    seen = case(
        (all_seen, literal_column("7")),
        else_=(case((ip_seen, one), else_=zero)
               + case((country.is_(None), two), (country_seen, two), else_=zero)
               + case((asn.is_(None), literal_column("4")), (asn_seen, literal_column("4")),
                      else_=zero)))
    # Dormant: one second inside the boundary, so that a failed probe is decided exactly
    # (in Python, on the last activity) and a passed one is certain.
    grace_start = shifted(req, -cfg.reactivation_hours * 3600)
    active_from = shifted(req, -cfg.dormant_days * day + 1)
    active = case(  # a CASE, so that the second probe runs only when the first fails
        (logins(past.at >= active_from, past.at < grace_start), one),
        (select(h.id).where(h.account_id == w.account_id, h.requested_at >= active_from,
                            h.requested_at < grace_start,
                            h.status.in_(("pending", "approved"))).exists(),
         one),
        else_=zero)
    earlier = and_(h.account_id == w.account_id, h.status != "rejected",
                   h.requested_at <= req, or_(h.requested_at < req, h.id < w.id))
    destination_used = select(h.id).where(earlier, h.address == w.address).exists()
    # Velocity and amount: candidates only, decided in Python (in Decimal, to the
    # microsecond). Velocity: over a window one second wider, enough withdrawals, or at
    # least one and a sum (of the positive amounts, as a float) within a millionth of
    # the asset's approval limit.
    limits = [(asset, limit) for asset, limit in cfg.approval_limits.items()]
    limit: ColumnElement[Any] = (
        case(*((w.asset == asset, literal_column(repr(float(value))))
               for asset, value in limits), else_=null()) if limits else null())
    positive = case((_Real(h.amount) > 0, _Real(h.amount)), else_=literal_column("0"))
    n_recent = func.count()
    # Spelled as the client typed it: compared by its key in Python (address_key).
    to_here = func.coalesce(func.sum(case(
        (func.lower(func.trim(h.address)) == func.lower(func.trim(w.address)),
         literal_column("1")), else_=literal_column("0"))), literal_column("0"))
    velocity_maybe = select(case(
        (or_(n_recent + 1 >= cfg.velocity_count,
             to_here + 1 >= cfg.structuring_count,  # structuring: decided in Python
             and_(n_recent >= 1, func.sum(positive) + _Real(w.amount)
                  >= limit * literal_column("0.999999"))), literal_column("1")),
        else_=literal_column("0"),
    )).where(
        earlier, h.asset == w.asset,
        h.requested_at >= shifted(req, -cfg.velocity_window_hours * 3600 - 1),
    ).scalar_subquery() == 1
    ratio: ColumnElement[float] = literal_column(repr(float(cfg.amount_ratio)))
    slack: ColumnElement[float] = literal_column("1.000001")
    # At least half of the earlier amounts at or below amount / ratio (necessary for the
    # median to be). The window's edge is compared here as the engine sees it and in
    # Python to the microsecond: an earlier withdrawal within a second of the edge makes
    # the row a candidate whatever the counts say.
    amount_from = shifted(req, -cfg.amount_history_days * day)
    low = case((_Real(h.amount) * ratio <= _Real(w.amount) * slack, two), else_=zero)
    outlier_maybe = or_(
        select(h.id).where(
            earlier, h.asset == w.asset,
            h.requested_at >= shifted(req, -cfg.amount_history_days * day - 1),
            h.requested_at < shifted(req, -cfg.amount_history_days * day + 1)).exists(),
        select(case((and_(func.count() >= cfg.amount_min_history,
                          func.sum(low) >= func.count()), one), else_=zero))
        .where(earlier, h.asset == w.asset, h.requested_at >= amount_from)
        .scalar_subquery() == 1,
    )
    query = (
        select(
            w.id, w.requested_at, w.asset, w.amount,
            func.coalesce(w.available_balance, Balance.amount), w.address, w.ip, w.status,
            w.login_external_id, country, asn, BlockedAddress.reason, BlockedAddress.added_at,
            seen, active, destination_used, velocity_maybe, outlier_maybe,
        )
        .select_from(w)
        .outerjoin(behind, behind.external_id == w.login_external_id)
        # The request IP's latest login only where the platform named none.
        .outerjoin(geo, geo.id == case((named, None), else_=latest))
        .outerjoin(Balance, and_(Balance.account_id == w.account_id,
                                 Balance.asset == w.asset))
        .outerjoin(BlockedAddress, BlockedAddress.address == w.address)
        .where(in_batch)
    )
    rows: dict[int, _Row] = {}
    for r in conn.execute(query):
        head, flags = tuple(r[:13]), int(r[13])
        rows[r[0]] = _Row(*head, bool(flags & 1), bool(flags & 2),  # type: ignore[call-arg]
                          bool(flags & 4), bool(r[14]), bool(r[15]), bool(r[16]), bool(r[17]))
    return rows


def _not_suspicious(login: Any) -> ColumnElement[bool]:
    """A successful login the detectors did not judge to be likely someone else's: only
    those make an account's IP, country or network known, or end its dormancy (an
    intruder's first login must not vouch for the intruder's second)."""
    return ~select(LoginAnomaly.id).where(LoginAnomaly.login_event_id == login.id,
                                          LoginAnomaly.kind.in_(SUSPICIOUS_LOGINS)).exists()


def _vouches(login: Any, at: Any, cfg: ScreeningConfig) -> ColumnElement[bool]:
    """Whether a (not suspicious, successful) login makes its address, country and
    network known to the account at ``at``, or its device usual for a security change:
    once it is ``vouch_hours`` old, or at once when its device had logged in to the
    account (successfully, not suspiciously) that long before it. An intruder's first
    login that no detector flagged, from a device of their own, does not vouch for their
    return an hour later; a client's usual phone on a new network does. A blank device
    id is no device; ids are compared byte for byte (MariaDB's default collation would
    take "DEV-1" and "dev-1 " for "dev-1"); one index seek on ``(account_id, device_id,
    at)`` (migration 0026) however many devices an account's logins name."""
    prior = aliased(LoginEvent, name="prior")
    settled = cfg.vouch_hours * 3600
    seen_before = select(prior.id).where(
        prior.account_id == login.account_id, _same(prior.device_id, login.device_id),
        prior.at <= shifted(login.at, -settled), prior.success.is_(True),
        _not_suspicious(prior))
    for dialect in ("mysql", "mariadb"):  # which otherwise reads the account's every login
        seen_before = seen_before.with_hint(prior, f"FORCE INDEX ({DEVICE_INDEX})", dialect)
    return or_(login.at <= shifted(at, -settled), and_(
        login.device_id.is_not(None), func.trim(login.device_id) != "",
        seen_before.exists()))


DEVICE_INDEX = "ix_login_events_account_id_device_id_at"


def _same(a: Any, b: Any) -> ColumnElement[bool]:
    """``a = b`` byte for byte on every engine: MariaDB's and MySQL's default collation
    ignores case, accents and trailing spaces, so there the bytes are compared too. The
    plain comparison stays first, for the index."""
    return and_(a == b, _Bytes(a) == _Bytes(b))


class _Bytes(FunctionElement[str]):
    """A text column as its bytes on MariaDB and MySQL; the column itself elsewhere."""

    type = String()
    inherit_cache = True
    name = "polysec_bytes"


@compiles(_Bytes)
def _bytes_default(element: _Bytes, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return str(compiler.process(column, **kw))


@compiles(_Bytes, "mysql")
@compiles(_Bytes, "mariadb")
def _bytes_mysql(element: _Bytes, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"CAST({compiler.process(column, **kw)} AS BINARY)"


def _hit(cfg: ScreeningConfig, rule: str, explanation: str, **details: Any) -> Hit:
    return Hit(rule, cfg.weight(rule), explanation, details)


def _chunks(items: list[_T], size: int = 1000) -> list[list[_T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ------------------------------------------------------------------ login history


def _login_rules(conn: Connection, rows: Mapping[int, _Row], cfg: ScreeningConfig,
                 hits: dict[int, list[Hit]]) -> None:
    """ip_not_seen, new_country, new_asn over the account's successful logins before the
    login behind the request (before the request when the platform did not name that
    login). The probes decided most rows; for the others one aggregate, grouped by the
    logins' country and network, gives the numbers of the explanation.

    ``ip_not_seen`` needs something to compare with: an account without any login
    attempt in the window before the login behind the request (a flagged one, a failure
    or one too young to vouch is an attempt), while polysec's logins start inside that
    window (a deployment's first weeks), is new to polysec, and an address it has not
    seen says nothing of who uses it (as ``new_country`` and ``new_asn`` need
    ``geo_min_history`` logins)."""
    todo = [wid for wid, r in rows.items()
            if not (r.ip_seen and r.country_seen and r.asn_seen)]
    if not todo:
        return
    first_login = conn.execute(select(func.min(LoginEvent.at))).scalar()
    w = Withdrawal
    behind = aliased(LoginEvent, name="behind")
    past = aliased(LoginEvent, name="past")
    day = 86_400
    recent_n: dict[int, int] = defaultdict(int)
    young_n: dict[int, int] = defaultdict(int)
    geo_n: dict[int, int] = defaultdict(int)
    countries: dict[int, set[str | None]] = defaultdict(set)
    networks: dict[int, set[int | None]] = defaultdict(set)
    for chunk in _chunks(todo):
        g = (
            select(
                w.id.label("wid"), w.account_id.label("account_id"),
                w.requested_at.label("req"), w.ip.label("ip"),
                func.coalesce(behind.at, w.requested_at).label("ref_at"),
            )
            .outerjoin(behind, behind.external_id == w.login_external_id)
            .where(w.id.in_(chunk))
            .subquery("g")
        )
        recent = past.at >= shifted(g.c.req, -cfg.ip_history_days * day)
        geo_window = past.at >= shifted(g.c.req, -cfg.geo_history_days * day)
        vouches = _vouches(past, g.c.ref_at, cfg)
        one: ColumnElement[int] = literal_column("1")
        zero: ColumnElement[int] = literal_column("0")
        query = (
            select(
                g.c.wid, past.country, past.asn,
                func.sum(case((and_(recent, vouches), one), else_=zero)),
                func.sum(case((and_(geo_window, vouches), one), else_=zero)),
                # Logins from the request's own address that are too young to vouch:
                # said in the explanation, so that it does not read as never seen.
                func.sum(case((and_(recent, past.ip == g.c.ip, ~vouches), one), else_=zero)),
            )
            .join(past, and_(past.account_id == g.c.account_id, past.success.is_(True),
                             _not_suspicious(past),
                             past.at >= shifted(g.c.req, -max(cfg.ip_history_days,
                                                              cfg.geo_history_days) * day),
                             past.at < g.c.ref_at))
            .group_by(g.c.wid, past.country, past.asn)
        )
        for wid, country, asn, n_recent, n_geo, n_young in conn.execute(query):
            recent_n[wid] += int(n_recent or 0)
            young_n[wid] += int(n_young or 0)
            if n_geo:
                geo_n[wid] += int(n_geo)
                countries[wid].add(country)
                networks[wid].add(asn)
    unknown = _new_to_polysec(conn, [
        wid for wid in todo if not rows[wid].ip_seen and (first_login is None or (
            first_login > rows[wid].requested_at - timedelta(days=cfg.ip_history_days)))
        and not recent_n[wid] and not young_n[wid]], cfg)
    for wid in todo:
        row = rows[wid]
        if not row.ip_seen and wid not in unknown:
            young = young_n[wid]
            hits[wid].append(_hit(
                cfg, "ip_not_seen",
                f"request IP {row.ip} is not among the {recent_n[wid]} successful logins "
                f"of this account in the {cfg.ip_history_days} days before the request"
                + (f" ({young} login{'s' if young > 1 else ''} from it less than "
                   f"{cfg.vouch_hours} h before, from a device new to the account, "
                   f"{'do' if young > 1 else 'does'} not vouch for it yet)" if young else ""),
                ip=row.ip, logins_in_window=recent_n[wid], days=cfg.ip_history_days,
                too_recent=young))
        if geo_n[wid] < cfg.geo_min_history:
            continue
        if not row.country_seen and row.country:
            hits[wid].append(_hit(
                cfg, "new_country",
                f"request from country {row.country}, not seen in this account's "
                f"{geo_n[wid]} successful logins of the last {cfg.geo_history_days} days "
                f"(seen: {', '.join(sorted(c for c in countries[wid] if c)) or 'none'})",
                country=row.country, logins_in_window=geo_n[wid]))
        if not row.asn_seen and row.asn is not None:
            hits[wid].append(_hit(
                cfg, "new_asn",
                f"request from network AS{row.asn}, not seen in this account's "
                f"{geo_n[wid]} successful logins of the last {cfg.geo_history_days} days",
                asn=row.asn, logins_in_window=geo_n[wid]))


def _new_to_polysec(conn: Connection, wids: list[int], cfg: ScreeningConfig) -> set[int]:
    """Of ``wids``, the requests whose account made no login attempt at all (successful
    or not, flagged or not) in the ``ip_history_days`` before the login behind it."""
    if not wids:
        return set()
    w, past = Withdrawal, aliased(LoginEvent, name="past")
    behind = aliased(LoginEvent, name="behind")
    ref_at = func.coalesce(behind.at, w.requested_at)
    seen: set[int] = set()
    for chunk in _chunks(wids):
        attempt = select(past.id).where(
            past.account_id == w.account_id,
            past.at >= shifted(w.requested_at, -cfg.ip_history_days * 86_400),
            past.at < ref_at).exists()
        seen.update(conn.scalars(
            select(w.id).outerjoin(behind, behind.external_id == w.login_external_id)
            .where(w.id.in_(chunk), attempt)))
    return set(wids) - seen


# ------------------------------------------------------------- withdrawal history


def _history_rules(conn: Connection, rows: Mapping[int, _Row], cfg: ScreeningConfig,
                   hits: dict[int, list[Hit]]) -> None:
    """amount_outlier, velocity and new_destination, over the account's earlier
    withdrawals of the asset (rejected ones do not count). The probes decided most rows:
    the earlier amounts are read only where an outlier or a velocity hit is possible, the
    number of earlier withdrawals only where the destination is new."""
    w = Withdrawal
    h = aliased(Withdrawal, name="h")
    day = 86_400
    earlier = or_(h.requested_at < w.requested_at,
                  and_(h.requested_at == w.requested_at, h.id < w.id))
    same_asset = and_(h.account_id == w.account_id, h.asset == w.asset,
                      h.status != "rejected",
                      h.requested_at >= shifted(w.requested_at, -cfg.lookback_days * day),
                      earlier)
    new_dest = [wid for wid, r in rows.items() if not r.destination_used]
    saved, not_counted = _address_book(conn, new_dest, cfg)
    new_dest = [wid for wid in new_dest if wid not in saved]
    earlier_n: dict[int, int] = {}
    for chunk in _chunks(new_dest):
        earlier_n.update((wid, int(n)) for wid, n in conn.execute(
            select(w.id, func.count()).join(h, same_asset)
            .where(w.id.in_(chunk)).group_by(w.id)))
    for wid in new_dest:
        row = rows[wid]
        hits[wid].append(_hit(
            cfg, "new_destination",
            f"first withdrawal by this account to {row.address}; "
            f"{earlier_n.get(wid, 0)} earlier {row.asset} withdrawal(s) in "
            f"{cfg.lookback_days} days went elsewhere{not_counted.get(wid, '')}",
            address=row.address, earlier_withdrawals=earlier_n.get(wid, 0)))

    maybe = [wid for wid, r in rows.items()
             if r.outlier_maybe or r.velocity_maybe or cfg.velocity_count <= 1]
    history: dict[int, list[tuple[datetime, Decimal]]] = defaultdict(list)
    earlier_rows: dict[int, list[_Earlier]] = defaultdict(list)
    for chunk in _chunks(maybe):
        for wid, at, amount, address, state in conn.execute(
                select(w.id, h.requested_at, h.amount, h.address, h.status)
                .join(h, same_asset).where(w.id.in_(chunk))):
            history[wid].append((at, amount))
            earlier_rows[wid].append(_Earlier(at, amount, address, state))
    amount_window = timedelta(days=cfg.amount_history_days)
    for wid in maybe:
        row = rows[wid]
        past = history.get(wid, [])
        amounts = [a for at, a in past if at >= row.requested_at - amount_window]
        outlier = _outlier(row.amount, amounts, cfg)
        if outlier is not None:
            median, mad, ratio, z = outlier
            hits[wid].append(_hit(
                cfg, "amount_outlier",
                f"amount {fmt_amount(row.amount)} {row.asset} is {ratio:.1f}x this "
                f"account's median withdrawal of {fmt_amount(median)} {row.asset} "
                f"(MAD {fmt_amount(mad)}, {len(amounts)} withdrawals)",
                amount=fmt_amount(row.amount), median=fmt_amount(median),
                mad=fmt_amount(mad), ratio=float(round(ratio, 2)),
                robust_z=float(round(z, 2)), history=len(amounts)))
        velocity = _velocity(row, earlier_rows.get(wid, []), cfg)
        if velocity is not None:
            hits[wid].append(velocity)
        structured = _structuring(row, earlier_rows.get(wid, []), cfg)
        if structured is not None:
            hits[wid].append(structured)
    # A burst by count to places saved in the address book a month and more before:
    # read only for the few rows where velocity fired and the payments did not cover it.
    unknown = [wid for wid in maybe for h in hits[wid] if h.rule == "velocity"
               and h.details["by_count"] and not h.details["by_sum"]
               and not (h.details["known_destinations"] or h.details["saved_destinations"])]
    long_saved = _long_saved(conn, unknown, cfg)
    for wid in unknown:
        if not long_saved.get(wid):
            continue
        velocity = _velocity(rows[wid], earlier_rows.get(wid, []), cfg, long_saved[wid])
        hits[wid] = [velocity if h.rule == "velocity" and velocity is not None else h
                     for h in hits[wid]]


def _outlier(amount: Decimal, amounts: list[Decimal], cfg: ScreeningConfig
             ) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
    """amount_outlier's test of ``amount`` against the account's ``amounts``: its
    median, MAD, ratio and robust z when it is one (``amount_ratio`` times the median
    and ``amount_robust_z`` robust deviations above it, with ``amount_min_history``
    amounts), else None."""
    if len(amounts) < cfg.amount_min_history:
        return None
    median = _median(amounts)
    mad = _median([abs(a - median) for a in amounts])
    scale = max(mad, cfg.amount_mad_floor * median)
    if median <= 0 or scale <= 0:
        return None
    ratio = amount / median
    z = (amount - median) / (Decimal("1.4826") * scale)
    if ratio >= cfg.amount_ratio and z >= cfg.amount_robust_z:
        return median, mad, ratio, z
    return None


def _long_saved(conn: Connection, ids: list[int], cfg: ScreeningConfig
                ) -> dict[int, set[str]]:
    """Of withdrawals ``ids``, the addresses (by `sanctions.address_key`) saved in the
    account's address book at the request, and since at least
    ``address_book_trusted_days`` before it, whatever the save came from (as
    `_address_book` counts them: the client has had a month to see and remove it)."""
    book, when, _destination = _book_in_force(conn, ids)
    trusted = timedelta(days=cfg.address_book_trusted_days)
    return {wid: {key for key, (_event, since) in saved.items() if when[wid] - since >= trusted}
            for wid, saved in book.items()}


def _saves_in_force(conn: Connection, ids: list[int]
                    ) -> tuple[dict[int, tuple[int, datetime]], dict[int, datetime]]:
    """Of withdrawals ``ids``, those whose destination is saved in the account's address
    book at the request (`_book_in_force`): the save's event and time; and the request
    times."""
    book, when, destination = _book_in_force(conn, ids)
    saves = {wid: saved[destination[wid]] for wid, saved in book.items()
             if destination[wid] in saved}
    return saves, when


def _book_in_force(conn: Connection, ids: list[int]) -> tuple[
        dict[int, dict[str, tuple[int, datetime]]], dict[int, datetime], dict[int, str]]:
    """Of withdrawals ``ids`` whose account has address-book events before the request:
    the addresses saved at the request (a removal at the same instant wins), each with
    the save in force (its event and time); the request times; and the destinations.
    Addresses are keyed by `sanctions.address_key`."""
    w, e = Withdrawal, SecurityEvent
    events: dict[tuple[int, str], list[tuple[datetime, bool, int]]] = defaultdict(list)
    when: dict[int, datetime] = {}
    destination: dict[int, str] = {}
    for chunk in _chunks(ids):
        for wid, requested, to, event_id, at, kind, address in conn.execute(
                select(w.id, w.requested_at, w.address, e.id, e.at, e.kind, e.address)
                .join(e, and_(e.account_id == w.account_id, e.kind.in_(ADDRESS_BOOK_KINDS),
                              e.at <= w.requested_at))
                .where(w.id.in_(chunk))):
            if wid not in destination:
                when[wid], destination[wid] = requested, sanctions.address_key(to)
            if address is not None:
                events[(wid, sanctions.address_key(address))].append(
                    (at, kind == "address_removed", event_id))
    book: dict[int, dict[str, tuple[int, datetime]]] = defaultdict(dict)
    for (wid, key), changes in events.items():
        since: tuple[int, datetime] | None = None
        for at, removed, event_id in sorted(changes):
            since = None if removed else (since or (event_id, at))
        if since is not None:
            book[wid][key] = since
    return book, when, destination


def _address_book(conn: Connection, ids: list[int],
                  cfg: ScreeningConfig) -> tuple[set[int], dict[int, str]]:
    """Of withdrawals ``ids`` (their destination never paid before), those whose
    destination is in the account's address book: saved at least
    ``address_book_known_hours`` before the request, from the client's usual device and
    network (an intruder in the account can save theirs and wait: their network may be
    the client's ISP, their device is not the client's), or ``address_book_trusted_days``
    before whatever it came from (the client has had a month to see and remove it; the
    platform's own history may not reach back to judge), and not removed since
    (a removal at the same instant wins). Addresses compare by `sanctions.address_key`.
    Also, for the others saved there, why the save does not count (for the
    explanation)."""
    if not ids:
        return set(), {}
    saves, when = _saves_in_force(conn, ids)
    origin = _change_origins(conn, sorted({event for event, _at in saves.values()}), cfg)
    known = timedelta(hours=cfg.address_book_known_hours)
    saved: set[int] = set()
    why: dict[int, str] = {}
    for wid, (event_id, saved_at) in saves.items():
        age = when[wid] - saved_at
        where = origin.get(event_id, UNKNOWN)
        if where != USUAL and age < timedelta(days=cfg.address_book_trusted_days):
            why[wid] = (f"; saved to the address book {fmt_duration(age.total_seconds())} "
                        f"before the request from {where}: not counted")
        elif age < known:
            why[wid] = (f"; saved to the address book only {fmt_duration(age.total_seconds())}"
                        f" before the request (it counts from {cfg.address_book_known_hours} h)")
        else:
            saved.add(wid)
    return saved, why


@dataclass(frozen=True, slots=True)
class _Earlier:
    """An earlier withdrawal of the account and asset (not rejected)."""

    at: datetime
    amount: Decimal
    address: str
    status: str


# How many days before a burst are left out of the account's usual pace: an intruder's
# own decoy withdrawals must not make their burst look usual.
PACE_GAP_DAYS = 7


def _structuring(row: _Row, past: list[_Earlier], cfg: ScreeningConfig) -> Hit | None:
    """structuring: ``structuring_count`` or more withdrawals of the asset in the
    velocity window to one address (by ``address_key``) the account had not already paid
    as much before the window, whose sum, judged as one withdrawal, reaches the approval
    limit or is ``amount_ratio`` times the account's median withdrawal to other addresses
    (with ``amount_min_history`` of them): an amount split to slip under the amount
    rules."""
    start = row.requested_at - timedelta(hours=cfg.velocity_window_hours)
    key = sanctions.address_key(row.address)
    same = [e for e in past if sanctions.address_key(e.address) == key]
    to_here = [(e.at, e.amount) for e in same if e.at > start]
    if len(to_here) + 1 < cfg.structuring_count:
        return None
    total = sum((a for _at, a in to_here), row.amount)
    # A destination the account had already paid as much before the window, in payments
    # not held, is the client's own wallet; a dust payment does not make it one.
    paid_before = sum((e.amount for e in same
                       if e.at <= start and e.status in ("pending", "approved")), Decimal(0))
    if paid_before >= total:
        return None
    limit = cfg.approval_limit(row.asset)
    since = row.requested_at - timedelta(days=cfg.amount_history_days)
    amounts = [e.amount for e in past
               if e.at >= since and sanctions.address_key(e.address) != key]
    median = _median(amounts) if len(amounts) >= cfg.amount_min_history else None
    why = []
    if limit is not None and total >= limit:
        why.append(f"at or above the {fmt_amount(limit)} {row.asset} approval limit")
    if median is not None and median > 0 and total >= cfg.amount_ratio * median:
        why.append(f"{total / median:.1f}x this account's median withdrawal of "
                   f"{fmt_amount(median)} {row.asset}")
    if not why:
        return None
    first = fmt_duration((row.requested_at - min(at for at, _a in to_here)).total_seconds())
    return _hit(
        cfg, "structuring",
        f"{len(to_here) + 1} withdrawals totalling {fmt_amount(total)} {row.asset} to "
        f"{row.address}, the first of them {first} before this request, an address this "
        f"account had paid less before; as one withdrawal: {'; '.join(why)}",
        count=len(to_here) + 1, sum=fmt_amount(total), address=row.address,
        median=None if median is None else fmt_amount(median))


def _velocity(row: _Row, past: list[_Earlier], cfg: ScreeningConfig,
              long_saved: AbstractSet[str] = frozenset()) -> Hit | None:
    """velocity: ``velocity_count`` or more withdrawals of the asset in the window,
    more than the account's usual busy day (``_usual_pace``: a client who trades ten
    times a day is not a burst at ten), half as much again when they came within the
    hour; or two or more whose sum reaches the approval limit (splitting to stay under
    four-eyes). A burst by count whose every destination was paid as much before the
    window weighs ``known_burst_factor``; so does one whose places are in
    ``long_saved`` (`_long_saved`) and whose sum, sent as one withdrawal, would not be
    an amount outlier (no payment shows such amounts are the client's habit: a theft
    split over several planted addresses stays whole). Only the former is a salary day
    to `_clients_normal` (``known_destinations``): a burst to a saved place no payment
    vouches for stays theft-shaped there."""
    start = row.requested_at - timedelta(hours=cfg.velocity_window_hours)
    window = [e.amount for e in past if e.at > start]
    count = len(window) + 1
    total = sum(window, row.amount)
    limit = cfg.approval_limit(row.asset)
    usual = _usual_pace(past, start, timedelta(hours=cfg.velocity_window_hours))
    hour = 1 + sum(1 for e in past if e.at > row.requested_at - timedelta(hours=1))
    by_count = count >= cfg.velocity_count and count > usual
    # The sum: several withdrawals that together reach the approval limit (one
    # withdrawal above it is what four-eyes is for, not velocity).
    by_sum = count > 1 and limit is not None and total >= limit
    if not (by_count or by_sum):
        return None
    factor = 1.5 if by_count and hour >= cfg.velocity_count else 1.0
    known = _paid_as_much_before(row, past, start)
    saved = not known and not by_sum and bool(long_saved) and _paid_as_much_before(
        row, past, start, long_saved) and _outlier(total, [
            e.amount for e in past if row.requested_at - timedelta(
                days=cfg.amount_history_days) <= e.at <= start], cfg) is None
    if known or saved:
        factor *= cfg.known_burst_factor
    why = [f"at or above the limit of {cfg.velocity_count} withdrawals and above this "
           f"account's usual busy {cfg.velocity_window_hours} h ({usual})"
           if by_count else "",
           f"at or above the {fmt_amount(limit or Decimal(0))} {row.asset} approval limit"
           if by_sum else ""]
    burst = f", {hour} of them within the hour (x 1.5)" if by_count and (
        hour >= cfg.velocity_count) else ""
    to_known = (f"; every destination of the burst had been paid as much before the "
                f"window (x {cfg.known_burst_factor:g})" if known else
                f"; every destination of the burst had been paid as much before the "
                f"window or saved in the address book a month and more before, and its "
                f"sum would be no outlier (x {cfg.known_burst_factor:g})" if saved else "")
    weight = cfg.weight("velocity")
    return Hit("velocity", round(weight * factor, 2),
               f"{count} withdrawal(s) totalling {fmt_amount(total)} {row.asset} in "
               f"{cfg.velocity_window_hours} h including this one{burst}: "
               + "; ".join(w for w in why if w) + to_known,
               {"known_destinations": known, "saved_destinations": saved,
                "by_count": by_count, "by_sum": by_sum,
                "count": count, "sum": fmt_amount(total),
                "hours": cfg.velocity_window_hours,
                "within_hour": hour, "usual_busiest": usual})


def _paid_as_much_before(row: _Row, past: list[_Earlier], start: datetime,
                         long_saved: AbstractSet[str] = frozenset()) -> bool:
    """Whether the burst (this request and the window's withdrawals since ``start``)
    sends each of its destinations no more than the account had paid there before the
    window, in payments not held, or to one of ``long_saved``: a salary day to the
    client's usual places, not a drain (a dust payment made ready does not cover a
    burst)."""
    before: dict[str, Decimal] = defaultdict(Decimal)
    now: dict[str, Decimal] = defaultdict(Decimal)
    keys: dict[str, str] = {}
    for e in past:
        key = keys.get(e.address) or keys.setdefault(e.address,
                                                     sanctions.address_key(e.address))
        if e.at > start:
            now[key] += e.amount
        elif e.status in ("pending", "approved"):
            before[key] += e.amount
    now[sanctions.address_key(row.address)] += row.amount
    return all(key in long_saved or before.get(key, Decimal(0)) >= sent
               for key, sent in now.items())


def _usual_pace(past: list[_Earlier], start: datetime, width: timedelta) -> int:
    """How many withdrawals the account makes in a busy ``width``: over the ones it made
    ``PACE_GAP_DAYS`` and more before ``start`` and that were not held (a held or
    rejected one is not its normal), the busiest window of each day, and of those the
    third busiest day (0 with fewer than three): one spike, genuine or an intruder's
    decoys, does not make a burst usual, and decoys would have to come a week early."""
    until = start - timedelta(days=PACE_GAP_DAYS)
    times = sorted(e.at for e in past
                   if e.at <= until and e.status in ("pending", "approved"))
    per_day: dict[Any, int] = {}
    lo = 0
    for hi, at in enumerate(times):
        while at - times[lo] >= width:
            lo += 1
        day = at.date()
        per_day[day] = max(per_day.get(day, 0), hi - lo + 1)
    peaks = sorted(per_day.values(), reverse=True)
    return peaks[2] if len(peaks) >= 3 else 0


# -------------------------------------------------------- security changes, holds


def _security_rules(conn: Connection, rows: Mapping[int, _Row], in_batch: Any,
                    cfg: ScreeningConfig, hits: dict[int, list[Hit]]) -> None:
    """security_change_hold: the account's security changes (2FA, password, e-mail,
    phone, and the address-book save of the request's own destination) in the
    ``security_fade_hours`` before the request, and any security-change
    hold in force (placed by a 2FA reset). Each change weighs the rule's weight times
    where it was made from (``TRUST_FACTORS``: the client's usual device and network
    weigh a quarter, a flagged session half as much again) times its fade with age;
    the strongest counts whole, the others half (a SIM-swap sequence of phone, 2FA and
    e-mail changes weighs more than one of them), up to twice the weight. A hold in
    force weighs the whole weight at least."""
    w = Withdrawal
    se = SecurityEvent
    seen = aliased(LoginEvent, name="seen")
    window_start = shifted(w.requested_at, -cfg.security_fade_hours * 3600)
    payee_start = shifted(w.requested_at, -cfg.address_book_trusted_days * 86_400)
    # When the device behind the request first logged in to the account (its saves of
    # the destination fade slowly while it is young).
    device_since = (select(func.min(seen.at))
                    .where(seen.account_id == w.account_id, seen.success.is_(True),
                           seen.device_id == w.device_id)
                    .scalar_subquery())
    events = (
        select(w.id, se.id, se.kind, se.at, se.address,
               and_(se.device_id.is_not(None), se.device_id == w.device_id), device_since)
        .join(se, and_(se.account_id == w.account_id, se.at <= w.requested_at,
                       or_(and_(se.kind.in_(SECURITY_CHANGES), se.at >= window_start),
                           and_(se.kind.in_(PAYEE_SAVES), se.at >= payee_start))))
        .where(in_batch)
    )
    changes: dict[int, list[tuple[int, str, datetime]]] = defaultdict(list)
    young: dict[int, datetime] = {}  # saves by the request's own young device: since when
    for wid, event_id, kind, at, address, same_device, since in conn.execute(events):
        row = rows.get(wid)
        if row is None:
            continue
        if kind in PAYEE_SAVES:  # a change to the payees counts for the one it saved
            if address is None or sanctions.address_key(address) != sanctions.address_key(
                    row.address):
                continue
            kind = f"{kind} (this destination)"
            if same_device and since is not None and (
                    row.requested_at - since < timedelta(days=cfg.young_device_days)):
                young[event_id] = since
        changes[wid].append((event_id, kind, at))
    origin = _change_origins(conn, sorted({c[0] for found in changes.values()
                                           for c in found}), cfg)
    holds = (
        select(w.id, Hold.id, Hold.created_at, Hold.expires_at)
        .join(Hold, and_(Hold.account_id == w.account_id,
                         hold_in_force(w.requested_at, kind="security_change")))
        .where(in_batch)
    )
    active: dict[int, list[tuple[int, datetime, datetime | None]]] = defaultdict(list)
    for wid, hold_id, created, expires in conn.execute(holds):
        active[wid].append((hold_id, created, expires))
    weight = cfg.weight("security_change_hold")
    for wid, row in rows.items():
        parts: list[str] = []
        counted: list[dict[str, Any]] = []
        payee: int | None = None  # the destination's saves are one change: the strongest
        for event_id, kind, at in sorted(changes.get(wid, []), key=lambda c: (c[2], c[0])):
            hours = (row.requested_at - at).total_seconds() / 3600
            where = origin.get(event_id, UNKNOWN)
            # A save of the destination by the young device behind this request: the
            # patient intruder's (or a client's new phone's). It weighs at least as an
            # unknown device's, whatever an hour of the device's own history says, and
            # fades until the save counts as history.
            slow = event_id in young
            fade = cfg.payee_fade(hours) if slow else cfg.fade(hours)
            if fade <= 0:
                continue
            factor = max(TRUST_FACTORS[where], TRUST_FACTORS[UNKNOWN]) if slow else (
                TRUST_FACTORS[where])
            score = round(weight * factor * fade, 2)
            source = (f"the device behind this request, new to the account "
                      f"{fmt_duration((row.requested_at - young[event_id]).total_seconds())}"
                      f" before (weighed as an unknown device's, fading over "
                      f"{cfg.address_book_trusted_days} days)" if slow else where)
            text = (f"{kind} {fmt_duration(hours * 3600)} before the request from {source}"
                    + f" ({weight:g} x {factor:g}"
                    + (f" x {fade:.2f} for its age" if fade < 1 else "") + f" = {score:g})")
            change = {"kind": kind, "at": at.isoformat(), "origin": where,
                      "factor": factor, "fade": round(fade, 2), "score": score}
            if kind.startswith(PAYEE_SAVES):
                if payee is not None:
                    if counted[payee]["score"] >= score:
                        continue
                    counted[payee], parts[payee] = change, text
                    continue
                payee = len(counted)
            counted.append(change)
            parts.append(text)
        held = active.get(wid, [])
        for hold_id, created, expires in held:
            until = f"until {_fmt_time(expires)}" if expires else "until released"
            parts.append(f"security-change hold #{hold_id} placed {_fmt_time(created)} "
                         f"({until}, at least {weight:g})")
        if not parts:
            continue
        ranked = sorted((c["score"] for c in counted), reverse=True)
        total = (ranked[0] + 0.5 * sum(ranked[1:])) if ranked else 0.0
        total = round(min(2 * weight, max(total, weight if held else 0.0)), 2)
        summary = (f"; {total:g} in all (the strongest whole, the others half, at most "
                   f"{2 * weight:g})" if len(parts) > 1 else "")
        window = (f" (full weight for {cfg.security_hold_hours} h, none after "
                  f"{cfg.security_fade_hours} h)" if counted else "")
        hits[wid].append(Hit(
            "security_change_hold", total, "; ".join(parts) + summary + window,
            {"changes": counted, "holds": [i for i, _c, _e in held]}))


def _change_origins(conn: Connection, event_ids: list[int],
                    cfg: ScreeningConfig) -> dict[int, str]:
    """Where each security change was made from (a key of ``TRUST_FACTORS``).

    - A session the login detectors flagged: a finding of medium severity or more on
      the account in the 2 hours before the change.
    - Else the client's usual device and network: one successful login, between
      ``geo_history_days`` and ``security_known_hours`` before the change, with the
      change's device and its address or network (ASN, by the latest login from that
      address); the usual network on a new device: such a login with the address or
      network only. Logins the detectors judged likely someone else's
      (``SUSPICIOUS_LOGINS``) never count: an intruder's first login does not make their
      device usual.
    - Else, or while the login analysis has not reached the account's logins up to the
      change (its findings would be missing), an unknown device or network."""
    se = SecurityEvent
    past = aliased(LoginEvent, name="past")
    by_ip = aliased(LoginEvent, name="by_ip")
    later = aliased(LoginEvent, name="later")
    usual = and_(past.account_id == se.account_id, past.success.is_(True),
                 past.at <= shifted(se.at, -cfg.security_known_hours * 3600),
                 past.at >= shifted(se.at, -cfg.geo_history_days * 86_400),
                 _not_suspicious(past), _vouches(past, se.at, cfg))
    network_asn = (select(by_ip.asn).where(by_ip.ip == se.ip, by_ip.at <= se.at)
                   .order_by(by_ip.at.desc()).limit(1).correlate(se).scalar_subquery())
    same_network = or_(past.ip == se.ip, and_(past.asn.is_not(None),
                                               past.asn == network_asn))
    device_known = select(past.id).where(usual, past.device_id == se.device_id,
                                         same_network).exists()
    network_known = select(past.id).where(usual, same_network).exists()
    flagged = select(LoginAnomaly.id).where(
        LoginAnomaly.account_id == se.account_id,
        LoginAnomaly.at >= shifted(se.at, -2 * 3600), LoginAnomaly.at <= se.at,
        LoginAnomaly.severity.in_(("medium", "high", "critical")),
        LoginAnomaly.kind != "forgotten_password").exists()
    analysed = conn.scalar(select(AnalysisCheckpoint.login_id)
                           .where(AnalysisCheckpoint.name == "logins")) or 0
    unjudged = select(later.id).where(later.account_id == se.account_id,
                                      later.at <= se.at, later.id > analysed).exists()
    origins: dict[int, str] = {}
    for chunk in _chunks(event_ids):
        for event_id, is_flagged, pending, device, network in conn.execute(
                select(se.id, flagged, unjudged,
                       and_(se.device_id.is_not(None), se.ip.is_not(None), device_known),
                       and_(se.ip.is_not(None), network_known))
                .where(se.id.in_(chunk))):
            origins[event_id] = (FLAGGED if is_flagged
                                 else UNKNOWN if pending
                                 else USUAL if device
                                 else USUAL_NETWORK if network
                                 else UNKNOWN)
    return origins


def _frozen(conn: Connection, in_batch: Any, cfg: ScreeningConfig,
            hits: dict[int, list[Hit]]) -> None:
    """The account is frozen or locked down (services/protection.py): hold, whatever else."""
    w = Withdrawal
    frozen = (
        select(w.id, Account.status, func.min(Hold.id), func.min(Hold.created_at))
        .join(Account, Account.id == w.account_id)
        .outerjoin(Hold, and_(Hold.account_id == w.account_id,
                              hold_in_force(None, kind="freeze")))
        .where(in_batch, or_(Hold.id.is_not(None), Account.status.in_(("frozen", "locked"))))
        .group_by(w.id, Account.status)
    )
    for wid, status, hold_id, created in conn.execute(frozen):
        since = f" (freeze hold #{hold_id} since {_fmt_time(created)})" if hold_id else ""
        hits[wid].append(_hit(cfg, "account_frozen", f"account is {status}{since}",
                              status=status, hold=hold_id))


def _risky_session(conn: Connection, rows: Mapping[int, _Row], in_batch: Any,
                   cfg: ScreeningConfig, hits: dict[int, list[Hit]]) -> None:
    w = Withdrawal
    query = (
        select(w.id, LoginAnomaly.kind, LoginAnomaly.severity, LoginEvent.ip == w.ip)
        .join(LoginEvent, LoginEvent.external_id == w.login_external_id)
        .join(LoginAnomaly, LoginAnomaly.login_event_id == LoginEvent.id)
        .where(in_batch)
    )
    floor = SEVERITY_RANK[cfg.risky_session_min_severity]
    found: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for wid, kind, severity, same_ip in conn.execute(query):
        # A login from the request's own IP: _reputation judges that IP (and its
        # network) already, and one Tor address is one signal, not two.
        if same_ip and kind in (reputation.THREAT_RULE, reputation.ANONYMIZING_RULE):
            continue
        if SEVERITY_RANK.get(severity, 0) >= floor:
            found[wid].append((kind, severity))
    for wid, anomalies in found.items():
        row = rows[wid]
        listed = ", ".join(f"{k} ({s})" for k, s in sorted(anomalies))
        hits[wid].append(_hit(
            cfg, "risky_session",
            f"the login behind this request ({row.login_ext}) was itself flagged: {listed}",
            login=row.login_ext, anomalies=[k for k, _ in sorted(anomalies)]))


# What a login finding in the account's recent story says: that someone else logged in
# (on a successful login); or only that someone tried (on failures), or that the client
# used something new: a quarter as much.
STORY_SUSPICIOUS = (*SUSPICIOUS_LOGINS, "brute_force")
STORY_NOVELTY = ("new_device", "new_country", "new_asn", "anonymizing_network")
MINOR_FACTOR = 0.25


def _recent_anomalies(conn: Connection, rows: Mapping[int, _Row], in_batch: Any,
                      cfg: ScreeningConfig, hits: dict[int, list[Hit]]) -> None:
    """recent_anomalies: the account's other logins in the ``security_fade_hours``
    before the request that the login detectors flagged (the login behind the request
    is `risky_session`'s). A successful login found to be someone else's weighs the
    rule's weight, and so does a new device that the request itself comes from; failures
    found to be an attack, or other novelty (a new device or network), a quarter; each
    fades with age as a security change does. A login counts
    once, by its strongest finding, and so does each kind (a burst of failures is one
    attempt); the strongest whole, the others half, up to twice the weight. Left to the
    rules on the request's own network: a listed address or network the request comes
    from (`ip_reputation`, `anonymizing_network`), and novelty on it when `ip_not_seen`
    or `new_asn` already fired."""
    w, a, e = Withdrawal, LoginAnomaly, LoginEvent
    window_start = shifted(w.requested_at, -cfg.security_fade_hours * 3600)
    # The kinds are filtered here, not in SQL: on SQLite an IN on kind made the planner
    # walk the (kind, login) index over the whole table instead of each account's rows.
    query = (
        select(w.id, a.kind, a.severity, a.at, e.external_id, e.ip, e.asn, e.success,
               and_(w.device_id.is_not(None), e.device_id == w.device_id))
        .select_from(w)
        .join(a, and_(a.account_id == w.account_id, a.at < w.requested_at,
                      a.at >= window_start))
        .join(e, e.id == a.login_event_id)
        .where(in_batch)
    )
    floor = SEVERITY_RANK[cfg.risky_session_min_severity]
    weight = cfg.weight("recent_anomalies")
    listed = (reputation.THREAT_RULE, reputation.ANONYMIZING_RULE)
    # Per withdrawal and login: its strongest finding (score, kind, text).
    by_login: dict[int, dict[str, tuple[float, str, str]]] = defaultdict(dict)
    for wid, kind, severity, at, login_ext, ip, asn, success, same_device in conn.execute(
            query):
        row = rows.get(wid)
        if row is None or login_ext == row.login_ext:
            continue
        fired = {h.rule for h in hits.get(wid, ())}
        own_network = ip == row.ip or (asn is not None and asn == row.asn)
        if kind in listed and own_network:
            continue  # one listed address is one signal: the request's rules judge it
        if kind in STORY_SUSPICIOUS:
            if SEVERITY_RANK.get(severity, 0) < floor:
                continue
            factor = 1.0 if success else MINOR_FACTOR
        elif kind in STORY_NOVELTY:
            if (ip == row.ip and "ip_not_seen" in fired) or (
                    asn is not None and asn == row.asn and "new_asn" in fired):
                continue  # the request's own rules count that novelty already
            # The device behind the request is itself that new one: a day-old device
            # is barely the client's (an intruder logs in once, then comes back).
            factor = 1.0 if kind == "new_device" and same_device else MINOR_FACTOR
        else:
            continue
        hours = (row.requested_at - at).total_seconds() / 3600
        score = round(weight * factor * cfg.fade(hours), 2)
        if score <= 0 or score <= by_login[wid].get(login_ext, (0.0, "", ""))[0]:
            continue
        what = f"{kind} ({severity}) {'on' if success else 'in failed'} login"
        by_login[wid][login_ext] = (score, kind, f"{what} {login_ext} from {ip}, "
                                                 f"{fmt_duration(hours * 3600)} before")
    for wid, logins in by_login.items():
        by_kind: dict[str, tuple[float, str, int]] = {}
        for score, kind, finding in logins.values():
            best, shown, n = by_kind.get(kind, (0.0, "", 0))
            by_kind[kind] = (score, finding, n + 1) if score > best else (best, shown, n + 1)
        ranked = sorted(by_kind.values(), reverse=True)
        total = round(min(2 * weight, ranked[0][0] + 0.5 * sum(r[0] for r in ranked[1:])), 2)
        shown_all = [f"{finding}{f' (and {n - 1} more)' if n > 1 else ''} ({sc:g})"
                     for sc, finding, n in ranked]
        hits[wid].append(Hit(
            "recent_anomalies", total,
            f"the account's other logins in the {cfg.security_fade_hours} h before were "
            "flagged: " + "; ".join(shown_all)
            + (f"; {total:g} in all (the strongest whole, the others half)"
               if len(ranked) > 1 else ""),
            {"findings": [{"score": sc, "finding": finding, "logins": n}
                          for sc, finding, n in ranked]}))


def _dormant(conn: Connection, rows: Mapping[int, _Row], cfg: ScreeningConfig,
             hits: dict[int, list[Hit]]) -> None:
    """The account woke up after ``dormant_days`` without a successful login or a
    withdrawal, and this request follows the waking: its first activity in the
    reactivation window (``cfg.reactivation_hours`` before the request), or the request
    itself. It weighs fully for ``dormant_grace_hours`` after the waking, then fades to
    nothing at the window's start, as a security change does: an intruder who wakes an
    account and waits a day is not let through at a cliff. The probe found activity
    between ``dormant_days`` and the window for most rows; for the others the last
    activity before the window and the first in it (index seeks on ``(account_id, at)``
    and ``(account_id, requested_at)``) decide. Logins the detectors judged likely
    someone else's are not activity, nor are withdrawals held or rejected. Only a known
    earlier activity makes an account dormant: an account whose history the console has
    never seen is new to it, not asleep."""
    missing = [wid for wid, r in rows.items() if not r.active]
    if not missing:
        return
    w = Withdrawal
    seen = aliased(LoginEvent, name="seen")
    sent = aliased(Withdrawal, name="sent")
    window_start = shifted(w.requested_at, -cfg.reactivation_hours * 3600)
    logins = (seen.account_id == w.account_id, seen.success.is_(True), _not_suspicious(seen))
    earlier = (sent.account_id == w.account_id, sent.id != w.id,
               sent.status.in_(("pending", "approved")),
               or_(sent.requested_at < w.requested_at,
                   and_(sent.requested_at == w.requested_at, sent.id < w.id)))
    last_login = (select(seen.at).where(*logins, seen.at < window_start)
                  .order_by(seen.at.desc()).limit(1).scalar_subquery())
    last_sent = (select(sent.requested_at).where(*earlier, sent.requested_at < window_start)
                 .order_by(sent.requested_at.desc()).limit(1).scalar_subquery())
    woke_login = (select(seen.at).where(*logins, seen.at >= window_start,
                                        seen.at < w.requested_at)
                  .order_by(seen.at).limit(1).scalar_subquery())
    woke_sent = (select(sent.requested_at).where(*earlier, sent.requested_at >= window_start)
                 .order_by(sent.requested_at).limit(1).scalar_subquery())
    weight = cfg.weight("dormant")
    idle = timedelta(days=cfg.dormant_days)
    lasts: dict[int, datetime] = {}
    for chunk in _chunks(missing):
        for wid, login_at, sent_at in conn.execute(
                select(w.id, last_login, last_sent).where(w.id.in_(chunk))):
            known = [t for t in (login_at, sent_at) if t is not None]
            # The waking comes before the request: idle until then at most.
            if known and rows[wid].requested_at - max(known) > idle:
                lasts[wid] = max(known)
    for chunk in _chunks(sorted(lasts)):
        for wid, woke_at, woke_by_sent in conn.execute(
                select(w.id, woke_login, woke_sent).where(w.id.in_(chunk))):
            last = lasts[wid]
            row = rows[wid]
            woke = min((t for t in (woke_at, woke_by_sent) if t is not None),
                       default=row.requested_at)
            if woke - last <= idle:
                continue
            hours = (row.requested_at - woke).total_seconds() / 3600
            fade = cfg.reactivation_fade(hours)
            if fade <= 0:
                continue
            days = (woke - last).days
            what = (f"{'a login' if woke == woke_at else 'a withdrawal'} "
                    f"{fmt_duration(hours * 3600)} before this request"
                    if woke < row.requested_at else "this request")
            score = round(weight * fade, 2)
            hits[wid].append(Hit(
                "dormant", score,
                f"no login or withdrawal for {days} days (last activity {_fmt_time(last)}; "
                f"dormant after {cfg.dormant_days} days), then {what}"
                + (f" ({weight:g} x {fade:.2f} for its age = {score:g}; full weight for "
                   f"{cfg.dormant_grace_hours} h, none after {cfg.reactivation_hours} h)"
                   if fade < 1 else ""),
                {"idle_days": days, "last_activity": last.isoformat(),
                 "woke_at": woke.isoformat(), "fade": round(fade, 2)}))


def _listed(session: Session, rows: Mapping[int, _Row], cfg: ScreeningConfig,
            hits: dict[int, list[Hit]]) -> None:
    """Destinations on a sanctions list, and destinations a confirmed fraud paid (one
    indexed look-up per chunk of the batch's addresses)."""
    addresses = {row.address for row in rows.values()}
    listed = sanctions.listings(session, addresses)
    bad = sanctions.known_bad(session, addresses)
    for row in rows.values():
        on = listed.get(row.address)
        if on:
            hits[row.id].append(_sanctioned_hit(cfg, row.address, on))
        paid = [ext for wid, ext in bad.get(row.address, ()) if wid != row.id]
        if paid:
            hits[row.id].append(_hit(
                cfg, "address_known_bad",
                f"destination {row.address} received withdrawal(s) recorded as confirmed "
                f"fraud: {', '.join(paid[:3])}" + (" …" if len(paid) > 3 else ""),
                address=row.address, withdrawals=paid[:20]))


def _reputation(session: Session, rows: Mapping[int, _Row], cfg: ScreeningConfig,
                hits: dict[int, list[Hit]]) -> None:
    """ip_reputation: the request IP (or its network) is on a threat list.
    anonymizing_network: it is Tor, a VPN, a proxy or a hosting provider, and not a
    network the account's recent successful logins came from."""
    lists = reputation.load(session)
    if not lists:
        return
    for row in rows.values():
        marks = lists.marks(row.ip, row.asn)
        if not marks:
            continue
        at = row.requested_at
        threats = [m for m in marks if m.rule == reputation.THREAT_RULE]
        if threats:
            hits[row.id].append(_hit(
                cfg, "ip_reputation",
                "request " + "; ".join(m.explanation(at) for m in threats),
                ip=row.ip, asn=row.asn, lists=[m.as_dict(at) for m in threats]))
        hiding = [m for m in marks if m.rule == reputation.ANONYMIZING_RULE]
        known = row.asn_seen if row.asn is not None else row.ip_seen
        if hiding and not known:
            where = f"AS{row.asn}" if row.asn is not None else f"IP {row.ip}"
            hits[row.id].append(_hit(
                cfg, "anonymizing_network",
                "request " + "; ".join(m.explanation(at) for m in hiding)
                + f"; no successful login of this account came from {where} in the "
                  f"{cfg.geo_history_days if row.asn is not None else cfg.ip_history_days} "
                  "days before",
                ip=row.ip, asn=row.asn, lists=[m.as_dict(at) for m in hiding]))


def _sanctioned_hit(cfg: ScreeningConfig, address: str,
                    on: list[sanctions.Listing]) -> Hit:
    """The ``address_sanctioned`` hit of a destination on the lists ``on``."""
    first, others = on[0], [listing.list for listing in on[1:]]
    return _hit(cfg, "address_sanctioned",
                first.explanation() + (f"; also on {', '.join(others)}" if others else ""),
                address=address, list=first.list, version=first.version,
                entity=first.entity, entity_ref=first.entity_ref, currency=first.currency,
                lists=[listing.list for listing in on])


def _clients_normal(conn: Connection, rows: Mapping[int, _Row], cfg: ScreeningConfig,
                    hits: dict[int, list[Hit]]) -> None:
    """What the client's normal explains, once every rule has judged the request.

    - The client's own wallet (`_own_wallet`): the amount rules (``OWN_WALLET_RULES``:
      a sweep of the whole balance, a burst on salary day, an unusual amount) weigh
      ``own_wallet_factor`` there, when nothing else says the session is a stranger's
      (``STRANGER_SIGNS``): money sent to the client's own wallet is not stolen, and an
      intruder gains nothing there unless they planted the wallet.
    - ``ip_not_seen`` weighs ``usual_network_factor`` when the request comes from a
      network (ASN) and a country the account logs in from (carriers and ISPs hand out a
      new address each session), unless the request is theft-shaped: a new destination,
      a security change, structuring, or an amount rule (the balance drained, a burst
      other than to places paid as much before, an unusual amount) other than to the
      client's own wallet (an intruder on the
      victim's own ISP must not buy a discount with it).
    - A trip: when the only rules that fired are the new place's (``LOCATION_RULES``)
      and the destination is one the account paid at least as much ``own_wallet_days``
      and more before (`_paid_long_before`), they weigh ``trip_factor``: a traveller
      paying their usual place, with nothing about the amount, the destination, the
      session or the account's settings out of the ordinary. An intruder gains nothing
      paying the client's own payee; planting one would take a payment let through two
      weeks before.

    A payment counts for either only once screening let it through: judged before and
    not held, or judged in this batch (earlier, so first here) below the hold."""
    amounts = {wid for wid, found in hits.items()
               if wid in rows and any(h.rule in OWN_WALLET_RULES for h in found)}
    located = {wid for wid, found in hits.items()
               if wid in rows and found and all(h.rule in LOCATION_RULES for h in found)}
    payments = _payee_payments(conn, sorted(amounts | located), cfg)
    saves, _when = _saves_in_force(conn, sorted(amounts))
    origin = _change_origins(conn, sorted({event for event, _at in saves.values()}), cfg)
    held_here: set[int] = set()  # of this batch, by the verdicts reached so far
    # In time order: a payment of this batch counts by its verdict, reached first.
    for wid in sorted((wid for wid in hits if wid in rows),
                      key=lambda wid: (rows[wid].requested_at, wid)):
        row, found = rows[wid], hits[wid]
        paid = _paid(row, payments.get(wid, []), rows, held_here, cfg)
        own = _own_wallet(row, paid, saves.get(wid), origin, cfg) if wid in amounts else None
        fired = {h.rule for h in found}
        # A burst to places paid as much before is a salary day, not a theft.
        by_amount = {h.rule for h in found if h.rule in OWN_WALLET_RULES
                     and not (h.rule == "velocity" and h.details.get("known_destinations"))}
        theft = fired & {"new_destination", "security_change_hold", "structuring"} or (
            by_amount and own is None)
        usual = ("ip_not_seen" in fired and not theft and row.asn is not None
                 and row.asn_seen and row.country is not None and row.country_seen)
        trip = (None if usual or wid not in located
                else _paid_long_before(row, paid, cfg))
        stranger = fired & set(STRANGER_SIGNS) - ({"ip_not_seen"} if usual else set())
        changed: list[Hit] = []
        for hit in found:
            if hit.rule == "ip_not_seen" and usual:
                factor = cfg.usual_network_factor
                hit = replace(hit, score=round(hit.score * factor, 2),
                              explanation=hit.explanation + f"; its network AS{row.asn} "
                              f"and country {row.country} are ones the account logs in "
                              f"from (x {factor:g})",
                              details={**hit.details, "usual_network": True})
            elif trip is not None and hit.rule in LOCATION_RULES:
                factor = cfg.trip_factor
                hit = replace(hit, score=round(hit.score * factor, 2),
                              explanation=hit.explanation + f"; a new place alone, paying "
                              f"{trip} (x {factor:g})",
                              details={**hit.details, "trip": trip})
            elif hit.rule in OWN_WALLET_RULES and own is not None and not stranger:
                factor = cfg.own_wallet_factor
                hit = replace(hit, score=round(hit.score * factor, 2),
                              explanation=hit.explanation + f"; to {own}, and nothing "
                              f"says this session is a stranger's (x {factor:g})",
                              details={**hit.details, "own_wallet": own})
            changed.append(hit)
        hits[wid] = changed
        if would_hold(sum(h.score for h in changed), changed, cfg):
            held_here.add(wid)


@dataclass(frozen=True)
class _Payment:
    """An earlier withdrawal of the account to a request's destination (its asset, in
    ``amount_history_days``): the candidates of `_paid`."""

    id: int
    amount: Decimal
    at: datetime
    status: str
    judged: bool  # screening has recorded a verdict on it


@dataclass(frozen=True)
class _Paid:
    """What the account had paid to a request's destination: payments let through (see
    `_clients_normal`) at least ``own_wallet_days`` old (their number, sum and first
    time), and the velocity window's payments to it before the request, held or not
    (their sum)."""

    count: int
    total: Decimal
    since: datetime | None
    window: Decimal


def _payee_payments(conn: Connection, wids: list[int],
                    cfg: ScreeningConfig) -> dict[int, list[_Payment]]:
    """The earlier withdrawals to each request's destination. Read one by one, not
    summed by the database: SQLite sums NUMERIC as a float (0.7 + 0.1 < 0.8)."""
    if not wids:
        return {}
    w, h = Withdrawal, aliased(Withdrawal, name="h")
    earlier = or_(h.requested_at < w.requested_at,
                  and_(h.requested_at == w.requested_at, h.id < w.id))
    judged = select(WithdrawalScreening.withdrawal_id).where(
        WithdrawalScreening.withdrawal_id == h.id).exists()
    found: dict[int, list[_Payment]] = defaultdict(list)
    for chunk in _chunks(wids):
        for wid, hid, amount, at, status, is_judged in conn.execute(
                select(w.id, h.id, h.amount, h.requested_at, h.status,
                       case((judged, literal_column("1")), else_=literal_column("0")))
                .join(h, and_(h.account_id == w.account_id, h.requested_at <= w.requested_at,
                              h.requested_at >= shifted(
                                  w.requested_at, -cfg.amount_history_days * 86_400),
                              earlier, h.asset == w.asset, h.address == w.address,
                              h.status != "rejected"))
                .where(w.id.in_(chunk))):
            found[wid].append(_Payment(hid, Decimal(str(amount)), at, status,
                                       bool(is_judged)))
    return found


def _paid(row: _Row, payments: list[_Payment], batch: Mapping[int, _Row],
          held_here: set[int], cfg: ScreeningConfig) -> _Paid:
    """:class:`_Paid` of ``row``'s destination (see `_clients_normal` for what counts)."""
    window_start = row.requested_at - timedelta(hours=cfg.velocity_window_hours)
    old_enough = row.requested_at - timedelta(days=cfg.own_wallet_days)
    count, total, since, window = 0, Decimal(0), None, Decimal(0)
    for p in payments:
        if p.at > window_start:
            window += p.amount
        let_through = p.status in ("pending", "approved") and (
            (p.judged and p.id not in batch) or (p.id in batch and p.id not in held_here))
        if let_through and p.at <= old_enough:
            count, total = count + 1, total + p.amount
            since = p.at if since is None else min(since, p.at)
    return _Paid(count, total, since, window)


def _paid_long_before(row: _Row, paid: _Paid, cfg: ScreeningConfig) -> str | None:
    """Why the destination is the client's established payee (see `_clients_normal`'s
    trip), or None: paid at least as much as this request and the window's payments
    to it before, all of it ``own_wallet_days`` and more before."""
    if paid.since is None or paid.total < row.amount + paid.window:
        return None
    return (f"a destination this account paid {paid.count} "
            f"time{'s' if paid.count > 1 else ''} from {_fmt_time(paid.since)}, "
            f"{fmt_amount(paid.total)} {row.asset} in all, at least {cfg.own_wallet_days} "
            f"days before")


def _own_wallet(row: _Row, paid: _Paid, saved: tuple[int, datetime] | None,
                origin: Mapping[int, str], cfg: ScreeningConfig) -> str | None:
    """Whether ``row``'s destination is the client's own wallet, and why: paid
    ``own_wallet_payments`` times in ``amount_history_days``, every one of those payments
    at least ``own_wallet_days`` before the request and let through, together at least
    half as much as this request and the ones to it in the velocity window before (dust
    does not make a wallet, splitting does not shrink a drain); or saved in the address
    book (``saved``: the save in force and its time) from the client's usual device and
    network at least ``address_book_trusted_days`` before."""
    # Half of what goes there now, this request and the window's before it: an amount
    # split into parts is judged whole.
    if paid.since is not None and paid.count >= max(1, cfg.own_wallet_payments) and (
            paid.total * 2 >= row.amount + paid.window):
        return (f"a destination this account paid {paid.count} times from "
                f"{_fmt_time(paid.since)}, {fmt_amount(paid.total)} {row.asset} in all")
    if saved is not None and origin.get(saved[0]) == USUAL and (
            row.requested_at - saved[1] >= timedelta(days=cfg.address_book_trusted_days)):
        return (f"a destination saved in this account's address book from its usual "
                f"device and network on {_fmt_time(saved[1])}")
    return None


def _row_rules(row: _Row, cfg: ScreeningConfig, hits: dict[int, list[Hit]]) -> None:
    if row.blocked_reason is not None:
        hits[row.id].append(_hit(
            cfg, "address_blocklisted",
            f"destination {row.address} is on the blocklist since "
            f"{_fmt_time(row.blocked_at)}: {row.blocked_reason}",
            address=row.address, reason=row.blocked_reason))
    if row.available is not None and row.available > 0:
        share = row.amount / row.available
        if share >= cfg.drain_share:
            hits[row.id].append(_hit(
                cfg, "drains_balance",
                f"amount {fmt_amount(row.amount)} {row.asset} is {share * 100:.0f}% of the "
                f"available balance of {fmt_amount(row.available)} {row.asset} "
                f"(threshold {cfg.drain_share * 100:.0f}%)",
                amount=fmt_amount(row.amount), available=fmt_amount(row.available),
                share=float(round(share, 4))))
