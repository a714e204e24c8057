"""The synthetic exchange's world: countries (names, streets, cities, ISPs, carriers),
hosting providers, assets, devices and address formats, for the demo and the simulator.

The data itself is polysec_tui/data/demo_world.json: small and hand-made, real city
coordinates and the providers' real AS numbers with address blocks that approximate
their announced space. Good enough to look like an exchange's traffic, not to geolocate
anything.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any

WORLD_FILE = "demo_world.json"


@dataclass(frozen=True)
class City:
    name: str
    region: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Network:
    asn: int
    org: str
    v4: tuple[tuple[int, int], ...]  # (first address, size) per block
    v6: tuple[int, int] | None = None  # (prefix as int, host bits)

    def address(self, rng: random.Random, *, allow_v6: bool = False) -> str:
        if allow_v6 and self.v6 is not None:
            base, bits = self.v6
            return str(ipaddress.IPv6Address(base | rng.getrandbits(min(bits, 64))))
        first, size = rng.choice(self.v4)
        value = first + rng.randrange(size)
        if value & 0xFF in (0, 255):  # no network or broadcast-looking host
            value ^= 1
        return str(ipaddress.IPv4Address(value))


@dataclass(frozen=True)
class Country:
    code: str
    weight: float
    utc_offset: float
    continent: str
    phone: str  # '#' any digit, 'N' 2-9, 'L' an upper-case letter
    postcode: str
    address: str  # {n} {street} {zip} {city} {region}
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    streets: tuple[str, ...]
    cities: tuple[City, ...]
    isps: tuple[Network, ...]
    mobile: Network
    domains: tuple[str, ...]
    ios_share: float = 0.3
    family_first: bool = False


@dataclass(frozen=True)
class Hosting:
    """A data-centre or VPN network: where attacks come from."""

    network: Network
    country: str
    city: City


@dataclass(frozen=True)
class Asset:
    code: str
    usd: float  # a static reference price, to size portfolios and withdrawals
    places: int  # decimal places the exchange shows and accepts
    popularity: float


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_RIPPLE58 = "rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_address(rng: random.Random, asset: str) -> str:
    """A destination address in the format of the asset's usual network."""
    if asset == "BTC":
        if rng.random() < 0.7:
            return "bc1q" + _chars(rng, _BECH32, 38)
        return rng.choice("13") + _chars(rng, _BASE58, 33)
    if asset in ("ETH", "USDC") or (asset == "USDT" and rng.random() < 0.45):
        return "0x" + f"{rng.getrandbits(160):040x}"
    if asset == "USDT":  # TRC-20
        return "T" + _chars(rng, _BASE58, 33)
    if asset == "SOL":
        return _chars(rng, _BASE58, rng.choice((43, 44)))
    if asset == "XRP":
        return "r" + _chars(rng, _RIPPLE58, rng.randint(24, 33))
    if asset == "LTC":
        if rng.random() < 0.6:
            return "ltc1q" + _chars(rng, _BECH32, 38)
        return "L" + _chars(rng, _BASE58, 33)
    if asset == "DOGE":
        return "D" + _chars(rng, _BASE58, 33)
    if asset == "ADA":
        return "addr1q" + _chars(rng, _BECH32, 97)
    raise ValueError(f"no address format for {asset}")


@dataclass(frozen=True)
class Device:
    device_id: str
    user_agent: str
    browser: str
    os: str
    device_type: str

    @property
    def mobile(self) -> bool:
        return self.device_type in ("mobile", "tablet")


