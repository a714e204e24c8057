"""The profile pass of a full analysis, column by column (numpy).

A full run judges every successful login against its account's history before it and
against the population of all successful logins. Row by row in Python that costs about
60 µs a login (10 minutes for 5,000,000). Here the history is counted with sorts over
integer codes: for each login, how many earlier logins of the account carried each of
its values, how many logins the account had before, and its previous located login.
Python then judges only the logins a detector may flag (a few per cent), with the same
function as an incremental run (``rules.check_login``) and the counts the arrays
give, so findings, scores and explanations are the incremental run's. The arrays bound
the scores with a margin, so a login a detector flags is never left out. The profile and
population tables are written from the same arrays.

numpy is imported here only, when a full run starts: not on the `polysec --help` path.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import tempfile
import uuid
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    func,
    insert,
    literal_column,
    select,
    text,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from polysec_tui.services.logins import rules
from polysec_tui.services.networks.reputation import EMPTY, Reputation

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PART = 20_000  # rows fetched at a time (their Python objects are the transient memory)
MARGIN = 1e-6  # relative slack of the array bounds against the exact Python check
BLOCK = 500_000  # rows judged at a time by the array bounds
WRITE_ACCOUNTS = 5_000  # accounts whose histories are built and written at a time
READ_APART_FROM = 400_000  # logins (by id) from which a second process reads half
RAW = ("ip", "asn", "country", "city", "browser", "os", "device_type", "device_id")


def _micros(dialect: str) -> ColumnElement[int]:
    """``at`` as exact microseconds since 1970 (naive UTC in every engine)."""
    at = rules._L.at
    if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff'
        return (sql_cast(func.strftime("%s", at), BigInteger) * 1_000_000
                + sql_cast(func.substr(at, 21, 6), BigInteger))
    if dialect == "postgresql":
        return sql_cast(func.extract("epoch", at) * 1_000_000, BigInteger)
    return sql_cast(func.timestampdiff(literal_column("MICROSECOND"), "1970-01-01", at),
                    BigInteger)


class _Coder:
    """Integer codes for the values of one column, in order of first appearance."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}
        self.codes = array("i")

    def add(self, values: Sequence[Any]) -> None:
        index = self.index
        setdefault = index.setdefault  # the fastest of the ways measured (~0.2 us a value)
        self.codes.extend([setdefault(v, len(index)) for v in values])

    def values(self) -> list[Any]:
        return list(self.index)

    def merge(self, np: Any, values: list[Any], codes: Any) -> None:
        """Append another coder's codes (of those values), recoded into this one's."""
        index = self.index
        setdefault = index.setdefault
        recode = np.asarray([setdefault(v, len(index)) for v in values], dtype=np.int32)
        self.codes.frombytes(recode[codes].tobytes() if len(codes) else b"")


@dataclass
class _Columns:
    """Successful logins as columns (``at`` in microseconds; no place: NaN), each text
    column coded."""

    ids: array[int] = field(default_factory=lambda: array("q"))
    micros: array[int] = field(default_factory=lambda: array("q"))
    lat: array[float] = field(default_factory=lambda: array("d"))
    lon: array[float] = field(default_factory=lambda: array("d"))
    coders: dict[str, _Coder] = field(
        default_factory=lambda: {name: _Coder() for name in ("account", *RAW)})

    def read(self, conn: Connection | Session, dialect: str, lo: int, hi: int) -> None:
        """The successful logins ``lo < id <= hi``, in storage order."""
        L = rules._L
        stmt = (select(L.id, sql_cast(L.account_id, String(36)), _micros(dialect),
                       *(L[name] for name in RAW), L.latitude, L.longitude)
                .where(L.success.is_(True), L.id > lo, L.id <= hi))
        nan = math.nan
        coders = self.coders
        result = conn.execute(stmt, execution_options={"yield_per": PART})
        for part in result.partitions(PART):
            cols = list(zip(*part, strict=True))
            self.ids.extend(cols[0])
            coders["account"].add(cols[1])
            self.micros.extend(cols[2])
            for k, name in enumerate(RAW, start=3):
                coders[name].add(cols[k])
            self.lat.extend([nan if v is None else v for v in cols[11]])
            self.lon.extend([nan if v is None else v for v in cols[12]])

    def save(self, path: Path) -> tuple[int, dict[str, list[Any]]]:
        """Write the numbers to a file; return the row count and each column's values
        (the file holds numbers only: ids, times, places, codes)."""
        numbers: list[array[Any]] = [self.ids, self.micros, self.lat, self.lon]
        numbers.extend(coder.codes for coder in self.coders.values())
        with path.open("wb") as out:
            for column in numbers:
                column.tofile(out)
        return len(self.ids), {name: coder.values() for name, coder in self.coders.items()}

    def merge(self, np: Any, path: Path, rows: int, values: dict[str, list[Any]]) -> None:
        """Append the rows another process saved."""
        numbers: list[array[Any]] = [self.ids, self.micros, self.lat, self.lon]
        with path.open("rb") as saved:
            for column in numbers:
                column.fromfile(saved, rows)
            for name, coder in self.coders.items():
                coder.merge(np, values[name], np.fromfile(saved, dtype=np.int32, count=rows))


