"""The synthetic exchange's people and their habits: a seeded population of clients
(homes, devices, payout addresses, trading activity) that logs in, changes settings and
withdraws, with attacks injected into it, written as the JSON Lines records of
docs/ingest.md. The demo builds its history from it; the simulator streams more of it.

Everything is drawn from one ``random.Random(seed)`` in a fixed order, so the same seed,
size, period and anchor give the same records. Attack scenarios are recorded as ground
truth (``demo_scenarios`` / ``demo_scenario_events``) so that detection can be measured
against them.
"""

from __future__ import annotations

import base64
import math
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from polysec_tui.errors import InputError
from polysec_tui.services.logins.rules import great_circle_km
from polysec_tui.synthetic.reference import (
    ADDRESS_LABELS,
    ASSET_BY_CODE,
    ASSETS,
    BOT_DEVICE,
    COUNTRIES,
    HEADLESS_UA,
    HOSTING,
    Asset,
    City,
    Country,
    Device,
    Hosting,
    Network,
    make_address,
    make_device,
)

Record = dict[str, Any]
Timed = tuple[datetime, str, Record]  # (time, external id, record): sortable, total order

DAY = timedelta(days=1)
VPN_SHARE = 0.04  # clients with a commercial VPN ...
VPN_SESSIONS = 0.3  # ... on for this share of their sessions at home (not on the phone)
ROAMING_SHARE = 0.5  # sessions abroad on the home SIM rather than local Wi-Fi or SIM
SWEEPER_SHARE = 0.05  # clients (with a saved wallet) who sweep their whole balance to it
PAYDAY_SHARE = 0.03  # clients who pay out in a burst on salary day ...
PAYDAYS = (1, 15, 25, 28)  # ... one of these days of the month
# The exchange's servers (round-trip times grow with the distance from them).
EXCHANGE_LAT, EXCHANGE_LON = 50.11, 8.68

# Local hour of day weights: quiet at night, peaks at lunch and in the evening.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 4, 7, 9, 9, 8, 8, 10, 9, 8, 8, 8, 9, 11, 13, 14, 13, 9, 5)

# (class, share of accounts, logins per day range, chance that a login is followed by a
# withdrawal): a few daily traders, many occasional clients, a dormant tail.
ACTIVITY = (
    ("daily", 0.12, (1.0, 3.5), 0.04),
    ("regular", 0.25, (0.3, 0.9), 0.08),
    ("weekly", 0.30, (0.08, 0.25), 0.18),
    ("monthly", 0.18, (0.02, 0.06), 0.35),
    ("dormant", 0.15, (0.0, 0.008), 0.5),
)


# ============================================================================ helpers


def _fill(rng: random.Random, template: str) -> str:
    out = []
    for ch in template:
        if ch == "#":
            out.append(str(rng.randrange(10)))
        elif ch == "N":
            out.append(str(rng.randint(2, 9)))
        elif ch == "L":
            out.append(chr(ord("A") + rng.randrange(26)))
        else:
            out.append(ch)
    return "".join(out)


_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "ø": "o", "Ø": "O", "æ": "ae",
                       "đ": "d", "Đ": "D", "\u0131": "i"})