def make_device(rng: random.Random, kind: str, ios_share: float) -> Device:
    """A device whose user agent, browser, OS and type agree with each other."""
    device_id = f"{rng.getrandbits(128):032x}"
    chrome, firefox, safari = rng.randint(121, 126), rng.randint(122, 127), rng.randint(0, 5)
    if kind == "desktop":
        agents = DESKTOP_AGENTS
        ua, browser, os_name, _w = rng.choices(agents, weights=[a[3] for a in agents])[0]
        fill = {"c": chrome, "f": firefox, "s": safari}
        return Device(device_id, ua.format(**fill), browser.format(**fill), os_name, "desktop")
    if kind == "tablet":
        ua = (f"Mozilla/5.0 (iPad; CPU OS 17_{safari} like Mac OS X) AppleWebKit/605.1.15 "
              f"(KHTML, like Gecko) Version/17.{safari} Mobile/15E148 Safari/604.1")
        return Device(device_id, ua, f"Mobile Safari 17.{safari}", f"iOS 17.{safari}", "tablet")
    app = rng.random() < 0.6  # most clients trade in the app
    app_version = f"5.{rng.randint(8, 14)}.{rng.randint(0, 9)}"
    if rng.random() < ios_share:
        ios = f"17.{safari}"
        if app:
            ua = f"PolyCoin/{app_version} ({rng.choice(IPHONE_MODELS)}; iOS {ios}; Scale/3.00)"
            return Device(device_id, ua, f"PolyCoin App {app_version.rsplit('.', 1)[0]}",
                          f"iOS {ios}", "mobile")
        ua = (f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_{safari} like Mac OS X) "
              f"AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{safari} Mobile/15E148 "
              f"Safari/604.1")
        return Device(device_id, ua, f"Mobile Safari 17.{safari}", f"iOS {ios}", "mobile")
    android = rng.choice((12, 13, 13, 14, 14, 14))
    model = rng.choice(ANDROID_MODELS)
    if app:
        ua = f"PolyCoin/{app_version} (Android {android}; {model})"
        return Device(device_id, ua, f"PolyCoin App {app_version.rsplit('.', 1)[0]}",
                      f"Android {android}", "mobile")
    ua = (f"Mozilla/5.0 (Linux; Android {android}; {model}) AppleWebKit/537.36 (KHTML, like "
          f"Gecko) Chrome/{chrome}.0.0.0 Mobile Safari/537.36")
    return Device(device_id, ua, f"Chrome Mobile {chrome}", f"Android {android}", "mobile")


BOT_DEVICE = Device("", "python-requests/2.31.0", "Python Requests 2.31", "Other", "bot")
HEADLESS_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "HeadlessChrome/124.0.0.0 Safari/537.36")


# ============================================================================ loading


def _network(doc: dict[str, Any]) -> Network:
    v4 = tuple((int(n.network_address), n.num_addresses)
               for n in map(ipaddress.IPv4Network, doc["v4"]))
    v6 = None
    if doc["v6"]:
        net6 = ipaddress.IPv6Network(doc["v6"])
        v6 = (int(net6.network_address), 128 - net6.prefixlen)
    return Network(int(doc["asn"]), str(doc["org"]), v4, v6)


def _city(row: list[Any]) -> City:
    name, region, lat, lon = row
    return City(name, region, lat, lon)


def _country(doc: dict[str, Any]) -> Country:
    return Country(
        doc["code"], doc["weight"], doc["utc_offset"], doc["continent"], doc["phone"],
        doc["postcode"], doc["address"], tuple(doc["first_names"]), tuple(doc["last_names"]),
        tuple(doc["streets"]), tuple(map(_city, doc["cities"])),
        tuple(map(_network, doc["isps"])), _network(doc["mobile"]), tuple(doc["domains"]),
        doc["ios_share"], doc["family_first"],
    )


_WORLD = json.loads(resources.files("polysec_tui").joinpath("data", WORLD_FILE)
                    .read_text(encoding="utf-8"))
COUNTRIES: tuple[Country, ...] = tuple(map(_country, _WORLD["countries"]))
COUNTRY_BY_CODE = {c.code: c for c in COUNTRIES}
HOSTING: tuple[Hosting, ...] = tuple(
    Hosting(_network(h["network"]), h["country"], _city(h["city"])) for h in _WORLD["hosting"])
ASSETS: tuple[Asset, ...] = tuple(Asset(*a) for a in _WORLD["assets"])
ASSET_BY_CODE = {a.code: a for a in ASSETS}
ADDRESS_LABELS: tuple[str, ...] = tuple(_WORLD["address_labels"])
# (user agent template, browser template, os template, weight)
DESKTOP_AGENTS: tuple[tuple[str, str, str, int], ...] = tuple(
    (a[0], a[1], a[2], a[3]) for a in _WORLD["desktop_agents"])
ANDROID_MODELS: tuple[str, ...] = tuple(_WORLD["android_models"])
IPHONE_MODELS: tuple[str, ...] = tuple(_WORLD["iphone_models"])
