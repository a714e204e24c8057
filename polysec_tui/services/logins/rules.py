"""What the login detectors share: their thresholds and findings, and the judgement of
one successful login against its account's history and the population (new_device,
new_country, new_asn, risky_login, impossible_travel). The row-by-row pass of an
incremental run (``anomalies``) and the column-wise pass of a full run (``columnar``)
both judge with ``check_login``. Formulas and sources: docs/anomalies.md."""

from __future__ import annotations

import gc
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Table

from polysec_tui.db.models import LoginEvent, LoginFeatureCount, LoginHistory
from polysec_tui.services.networks.reputation import (
    ANONYMIZING,
    ANONYMIZING_RULE,
    EMPTY,
    THREAT_RULE,
    Mark,
    Reputation,
)
from polysec_tui.text import fmt_count

_L = cast(Table, LoginEvent.__table__).c
_H = cast(Table, LoginHistory.__table__)
_G = cast(Table, LoginFeatureCount.__table__)

# The features of the risk score (Freeman et al.: IP, ASN, country, browser, OS, device)
# device_id, which new_device needs, and place (country/city), which impossible_travel
# needs to recognise a place the client has logged in from before. ``n`` counts an
# account's successful logins.
RISK_FEATURES = ("ip", "asn", "country", "browser", "os", "device_type")
PROFILE_FEATURES = (*RISK_FEATURES, "device_id", "place")
# What an anonymising network's exit does not tell of the client (`Profile.add`): a
# place they were in. Its country still counts for the risk score and new_country: a
# client who always uses their VPN appears from its country, and would otherwise look
# new there at every login.
PLACE_FEATURES = ("place",)
TOTAL = "n"
DISTINCT = "v"
# Per feature (and device_id), what the population's back-off weight alpha is fitted
# from (`fit_alpha`): under feature "h:<feature>", the logins that had a history by its
# length (capped) and, as value NOVEL, those that carried a value new to their account.
ALPHA_FEATURES = (*RISK_FEATURES, "device_id")
# Alpha until the population is large enough to fit its own (ALPHA_MIN_LOGINS): the fit
# on the demo's 2,000 clients (docs/anomalies.md). IPs change often, countries rarely.
DEFAULT_ALPHAS = {"ip": 7.0, "asn": 0.35, "country": 0.01, "browser": 0.25, "os": 0.25,
                  "device_type": 0.2, "device_id": 0.25}
ALPHA_BOUNDS = (0.001, 100.0)
ALPHA_MIN_LOGINS = 1000  # logins with a history before a fit is trusted
# Only an account's logins 1 to HISTORY_CAP count: no account weighs more than that in the
# fit (one account with thousands of fresh device ids cannot steer it), and the fit is
# kept within ALPHA_BAND times the demo's either way.
HISTORY_CAP = 255
ALPHA_BAND = 4.0
NOVEL = "new"


def history_key(feature: str) -> str:
    return f"h:{feature}"


def fit_alpha(feature: str, novel: int, by_history: dict[int, int]) -> float | None:
    """The population's back-off weight for one feature: the maximum-likelihood alpha of
    a Chinese-restaurant process over the logins that had a history (one with ``n``
    earlier successful logins carries a value new to its account with probability
    alpha / (n + alpha)), by the fixed point alpha = novel / sum(1 / (n + alpha)); None
    with too few logins to say. docs/anomalies.md."""
    if sum(by_history.values()) < ALPHA_MIN_LOGINS:
        return None
    default = DEFAULT_ALPHAS[feature]
    low = max(ALPHA_BOUNDS[0], default / ALPHA_BAND)
    high = min(ALPHA_BOUNDS[1], default * ALPHA_BAND)
    if novel <= 0:
        return low
    alpha = updated = 1.0
    for _ in range(500):
        updated = min(high, max(low, novel / sum(count / (n + alpha)
                                                 for n, count in by_history.items())))
        if abs(updated - alpha) < 1e-7 * alpha:
            break
        alpha = updated
    return round(updated, 3)