def _ascii(text: str) -> str:
    """A name folded to the lower-case ASCII letters of an email's local part."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


PRICE_PLACES = {True: Decimal("0.0001"), False: Decimal("0.000001")}  # by "stablecoin"


def iso_z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def rtt_ms(rng: random.Random, city: City, mobile: bool) -> int:
    # Light in fibre covers about 100 km of round trip per millisecond; add the last mile.
    base = 12 + great_circle_km(city.lat, city.lon, EXCHANGE_LAT, EXCHANGE_LON) / 100
    return int(base + rng.uniform(0, 25) + (rng.uniform(20, 60) if mobile else 0))


def quantize(value: float, places: int) -> Decimal:
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)


def human_amount(rng: random.Random, value: float, places: int) -> Decimal:
    """Clients type round figures more often than not."""
    if value > 0 and rng.random() < 0.45:
        magnitude = 10 ** (math.floor(math.log10(value)) - 1)
        value = math.floor(value / magnitude) * magnitude
    return quantize(value, places)


def amount_text(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"


def _weighted_sample(rng: random.Random, items: Sequence[Asset], k: int) -> list[Asset]:
    pool = list(items)
    chosen: list[Asset] = []
    for _ in range(min(k, len(pool))):
        pick = rng.choices(pool, weights=[a.popularity for a in pool])[0]
        chosen.append(pick)
        pool.remove(pick)
    return chosen


# ============================================================================ the model


@dataclass
class Home:
    city: City
    isp: Network
    ips: list[str]
    weight: float


@dataclass
class Payout:
    """Where a client sends one asset: a few recurring addresses, typical amounts."""

    asset: Asset
    addresses: list[tuple[str, str | None]]
    median_usd: float
    sigma: float
    weight: float


@dataclass
class Trip:
    first_day: int
    last_day: int
    city: City
    country: str
    network: Network


@dataclass
class LastLogin:
    login_id: str
    ip: str
    device_id: str
    at: datetime


@dataclass
class Profile:
    ext_id: str
    country: Country
    created_at: datetime
    email: str
    full_name: str
    phone: str | None
    date_of_birth: str | None
    address: str | None
    balances: dict[str, Decimal]
    totp_secret: str | None
    totp_enrolled_at: datetime | None
    activity: str
    rate: float
    p_withdraw: float
    homes: list[Home]
    devices: list[Device]
    payouts: list[Payout]
    new_device: tuple[int, Device] | None = None
    trip: Trip | None = None
    vpn: Hosting | None = None  # a commercial VPN the client turns on now and then
    sweeper: bool = False  # sweeps the whole balance to their own wallet now and then
    payday: int | None = None  # the day of the month the client pays out in a burst
    sweep_days: set[int] = field(default_factory=set)  # days the client swept
    paydays: set[int] = field(default_factory=set)  # salary days already paid out
    known_devices: set[str] = field(default_factory=set)
    last_login: LastLogin | None = None

    def usd_value(self, asset: str) -> float:
        return float(self.balances.get(asset, 0)) * ASSET_BY_CODE[asset].usd

    def largest_asset(self) -> str | None:
        if not self.balances:
            return None
        return max(self.balances, key=lambda code: (self.usd_value(code), code))

    def record(self) -> Record:
        rec: Record = {
            "id": self.ext_id,
            "created_at": iso_z(self.created_at),
            "email": self.email,
            "full_name": self.full_name,
            "phone": self.phone,
            "date_of_birth": self.date_of_birth,
            "address": self.address,
            "country": self.country.code,
            "balances": {code: amount_text(v, ASSET_BY_CODE[code].places)
                         for code, v in self.balances.items()},
        }
        if self.totp_secret and self.totp_enrolled_at:
            rec["totp_secret"] = self.totp_secret
            rec["totp_enrolled_at"] = iso_z(self.totp_enrolled_at)
        return {k: v for k, v in rec.items() if v is not None}


@dataclass(frozen=True)
class DemoSpec:
    accounts: int = 2000
    days: int = 30
    seed: int = 7
    anchor: datetime = field(default_factory=lambda: default_anchor())

    def __post_init__(self) -> None:
        if self.accounts < 50:
            raise InputError("--accounts must be at least 50 (the attacks need victims)")
        if self.days < 5:
            raise InputError("--days must be at least 5 (the attacks span the last 4 days)")
        if self.anchor.tzinfo is None:
            raise InputError("the anchor needs a time zone")

    @property
    def start(self) -> datetime:
        return self.anchor - self.days * DAY


def default_anchor(now: datetime | None = None) -> datetime:
    """The current UTC time floored to the hour: the data ends "now"."""
    current = (now or datetime.now(UTC)).astimezone(UTC)
    return current.replace(minute=0, second=0, microsecond=0)


def parse_anchor(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--anchor {text!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InputError(f"--anchor {text!r} has no time zone (add Z or +00:00)")
    return parsed.astimezone(UTC).replace(microsecond=0)


@dataclass
class Scenario:
    id: int
    kind: str
    account: str | None
    source_ip: str | None
    started_at: datetime
    description: str
    events: list[tuple[str, str]] = field(default_factory=list)  # (event type, external id)


# ============================================================================ the generator


class DemoGenerator:
    """Builds the exchange from the seed. Call `account_records`, `login_records`,
    `security_event_records`, `withdrawal_records` in that order: logins are streamed
    day by day and fill the (much smaller) security-event and withdrawal buffers."""

    def __init__(self, spec: DemoSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)  # noqa: S311 - reproducible demo data, not secrets
        self.start = spec.start
        self.anchor = spec.anchor
        self._ids: set[str] = set()
        self._emails: set[str] = set()
        self.profiles = self._build_profiles()
        self.scenarios: list[Scenario] = []
        self._scenario_logins: dict[int, list[Timed]] = {}
        self._security: list[Timed] = []
        self._withdrawals: list[Timed] = []
        self._plan_history_events()
        self._plan_scenarios()
        # How clients' networks locate them, drawn apart (as the patterns below): carriers
        # locate phones at a gateway, roaming phones at home, VPNs at their exit.
        self.net_rng = random.Random(f"{spec.seed}:networks")  # noqa: S311
        for profile in self.profiles:
            if self.net_rng.random() < VPN_SHARE:
                profile.vpn = self.net_rng.choice(HOSTING)
        # Payout habits, drawn apart too.
        self.habit_rng = random.Random(f"{spec.seed}:habits")  # noqa: S311
        for profile in self.profiles:
            saved = any(label for payout in profile.payouts[:1] for _a, label in payout.addresses)
            profile.sweeper = saved and self.habit_rng.random() < SWEEPER_SHARE
            if profile.payouts and self.habit_rng.random() < PAYDAY_SHARE:
                profile.payday = self.habit_rng.choice(PAYDAYS)
        self._logins_done = False

    # ------------------------------------------------------------------ identifiers

    def _new_id(self, prefix: str) -> str:
        while True:
            ident = f"{prefix}_{self.rng.getrandbits(64):016x}"
            if ident not in self._ids:
                self._ids.add(ident)
                return ident

    # ------------------------------------------------------------------ accounts

    def _build_profiles(self) -> list[Profile]:
        rng, spec = self.rng, self.spec
        countries = list(COUNTRIES)
        weights = [c.weight for c in countries]
        created: list[datetime] = []
        for _ in range(spec.accounts):
            if rng.random() < 0.04:  # sign-ups during the period
                span = (spec.days - 1) * 86400
                created.append(self.start + timedelta(seconds=rng.randrange(span)))
            else:  # earlier, more of them in the recent past
                age_days = 1 + int(1800 * rng.random() ** 1.6)
                created.append(self.start - timedelta(days=age_days, seconds=rng.randrange(86400)))
        created.sort()
        numbers = sorted(rng.sample(range(10_000_000, 100_000_000), spec.accounts))
        profiles = []
        for number, created_at in zip(numbers, created, strict=True):
            country = rng.choices(countries, weights=weights)[0]
            profiles.append(self._profile(f"U{number}", country, created_at))
        return profiles

    def _profile(self, ext_id: str, country: Country, created_at: datetime) -> Profile:
        rng = self.rng
        first, last = rng.choice(country.first_names), rng.choice(country.last_names)
        full_name = f"{last} {first}" if country.family_first else f"{first} {last}"
        age = int(18 + min(57, rng.lognormvariate(math.log(16), 0.55)))
        birth = date(self.anchor.year - age, 1, 1) + timedelta(days=rng.randrange(365))
        email = self._email(rng, country, first, last, birth.year)
        city_weights = [1.0 / (i + 1) for i in range(len(country.cities))]
        cities = rng.choices(country.cities, weights=city_weights, k=3)
        n_homes = rng.choices((1, 2, 3), weights=(70, 25, 5))[0]
        homes = []
        for i in range(n_homes):
            isp = rng.choice(country.isps)
            ips = [isp.address(rng) for _ in range(rng.choice((1, 1, 2)))]
            homes.append(Home(cities[i] if i == 0 else rng.choice(country.cities), isp, ips,
                              1.0 if i == 0 else rng.uniform(0.15, 0.4)))
        address = None
        if rng.random() < 0.93:
            address = country.address.format(
                n=rng.randint(1, 240), street=rng.choice(country.streets),
                zip=_fill(rng, country.postcode), city=homes[0].city.name,
                region=homes[0].city.region,
            )
        devices = [make_device(rng, "mobile" if rng.random() < 0.65 else "desktop",
                               country.ios_share)]
        for _ in range(rng.choices((0, 1, 2), weights=(40, 45, 15))[0]):
            kind = "desktop" if devices[0].mobile else "mobile"
            if len(devices) == 2:
                kind = rng.choice(("tablet", "desktop", "mobile"))
            devices.append(make_device(rng, kind, country.ios_share))
        activity, _share, (lo, hi), p_withdraw = rng.choices(
            ACTIVITY, weights=[a[1] for a in ACTIVITY])[0]
        rate = rng.uniform(lo, hi)
        balances = self._balances(rng, activity)
        totp_secret = totp_at = None
        if rng.random() < 0.875:
            totp_secret = base64.b32encode(rng.getrandbits(160).to_bytes(20, "big")).decode()
            totp_at = min(created_at + timedelta(seconds=int(rng.expovariate(1 / 86400 / 20))),
                          self.anchor - timedelta(hours=2))
        profile = Profile(
            ext_id=ext_id, country=country, created_at=created_at, email=email,
            full_name=full_name,
            phone=_fill(rng, country.phone) if rng.random() < 0.9 else None,
            date_of_birth=birth.isoformat() if rng.random() < 0.95 else None,
            address=address, balances=balances, totp_secret=totp_secret,
            totp_enrolled_at=totp_at, activity=activity, rate=rate, p_withdraw=p_withdraw,
            homes=homes, devices=devices, payouts=[],
        )
        profile.known_devices = {d.device_id for d in devices}
        profile.payouts = self._payouts(rng, profile)
        if rng.random() < 0.08:  # a new phone or laptop during the period
            day = rng.randrange(1, self.spec.days)
            kind = "mobile" if rng.random() < 0.7 else "desktop"
            profile.new_device = (day, make_device(rng, kind, country.ios_share))
        if activity in ("daily", "regular", "weekly") and rng.random() < 0.06:
            profile.trip = self._trip(rng, country)
        return profile

    def _email(self, rng: random.Random, country: Country, first: str, last: str,
               year: int) -> str:
        f, la = _ascii(first), _ascii(last)
        domain = rng.choice(country.domains)
        style = rng.random()
        if style < 0.3:
            local = f"{f}.{la}"
        elif style < 0.5:
            local = f"{f}{la}{rng.randint(1, 99)}"
        elif style < 0.62:
            local = f"{f[0]}.{la}"
        elif style < 0.75:
            local = f"{f}.{la}{year % 100:02d}"
        elif style < 0.88:
            local = f"{f}_{la}{year}"
        else:
            handle = rng.choice(("hodl", "satoshi", "moon", "crypto", "degen", "stack", "sats"))
            local = f"{handle}{rng.choice(('', '_', '.'))}{f}{rng.randint(1, 999)}"
        email = f"{local}@{domain}"
        while email in self._emails:
            email = f"{local}{rng.randint(1, 9999)}@{domain}"
        self._emails.add(email)
        return email

    def _balances(self, rng: random.Random, activity: str) -> dict[str, Decimal]:
        if rng.random() < 0.08:
            return {}  # funded once, emptied since
        value = min(5_000_000.0, rng.lognormvariate(math.log(1200), 1.7))
        if activity in ("monthly", "dormant"):
            value *= 0.4
        count = rng.choices((1, 2, 3, 4, 5), weights=(25, 30, 25, 12, 8))[0]
        chosen = _weighted_sample(rng, ASSETS, count)
        shares = [rng.expovariate(1.0) for _ in chosen]
        total = sum(shares)
        balances: dict[str, Decimal] = {}
        for asset, share in zip(chosen, shares, strict=True):
            amount = quantize(value * share / total / asset.usd, asset.places)
            if amount > 0:
                balances[asset.code] = amount
        return balances

    def _payouts(self, rng: random.Random, profile: Profile) -> list[Payout]:
        if not profile.balances or rng.random() > 0.75:
            return []
        by_value = sorted(profile.balances, key=lambda c: (-profile.usd_value(c), c))
        payouts = []
        for rank, code in enumerate(by_value[: rng.choice((1, 1, 2))]):
            addresses = []
            for _ in range(rng.choices((1, 2, 3), weights=(55, 35, 10))[0]):
                label = rng.choice(ADDRESS_LABELS) if rng.random() < 0.5 else None
                addresses.append((make_address(rng, code), label))
            value = profile.usd_value(code)
            payouts.append(Payout(ASSET_BY_CODE[code], addresses,
                                  max(15.0, value * rng.uniform(0.03, 0.2)),
                                  rng.uniform(0.4, 0.9), 1.0 if rank == 0 else 0.4))
        return payouts

    def _trip(self, rng: random.Random, home: Country) -> Trip:
        first = rng.randrange(0, self.spec.days - 3)
        last = min(self.spec.days - 1, first + rng.randint(3, 9))
        if rng.random() < 0.5 and len(home.cities) > 1:
            dest = home
            city = rng.choice(home.cities[1:])
        else:
            dest = rng.choice([c for c in COUNTRIES if c.code != home.code])
            city = dest.cities[0]
        network = dest.mobile if rng.random() < 0.4 else rng.choice(dest.isps)
        return Trip(first, last, city, dest.code, network)

    def account_records(self) -> Iterator[tuple[int, Record]]:
        for n, profile in enumerate(self.profiles, 1):
            yield n, profile.record()

    # ------------------------------------------------------------------ records

    def _login(self, profile_id: str, at: datetime, *, success: bool, ip: str, network: Network,
               country: str, city: City, device: Device, rtt: int,
               failure_reason: str | None = None) -> Timed:
        ident = self._new_id("lgn")
        rec: Record = {
            "id": ident, "account": profile_id, "at": iso_z(at), "success": success,
            "ip": ip, "asn": network.asn, "country": country, "region": city.region,
            "city": city.name, "lat": city.lat, "lon": city.lon,
            "user_agent": device.user_agent, "browser": device.browser, "os": device.os,
            "device_type": device.device_type, "rtt_ms": rtt,
        }
        if device.device_id:
            rec["device_id"] = device.device_id
        if not success:
            rec["failure_reason"] = failure_reason or "bad_password"
        return at, ident, rec

    def _security_event(self, account: str, at: datetime, kind: str, *, ip: str | None,
                        device_id: str | None, details: dict[str, Any] | None = None,
                        address: str | None = None) -> str:
        ident = self._new_id("sev")
        rec: Record = {"id": ident, "account": account, "at": iso_z(at), "kind": kind}
        if address:
            rec["address"] = address
        if ip:
            rec["ip"] = ip
        if device_id:
            rec["device_id"] = device_id
        if details:
            rec["details"] = details
        self._security.append((at, ident, rec))
        return ident

    def _withdrawal(self, account: str, at: datetime, asset: Asset, amount: Decimal,
                    available: Decimal, address: str, label: str | None, ip: str,
                    device_id: str | None, login_id: str, ident: str | None = None) -> str:
        ident = ident or self._new_id("wdr")
        rec: Record = {
            "id": ident, "account": account, "at": iso_z(at), "asset": asset.code,
            "amount": amount_text(amount, asset.places),
            "available_balance": amount_text(available, asset.places),
            "address": address, "ip": ip, "login_id": login_id,
        }
        if label:
            rec["address_label"] = label
        if device_id:
            rec["device_id"] = device_id
        self._withdrawals.append((at, ident, rec))
        return ident

    # ------------------------------------------------------------------ history

    def _plan_history_events(self) -> None:
        """The enrolments behind the TOTP secrets, as the platform logged them; and the
        payout addresses a client labelled, saved in the address book."""
        for p in self.profiles:
            if p.totp_enrolled_at is not None:
                home = p.homes[0]
                self._security_event(p.ext_id, p.totp_enrolled_at, "2fa_enabled",
                                     ip=home.ips[0], device_id=p.devices[0].device_id,
                                     details={"method": "totp"})
        self._plan_address_books()

    def _plan_address_books(self) -> None:
        """A client who labelled a payout address saved it in the address book, within
        three weeks of opening the account (before the demo's window for most). Drawn
        from a generator of their own: every other record of a seed stays as it was."""
        rng = random.Random(f"{self.spec.seed}:address-book")  # noqa: S311 - demo data
        latest = self.anchor - 2 * DAY
        for p in self.profiles:
            for payout in p.payouts:
                for address, label in payout.addresses:
                    if label is None:
                        continue
                    at = p.created_at + timedelta(seconds=rng.randint(600, 21 * 86400))
                    if at > latest:
                        continue
                    while (ident := f"sev_{rng.getrandbits(64):016x}") in self._ids:
                        pass
                    self._ids.add(ident)
                    rec: Record = {"id": ident, "account": p.ext_id, "at": iso_z(at),
                                   "kind": "address_added", "address": address,
                                   "ip": p.homes[0].ips[0]}
                    self._security.append((at, ident, rec))

    # ------------------------------------------------------------------ normal logins

    def _day_index(self, at: datetime) -> int:
        return int((at - self.start) // DAY)

    def login_records(self) -> Iterator[tuple[int, Record]]:
        """Day by day, each day's logins sorted by time: the table ends up in
        chronological order without holding the whole period in memory."""
        n = 0
        for day in range(self.spec.days):
            day_start = self.start + day * DAY
            chunk: list[Timed] = []
            for profile in self.profiles:
                self._day_of(profile, day, day_start, chunk)
            chunk.extend(self._scenario_logins.pop(day, []))
            chunk.sort(key=lambda item: (item[0], item[1]))
            for _at, _ident, rec in chunk:
                n += 1
                yield n, rec
        self._logins_done = True

    def _day_of(self, p: Profile, day: int, day_start: datetime, out: list[Timed]) -> None:
        rng = self.rng
        day_end = day_start + DAY
        if p.created_at >= day_end:
            return
        sessions = _poisson(rng, p.rate)
        if p.created_at >= day_start:
            sessions += 1  # a new client logs in right after signing up
        if not sessions:
            return
        trip = p.trip if p.trip and p.trip.first_day <= day <= p.trip.last_day else None
        if trip and day in (trip.first_day, trip.last_day):
            return  # on the plane
        starts = []
        midnight = day_start.replace(hour=0, minute=0, second=0)
        for _ in range(sessions):
            hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
            local = hour * 3600 + rng.randrange(3600)
            tod = int(local - p.country.utc_offset * 3600) % 86400
            at = midnight + timedelta(seconds=tod)
            if at < day_start:
                at += DAY
            if at < p.created_at:
                at = p.created_at + timedelta(seconds=rng.randint(30, 900))
            starts.append(at)
        for at in sorted(starts):
            self._session(p, day, at, day_end, trip, out)

    def _session(self, p: Profile, day: int, at: datetime, day_end: datetime,
                 trip: Trip | None, out: list[Timed]) -> None:
        rng = self.rng
        devices = list(p.devices)
        if p.new_device and day >= p.new_device[0]:
            devices.insert(0, p.new_device[1])
        if trip:
            device = next((d for d in devices if d.mobile), devices[0])
            network, city, country = trip.network, trip.city, trip.country
            ip = network.address(rng)
        else:
            home = rng.choices(p.homes, weights=[h.weight for h in p.homes])[0]
            device = rng.choices(devices, weights=[1.0 / (i + 1) ** 1.5
                                                   for i in range(len(devices))])[0]
            city, country = home.city, p.country.code
            if device.mobile and rng.random() < 0.5:
                network = p.country.mobile
                ip = network.address(rng, allow_v6=rng.random() < 0.5)
            else:
                network, ip = home.isp, rng.choice(home.ips)
        rtt = rtt_ms(rng, city, device.mobile)
        # Where the IP's geolocation puts the client, which is not always where they are.
        located = city
        net = self.net_rng
        if (trip and trip.country != p.country.code and device.mobile
                and net.random() < ROAMING_SHARE):
            # Roaming on the home SIM: the data is routed through the home carrier.
            network, country = p.country.mobile, p.country.code
            ip, located = network.address(net), p.country.cities[0]
        elif not trip and p.vpn and not device.mobile and net.random() < VPN_SESSIONS:
            network, country = p.vpn.network, p.vpn.country
            ip, located = network.address(net), p.vpn.city
        elif network == p.country.mobile:
            located = p.country.cities[0]  # the carrier's gateway, not the cell
        events: list[tuple[datetime, bool, str | None]] = []
        t = at
        roll = rng.random()
        has_totp = p.totp_enrolled_at is not None and p.totp_enrolled_at < at
        reset = False
        if roll < 0.035:  # a typo or two
            for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
                events.append((t, False, "bad_password"))
                t += timedelta(seconds=rng.randint(6, 45))
        elif roll < 0.047 and has_totp:  # the code had just rolled over
            events.append((t, False, "bad_totp"))
            t += timedelta(seconds=rng.randint(15, 60))
        elif roll < 0.0485:  # forgot the password: a few tries, a reset, back in
            for _ in range(rng.randint(3, 6)):
                events.append((t, False, "bad_password"))
                t += timedelta(seconds=rng.randint(10, 50))
            t += timedelta(seconds=rng.randint(90, 600))
            reset = True
        if t >= day_end:
            return
        login_id = ""
        events.append((t, True, None))
        for when, success, reason in events:
            item = self._login(p.ext_id, when, success=success, ip=ip, network=network,
                               country=country, city=located, device=device, rtt=rtt,
                               failure_reason=reason)
            out.append(item)
            login_id = item[1]
        if reset:
            self._security_event(p.ext_id, t - timedelta(seconds=rng.randint(30, 80)),
                                 "password_reset", ip=ip, device_id=device.device_id,
                                 details={"method": "email_link"})
        p.last_login = LastLogin(login_id, ip, device.device_id, t)
        self._after_login(p, t, ip, device, login_id)

    def _after_login(self, p: Profile, t: datetime, ip: str, device: Device,
                     login_id: str) -> None:
        rng = self.rng
        if device.device_id not in p.known_devices:
            p.known_devices.add(device.device_id)
            self._security_event(p.ext_id, t, "new_device", ip=ip, device_id=device.device_id,
                                 details={"device_type": device.device_type,
                                          "browser": device.browser, "os": device.os})
            if device.mobile and p.totp_secret and rng.random() < 0.35:
                # A new phone: the client moves the authenticator (benign look-alike).
                self._security_event(p.ext_id, t + timedelta(seconds=rng.randint(120, 900)),
                                     "2fa_change", ip=ip, device_id=device.device_id,
                                     details={"method": "totp", "reason": "new_phone"})
        roll = rng.random()
        later = t + timedelta(seconds=rng.randint(40, 900))
        if later < self.anchor:
            if roll < 0.0025:
                self._security_event(p.ext_id, later, "password_change", ip=ip,
                                     device_id=device.device_id)
            elif roll < 0.0035 and p.activity == "daily":
                self._security_event(p.ext_id, later, "api_key_created", ip=ip,
                                     device_id=device.device_id,
                                     details={"label": rng.choice(("trading bot", "tax export",
                                                                   "portfolio tracker")),
                                              "permissions": ["read", "trade"]})
            elif roll < 0.0040:
                self._security_event(p.ext_id, later, "phone_change", ip=ip,
                                     device_id=device.device_id)
            elif roll < 0.0042:
                self._security_event(p.ext_id, later, "email_change", ip=ip,
                                     device_id=device.device_id,
                                     details={"old_domain": p.email.rsplit("@", 1)[1],
                                              "new_domain": rng.choice(p.country.domains)})
        if p.payouts and rng.random() < p.p_withdraw:
            self._routine_withdrawal(p, t, ip, device, login_id)
        if p.sweeper or p.payday is not None:
            self._habit_withdrawals(p, t, ip, device, login_id)

    def _habit_withdrawals(self, p: Profile, t: datetime, ip: str, device: Device,
                           login_id: str) -> None:
        """The payout habits that look like an intruder's: a sweep of the whole balance
        to the client's own saved wallet (at most every five days), and salary day (their
        day of the month): four to six withdrawals within the hour to the client's usual
        addresses."""
        rng, day = self.habit_rng, self._day_index(t)
        if p.sweeper and not any(abs(day - d) < 5 for d in p.sweep_days) and (
                rng.random() < 0.3):
            payout = p.payouts[0]
            address, name = next((a, x) for a, x in payout.addresses if x)
            at = t + timedelta(seconds=rng.randint(60, 900))
            balance = float(p.balances[payout.asset.code])
            available = quantize(balance * rng.uniform(0.5, 1.5), payout.asset.places)
            amount = quantize(float(available) * rng.uniform(0.97, 1.0), payout.asset.places)
            if at < self.anchor and amount > 0:
                p.sweep_days.add(day)
                self._habit_withdrawal(p, at, payout.asset, amount, available, address,
                                       name, ip, device, login_id)
        if p.payday == t.day and day not in p.paydays:
            p.paydays.add(day)
            at = t
            for _ in range(rng.randint(4, 6)):
                at += timedelta(seconds=rng.randint(60, 600))
                payout = rng.choice(p.payouts)
                address, label = rng.choice(payout.addresses)
                balance = float(p.balances[payout.asset.code])
                available = quantize(balance * rng.uniform(0.9, 1.5), payout.asset.places)
                usd = rng.lognormvariate(math.log(payout.median_usd), payout.sigma) / 3
                amount = human_amount(rng, min(usd / payout.asset.usd, float(available) * 0.3),
                                      payout.asset.places)
                if at < self.anchor and amount > 0:
                    self._habit_withdrawal(p, at, payout.asset, amount, available, address,
                                           label, ip, device, login_id)

    def _habit_withdrawal(self, p: Profile, at: datetime, asset: Asset, amount: Decimal,
                          available: Decimal, address: str, label: str | None, ip: str,
                          device: Device, login_id: str) -> None:
        # An id from the habits' own generator: the main one's draws stay as they were.
        while (ident := f"wdr_{self.habit_rng.getrandbits(64):016x}") in self._ids:
            pass
        self._ids.add(ident)
        self._withdrawal(p.ext_id, at, asset, amount, available, address, label, ip,
                         device.device_id, login_id, ident)

    def _routine_withdrawal(self, p: Profile, t: datetime, ip: str, device: Device,
                            login_id: str) -> None:
        rng = self.rng
        at = t + timedelta(seconds=rng.randint(60, 1500))
        if at >= self.anchor:
            return
        payout = rng.choices(p.payouts, weights=[x.weight for x in p.payouts])[0]
        asset = payout.asset
        if rng.random() < 0.05:  # a one-off destination
            address, label = make_address(rng, asset.code), None
        else:
            address, label = rng.choices(
                payout.addresses, weights=[1.0 / (i + 1) for i in range(len(payout.addresses))]
            )[0]
        balance = float(p.balances[asset.code])
        available = quantize(balance * rng.uniform(0.9, 1.5), asset.places)
        usd = rng.lognormvariate(math.log(payout.median_usd), payout.sigma)
        amount = human_amount(rng, min(usd / asset.usd, float(available) * 0.85), asset.places)
        if amount <= 0 or available <= 0:
            return
        self._withdrawal(p.ext_id, at, asset, amount, available, address, label, ip,
                         device.device_id, login_id)

    def price_records(self) -> Iterator[tuple[int, Record]]:
        """Hourly USD prices of every asset from a day before the demo's first day to its
        anchor: a random walk around the static reference price (stablecoins within a few
        hundredths of a cent). A generator of its own, so the rest of the data does not
        change with it."""
        rng = random.Random(f"prices-{self.spec.seed}")  # noqa: S311 - demo data
        first = (self.start - DAY).replace(minute=0, second=0, microsecond=0)
        hours = int((self.anchor - first) / timedelta(hours=1)) + 1
        n = 0
        for asset in ASSETS:
            stable = asset.usd == 1.0
            level = 0.0
            for hour in range(hours):
                if stable:  # it does not wander off its peg
                    usd = 1.0 + rng.gauss(0, 0.0003)
                else:
                    level += rng.gauss(0, 0.004)
                    usd = asset.usd * math.exp(level)
                n += 1
                yield n, {"asset": asset.code, "currency": "USD",
                          "at": iso_z(first + timedelta(hours=hour)),
                          "price": f"{Decimal(repr(usd)).quantize(PRICE_PLACES[stable])}"}

    def security_event_records(self) -> Iterator[tuple[int, Record]]:
        assert self._logins_done, "login_records() fills the security events; run it first"
        self._security.sort(key=lambda item: (item[0], item[1]))
        for n, (_at, _ident, rec) in enumerate(self._security, 1):
            yield n, rec

    def withdrawal_records(self) -> Iterator[tuple[int, Record]]:
        assert self._logins_done, "login_records() fills the withdrawals; run it first"
        self._withdrawals.sort(key=lambda item: (item[0], item[1]))
        for n, (_at, _ident, rec) in enumerate(self._withdrawals, 1):
            yield n, rec

    # ------------------------------------------------------------------ attacks

    def _scenario(self, kind: str, account: str | None, source_ip: str | None,
                  started_at: datetime, description: str) -> Scenario:
        scenario = Scenario(len(self.scenarios) + 1, kind, account, source_ip, started_at,
                            description)
        self.scenarios.append(scenario)
        return scenario

    def _attack_login(self, scenario: Scenario, item: Timed) -> str:
        self._scenario_logins.setdefault(self._day_index(item[0]), []).append(item)
        scenario.events.append(("login", item[1]))
        return item[1]

    def _ago(self, lo_hours: float, hi_hours: float) -> datetime:
        seconds = int(self.rng.uniform(lo_hours, hi_hours) * 3600)
        return self.anchor - timedelta(seconds=seconds)

    def _victim(self, used: set[str], *, active: bool, needs_totp: bool = False,
                min_usd: float = 0.0) -> Profile:
        """An established client (signed up before the period) not yet in another attack."""
        def fits(p: Profile) -> bool:
            if p.ext_id in used or p.created_at >= self.start or p.trip is not None:
                return False
            if active and p.activity not in ("daily", "regular"):
                return False
            if needs_totp and p.totp_secret is None:
                return False
            largest = p.largest_asset()
            return min_usd <= 0 or (largest is not None and p.usd_value(largest) >= min_usd)

        candidates = [p for p in self.profiles if fits(p)]
        if not candidates:  # tiny demos: relax the wish list rather than fail
            candidates = [p for p in self.profiles
                          if p.ext_id not in used and p.largest_asset() is not None]
        victim = self.rng.choice(candidates)
        used.add(victim.ext_id)
        return victim

    def _plan_scenarios(self) -> None:
        used: set[str] = set()
        # Attacks land in the last four days; some in the last 24 hours for the dashboard.
        self._account_takeover(used, self._ago(3, 9), host_index=3, email_change=False)
        self._credential_stuffing(self._ago(10, 20))
        self._brute_force(used, self._ago(1.5, 22), bot=True)
        self._impossible_travel(used, self._ago(26, 46))
        self._password_spraying(self._ago(38, 56))
        self._brute_force(used, self._ago(50, 70), bot=False)
        self._account_takeover(used, self._ago(62, 80), host_index=None, email_change=True)
        self._impossible_travel(used, self._ago(74, 94))
        # Attackers who know the usual rules, drawn from a generator of their own so that
        # every record above stays as it was for a seed (the documented figures).
        main, self.rng = self.rng, random.Random(f"{self.spec.seed}:patterns")  # noqa: S311
        try:
            self._sim_swap(used, self._ago(6, 30))
            self._patient_intruder(used, self._ago(2, 20))
            self._distributed_stuffing(used, self._ago(30, 60))
        finally:
            self.rng = main

    def _sim_swap(self, used: set[str], at: datetime) -> None:
        """The victim's phone number moved to the attacker's SIM: a password reset by SMS,
        a login from a phone on a carrier network in the victim's own country, 2FA
        switched off, then most of the balance to a new address."""
        rng = self.rng
        victim = self._victim(used, active=True, needs_totp=True, min_usd=2000.0)
        asset_code = victim.largest_asset()
        assert asset_code is not None
        asset = ASSET_BY_CODE[asset_code]
        network = rng.choice(victim.country.isps)
        city = rng.choice(victim.country.cities)
        ip = network.address(rng)
        device = make_device(rng, "mobile", 0.5)
        balance = victim.balances[asset_code]
        amount = quantize(float(balance) * rng.uniform(0.85, 0.92), asset.places)
        scenario = self._scenario(
            "sim_swap", victim.ext_id, ip, at,
            f"{victim.ext_id}'s phone number taken over: password reset by SMS, a login "
            f"from a new phone at {ip} (AS{network.asn} {network.org}, "
            f"{victim.country.code}, the client's own country), 2FA disabled, then "
            f"{amount_text(amount, asset.places)} {asset_code} to an address never used")
        t = at
        sev = self._security_event(victim.ext_id, t, "password_reset", ip=ip,
                                   device_id=device.device_id, details={"via": "sms"})
        scenario.events.append(("security_event", sev))
        t += timedelta(seconds=rng.randint(60, 240))
        login = self._login(victim.ext_id, t, success=True, ip=ip, network=network,
                            country=victim.country.code, city=city, device=device,
                            rtt=rtt_ms(rng, city, True))
        login_id = self._attack_login(scenario, login)
        t += timedelta(seconds=rng.randint(60, 300))
        sev = self._security_event(victim.ext_id, t, "2fa_disabled", ip=ip,
                                   device_id=device.device_id, details={"method": "totp"})
        scenario.events.append(("security_event", sev))
        t += timedelta(seconds=rng.randint(300, 1500))
        wid = self._withdrawal(victim.ext_id, t, asset, amount, balance,
                               make_address(rng, asset_code), None, ip, device.device_id,
                               login_id)
        scenario.events.append(("withdrawal", wid))

    def _patient_intruder(self, used: set[str], at: datetime) -> None:
        """An intruder who knows that a new address is held: logs in with stolen
        credentials from a residential network of the victim's country, saves their
        address in the address book, and comes back more than a day later to withdraw
        part of the balance to it."""
        rng = self.rng
        victim = self._victim(used, active=True, min_usd=1500.0)
        asset_code = victim.largest_asset()
        assert asset_code is not None
        asset = ASSET_BY_CODE[asset_code]
        network = rng.choice(victim.country.isps)
        city = rng.choice(victim.country.cities)
        ip = network.address(rng)
        device = make_device(rng, "desktop", 0.0)
        balance = victim.balances[asset_code]
        amount = quantize(float(balance) * rng.uniform(0.5, 0.7), asset.places)
        address = make_address(rng, asset_code)
        first_at = at - timedelta(seconds=rng.randint(26 * 3600, 40 * 3600))
        scenario = self._scenario(
            "patient_intruder", victim.ext_id, ip, first_at,
            f"an intruder in {victim.ext_id} from {ip} (AS{network.asn} {network.org}, "
            f"{victim.country.code}) saved an address to the address book, then came back "
            f"{(at - first_at).total_seconds() / 3600:.0f} h later to withdraw "
            f"{amount_text(amount, asset.places)} {asset_code} to it")
        t = first_at
        first = self._login(victim.ext_id, t, success=True, ip=ip, network=network,
                            country=victim.country.code, city=city, device=device,
                            rtt=rtt_ms(rng, city, False))
        self._attack_login(scenario, first)
        t += timedelta(seconds=rng.randint(120, 600))
        sev = self._security_event(victim.ext_id, t, "address_added", ip=ip,
                                   device_id=device.device_id, address=address)
        scenario.events.append(("security_event", sev))
        t = at - timedelta(seconds=rng.randint(120, 600))
        again = self._login(victim.ext_id, t, success=True, ip=ip, network=network,
                            country=victim.country.code, city=city, device=device,
                            rtt=rtt_ms(rng, city, False))
        login_id = self._attack_login(scenario, again)
        wid = self._withdrawal(victim.ext_id, at, asset, amount, balance, address, None, ip,
                               device.device_id, login_id)
        scenario.events.append(("withdrawal", wid))

    def _distributed_stuffing(self, used: set[str], at: datetime) -> None:
        """Credential stuffing through a residential proxy pool: one or two attempts
        per address, each from its own home network somewhere, over two hours; a few
        stolen passwords work. No source sends enough to look like an attacker."""
        rng = self.rng
        count = min(rng.randint(250, 350), len(self.profiles) - 20)
        targets = rng.sample([p for p in self.profiles
                              if p.created_at < at and p.ext_id not in used], count)
        device = make_device(rng, "desktop", 0.0)
        scenario = self._scenario(
            "distributed_stuffing", None, None, at,
            f"{count} accounts tried once or twice each, every attempt from another home "
            "address (a residential proxy pool across many countries and networks), over "
            "two hours; 2 % of the stolen passwords worked")
        for i, target in enumerate(targets):
            t = at + timedelta(seconds=7200 * i // count + rng.randint(0, 30))
            for attempt in range(rng.choice((1, 1, 2))):
                country = rng.choice(COUNTRIES)
                network = rng.choice(country.isps)
                city = rng.choice(country.cities)
                success = attempt == 0 and rng.random() < 0.02
                item = self._login(target.ext_id, t + timedelta(seconds=attempt * 40),
                                   success=success, ip=network.address(rng), network=network,
                                   country=country.code, city=city, device=device,
                                   rtt=rtt_ms(rng, city, False),
                                   failure_reason=None if success else "bad_password")
                self._attack_login(scenario, item)
                if success:
                    break

    def _hosting_login(self, scenario: Scenario, account: str, at: datetime, host: Hosting,
                       ip: str, device: Device, *, success: bool = False,
                       reason: str = "bad_password") -> str:
        item = self._login(account, at, success=success, ip=ip, network=host.network,
                           country=host.country, city=host.city, device=device,
                           rtt=rtt_ms(self.rng, host.city, False),
                           failure_reason=None if success else reason)
        return self._attack_login(scenario, item)

    def _brute_force(self, used: set[str], at: datetime, *, bot: bool) -> None:
        rng = self.rng
        victim = self._victim(used, active=False)
        host = rng.choice(HOSTING)
        ip = host.network.address(rng)
        attempts = rng.randint(30, 60)
        device = BOT_DEVICE if bot else Device(
            f"{rng.getrandbits(128):032x}", HEADLESS_UA, "HeadlessChrome 124", "Linux", "desktop")
        t = at
        scenario = self._scenario(
            "brute_force", victim.ext_id, ip, at,
            f"{attempts} failed logins on {victim.ext_id} within minutes from {ip} "
            f"(AS{host.network.asn} {host.network.org}, {host.country}); "
            f"client {device.browser}",
        )
        for _ in range(attempts):
            self._hosting_login(scenario, victim.ext_id, t, host, ip, device)
            t += timedelta(seconds=rng.randint(3, 18))
        minutes = max(1, round((t - at).total_seconds() / 60))
        scenario.description = scenario.description.replace("within minutes",
                                                            f"in {minutes} minutes")

    def _credential_stuffing(self, at: datetime) -> None:
        rng = self.rng
        host = HOSTING[0] if rng.random() < 0.5 else HOSTING[3]
        ip = host.network.address(rng)
        count = min(rng.randint(120, 170), len(self.profiles) - 20)
        targets = rng.sample([p for p in self.profiles if p.created_at < at], count)
        winners = set(rng.sample(range(count), 3))
        duration = rng.randint(20 * 60, 40 * 60)
        times = sorted(at + timedelta(seconds=rng.randrange(duration)) for _ in targets)
        agents = [make_device(rng, "desktop", 0.0) for _ in range(4)]
        scenario = self._scenario(
            "credential_stuffing", None, ip, times[0],
            f"{ip} (AS{host.network.asn} {host.network.org}, {host.country}) tried "
            f"{count} different accounts in {duration // 60} minutes with leaked "
            f"passwords; {len(winners)} logins succeeded",
        )
        for i, (target, t) in enumerate(zip(targets, times, strict=True)):
            # Stuffing tools rotate user agents and fingerprints on every request.
            base = agents[i % len(agents)]
            device = Device(f"{rng.getrandbits(128):032x}", base.user_agent, base.browser,
                            base.os, base.device_type)
            self._hosting_login(scenario, target.ext_id, t, host, ip, device,
                                success=i in winners)

    def _password_spraying(self, at: datetime) -> None:
        rng = self.rng
        host = HOSTING[2] if rng.random() < 0.5 else HOSTING[6]
        ip = host.network.address(rng)
        count = min(rng.randint(150, 220), len(self.profiles) - 20)
        targets = rng.sample([p for p in self.profiles if p.created_at < at], count)
        hours = rng.randint(5, 8)
        device = make_device(rng, "desktop", 0.0)
        scenario = self._scenario(
            "password_spraying", None, ip, at,
            f"{ip} (AS{host.network.asn} {host.network.org}, {host.country}) tried one or "
            f"two common passwords on each of {count} accounts, slowly, over {hours} hours",
        )
        span = hours * 3600
        for i, target in enumerate(targets):
            t = at + timedelta(seconds=span * i // count + rng.randint(0, 40))
            self._hosting_login(scenario, target.ext_id, t, host, ip, device)
            if rng.random() < 0.3:  # the second password of the list, one round later
                second = t + timedelta(seconds=span // 2 + rng.randint(0, 600))
                if second < self.anchor:
                    self._hosting_login(scenario, target.ext_id, second, host, ip, device)

    def _impossible_travel(self, used: set[str], at: datetime) -> None:
        rng = self.rng
        victim = self._victim(used, active=True)
        home = victim.homes[0]
        device = victim.devices[0]
        far = rng.choice([c for c in COUNTRIES if c.continent != victim.country.continent])
        city = rng.choice(far.cities)
        network = rng.choice(far.isps)
        ip = network.address(rng)
        gap = rng.randint(12 * 60, 50 * 60)
        km = great_circle_km(home.city.lat, home.city.lon, city.lat, city.lon)
        scenario = self._scenario(
            "impossible_travel", victim.ext_id, ip, at,
            f"{victim.ext_id} logged in from {home.city.name} ({victim.country.code}), then "
            f"{gap // 60} minutes later from {city.name} ({far.code}, AS{network.asn} "
            f"{network.org}), {km:,.0f} km away ({km / (gap / 3600):,.0f} km/h)",
        )
        first = self._login(victim.ext_id, at, success=True, ip=home.ips[0], network=home.isp,
                            country=victim.country.code, city=home.city, device=device,
                            rtt=rtt_ms(rng, home.city, device.mobile))
        self._attack_login(scenario, first)
        intruder = make_device(rng, "desktop", 0.0)
        second_at = at + timedelta(seconds=gap)
        second = self._login(victim.ext_id, second_at, success=True, ip=ip, network=network,
                             country=far.code, city=city, device=intruder,
                             rtt=rtt_ms(rng, city, False))
        self._attack_login(scenario, second)
        sev = self._security_event(victim.ext_id, second_at, "new_device", ip=ip,
                                   device_id=intruder.device_id,
                                   details={"device_type": "desktop",
                                            "browser": intruder.browser, "os": intruder.os})
        scenario.events.append(("security_event", sev))

    def _account_takeover(self, used: set[str], at: datetime, *, host_index: int | None,
                          email_change: bool) -> None:
        rng = self.rng
        victim = self._victim(used, active=True, needs_totp=True, min_usd=3000.0)
        asset_code = victim.largest_asset()
        assert asset_code is not None
        asset = ASSET_BY_CODE[asset_code]
        if host_index is not None:
            host = HOSTING[host_index]
            network, country, city = host.network, host.country, host.city
        else:
            abroad = rng.choice([c for c in COUNTRIES if c.code != victim.country.code
                                 and c.continent != victim.country.continent])
            network, country, city = rng.choice(abroad.isps), abroad.code, abroad.cities[0]
        ip = network.address(rng)
        device = make_device(rng, "desktop", 0.0)
        balance = victim.balances[asset_code]
        amount = quantize(float(balance) * rng.uniform(0.94, 0.96), asset.places)
        address = make_address(rng, asset_code)
        scenario = self._scenario(
            "account_takeover", victim.ext_id, ip, at,
            f"{victim.ext_id} ({victim.country.code}) logged in from a new device at {ip} "
            f"(AS{network.asn} {network.org}, {country}), changed 2FA"
            f"{' and the email address' if email_change else ''}, then asked to withdraw "
            f"{amount_text(amount, asset.places)} {asset_code} (~95% of the balance) to an "
            f"address never used before",
        )
        t = at
        if email_change:  # a phished TOTP code typed a little late
            fail = self._login(victim.ext_id, t, success=False, ip=ip, network=network,
                               country=country, city=city, device=device,
                               rtt=rtt_ms(rng, city, False), failure_reason="bad_totp")
            self._attack_login(scenario, fail)
            t += timedelta(seconds=rng.randint(20, 50))
        login = self._login(victim.ext_id, t, success=True, ip=ip, network=network,
                            country=country, city=city, device=device,
                            rtt=rtt_ms(rng, city, False))
        login_id = self._attack_login(scenario, login)
        sev = self._security_event(victim.ext_id, t, "new_device", ip=ip,
                                   device_id=device.device_id,
                                   details={"device_type": "desktop", "browser": device.browser,
                                            "os": device.os})
        scenario.events.append(("security_event", sev))
        t += timedelta(seconds=rng.randint(180, 480))
        sev = self._security_event(victim.ext_id, t, "2fa_change", ip=ip,
                                   device_id=device.device_id,
                                   details={"method": "totp", "reason": "user_settings"})
        scenario.events.append(("security_event", sev))
        if email_change:
            t += timedelta(seconds=rng.randint(120, 360))
            old_domain = victim.email.rsplit("@", 1)[1]
            sev = self._security_event(victim.ext_id, t, "email_change", ip=ip,
                                       device_id=device.device_id,
                                       details={"old_domain": old_domain,
                                                "new_domain": "proton.me"})
            scenario.events.append(("security_event", sev))
        t += timedelta(seconds=rng.randint(300, 900))
        wid = self._withdrawal(victim.ext_id, t, asset, amount, balance, address, None, ip,
                               device.device_id, login_id)
        scenario.events.append(("withdrawal", wid))