def _read_apart(url: str, lo: int, hi: int, path: str) -> tuple[int, dict[str, list[Any]]]:
    """In a process of its own (the second core): the successful logins ``lo < id <=
    hi`` through a connection and read transaction of its own, saved to ``path`` (a
    file, not the result: pickling would copy every array, twice the memory). The rows
    it reads were committed before the run began (ids commit in order), so its
    snapshot holds them."""
    from polysec_tui.db.engine import make_engine

    gc.disable()  # as in the run itself: rows by the million, no cycles
    engine = make_engine(url, create_dir=False)
    try:
        columns = _Columns()
        with engine.connect() as conn:
            columns.read(conn, engine.dialect.name, lo, hi)
        return columns.save(Path(path))
    finally:
        engine.dispose()


def _read_all(session: Session, hi: int) -> _Columns:
    """The successful logins ``id <= hi``: half of them read by a second process when
    there are enough to repay its start (about a second) and the database is one it can
    open (not an in-memory SQLite)."""
    import numpy as np

    columns = _Columns()
    engine = session.get_bind().engine
    lo = int(session.scalar(select(func.min(rules._L.id))) or 1) - 1
    url = engine.url
    # SQLite: a file in WAL mode only, where a reader never waits for this run's writes.
    shareable = url.get_backend_name() != "sqlite" or (
        url.database not in (None, "", ":memory:") and "mode=memory" not in str(url)
        and str(session.scalar(text("PRAGMA journal_mode"))).lower() == "wal")
    if hi - lo < READ_APART_FROM or not shareable or multiprocessing.current_process().daemon:
        columns.read(session, engine.dialect.name, lo, hi)
        return columns
    mid = lo + (hi - lo) // 2
    context = multiprocessing.get_context("spawn")
    with (tempfile.TemporaryDirectory(prefix="polysec-analyze-") as scratch,
          ProcessPoolExecutor(1, mp_context=context) as pool):
        path = Path(scratch) / "logins"
        theirs = pool.submit(_read_apart, url.render_as_string(hide_password=False), mid, hi,
                             str(path))
        columns.read(session, engine.dialect.name, lo, mid)
        rows, values = theirs.result()
        columns.merge(np, path, rows, values)
    return columns


@dataclass
class _Feature:
    """One profile feature: the value of each code, per login how many earlier logins of
    the account had the same value, and per login the code of its value (-1: none),
    looked up through ``table`` from a column's codes when asked (memory: the column's
    codes are shared, not copied per feature)."""

    names: list[str]
    earlier: NDArray[np.int32]
    table: NDArray[np.int32]
    source: NDArray[np.int32]
    counted: NDArray[np.bool_] | None = None  # logins that count in the history (all)

    def codes(self, where: Any = slice(None)) -> NDArray[np.int32]:
        codes: NDArray[np.int32] = self.table[self.source[where]]
        return codes


# A device id no client can send (ingest refuses NUL): "device ids were sent before".
SENT_BEFORE = "\x00sent"


class _Prior:
    """p(x) of the population, as the incremental run's population gives it, from the arrays."""

    def __init__(self, counts: dict[str, dict[str, int]], total: int,
                 alphas: dict[str, float]) -> None:
        self.counts = counts
        self.total = total
        self.alphas = alphas
        self.shares: dict[str, float] = {}

    def p(self, feature: str, value: str) -> float:
        counts = self.counts[feature]
        return (counts.get(value, 0) + 1) / (self.total + len(counts) + 1)

    def alpha(self, feature: str) -> float | None:
        return self.alphas.get(feature)

    def network_share(self, category: str, asns: Sequence[int]) -> float:
        share = self.shares.get(category)
        if share is None:
            counts = self.counts["asn"]
            found = sum(counts.get(str(asn), 0) for asn in asns)
            share = self.shares[category] = rules.smoothed_share(found, self.total, category)
        return share