# Features that change together count once, by the strongest of them: a new country
# comes with a new network and a new IP, a new phone with a new browser, OS and device
# type. The groups' terms add up (docs/anomalies.md).
RISK_GROUPS = (("ip", "asn", "country"), ("browser", "os", "device_type", "device"))
# The risk score's prior on the kind of network (docs/anomalies.md): the share of
# intruders' logins that come from each anonymising kind of network, against the share of
# the population's logins from it. A stated assumption, not learnt: intruders hide behind
# hosting, VPNs, proxies and Tor far more often than clients do.
INTRUDER_NETWORKS = {"hosting": 0.30, "vpn": 0.20, "proxy": 0.10, "tor": 0.05}
MAX_NETWORK_LOG10 = 2.0  # at most 100 times likelier
# The population's share of each kind is smoothed toward a reference share, as if
# NETWORK_PRIOR_LOGINS logins had been seen at that share: a small or new population
# (the first run) borrows the reference instead of calling every kind unheard of.
REFERENCE_NETWORKS = {"hosting": 0.02, "vpn": 0.03, "proxy": 0.005, "tor": 0.002}
NETWORK_PRIOR_LOGINS = 1000
# Values kept per feature in an account's history: the most recently seen. Device ids and
# browsers come from the client; without a bound one account's row could grow with
# every login and be rewritten whole by every run that touches it.
MAX_VALUES = 1000


# Findings that say a successful login was likely someone else's (novelty alone, a new
# device or country, does not): such a login makes no device, address or network the
# client's, in login detection and in screening.
SUSPICIOUS_LOGINS = ("risky_login", "impossible_travel", "success_after_failures",
                     "ip_reputation", "credential_stuffing", "password_spraying",
                     "distributed_attack")


@dataclass(frozen=True)
class Thresholds:
    """Defaults: docs/anomalies.md gives the source of each."""

    brute_force_failures: int = 5
    brute_force_window: timedelta = timedelta(minutes=10)
    stuffing_accounts: int = 15  # distinct accounts failing from one IP ...
    stuffing_asn_accounts: int = 40  # ... or one ASN ...
    stuffing_window: timedelta = timedelta(minutes=10)  # ... within this window
    stuffing_failure_share: float = 0.8  # and most of the source's attempts fail
    source_daily_failures: int = 100  # failures per IP per day, whatever the pattern
    spraying_accounts: int = 20
    spraying_window: timedelta = timedelta(hours=24)
    spraying_max_attempts: float = 3.0  # mean attempts per targeted account
    saf_failures: int = 5
    saf_window: timedelta = timedelta(hours=1)
    travel_kmh: float = 900.0
    travel_min_km: float = 300.0
    travel_mobile_km: float = 500.0  # how far off a mobile carrier may place a phone
    min_history: int = 5  # successful logins before new_* may fire
    # distributed_attack (services/logins/campaigns.py): an hour with this many failed
    # logins at least, campaign_ratio times the median hour of the week before, on
    # campaign_min_accounts accounts, campaign_share of them from addresses that tried
    # at most campaign_max_per_source times in the hour and that their account never
    # logged in from.
    campaign_min_failures: int = 100
    campaign_ratio: float = 5.0
    campaign_min_accounts: int = 50
    campaign_max_per_source: int = 5  # far under what the per-source detectors need
    campaign_share: float = 0.8
    campaign_baseline_hours: int = 168
    # ... of which at least this many after the platform's first login: on a new
    # deployment every address is new to its account and the usual hour unknown
    campaign_min_history_hours: int = 24
    campaign_lateness: timedelta = timedelta(minutes=10)
    risk_log10_threshold: float = 3.0

    @property
    def lookback(self) -> timedelta:
        return max(self.spraying_window, self.saf_window, self.stuffing_window,
                   self.brute_force_window)


DEFAULTS = Thresholds()
# The campaign kinds: their alert is the source's (``source:<ip or ASn>``), not an
# account's (services/monitoring/alerts.py).
SOURCE_KINDS = ("credential_stuffing", "password_spraying")
# The columns of a finding that withdrawal screening reads: what a rule set's backtest
# replays screening with (services/logins/replay.py, `screening.replay_with_findings`).
FINDING_COLUMNS = ("kind", "severity", "account_id", "login_event_id", "at")


