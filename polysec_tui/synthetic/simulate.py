"""`polysec simulate`: live platform activity, streamed through the ingest path.

The population and its habits come from the demo generator (synthetic/generator.py): the same
countries, cities, ISPs, devices, payout addresses and amounts. Instead of a finished
history, the simulator emits activity as it happens: each record is stamped with the
clock when it is written (earlier steps of the same story, such as the failed password
before a success, a few seconds or minutes before). Every record goes through `Ingestor`
exactly like `polysec ingest`, one small transaction per tick, so a console reading the
same database sees the data arrive.

Now and then an attack is woven in (rotating brute force, credential stuffing, account
takeover with impossible travel, a new device and a large withdrawal to a new address)
and recorded as ground truth in ``demo_scenarios`` while its records are written.

Determinism: the records (ids, accounts, IPs, devices, amounts, order) depend only on the
seed and the number of records emitted; attacks are scheduled by record count
(``attack_every * rate`` records), so only the time stamps differ between two runs.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from polysec_tui.db.models import DemoScenario, DemoScenarioEvent
from polysec_tui.errors import InputError
from polysec_tui.services.feed.ingest import Ingestor
from polysec_tui.services.logins.rules import great_circle_km
from polysec_tui.services.runtime import Runtime
from polysec_tui.synthetic.demo import read_info
from polysec_tui.synthetic.generator import (
    DemoGenerator,
    DemoSpec,
    LastLogin,
    Profile,
    Record,
    amount_text,
    human_amount,
    iso_z,
    quantize,
    rtt_ms,
)
from polysec_tui.synthetic.reference import (
    ASSET_BY_CODE,
    BOT_DEVICE,
    COUNTRIES,
    HEADLESS_UA,
    HOSTING,
    City,
    Device,
    Network,
    make_address,
    make_device,
)

# Dependency order inside one tick: accounts before their events, logins before the
# withdrawals that name them.
KIND_ORDER = ("accounts", "logins", "security-events", "sessions", "withdrawals")
ATTACK_KINDS = ("brute_force", "credential_stuffing", "account_takeover")
EVENT_TYPE = {"logins": "login", "security-events": "security_event",
              "withdrawals": "withdrawal", "sessions": "session", "accounts": "account"}
MAX_TICK_HZ = 20  # at most this many transactions a second
SCENARIO_ID_LIMIT = 9000  # 9001, 9002 belong to the RBA dataset's labels


@dataclass(frozen=True)
class SimSpec:
    rate: float = 5.0
    duration: float | None = None
    seed: int = 0
    attack_every: float | None = 60.0
    population: int = 300
    max_events: int | None = None
    report_every: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and 0 < self.rate <= 10_000):
            raise InputError(f"--rate must be above 0 and at most 10000 events a second, "
                             f"not {self.rate:g}")
        if self.duration is not None and not (math.isfinite(self.duration)
                                              and self.duration > 0):
            raise InputError(f"--duration must be a positive number of seconds, "
                             f"not {self.duration:g}")
        if self.attack_every is not None and not (math.isfinite(self.attack_every)
                                                  and self.attack_every > 0):
            raise InputError("--attack-every must be a positive number of seconds "
                             "(or 0 for no attacks)")
        if not 50 <= self.population <= 100_000:
            raise InputError("--population must be between 50 and 100000")
        if self.max_events is not None and self.max_events < 1:
            raise InputError("--events must be at least 1")
        if not (math.isfinite(self.report_every) and self.report_every > 0):
            raise InputError("--report-every must be a positive number of seconds")

    @property
    def attack_period_events(self) -> int | None:
        if self.attack_every is None:
            return None
        return max(1, round(self.attack_every * self.rate))


@dataclass
class Pending:
    kind: str
    record: Record
    offset: float = 0.0  # seconds before the emission time this event happened
    scenario: SimScenario | None = None


@dataclass
class SimScenario:
    kind: str
    account: str | None
    source_ip: str | None
    description: str
    db_id: int | None = None
    started_at: datetime | None = None


class LiveGenerator(DemoGenerator):
    """A demo population, emitting activity one story at a time.

    With ``demo`` (the DemoSpec of the database's own `polysec demo`), the population is
    rebuilt from the demo's seed: the same clients, homes, devices and payout addresses
    as the accounts already stored, so the live traffic continues their habits and only
    the attacks look unusual. Otherwise a fresh population of ``population`` clients
    (ids ``S...``) is drawn from ``seed``. Either way the stream itself is drawn from
    ``seed``."""

    def __init__(self, seed: int, population: int, anchor: datetime,
                 demo: DemoSpec | None = None) -> None:
        super().__init__(demo or DemoSpec(accounts=population, days=5, seed=seed,
                                          anchor=anchor.replace(microsecond=0)))
        # The planned history and attacks of the demo are not streamed; start clean.
        self._security.clear()
        self._withdrawals.clear()
        self._scenario_logins.clear()
        self.scenarios.clear()
        self.rng = random.Random(f"polysec-simulate-{seed}")  # noqa: S311 - demo data
        self.anchor = anchor.replace(microsecond=0)
        self._announced: set[str] = set()
        if demo is None:
            for profile in self.profiles:  # never the ids of a `polysec demo` population
                profile.ext_id = "S" + profile.ext_id[1:]
        else:
            self._announced.update(p.ext_id for p in self.profiles)  # stored already
            for profile in self.profiles:  # the demo's history brought them in already
                if profile.new_device is not None:
                    profile.devices.insert(0, profile.new_device[1])
                    profile.known_devices.add(profile.new_device[1].device_id)
                    profile.new_device = None
        self._account_ids = {p.ext_id for p in self.profiles}
        self._cum_weights: list[float] = []  # who is active: daily traders most
        self._used_victims: set[str] = set()
        self.pending: deque[Pending] = deque()
        self.attacks_started = 0

    # ------------------------------------------------------------------ the stream

    def take(self, n: int) -> list[Pending]:
        out: list[Pending] = []
        while len(out) < n:
            if not self.pending:
                self._activity()
            out.append(self.pending.popleft())
        return out

    def queue_attack(self) -> SimScenario:
        kind = ATTACK_KINDS[self.attacks_started % len(ATTACK_KINDS)]
        self.attacks_started += 1
        build = {"brute_force": self._sim_brute_force,
                 "credential_stuffing": self._sim_credential_stuffing,
                 "account_takeover": self._sim_account_takeover}[kind]
        return build()

    def _emit(self, kind: str, record: Record, offset: float = 0.0,
              scenario: SimScenario | None = None) -> None:
        self.pending.append(Pending(kind, record, offset, scenario))

    def _announce(self, p: Profile) -> None:
        """The account record, the first time the stream mentions the client."""
        if p.ext_id not in self._announced:
            self._announced.add(p.ext_id)
            self._emit("accounts", p.record())

    def _record_login(self, p: Profile, *, success: bool, ip: str, network: Network,
                      country: str, city: City, device: Device,
                      reason: str | None = None) -> Record:
        _at, ident, rec = self._login(p.ext_id, self.anchor, success=success, ip=ip,
                                      network=network, country=country, city=city,
                                      device=device, rtt=rtt_ms(self.rng, city, device.mobile),
                                      failure_reason=reason)
        del rec["at"]  # stamped when written
        assert rec["id"] == ident
        return rec

    def _sec_event(self, p: Profile, kind: str, ip: str, device_id: str | None,
                   details: dict[str, Any] | None = None) -> Record:
        rec: Record = {"id": self._new_id("sev"), "account": p.ext_id, "kind": kind, "ip": ip}
        if device_id:
            rec["device_id"] = device_id
        if details:
            rec["details"] = details
        return rec

    def _session_record(self, p: Profile, ip: str, device_id: str) -> Record:
        return {"id": self._new_id("ses"), "account": p.ext_id, "ip": ip,
                "device_id": device_id}

    # ------------------------------------------------------------------ normal traffic

    def _activity(self) -> None:
        rng = self.rng
        if rng.random() < 0.015:
            self._sign_up()
            return
        while len(self._cum_weights) < len(self.profiles):  # sign-ups joined
            last = self._cum_weights[-1] if self._cum_weights else 0.0
            self._cum_weights.append(last + self.profiles[len(self._cum_weights)].rate + 0.02)
        p = rng.choices(self.profiles, cum_weights=self._cum_weights)[0]
        self._announce(p)
        self._client_session(p)

    def _sign_up(self) -> None:
        rng = self.rng
        while True:
            ext = f"S{rng.randrange(10_000_000, 100_000_000)}"
            if ext not in self._account_ids:
                break
        self._account_ids.add(ext)
        country = rng.choices(COUNTRIES, weights=[c.weight for c in COUNTRIES])[0]
        p = self._profile(ext, country, self.anchor)
        p.balances, p.payouts = {}, []  # nothing deposited yet
        p.totp_secret = p.totp_enrolled_at = None
        self.profiles.append(p)
        self._announced.add(ext)
        record = p.record()
        del record["created_at"]  # signs up now: stamped when written
        self._emit("accounts", record)
        self._client_session(p)

    def _client_session(self, p: Profile) -> None:
        rng = self.rng
        devices = list(p.devices)
        new_device = None
        if p.new_device and rng.random() < 0.15:
            new_device = p.new_device[1]
            p.devices.insert(0, new_device)
            p.new_device = None
            devices.insert(0, new_device)
        home = rng.choices(p.homes, weights=[h.weight for h in p.homes])[0]
        device = new_device or rng.choices(
            devices, weights=[1.0 / (i + 1) ** 1.5 for i in range(len(devices))])[0]
        if device.mobile and rng.random() < 0.5:
            network = p.country.mobile
            ip = network.address(rng, allow_v6=rng.random() < 0.5)
        else:
            network, ip = home.isp, rng.choice(home.ips)
        where: dict[str, Any] = {"ip": ip, "network": network, "country": p.country.code,
                                 "city": home.city, "device": device}
        roll = rng.random()
        if roll < 0.04:  # a typo first
            self._emit("logins", self._record_login(p, success=False, reason="bad_password",
                                                    **where), offset=rng.randint(8, 40))
        elif roll < 0.05 and p.totp_secret:
            self._emit("logins", self._record_login(p, success=False, reason="bad_totp",
                                                    **where), offset=rng.randint(15, 60))
        login = self._record_login(p, success=True, **where)
        self._emit("logins", login)
        self._emit("sessions", self._session_record(p, ip, device.device_id))
        if device.device_id not in p.known_devices:
            p.known_devices.add(device.device_id)
            self._emit("security-events", self._sec_event(
                p, "new_device", ip, device.device_id,
                {"device_type": device.device_type, "browser": device.browser,
                 "os": device.os}))
        elif rng.random() < 0.004:
            self._emit("security-events", self._sec_event(p, "password_change", ip,
                                                          device.device_id))
        p.last_login = LastLogin(login["id"], ip, device.device_id, self.anchor)
        if p.payouts and rng.random() < min(0.5, p.p_withdraw * 2):
            self._routine(p, ip, device, login["id"])

    def _routine(self, p: Profile, ip: str, device: Device, login_id: str) -> None:
        rng = self.rng
        payout = rng.choices(p.payouts, weights=[x.weight for x in p.payouts])[0]
        asset = payout.asset
        address, label = rng.choices(
            payout.addresses, weights=[1.0 / (i + 1) for i in range(len(payout.addresses))])[0]
        balance = float(p.balances.get(asset.code, 0))
        available = quantize(balance * rng.uniform(0.9, 1.5), asset.places)
        usd = rng.lognormvariate(math.log(payout.median_usd), payout.sigma)
        amount = human_amount(rng, min(usd / asset.usd, float(available) * 0.85), asset.places)
        if amount <= 0 or available <= 0:
            return
        rec: Record = {
            "id": self._new_id("wdr"), "account": p.ext_id, "asset": asset.code,
            "amount": amount_text(amount, asset.places),
            "available_balance": amount_text(available, asset.places),
            "address": address, "ip": ip, "login_id": login_id,
            "device_id": device.device_id,
        }
        if label:
            rec["address_label"] = label
        self._emit("withdrawals", rec)

    # ------------------------------------------------------------------ attacks

    def _pick_victim(self, *, min_usd: float = 0.0, needs_totp: bool = False) -> Profile:
        candidates = [p for p in self.profiles
                      if p.ext_id not in self._used_victims and p.balances
                      and (p.totp_secret is not None or not needs_totp)
                      and p.usd_value(p.largest_asset() or "") >= min_usd]
        if not candidates:
            candidates = [p for p in self.profiles if p.balances] or self.profiles
        victim = self.rng.choice(candidates)
        self._used_victims.add(victim.ext_id)
        return victim

    def _sim_brute_force(self) -> SimScenario:
        rng = self.rng
        victim = self._pick_victim()
        host = rng.choice(HOSTING)
        ip = host.network.address(rng)
        attempts = rng.randint(20, 40)
        bot = rng.random() < 0.5
        device = BOT_DEVICE if bot else Device(f"{rng.getrandbits(128):032x}", HEADLESS_UA,
                                               "HeadlessChrome 124", "Linux", "desktop")
        scenario = SimScenario(
            "brute_force", victim.ext_id, ip,
            f"simulate: {attempts} failed logins on {victim.ext_id} from {ip} "
            f"(AS{host.network.asn} {host.network.org}, {host.country}); "
            f"client {device.browser}")
        self._announce(victim)
        for _ in range(attempts):
            self._emit("logins", self._record_login(
                victim, success=False, reason="bad_password", ip=ip, network=host.network,
                country=host.country, city=host.city, device=device), scenario=scenario)
        return scenario

    def _sim_credential_stuffing(self) -> SimScenario:
        rng = self.rng
        host = HOSTING[0] if rng.random() < 0.5 else HOSTING[3]
        ip = host.network.address(rng)
        count = min(rng.randint(30, 60), len(self.profiles))
        targets = rng.sample(self.profiles, count)
        winners = set(rng.sample(range(count), 2))
        agents = [make_device(rng, "desktop", 0.0) for _ in range(4)]
        scenario = SimScenario(
            "credential_stuffing", None, ip,
            f"simulate: {ip} (AS{host.network.asn} {host.network.org}, {host.country}) "
            f"tried {count} different accounts with leaked passwords; {len(winners)} "
            "logins succeeded")
        for i, target in enumerate(targets):
            self._announce(target)
            base = agents[i % len(agents)]
            device = Device(f"{rng.getrandbits(128):032x}", base.user_agent, base.browser,
                            base.os, base.device_type)
            self._emit("logins", self._record_login(
                target, success=i in winners, reason=None if i in winners else "bad_password",
                ip=ip, network=host.network, country=host.country, city=host.city,
                device=device), scenario=scenario)
        return scenario

    def _sim_account_takeover(self) -> SimScenario:
        """Impossible travel, a new device, a 2FA change and most of the balance to an
        address the client never used."""
        rng = self.rng
        victim = self._pick_victim(min_usd=1000.0, needs_totp=True)
        self._announce(victim)
        home = victim.homes[0]
        known = victim.devices[0]
        far = rng.choice([c for c in COUNTRIES if c.continent != victim.country.continent])
        city = rng.choice(far.cities)
        network = rng.choice(far.isps)
        ip = network.address(rng)
        gap_min = rng.randint(10, 40)
        km = great_circle_km(home.city.lat, home.city.lon, city.lat, city.lon)
        asset_code = victim.largest_asset() or "USDT"
        asset = ASSET_BY_CODE[asset_code]
        balance = victim.balances.get(asset_code, Decimal("1000"))
        amount = quantize(float(balance) * rng.uniform(0.93, 0.97), asset.places)
        address = make_address(rng, asset_code)
        scenario = SimScenario(
            "account_takeover", victim.ext_id, ip,
            f"simulate: {victim.ext_id} logged in from {home.city.name} "
            f"({victim.country.code}), then {gap_min} minutes later from {city.name} "
            f"({far.code}, AS{network.asn} {network.org}), {km:,.0f} km away, on a new "
            f"device; changed 2FA and asked to withdraw {amount_text(amount, asset.places)} "
            f"{asset_code} (~95% of the balance) to an address never used before")
        home_ip = home.ips[0]
        self._emit("logins", self._record_login(
            victim, success=True, ip=home_ip, network=home.isp, country=victim.country.code,
            city=home.city, device=known), offset=gap_min * 60, scenario=scenario)
        intruder = make_device(rng, "desktop", 0.0)
        login = self._record_login(victim, success=True, ip=ip, network=network,
                                   country=far.code, city=city, device=intruder)
        self._emit("logins", login, scenario=scenario)
        self._emit("sessions", self._session_record(victim, ip, intruder.device_id),
                   scenario=scenario)
        self._emit("security-events", self._sec_event(
            victim, "new_device", ip, intruder.device_id,
            {"device_type": "desktop", "browser": intruder.browser, "os": intruder.os}),
            scenario=scenario)
        self._emit("security-events", self._sec_event(
            victim, "2fa_change", ip, intruder.device_id,
            {"method": "totp", "reason": "user_settings"}), scenario=scenario)
        self._emit("withdrawals", {
            "id": self._new_id("wdr"), "account": victim.ext_id, "asset": asset_code,
            "amount": amount_text(amount, asset.places),
            "available_balance": amount_text(balance, asset.places),
            "address": address, "ip": ip, "device_id": intruder.device_id,
            "login_id": login["id"],
        }, scenario=scenario)
        return scenario


# ============================================================================ the runner


@dataclass
class SimReport:
    seed: int
    rate: float
    events: int = 0
    ticks: int = 0
    seconds: float = 0.0
    inserted: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    failed_logins: int = 0
    attacks: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "duration"

    def line(self) -> str:
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        kinds = ", ".join(f"{self.inserted[k]} {k}" for k in KIND_ORDER if self.inserted[k])
        attacks = Counter(a["kind"] for a in self.attacks)
        tail = (", ".join(f"{k} x{n}" for k, n in attacks.items())) or "none yet"
        dup = f", {self.duplicates} already present" if self.duplicates else ""
        return (f"simulate: {self.seconds:.1f} s, {self.events} events ({rate:.1f}/s): "
                f"{kinds or 'nothing yet'} ({self.failed_logins} failed logins){dup}; "
                f"attacks: {tail}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "rate": self.rate, "seconds": round(self.seconds, 3),
            "events": self.events, "ticks": self.ticks,
            "achieved_rate": round(self.events / self.seconds, 2) if self.seconds else 0.0,
            "inserted": {k: self.inserted[k] for k in KIND_ORDER},
            "duplicates": self.duplicates, "failed_logins": self.failed_logins,
            "attacks": self.attacks, "stopped": self.stopped,
        }


def demo_population(rt: Runtime) -> DemoSpec | None:
    """The DemoSpec `polysec demo` filled this database with, or None (not the demo)."""
    info = read_info(rt)
    if info.get("demo") != "true":
        return None
    try:
        return DemoSpec(accounts=int(info["accounts"]), days=int(info["days"]),
                        seed=int(info["seed"]), anchor=datetime.fromisoformat(info["anchor"]))
    except (KeyError, ValueError, InputError):
        return None


class Simulator:
    def __init__(self, rt: Runtime, spec: SimSpec) -> None:
        self.rt = rt
        self.spec = spec
        self.demo = demo_population(rt)
        self.gen = LiveGenerator(spec.seed, spec.population, rt.clock().astimezone(UTC),
                                 self.demo)
        self.ingestors = {kind: Ingestor(rt, kind, batch_size=1000) for kind in KIND_ORDER}
        self.report = SimReport(spec.seed, spec.rate)
        self._next_attack = spec.attack_period_events

    def _tick(self, n: int) -> None:
        """Emit n records in one transaction."""
        items: list[Pending] = []
        for _ in range(n):
            period = self._next_attack
            if period is not None and self.report.events + len(items) >= period:
                self.gen.queue_attack()
                self._next_attack = period + (self.spec.attack_period_events or 0)
            items.extend(self.gen.take(1))
        now = self.rt.clock().astimezone(UTC).replace(microsecond=0)
        by_kind: dict[str, list[tuple[int, Record]]] = {k: [] for k in KIND_ORDER}
        for item in items:
            rec = item.record
            stamp = now - timedelta(seconds=item.offset)
            if item.kind == "accounts":
                rec.setdefault("created_at", iso_z(stamp))
            else:
                rec["at"] = iso_z(stamp)
                if item.kind == "sessions":
                    rec["last_seen_at"] = iso_z(now)
            if item.kind == "logins" and not rec["success"]:
                self.report.failed_logins += 1
            if item.scenario is not None and item.scenario.started_at is None:
                item.scenario.started_at = stamp
            by_kind[item.kind].append((self.report.events + len(by_kind[item.kind]) + 1, rec))
        with self.rt.transaction() as session:
            before = {k: (i.report.inserted, i.report.duplicates)
                      for k, i in self.ingestors.items()}
            for kind in KIND_ORDER:
                if by_kind[kind]:
                    self.ingestors[kind].run_in(session, by_kind[kind])
            self._ground_truth(session, items)
        for kind, ingestor in self.ingestors.items():
            self.report.inserted[kind] += ingestor.report.inserted - before[kind][0]
            self.report.duplicates += ingestor.report.duplicates - before[kind][1]
        self.report.events += len(items)
        self.report.ticks += 1

    def _ground_truth(self, session: Session, items: list[Pending]) -> None:
        rows: list[DemoScenarioEvent] = []
        for item in items:
            scenario = item.scenario
            if scenario is None:
                continue
            if scenario.db_id is None:
                top = session.scalar(select(func.max(DemoScenario.id)).where(
                    DemoScenario.id < SCENARIO_ID_LIMIT))
                scenario.db_id = int(top or 0) + 1
                assert scenario.started_at is not None
                session.add(DemoScenario(
                    id=scenario.db_id, kind=scenario.kind,
                    account_external_id=scenario.account, source_ip=scenario.source_ip,
                    started_at=scenario.started_at, description=scenario.description))
                session.flush()
                self.report.attacks.append({
                    "id": scenario.db_id, "kind": scenario.kind, "account": scenario.account,
                    "source_ip": scenario.source_ip,
                    "started_at": scenario.started_at.isoformat()})
            rows.append(DemoScenarioEvent(scenario_id=scenario.db_id,
                                          event_type=EVENT_TYPE[item.kind],
                                          external_id=item.record["id"]))
        session.add_all(rows)

    def run(self, *, should_stop: Callable[[], bool] = lambda: False,
            progress: Callable[[str], None] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> SimReport:
        spec = self.spec
        began = time.monotonic()
        last_report = began
        min_batch = max(1, math.ceil(spec.rate / MAX_TICK_HZ))
        catch_up = max(min_batch, math.ceil(spec.rate / 2))  # at most half a second a tick
        while True:
            if should_stop():
                self.report.stopped = "interrupted"
                break
            elapsed = time.monotonic() - began
            if spec.duration is not None and elapsed >= spec.duration:
                self.report.stopped = "duration"
                break
            if spec.max_events is not None and self.report.events >= spec.max_events:
                self.report.stopped = "events"
                break
            due = math.floor(spec.rate * elapsed) + 1 - self.report.events
            if spec.max_events is not None:
                due = min(due, spec.max_events - self.report.events)
            if due >= min_batch or (due > 0 and spec.max_events is not None
                                    and self.report.events + due >= spec.max_events):
                self._tick(min(due, catch_up))
            else:
                wait = (self.report.events + min_batch) / spec.rate - elapsed
                if spec.duration is not None:
                    wait = min(wait, spec.duration - elapsed)
                sleep(max(0.001, min(0.1, wait)))
            now = time.monotonic()
            self.report.seconds = now - began
            if progress and now - last_report >= spec.report_every:
                last_report = now
                progress(self.report.line())
        self.report.seconds = time.monotonic() - began
        return self.report


def simulate(rt: Runtime, spec: SimSpec, *, should_stop: Callable[[], bool] = lambda: False,
             progress: Callable[[str], None] | None = None) -> SimReport:
    return Simulator(rt, spec).run(should_stop=should_stop, progress=progress)