def profile_pass_full(session: Session, hi: int, t: rules.Thresholds,
                      findings: dict[tuple[str, int], rules.Finding],
                      lists: Reputation = EMPTY) -> int:
    """Judge every successful login ``id <= hi`` and write the profile and population
    tables (emptied by the caller). Returns the number of successful logins."""
    import numpy as np

    # Cycle collection is off for the whole run (``anomalies._analyze_in``).
    read = _read_all(session, hi)
    ids, micros, lat, lon, coders = read.ids, read.micros, read.lat, read.lon, read.coders
    del read
    n_rows = len(ids)
    if n_rows == 0:
        return 0
    # By account, then time and id: a scan in storage order and a sort here cost far less
    # than the database's ORDER BY (an index walk with a row look-up per login).
    order = np.lexsort((np.frombuffer(ids, dtype=np.int64),
                        np.frombuffer(micros, dtype=np.int64),
                        np.frombuffer(coders["account"].codes, dtype=np.int32)))

    id_a = _sorted_copy(np, ids, np.int64, order)
    at_a = _sorted_copy(np, micros, np.int64, order)
    lat_a = _sorted_copy(np, lat, np.float64, order)
    lon_a = _sorted_copy(np, lon, np.float64, order)
    raw = {name: _sorted_copy(np, c.codes, np.int32, order) for name, c in coders.items()}
    raw_values = {name: c.values() for name, c in coders.items()}
    del coders, order
    account = raw["account"]
    accounts = [uuid.UUID(v) for v in raw_values["account"]]
    rows = np.arange(n_rows, dtype=np.int32)
    first = np.r_[True, account[1:] != account[:-1]]  # rows come grouped by account
    history = rows - np.maximum.accumulate(np.where(first, rows, 0))  # logins before
    del rows

    # An anonymising network's exit is never the next travel's start, and its place is
    # not the client's (`rules.Profile.add`).
    exits = _exits(np, lists, raw, raw_values) if lists else None
    features = {name: _feature(np, *_codes_of(np, name, raw, raw_values), account,
                               None if exits is None or name not in rules.PLACE_FEATURES
                               else ~exits)
                for name in rules.PROFILE_FEATURES}
    counts = {name: np.bincount(codes[codes >= 0], minlength=len(f.names))
              for name, f in features.items() if name in rules.RISK_FEATURES
              for codes in (f.codes(),)}

    anchors = ~np.isnan(lat_a) & ~np.isnan(lon_a)
    if exits is not None:
        anchors &= ~exits
    located = np.flatnonzero(anchors)
    del anchors, exits
    previous = np.full(n_rows, -1, dtype=np.int32)  # the account's last located login
    same = account[located[1:]] == account[located[:-1]]
    previous[located[1:][same]] = located[:-1][same]
    last_located = dict(zip(account[located[np.r_[~same, True]]].tolist(),
                            located[np.r_[~same, True]].tolist(), strict=True)
                        ) if len(located) else {}
    del located, same
    novelty = {name: _novelty(np, history, features[name]) for name in rules.ALPHA_FEATURES}
    alphas = {name: alpha for name, (novel, by_history) in novelty.items()
              if (alpha := rules.fit_alpha(name, novel, by_history)) is not None}
    # Per login: how many of the account's earlier logins sent a device id (none sent
    # where it did before counts as a new device).
    sent = (features["device_id"].codes() >= 0).astype(np.int32)
    before = np.cumsum(sent, dtype=np.int64) - sent
    starts = np.maximum.accumulate(np.where(first, np.arange(n_rows), 0))
    devices_before = before - before[starts]
    del sent, before, starts
    # Which logins a detector may flag (the exact check in Python follows for these),
    # a block of rows at a time: the temporaries stay small.
    maybe = np.zeros(n_rows, dtype=bool)
    for start in range(0, n_rows, BLOCK):
        block = slice(start, min(n_rows, start + BLOCK))
        maybe[block] = _may_flag(np, block, start, history, features, counts, previous, at_a,
                                 lat_a, lon_a, t, alphas, devices_before)
    if lists:
        maybe |= _listed(np, lists, features)

    def login(i: int) -> rules.Login:
        def value(name: str) -> Any:
            return raw_values[name][raw[name][i]]

        return rules.Login(
            int(id_a[i]), accounts[account[i]], EPOCH + timedelta(microseconds=int(at_a[i])),
            value("ip"), value("asn"), value("country"), value("city"), value("browser"),
            value("os"), value("device_type"), value("device_id"),
            None if math.isnan(lat_a[i]) else float(lat_a[i]),
            None if math.isnan(lon_a[i]) else float(lon_a[i]))

    prior = _Prior({name: dict(zip(features[name].names, map(int, counts[name]),
                                   strict=True)) for name in rules.RISK_FEATURES}, n_rows,
                   alphas)
    for i in np.flatnonzero(maybe).tolist():
        one = login(i)
        values = one.values()
        profile = rules.Profile(
            features={name: {v: [int(features[name].earlier[i]), 0]}
                      for name, v in values.items()},
            n=int(history[i]))
        if "device_id" not in values and devices_before[i]:
            # The account sent device ids before (which, check_login does not need).
            profile.features["device_id"] = {SENT_BEFORE: [int(devices_before[i]), 0]}
        if previous[i] >= 0:
            profile.last = login(int(previous[i]))
        rules.check_login(one, values, profile, prior, t, findings, lists)

    def stored_located(acc: int) -> list[Any] | None:
        row = last_located.get(acc)
        return None if row is None else rules.located_row(login(row))

    _write_profiles(session, np, features, account, accounts, at_a, first, stored_located)
    _write_population(session, features, counts, n_rows, novelty)
    return n_rows