@dataclass
class Finding:
    kind: str
    severity: str
    score: float
    account_id: uuid.UUID
    login_id: int
    at: datetime
    ip: str | None
    asn: int | None
    explanation: str
    details: dict[str, Any]


def flag(findings: dict[tuple[str, int], Finding], f: Finding) -> None:
    findings.setdefault((f.kind, f.login_id), f)


@dataclass(slots=True)
class Login:
    id: int
    account_id: uuid.UUID
    at: datetime
    ip: str
    asn: int | None
    country: str | None
    city: str | None
    browser: str | None
    os: str | None
    device_type: str | None
    device_id: str | None
    lat: float | None
    lon: float | None

    def values(self) -> dict[str, str]:
        raw = {"ip": self.ip, "asn": None if self.asn is None else str(self.asn),
               "country": self.country, "browser": self.browser, "os": self.os,
               "device_type": self.device_type, "device_id": self.device_id,
               "place": None if self.city is None else f"{self.country or ''}/{self.city}"}
        return {k: v[:128] for k, v in raw.items() if v is not None}


def most_recent(values: dict[str, list[int]]) -> dict[str, list[int]]:
    """The ``MAX_VALUES`` values of a feature seen last (then most often, then by value)."""
    kept = sorted(values.items(), key=lambda item: (item[1][1], item[1][0], item[0]),
                  reverse=True)[:MAX_VALUES]
    return dict(kept)


def located_row(login: Login) -> list[Any]:
    """A located login in the stored form of ``login_histories.last_located``."""
    return [login.id, login.at.isoformat(), login.ip, login.asn, login.country, login.city,
            login.browser, login.os, login.device_type, login.device_id, login.lat,
            login.lon]


def located_login(account_id: uuid.UUID, row: list[Any]) -> Login:
    login_id, at, *rest = row
    return Login(login_id, account_id, datetime.fromisoformat(at), *rest)


class Prior(Protocol):
    def p(self, feature: str, value: str) -> float:
        """p(x): the share of successful logins with this value."""

    def network_share(self, category: str, asns: Sequence[int]) -> float:
        """The share of successful logins from the networks ``asns`` (those of one
        category), `smoothed_share`."""

    def alpha(self, feature: str) -> float | None:
        """The back-off weight fitted for ``feature``, or None before any fit."""


def smoothed_share(count: int, total: int, category: str) -> float:
    """``count`` of ``total`` logins from one kind of network, smoothed toward the
    kind's reference share."""
    prior = NETWORK_PRIOR_LOGINS
    return (count + prior * REFERENCE_NETWORKS.get(category, 0.01)) / (total + prior)


def network_log10(share: float, category: str) -> float:
    """The network kind's term of the risk score: log10 p(kind | intruder) / p(kind |
    population), from 0 (as common among clients as among intruders) to
    ``MAX_NETWORK_LOG10``."""
    intruders = INTRUDER_NETWORKS.get(category)
    if intruders is None or share <= 0:
        return 0.0
    return min(MAX_NETWORK_LOG10, max(0.0, math.log10(intruders / share)))