def _novelty(np: Any, history: Any, f: _Feature) -> tuple[int, dict[int, int]]:
    """What `rules.fit_alpha` needs of one feature: of the logins 1 to HISTORY_CAP of
    each account, those that carried a value new to their account, and all of them by
    history length."""
    had = (history >= 1) & (history <= rules.HISTORY_CAP) & (f.codes() >= 0)
    novel = int(np.count_nonzero(had & (f.earlier == 0)))
    by_history = np.bincount(history[had])
    return novel, {n: int(c) for n, c in enumerate(by_history.tolist()) if c}


def _listed(np: Any, lists: Reputation, features: dict[str, _Feature]) -> Any:
    """Per login: whether its IP or network is on an IP list (each distinct value looked
    up once)."""
    flagged = lists.flagged_asns()
    marked = np.zeros(len(features["ip"].source), dtype=bool)
    for name, test in (("ip", lists.listed),
                       ("asn", lambda value: int(value) in flagged)):
        f = features[name]
        known = np.array([test(v) for v in f.names] + [False], dtype=bool)
        marked |= known[f.codes()]  # the code -1 (no value) reads the last: False
    return marked


def _exits(np: Any, lists: Reputation, raw: dict[str, Any],
           raw_values: dict[str, list[Any]]) -> Any:
    """Per login: whether its location is an anonymising network's exit
    (`rules.is_exit`: by its network's category or its IP's lists), each distinct
    value looked up once."""
    by_ip = np.array([v is not None and rules.exit_address(lists, str(v))
                      for v in raw_values["ip"]] + [False], dtype=bool)
    by_asn = np.array([v is not None and rules.exit_network(lists, int(v))
                       for v in raw_values["asn"]] + [False], dtype=bool)
    return by_ip[raw["ip"]] | by_asn[raw["asn"]]  # code -1 (no value) reads False


def _may_flag(np: Any, rows: slice, start: int, history: Any, features: dict[str, _Feature],
              counts: dict[str, Any], previous: Any, at: Any, lat: Any, lon: Any,
              t: rules.Thresholds, alphas: dict[str, float], devices_before: Any) -> Any:
    """Per login of the block: whether new_*, risky_login or impossible_travel may flag
    it (bounds with a margin: the exact check in Python decides)."""
    n_rows = len(history)
    history = history[rows]
    maybe = np.zeros(len(history), dtype=bool)
    enough = history >= t.min_history
    for name in ("device_id", "country", "asn"):
        f = features[name]
        maybe |= enough & (f.codes(rows) >= 0) & (f.earlier[rows] == 0)
    terms: dict[str, Any] = {}
    for name in rules.RISK_FEATURES:  # log10(p(x) / p(x | account)), at least 0
        f = features[name]
        alpha = alphas.get(name, rules.DEFAULT_ALPHAS[name])
        codes = f.codes(rows)
        p_x = (np.append(counts[name], 0)[codes] + 1) / (n_rows + len(f.names) + 1)
        ratio = np.maximum(np.log10(p_x * (history + alpha) / (f.earlier[rows] + alpha * p_x)),
                           0.0)
        terms[name] = np.where(codes >= 0, ratio, 0.0)  # the code -1: no value
    device = features["device_id"]  # a device new to an account with history
    alpha = alphas.get("device_id", rules.DEFAULT_ALPHAS["device_id"])
    codes = device.codes(rows)
    new_device = (((codes >= 0) & (device.earlier[rows] == 0))
                  | ((codes < 0) & (devices_before[rows] > 0))) & (history > 0)
    terms["device"] = np.where(new_device, np.log10((history + alpha) / alpha), 0.0)
    score = np.zeros(len(history))
    for group in rules.RISK_GROUPS:  # the strongest of each group
        score += np.maximum.reduce([terms[name] for name in group])
    # The network kind's term needs the lists: every login on a listed network is a
    # candidate already (_listed).
    maybe |= score >= t.risk_log10_threshold - MARGIN * max(1.0, t.risk_log10_threshold)
    moved = np.flatnonzero(previous[rows] >= 0)
    if len(moved):
        now, before = moved + start, previous[rows][moved]
        km = _great_circle_km(np, lat[before], lon[before], lat[now], lon[now])
        hours = np.maximum((at[now] - at[before]) / 1e6, 60.0) / 3600
        place = features["place"]
        known = (place.codes(now) >= 0) & (place.earlier[now] > 0)
        maybe[moved] |= ((km >= t.travel_min_km * (1 - MARGIN))
                         & (km / hours > t.travel_kmh * (1 - MARGIN)) & ~known)
    return maybe


def _sorted_copy(np: Any, buffer: array[Any], dtype: Any, order: Any) -> Any:
    """One column in that order; its unsorted buffer is then emptied (memory)."""
    column = np.frombuffer(buffer, dtype=dtype)[order]
    del buffer[:]
    return column