@dataclass
class Profile:
    """An account's history as a run sees it, in the stored form of ``login_histories``:
    per feature and value ``[logins that carried it, the last one's time in Unix
    seconds]``, the number of logins and the last one's time; and the last located
    login (for impossible_travel)."""

    features: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    n: int = 0
    last_login_at: datetime | None = None
    last: Login | None = None

    def count(self, feature: str, value: str) -> int:
        """How many earlier logins carried this value."""
        values = self.features.get(feature)
        seen = values.get(value) if values else None
        return seen[0] if seen else 0

    def add(self, login: Login, values: dict[str, str], *, anchor: bool = True) -> None:
        """Count a login in (its ``values()``), once it has been judged. ``anchor``:
        whether its location is the client's: the next travel's start and a place of
        theirs (not an anonymising network's exit, `is_exit`)."""
        at = int(login.at.timestamp())
        for feature, value in values.items():
            if not anchor and feature in PLACE_FEATURES:
                continue  # an exit's place is not the client's
            known = self.features.setdefault(feature, {})
            seen = known.get(value)
            if seen is None:
                known[value] = [1, at]
            else:
                seen[0] += 1
                seen[1] = max(seen[1], at)
        self.n += 1
        if self.last_login_at is None or login.at > self.last_login_at:
            self.last_login_at = login.at
        if anchor and login.lat is not None and login.lon is not None and (
                self.last is None or (login.at, login.id) > (self.last.at, self.last.id)):
            self.last = login

    def row(self) -> dict[str, Any]:
        """Its ``login_histories`` row, without the account."""
        for feature, values in self.features.items():
            if len(values) > MAX_VALUES:
                self.features[feature] = most_recent(values)
        return {"logins": self.n, "features": self.features,
                "last_login_at": self.last_login_at,
                "last_located": None if self.last is None else located_row(self.last)}


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Rows, profiles and findings by the hundred thousand make the cycle collector walk
    every live object again and again (9 s of the 67 s fetch of a full run at 5,000,000
    logins, 0.7 s of an incremental run's 2.2 s); they hold no cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a sphere of radius 6371 km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


def check_login(login: Login, values: dict[str, str], profile: Profile,
                 population: Prior, t: Thresholds,
                 findings: dict[tuple[str, int], Finding],
                 reputation: Reputation = EMPTY) -> None:
    n = profile.n

    def finding(kind: str, severity: str, score: float, explanation: str,
                details: dict[str, Any]) -> None:
        flag(findings, Finding(kind, severity, score, login.account_id, login.id, login.at,
                                login.ip, login.asn, explanation, details))

    # impossible travel: consecutive located successful logins
    prev = profile.last
    if prev is not None and login.lat is not None and login.lon is not None:
        assert prev.lat is not None and prev.lon is not None
        km = great_circle_km(prev.lat, prev.lon, login.lat, login.lon)
        seconds = max((login.at - prev.at).total_seconds(), 60.0)
        place = values.get("place")
        known = place is not None and profile.count("place", place) > 0
        if km >= t.travel_min_km and km * 3600 / seconds > t.travel_kmh and not known:
            _travel(login, prev, km, seconds, t, reputation, finding)
    if reputation:
        marks = reputation.marks(login.ip, login.asn)
        if marks:
            _reputation_findings(login, values, profile, marks, finding)
    # new_* against the account's own history (only with enough history)
    if n >= t.min_history:
        for feature, kind, label in (("device_id", "new_device", "device"),
                                     ("country", "new_country", "country"),
                                     ("asn", "new_asn", "network (ASN)")):
            value = values.get(feature)
            if value is None or profile.count(feature, value):
                continue
            shown = {"device_id": "", "country": f" {value}", "asn": f" AS{value}"}[feature]
            severity = "medium" if kind == "new_country" else "low"
            finding(kind, severity, float(n),
                    f"{label}{shown} never seen in the {n} previous successful logins of "
                    f"this account (need {t.min_history} to judge)",
                    {"feature": feature, "value": value, "history": n})
    # risky_login: Freeman et al.'s likelihood ratio over the risk features, each term at
    # least 0: a value the client shares with an intruder (their browser, their ISP) is
    # no evidence against the rest. Within a group of features that change together only
    # the strongest term counts.
    terms: dict[str, float] = {}
    unseen: list[str] = []
    for feature in RISK_FEATURES:
        value = values.get(feature)
        if value is None:
            continue
        p_x = population.p(feature, value)
        c_u = profile.count(feature, value)
        alpha = population.alpha(feature) or DEFAULT_ALPHAS[feature]
        p_x_u = (c_u + alpha * p_x) / (n + alpha)
        terms[feature] = max(0.0, math.log10(p_x / p_x_u))
        if c_u == 0:
            unseen.append(feature)
    # A device the account never used: the same back-off with a device nobody else
    # shares (p(x) cancels out), (n + alpha) / alpha. Not on the first login. No device
    # id from an account that sent one before counts as a new device: leaving it out
    # must not hide one.
    device = values.get("device_id")
    if n and (not profile.count("device_id", device) if device is not None
              else bool(profile.features.get("device_id"))):
        alpha = population.alpha("device_id") or DEFAULT_ALPHAS["device_id"]
        terms["device"] = math.log10((n + alpha) / alpha)
        unseen.append("device" if device is not None else "device (none sent)")
    log10_score = sum(max((terms.get(f, 0.0) for f in group), default=0.0)
                      for group in RISK_GROUPS)
    hiding = _network_kind(login, values, profile, population, reputation)
    if hiding is not None:
        category, terms["network_kind"] = hiding
        log10_score += terms["network_kind"]
        unseen.append(f"{category} network")
    parts = {name: round(value, 3) for name, value in terms.items()}
    if log10_score >= t.risk_log10_threshold:
        severity = "high" if log10_score >= t.risk_log10_threshold + 2 else "medium"
        finding(
            "risky_login", severity, round(log10_score, 3),
            f"risk score {fmt_count(10 ** log10_score)} (threshold "
            f"{fmt_count(10 ** t.risk_log10_threshold)}: how many times likelier this login "
            "is from someone else than from the client) "
            f"after {n} previous successful logins; never seen for this account: "
            f"{', '.join(unseen) or 'none'}",
            {"log10_score": round(log10_score, 3), "threshold": t.risk_log10_threshold,
             "history": n, "log10_ratio": parts, "unseen": unseen},
        )


def _located_by(login: Login, reputation: Reputation) -> str | None:
    """What the IP's geolocation places, where an imported list says it is not the
    person: "exit" (Tor, VPN, proxy, hosting: the exit's place), "carrier" (a mobile
    network: its gateway's, and a roaming phone's is its home carrier's)."""
    if exit_address(reputation, login.ip) or (
            login.asn is not None and exit_network(reputation, login.asn)):
        return "exit"
    mobile = (login.asn is not None and reputation.category_of(login.asn) == "mobile") or any(
        m.category == "mobile" for m in reputation.ip_marks(login.ip))
    return "carrier" if mobile else None


def exit_address(reputation: Reputation, ip: str) -> bool:
    """Whether an address list calls the IP an anonymising network's."""
    return reputation.anonymizing(ip)


def exit_network(reputation: Reputation, asn: int) -> bool:
    """Whether an ASN table calls the network an anonymising one."""
    return reputation.category_of(asn) in ANONYMIZING


def is_exit(login: Login, reputation: Reputation) -> bool:
    """Whether the login's location is an anonymising network's exit: never the start
    of the next travel (a VPN hop would hide the trip after it)."""
    return bool(reputation) and _located_by(login, reputation) == "exit"


def _travel(login: Login, prev: Login, km: float, seconds: float, t: Thresholds,
            reputation: Reputation,
            finding: Callable[[str, str, float, str, dict[str, Any]], None]) -> None:
    """impossible_travel between two located logins ``km`` apart, unless a network
    explains it: an anonymising network at either end (its exit is not the person:
    anonymizing_network and risky_login weigh it; nor is an exit the start of the next
    travel, `is_exit`); a mobile carrier at one end within one country (carriers place
    subscribers anywhere in it). Otherwise each carrier end may be ``travel_mobile_km``
    off, and the same device at both ends makes it medium: possibly a phone roaming on
    its home carrier (located at home), then on local Wi-Fi."""
    ends = (_located_by(prev, reputation), _located_by(login, reputation)) if reputation \
        else (None, None)
    if "exit" in ends:
        return
    carriers = ends.count("carrier")
    if carriers and prev.country is not None and prev.country == login.country:
        return
    allowed = carriers * t.travel_mobile_km
    judged = km - allowed
    speed = judged * 3600 / seconds
    if judged < t.travel_min_km or speed <= t.travel_kmh:
        return
    coarse = (f", {allowed:,.0f} km allowed for the mobile network's coarse location"
              if carriers else "")
    # The same device at both ends with a carrier at one: a phone roaming on its home
    # carrier is located at home, then on local Wi-Fi abroad. A device id is the
    # client's to send and an intruder's to copy: a lesser finding, not none.
    roaming = bool(carriers) and login.device_id is not None and (
        login.device_id == prev.device_id)
    finding(
        "impossible_travel", "medium" if roaming else "high", round(speed, 1),
        f"{km:,.0f} km from the previous successful login "
        f"({prev.country or '??'} -> {login.country or '??'}) in "
        f"{seconds / 60:,.0f} min: {speed:,.0f} km/h{coarse} "
        f"(threshold {t.travel_kmh:,.0f} km/h, distances under "
        f"{t.travel_min_km:,.0f} km and places the client logged in from before "
        "ignored)" + ("; the same device at both ends, on a mobile carrier at one: "
                      "possibly a phone roaming on its home carrier" if roaming else ""),
        {"km": round(km, 1), "kmh": round(speed, 1), "threshold_kmh": t.travel_kmh,
         "coarse_km": allowed, "possibly_roaming": roaming,
         "previous_login_id": prev.id, "previous_at": prev.at.isoformat(),
         "previous_country": prev.country, "previous_city": prev.city,
         "previous_ip": prev.ip, "country": login.country, "city": login.city},
    )


def _network_kind(login: Login, values: dict[str, str], profile: Profile, population: Prior,
                  reputation: Reputation) -> tuple[str, float] | None:
    """The strongest anonymising kind of network the login came from, new to the
    account, and its term: as much likelier from an intruder as the kind is rarer among
    the population's logins (whatever the history: an account with none borrows this
    from the population). By the ASN tables (the population's share measured) and by the
    address lists (Tor exits, VPN and proxy lists: the reference share, no population
    count is kept per address)."""
    if not reputation:
        return None
    best: tuple[str, float] | None = None
    for mark in reputation.marks(login.ip, login.asn):
        category = mark.category
        if category not in INTRUDER_NETWORKS:
            continue
        if mark.list.format == "asn":
            network = values.get("asn")
            if network is None or profile.count("asn", network):
                continue
            share = population.network_share(category, reputation.asns_of(category))
        else:
            if profile.count("ip", login.ip):
                continue
            share = smoothed_share(0, 0, category)
        term = network_log10(share, category)
        if term > 0 and (best is None or term > best[1]):
            best = (category, term)
    return best


def _reputation_findings(login: Login, values: dict[str, str], profile: Profile,
                         marks: tuple[Mark, ...],
                         finding: Callable[[str, str, float, str, dict[str, Any]], None]
                         ) -> None:
    """ip_reputation: the IP is on a threat list (always). anonymizing_network: the IP
    or its network is Tor, a VPN, a proxy or a hosting provider, and the account has not
    logged in from that network before (a client who always uses their VPN is not
    flagged for it)."""
    threats = [m for m in marks if m.rule == THREAT_RULE]
    if threats:
        finding(THREAT_RULE, "high", float(len(threats)),
                "; ".join(m.explanation(login.at) for m in threats),
                {"lists": [m.as_dict(login.at) for m in threats]})
    hiding = [m for m in marks if m.rule == ANONYMIZING_RULE]
    network = values.get("asn")
    used = profile.count("asn", network) if network else profile.count("ip", login.ip)
    if hiding and not used:
        where = f"AS{network}" if network else f"IP {login.ip}"
        history = (f"the account has not logged in from {where} in its {profile.n} "
                   "previous successful logins" if profile.n
                   else "the account's first successful login")
        severity = "medium" if any(m.category == "tor" for m in hiding) else "low"
        finding(ANONYMIZING_RULE, severity, float(len(hiding)),
                "; ".join(m.explanation(login.at) for m in hiding) + f"; {history}",
                {"lists": [m.as_dict(login.at) for m in hiding], "history": profile.n})


# ========================================================================= queries