def _codes_of(np: Any, name: str, raw: dict[str, NDArray[np.int32]],
              raw_values: dict[str, list[Any]]
              ) -> tuple[NDArray[np.int32], NDArray[np.int32], list[str]]:
    """The login's value of a profile feature as ``Login.values`` gives it (a string of
    at most 128 characters), coded: the feature's code of each source code, the source
    codes per login, and the value of each feature code."""
    if name == "place":
        countries, cities = raw_values["country"], raw_values["city"]
        pair = raw["country"].astype(np.int64) * len(cities) + raw["city"]
        unique, inverse = np.unique(pair, return_inverse=True)
        texts: list[str | None] = []
        for p in unique.tolist():
            country, city = countries[p // len(cities)], cities[p % len(cities)]
            texts.append(None if city is None else f"{country or ''}/{city}")
        source = inverse.astype(np.int32)
    else:
        texts = [None if v is None else str(v) for v in raw_values[name]]
        source = raw[name]
    names: dict[str, int] = {}
    mapping = [-1 if v is None else names.setdefault(v[:128], len(names)) for v in texts]
    return np.asarray(mapping, dtype=np.int32), source, list(names)


def _feature(np: Any, table: NDArray[np.int32], source: NDArray[np.int32], names: list[str],
             account: NDArray[np.int32], counted: NDArray[np.bool_] | None = None
             ) -> _Feature:
    """Per login, how many earlier logins of the account carried its value (of them, only
    the ``counted`` ones)."""
    codes = table[source]
    key = account.astype(np.int64) * (len(names) + 1) + (codes + 1)
    order = np.argsort(key, kind="stable")  # stable: time order within each key
    key = key[order]
    run = np.r_[True, key[1:] != key[:-1]]
    del key, codes
    if counted is None:
        before = np.arange(len(order), dtype=np.int64)  # rows before, in key order
    else:
        ones = counted[order].astype(np.int64)
        before = np.cumsum(ones) - ones  # counted rows before, in key order
        del ones
    earlier = np.empty(len(order), dtype=np.int32)
    earlier[order] = before - np.maximum.accumulate(np.where(run, before, 0))
    return _Feature(names, earlier, table, source, counted)


def _great_circle_km(np: Any, lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.minimum(1.0, np.sqrt(h)))


def _write_profiles(session: Session, np: Any, features: dict[str, _Feature],
                    account: NDArray[np.int32], accounts: list[uuid.UUID],
                    at: NDArray[np.int64], first: NDArray[np.bool_],
                    located: Callable[[int], list[Any] | None]) -> None:
    """One ``login_histories`` row an account: per feature and value, how many logins
    carried it and when the last one was; the number of logins, the last one's time and
    the last located one.
    The values are converted to the driver's form here and go to its executemany
    directly, not through SQLAlchemy's per-row parameter processing."""
    dialect = session.get_bind().dialect
    table = rules._H
    to_account, to_time, to_json, to_located = (
        _driver_form(table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in ("account_id", "last_login_at", "features", "last_located"))
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    stmt = (f"INSERT INTO {table.name} (account_id, logins, features, last_login_at, "
            f"last_located) VALUES ({', '.join([mark] * 5)})")
    starts = np.flatnonzero(first)  # rows come grouped by account
    ends = np.r_[starts[1:], len(account)]
    for lo in range(0, len(starts), WRITE_ACCOUNTS):  # a block of whole accounts at a time
        hi = min(len(starts), lo + WRITE_ACCOUNTS)
        block = slice(int(starts[lo]), int(ends[hi - 1]))
        owner = account[block]
        stored: dict[int, dict[str, dict[str, list[int]]]] = {}
        for name, f in features.items():
            codes = f.codes(block)
            if f.counted is not None:  # a login that does not count carries no value
                codes = np.where(f.counted[block], codes, -1)
            key = owner.astype(np.int64) * (len(f.names) + 1) + (codes + 1)
            order = np.argsort(key, kind="stable")
            sorted_key = key[order]
            rows = order[np.flatnonzero(np.r_[sorted_key[1:] != sorted_key[:-1], True])]
            rows = rows[codes[rows] >= 0]  # each account's last login with each value
            names = f.names
            for acc, code, count, seen in zip(
                    owner[rows].tolist(), codes[rows].tolist(),
                    (f.earlier[block][rows] + 1).tolist(),
                    (at[block][rows] // 1_000_000).tolist(), strict=True):
                stored.setdefault(acc, {}).setdefault(name, {})[names[code]] = [count, seen]
        for history in stored.values():
            for name, values in history.items():
                if len(values) > rules.MAX_VALUES:
                    history[name] = rules.most_recent(values)
        batch = [(to_account(accounts[acc]), count, to_json(stored.get(acc, {})),
                  to_time(EPOCH + timedelta(microseconds=last)), to_located(located(acc)))
                 for acc, count, last in zip(account[starts[lo:hi]].tolist(),
                                             (ends[lo:hi] - starts[lo:hi]).tolist(),
                                             at[ends[lo:hi] - 1].tolist(), strict=True)]
        session.connection().exec_driver_sql(stmt, batch)


def _driver_form(processor: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """A column type's conversion to what the driver takes (none: the value itself)."""
    return processor if processor is not None else (lambda value: value)


def _write_population(session: Session, features: dict[str, _Feature],
                      counts: dict[str, Any], total: int,
                      novelty: dict[str, tuple[int, dict[int, int]]]) -> None:
    rows: list[dict[str, Any]] = [{"feature": rules.TOTAL, "value": "*", "count": total}]
    for name, (novel, by_history) in novelty.items():
        key = rules.history_key(name)
        if novel:
            rows.append({"feature": key, "value": rules.NOVEL, "count": novel})
        rows.extend({"feature": key, "value": str(n), "count": c}
                    for n, c in by_history.items())
    for name in rules.RISK_FEATURES:
        names = features[name].names
        rows.append({"feature": rules.DISTINCT, "value": name, "count": len(names)})
        rows.extend({"feature": name, "value": v, "count": int(c)}
                    for v, c in zip(names, counts[name].tolist(), strict=True))
    for start in range(0, len(rows), 5000):
        session.execute(insert(rules._G), rows[start : start + 5000])
