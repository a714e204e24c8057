"""IP reputation (`polysec iplists`): network lists imported from the files their
publishers distribute, used by the login detectors (``logins.rules``) and screening
(``withdrawals.screening``).

Formats:

- **netset**: one IPv4 or IPv6 address or network (CIDR) per line, ``#`` comments:
  FireHOL's ``.netset``/``.ipset`` files (their ``This File Date`` or ``Source File
  Date`` header dates the version) and any plain list of addresses, such as the Tor
  Project's bulk exit list (``--category tor``).
- **tor**: the Tor Project's ``exit-addresses`` (TorDNSEL): every ``ExitAddress`` line;
  the newest ``LastStatus`` or ``ExitAddress`` time dates it.
- **crowdsec**: CSV with a header, as ``cscli decisions list -o raw`` writes it (the
  address in ``ip``, as ``Ip:1.2.3.4`` or ``Range:1.2.3.0/24``) or as ``cscli decisions
  import`` reads it (``value`` and ``scope``); decisions of other scopes (a user name, a
  country) are skipped; ``reason`` (or ``scenario``) is kept as the entry's note.
- **asn**: CSV with a header ``asn,category[,name]``: what kind of network an
  autonomous system is (hosting, VPN, mobile carrier, residential ISP ...).

Every list has a category. Threat lists (attack, abuse, botnet, scanner, spam, malware)
make ``ip_reputation``; anonymising networks (tor, vpn, proxy, hosting) make
``anonymizing_network`` where the account has not used the network before; the
ordinary kinds (mobile, residential, business, education) describe a network and raise
nothing. Non-global ranges (private, loopback, FireHOL's bogons) are skipped on import:
no client's address is one, and a proxy misconfigured to report its own would otherwise
mark every login.

An import replaces the list's entries in one transaction, audited. Every explanation
names the list and its age at the time of the event it judges.
"""

from __future__ import annotations

import csv
import hashlib
import ipaddress
import re
import socket
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from polysec_tui.db.models import AsnCategory, IpList, IpListRange
from polysec_tui.errors import ConflictError, InputError
from polysec_tui.services.feed import records
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import fmt_duration, printable

FORMATS = ("netset", "tor", "crowdsec", "asn")
THREAT = ("attack", "abuse", "botnet", "scanner", "spam", "malware")
ANONYMIZING = ("tor", "proxy", "vpn", "hosting")
ORDINARY = ("mobile", "residential", "business", "education")
CATEGORIES = THREAT + ANONYMIZING + ORDINARY
DEFAULT_CATEGORY = {"netset": "attack", "tor": "tor", "crowdsec": "attack"}
THREAT_RULE = "ip_reputation"
ANONYMIZING_RULE = "anonymizing_network"
MAX_ENTRIES = 2_000_000
CHUNK = 1000
# Where IPv4 addresses sit among IPv6 ones (::ffff:0:0/96), so one number line holds both.
_V4_BASE = 0xFFFF << 32
_CACHE_SIZE = 200_000  # looked-up IPs remembered between events
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_V4_SPAN = 2 ** 24  # a /8: an entry wider than that is a mistake, not a network
_FIREHOL_DATE = re.compile(r"^#\s*(This File Date|Source File Date)\s*:\s*(.+?)\s*$")
_ASN = re.compile(r"(?i)^(?:AS)?([0-9]{1,10})$")
# Address space no client's address comes from (RFC 6890 and IANA's special-purpose
# registries: private, shared, loopback, link-local, documentation, benchmarking,
# multicast, reserved). Subtracted from every imported range: FireHOL's level1 lists the
# bogons among its attackers, and a reverse proxy that reported its own address would
# otherwise make every login an attack. IPv6's ::/8 holds the IPv4-mapped block, where
# IPv4 lives on this module's number line: no IPv6 entry may reach into it.
_SPECIAL = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/8", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)


def ip_number(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """An address on one number line: IPv4 (and IPv4-mapped IPv6) in ::ffff:0:0/96."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return _V4_BASE | int(address)
    return int(address)


def parse_number(ip: str) -> int | None:
    """``ip_number`` of an address as text, None if it is not one. inet_pton: the look-up
    runs for every login, and ``ipaddress`` parses ten times slower."""
    try:
        return _V4_BASE | int.from_bytes(socket.inet_pton(socket.AF_INET, ip))
    except OSError:
        pass
    try:
        # An IPv4-mapped IPv6 address is already its IPv4 address's number here.
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, ip))
    except OSError:
        return None


def _interval(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    first = ip_number(net.network_address)
    return first, first + net.num_addresses - 1


def _special_intervals() -> list[tuple[int, int]]:
    """_SPECIAL on the number line; ::/8 around the mapped block, where IPv4 lives (its
    own special blocks are listed as IPv4)."""
    out = []
    for text in _SPECIAL:
        first, last = _interval(ipaddress.ip_network(text))
        if first < _V4_BASE and last >= _V4_BASE + 2 ** 32 - 1:
            out += [(first, _V4_BASE - 1), (_V4_BASE + 2 ** 32, last)]
        else:
            out.append((first, last))
    return sorted(out)


_SPECIAL_INTERVALS = _special_intervals()
# An IPv6 entry never reaches IPv4 (::/64 would otherwise list every IPv4 address).
_SPECIAL_FOR_V6 = sorted([*_SPECIAL_INTERVALS, (_V4_BASE, _V4_BASE + 2 ** 32 - 1)])


def _global_parts(first: int, last: int,
                  special: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[first, last] without the ``special`` blocks (sorted, disjoint)."""
    parts: list[tuple[int, int]] = []
    for lo, hi in special:
        if hi < first or lo > last:
            continue
        if lo > first:
            parts.append((first, lo - 1))
        first = hi + 1
        if first > last:
            return parts
    parts.append((first, last))
    return parts


def _shown(number: int) -> str:
    if number >> 32 == 0xFFFF:
        return str(ipaddress.IPv4Address(number & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(number))


def _range_text(first: int, last: int) -> str:
    """A stored range as a person reads it: one CIDR where it is one."""
    if first == last:
        return _shown(first)
    lo, hi = ipaddress.ip_address(_shown(first)), ipaddress.ip_address(_shown(last))
    if lo.version != hi.version:  # cannot be stored (_SPECIAL), but never a crash
        return f"{ipaddress.IPv6Address(first)}-{ipaddress.IPv6Address(last)}"
    nets = list(ipaddress.summarize_address_range(lo, hi))
    return str(nets[0]) if len(nets) == 1 else f"{lo}-{hi}"


# ================================================================= reading files


@dataclass
class Parsed:
    """A list as read from its file: ranges (first, last, note), merged and sorted, or
    ASN categories; what dates it; what was skipped and why."""

    ranges: list[tuple[int, int, str | None]] = field(default_factory=list)
    asns: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    version: str | None = None
    published_at: datetime | None = None
    skipped_local: int = 0  # wholly or partly private, loopback, reserved ...
    skipped_scope: int = 0  # CrowdSec decisions on something other than an address
    skipped_simulated: int = 0  # CrowdSec decisions in simulation mode: not in force

    @property
    def entries(self) -> int:
        return len(self.ranges) + len(self.asns)

    def add_network(self, text: str, note: str | None, where: str) -> None:
        try:
            net = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise InputError(f"{where}: '{printable(text, limit=60)}' is not an IP address "
                             "or network") from None
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
            net = ipaddress.IPv4Network(
                (net.network_address.ipv4_mapped, max(0, net.prefixlen - 96)))
        first, last = _interval(net)
        parts = _global_parts(first, last, _SPECIAL_INTERVALS if net.version == 4
                              else _SPECIAL_FOR_V6)
        if parts != [(first, last)]:
            self.skipped_local += 1
        if net.version == 4 and sum(hi - lo + 1 for lo, hi in parts) > MAX_V4_SPAN:
            raise InputError(f"{where}: {net} covers more public addresses than a /8: no "
                             "list's entry")
        shown = printable(note, limit=128) if note else None
        self.ranges.extend((lo, hi, shown) for lo, hi in parts)
        if len(self.ranges) > MAX_ENTRIES:
            raise InputError(f"more than {MAX_ENTRIES:,} entries in one list")

    def merged(self) -> None:
        """Overlapping ranges joined (the first one's note kept), and adjacent ones with
        the same note, so that a look-up is one binary search per list."""
        self.ranges.sort(key=lambda r: (r[0], r[1]))
        out: list[tuple[int, int, str | None]] = []
        for first, last, note in self.ranges:
            if out and (first <= out[-1][1] or (first == out[-1][1] + 1
                                                 and note == out[-1][2])):
                if last > out[-1][1]:
                    out[-1] = (out[-1][0], last, out[-1][2] or note)
                continue
            out.append((first, last, note))
        self.ranges = out


def _lines(data: bytes) -> Iterator[tuple[int, str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file") from None
    yield from enumerate(text.splitlines(), 1)


def _utc(text: str, *formats: str) -> datetime | None:
    for fmt in formats:
        try:
            stamp = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    return None


EARLIEST = records.EARLIEST  # as for every event the platform sends


def parse_netset(data: bytes) -> Parsed:
    parsed = Parsed()
    dates: dict[str, datetime] = {}
    for n, line in _lines(data):
        bare = line.strip()
        if not bare:
            continue
        if bare.startswith("#"):
            found = _FIREHOL_DATE.match(bare)
            if found:
                # "Tue Nov 26 10:20:46 UTC 2024"
                stamp = _utc(found.group(2).replace(" UTC ", " "), "%a %b %d %H:%M:%S %Y")
                if stamp is not None:
                    dates[found.group(1)] = stamp
            continue
        # A trailing comment or a second column (some lists add a count) is not the entry.
        parsed.add_network(bare.split("#", 1)[0].split()[0], None, f"line {n}")
    parsed.published_at = dates.get("This File Date") or dates.get("Source File Date")
    return parsed


def parse_tor(data: bytes) -> Parsed:
    parsed = Parsed()
    newest: datetime | None = None
    for n, line in _lines(data):
        parts = line.split()
        if not parts:
            continue
        stamp = None
        if parts[0] == "ExitAddress" and len(parts) >= 2:
            parsed.add_network(parts[1], None, f"line {n}")
            stamp = _utc(" ".join(parts[2:4]), "%Y-%m-%d %H:%M:%S")
        elif parts[0] in ("LastStatus", "Published"):
            stamp = _utc(" ".join(parts[1:3]), "%Y-%m-%d %H:%M:%S")
        elif parts[0] != "ExitNode":
            raise InputError(f"line {n}: not a line of Tor's exit-addresses "
                             f"('{printable(parts[0], limit=30)}')")
        if stamp is not None and (newest is None or stamp > newest):
            newest = stamp
    parsed.published_at = newest
    return parsed


def _csv_rows(data: bytes) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    lines = _lines(data)
    reader = csv.reader(line for _, line in lines)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InputError("an empty CSV file") from None
    except csv.Error as exc:
        raise InputError(f"line 1: not CSV ({exc})") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"line {reader.line_num}: not CSV ({exc})") from None
            yield reader.line_num, row

    return header, rows()


def parse_crowdsec(data: bytes) -> Parsed:
    parsed = Parsed()
    header, rows = _csv_rows(data)
    column = next((c for c in ("value", "ip") if c in header), None)
    if column is None:
        raise InputError("not a CrowdSec decisions CSV: no 'value' or 'ip' column in "
                         f"the header ({printable(','.join(header), limit=80)})")
    at = header.index(column)
    scope_at = header.index("scope") if "scope" in header else None
    note_at = next((header.index(c) for c in ("reason", "scenario") if c in header), None)
    simulated_at = header.index("simulated") if "simulated" in header else None
    for n, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= at:
            raise InputError(f"line {n}: fewer columns than the header")
        if (simulated_at is not None and len(row) > simulated_at
                and row[simulated_at].strip().lower() == "true"):
            parsed.skipped_simulated += 1
            continue
        value = row[at].strip()
        scope = row[scope_at].strip() if scope_at is not None and len(row) > scope_at else ""
        if ":" in value and value.split(":", 1)[0].isalpha() and not scope:
            scope, value = value.split(":", 1)  # "Ip:1.2.3.4", "Range:1.2.3.0/24"
        if scope and scope.lower() not in ("ip", "range"):
            parsed.skipped_scope += 1
            continue
        note = row[note_at] if note_at is not None and len(row) > note_at else None
        parsed.add_network(value, note, f"line {n}")
    return parsed


def parse_asn(data: bytes) -> Parsed:
    parsed = Parsed()
    header, rows = _csv_rows(data)
    if header[:2] != ["asn", "category"]:
        raise InputError("not an ASN table: the header must start with asn,category")
    for n, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        found = _ASN.match(row[0].strip())
        if found is None or int(found.group(1)) >= 2 ** 32:
            raise InputError(f"line {n}: '{printable(row[0], limit=30)}' is not an AS "
                             "number")
        category = row[1].strip().lower() if len(row) > 1 else ""
        if category not in CATEGORIES:
            raise InputError(f"line {n}: unknown category '{printable(category, limit=30)}'"
                             f"; use one of {', '.join(CATEGORIES)}")
        name = printable(row[2].strip(), limit=128) if len(row) > 2 and row[2].strip() else None
        parsed.asns[int(found.group(1))] = (category, name)
        if len(parsed.asns) > MAX_ENTRIES:
            raise InputError(f"more than {MAX_ENTRIES:,} entries in one list")
    return parsed


def detect_format(data: bytes) -> str:
    """The format of a file from its first lines."""
    head = data[:65536].decode("utf-8", errors="ignore")  # may cut a character
    for line in head.splitlines():
        bare = line.strip().lower()
        if not bare or bare.startswith("#"):
            continue
        if bare.startswith("exitnode"):
            return "tor"
        if bare.startswith("asn,"):
            return "asn"
        if "," in bare:
            return "crowdsec"
        return "netset"
    return "netset"


def read_file(stream: IO[bytes], fmt: str | None) -> tuple[str, Parsed, str]:
    """Parse one list file: (format, what it lists, its SHA-256)."""
    data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"the file is larger than {MAX_FILE_BYTES // 2 ** 20} MiB")
    fmt = fmt or detect_format(data)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    parsed = {"netset": parse_netset, "tor": parse_tor, "crowdsec": parse_crowdsec,
              "asn": parse_asn}[fmt](data)
    if not parsed.entries:
        raise InputError(f"no entry found in the {fmt} file; the list is left as it was")
    parsed.merged()
    if parsed.published_at is not None and parsed.published_at < EARLIEST:
        raise InputError(f"the file is dated {parsed.published_at:%Y-%m-%d}: not a date "
                         "a list can have")
    return fmt, parsed, hashlib.sha256(data).hexdigest()


# ====================================================================== importing


@dataclass(frozen=True)
class ListView:
    name: str
    category: str
    format: str
    version: str
    published_at: datetime | None
    imported_at: datetime
    entries: int
    sha256: str

    @property
    def as_of(self) -> datetime:
        """What the list describes: its publication, else its import."""
        return self.published_at or self.imported_at

    def age_at(self, at: datetime) -> str:
        """``2 d old`` at ``at``; a list newer than the event says so."""
        seconds = (at - self.as_of).total_seconds()
        if seconds < 0:
            return "newer than the event"
        return f"{fmt_duration(seconds)} old"

    def describe(self, at: datetime) -> str:
        """``firehol_level1 (attack list as of 2026-12-01 10:20 UTC, 2 d old)``."""
        return (f"{self.name} ({self.category} list as of {self.as_of:%Y-%m-%d %H:%M} UTC, "
                f"{self.age_at(at)})")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["published_at"] = None if self.published_at is None else self.published_at.isoformat()
        out["imported_at"] = self.imported_at.isoformat()
        return out


@dataclass(frozen=True)
class ImportReport:
    name: str
    category: str
    format: str
    version: str
    published_at: datetime | None
    entries: int
    previous_entries: int
    skipped_local: int
    skipped_scope: int
    skipped_simulated: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["published_at"] = None if self.published_at is None else self.published_at.isoformat()
        return out


def _checked_name(name: str) -> str:
    """Names in lower case: MariaDB compares them without case, the others with."""
    cleaned = printable(name, limit=64).strip().lower()
    if not cleaned or cleaned != name.strip().lower():
        raise InputError("a list name is printable text of at most 64 characters")
    return cleaned


def import_list(rt: Runtime, actor: Actor, fmt: str, parsed: Parsed, sha256: str, *,
                name: str, category: str | None = None,
                version: str | None = None) -> ImportReport:
    """Replace list ``name``'s entries with ``parsed``; one transaction, audited."""
    require(actor, "iplists.import")
    name = _checked_name(name)
    if fmt == "asn" and category is not None:
        raise InputError("an ASN table names a category per line; --category is for "
                         "address lists")
    if category is not None and category not in THREAT + ANONYMIZING:
        raise InputError(f"an address list's category is one of "
                         f"{', '.join(THREAT + ANONYMIZING)}")
    version = printable(version or (parsed.published_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                                    if parsed.published_at else f"sha256:{sha256[:16]}"),
                        limit=64)
    now = rt.clock()
    if parsed.published_at is not None and parsed.published_at > now + timedelta(days=1):
        raise InputError(f"the file is dated {parsed.published_at:%Y-%m-%d %H:%M} UTC, in "
                         "the future; the list is left as it was")
    with rt.transaction() as session:
        row = session.scalar(select(IpList).where(IpList.name == name).with_for_update())
        previous = 0
        if row is None:
            row = IpList(name=name)
            session.add(row)
        else:
            if (row.category == "asn") != (fmt == "asn"):
                kind = "an ASN table" if row.category == "asn" else "an address list"
                raise InputError(f"{name} is {kind}; import the other kind under another "
                                 "name")
            previous = row.entries
            # A new version keeps the list's category unless one is given: a cron job
            # refreshing a Tor list without --category must not make it a threat list.
            category = category or row.category
            session.execute(delete(IpListRange).where(IpListRange.list_id == row.id))
            session.execute(delete(AsnCategory).where(AsnCategory.list_id == row.id))
        category = "asn" if fmt == "asn" else (category or DEFAULT_CATEGORY[fmt])
        row.category, row.source_format, row.version = category, fmt, version
        row.published_at, row.imported_at = parsed.published_at, now
        row.imported_by, row.entries, row.sha256 = actor.officer_id, parsed.entries, sha256
        try:
            session.flush()
        except IntegrityError:
            raise ConflictError(f"another import created list {name} at the same time; "
                                "run this one again") from None
        if parsed.ranges:
            _insert_chunks(session, IpListRange, (
                {"list_id": row.id, "first": f"{first:032x}", "last": f"{last:032x}",
                 "note": note} for first, last, note in parsed.ranges))
        if parsed.asns:
            _insert_chunks(session, AsnCategory, (
                {"list_id": row.id, "asn": asn, "category": cat, "name": label}
                for asn, (cat, label) in sorted(parsed.asns.items())))
        report = ImportReport(name, category, fmt, version, parsed.published_at,
                              parsed.entries, previous, parsed.skipped_local,
                              parsed.skipped_scope, parsed.skipped_simulated)
        rt.audit.append(session, officer=actor.name, action="iplists.import", at=now,
                        target=f"iplist:{name}", details={**report.as_dict(), "sha256": sha256})
    return report


def _insert_chunks(session: Session, model: type[Any], rows: Iterable[dict[str, Any]]) -> None:
    chunk: list[dict[str, Any]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            session.execute(insert(model), chunk)
            chunk = []
    if chunk:
        session.execute(insert(model), chunk)


def remove_list(rt: Runtime, actor: Actor, name: str) -> ListView:
    """Drop a list and its entries; audited."""
    require(actor, "iplists.import")
    name = name.strip().lower()
    with rt.transaction() as session:
        row = session.scalar(select(IpList).where(IpList.name == name).with_for_update())
        if row is None:
            raise InputError(f"no IP list named '{printable(name, limit=64)}' "
                           "(`polysec iplists list`)")
        view = _view(row)
        session.execute(delete(IpListRange).where(IpListRange.list_id == row.id))
        session.execute(delete(AsnCategory).where(AsnCategory.list_id == row.id))
        session.delete(row)
        rt.audit.append(session, officer=actor.name, action="iplists.remove", at=rt.clock(),
                        target=f"iplist:{view.name}", details=view.as_dict())
    return view


def _view(row: IpList) -> ListView:
    return ListView(row.name, row.category, row.source_format, row.version, row.published_at,
                    row.imported_at, row.entries, row.sha256)


def list_lists(rt: Runtime, actor: Actor) -> list[ListView]:
    require(actor, "read")
    with rt.sessions() as session:
        return [_view(row) for row in session.scalars(select(IpList).order_by(IpList.name))]


# ====================================================================== looking up


@dataclass(frozen=True)
class Mark:
    """One reason a network is known: an address list that holds the IP, or the ASN
    table's category of its network."""

    list: ListView
    category: str
    matched: str  # "IP 185.220.101.4 (in 185.220.101.0/24)" or "AS14061 (DigitalOcean)"
    note: str | None = None

    @property
    def rule(self) -> str | None:
        if self.category in THREAT:
            return THREAT_RULE
        return ANONYMIZING_RULE if self.category in ANONYMIZING else None

    def explanation(self, at: datetime) -> str:
        reason = f": {self.note}" if self.note else ""
        return f"{self.matched} is on {self.list.describe(at)}{reason}"

    def as_dict(self, at: datetime) -> dict[str, Any]:
        return {"list": self.list.name, "category": self.category, "matched": self.matched,
                "note": self.note, "as_of": self.list.as_of.isoformat(),
                "age_seconds": round((at - self.list.as_of).total_seconds())}


class Reputation:
    """The imported lists, in memory for look-ups: per address list its merged ranges
    (one binary search each), and the ASN categories (the most recent import wins)."""

    def __init__(self, ranges: list[tuple[ListView, list[int], list[int], list[str | None]]],
                 asns: dict[int, tuple[ListView, str, str | None]]) -> None:
        self._ranges = ranges
        self._asns = asns
        self._ips: dict[str, tuple[Mark, ...]] = {}
        self._by_category: dict[str, tuple[int, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self._ranges or self._asns)

    def marks(self, ip: str | None, asn: int | None) -> tuple[Mark, ...]:
        """Why this IP or its network is known, threat lists first; empty when not."""
        found = self.ip_marks(ip) if ip else ()
        kind = self._asns.get(asn) if asn is not None else None
        if kind is not None:
            view, category, label = kind
            found = (*found, Mark(view, category, f"AS{asn} ({label + ', ' if label else ''}"
                                                  f"{category})"))
        return found

    def ip_marks(self, ip: str) -> tuple[Mark, ...]:
        cached = self._ips.get(ip)
        if cached is not None:
            return cached
        number = parse_number(ip)
        if number is None:
            return ()
        found: list[Mark] = []
        for view, firsts, lasts, notes, i in self._holding(number):
            shown = _range_text(firsts[i], lasts[i])
            matched = f"IP {ip}" + (f" (in {shown})" if shown != _shown(number) else "")
            found.append(Mark(view, view.category, matched, notes[i]))
        found.sort(key=lambda m: m.category not in THREAT)
        if len(self._ips) >= _CACHE_SIZE:
            self._ips.clear()
        self._ips[ip] = marks = tuple(found)
        return marks

    def listed(self, ip: str) -> bool:
        """Whether an address list holds this IP (no explanation built, nothing cached:
        the full run's pre-filter asks once per distinct IP)."""
        number = parse_number(ip)
        return number is not None and next(self._holding(number), None) is not None

    def anonymizing(self, ip: str) -> bool:
        """Whether an anonymising list (Tor, VPN, proxy, hosting) holds this IP (nothing
        built or cached: the full run asks once per distinct IP)."""
        if not any(view.category in ANONYMIZING for view, *_ in self._ranges):
            return False
        number = parse_number(ip)
        return number is not None and any(
            view.category in ANONYMIZING for view, *_ in self._holding(number))

    def _holding(self, number: int) -> Iterator[tuple[ListView, list[int], list[int],
                                                      list[str | None], int]]:
        """The address lists whose ranges hold ``number``, with the range's index (one
        binary search per list: its ranges are merged, so they do not overlap)."""
        for view, firsts, lasts, notes in self._ranges:
            i = bisect_right(firsts, number) - 1
            if i >= 0 and lasts[i] >= number:
                yield view, firsts, lasts, notes, i

    def category_of(self, asn: int) -> str | None:
        """What kind of network the AS is, from the newest ASN table naming it."""
        kind = self._asns.get(asn)
        return None if kind is None else kind[1]

    def asns_of(self, category: str) -> tuple[int, ...]:
        """Every AS of one kind, sorted (the risk score weighs a kind by their share)."""
        found = self._by_category.get(category)
        if found is None:
            found = self._by_category[category] = tuple(sorted(
                asn for asn, (_, kind, _) in self._asns.items() if kind == category))
        return found

    def flagged_asns(self) -> set[int]:
        """The networks a rule may fire on by their category."""
        return {asn for asn, (_, category, _) in self._asns.items()
                if category in THREAT + ANONYMIZING}


EMPTY = Reputation([], {})
_Ranges = tuple[list[int], list[int], list[str | None]]
_Asns = dict[int, tuple[str, str | None]]
# Per database (its URL): the lists' stamp and what was built from them; and per list
# version its parsed entries, so that a new version of one list (Tor's, hourly) does not
# reread the others. Every process that judges keeps its own.
_built: dict[str, tuple[tuple[Any, ...], Reputation]] = {}
_entries: dict[tuple[str, int, str, datetime], _Ranges | _Asns] = {}


def _stamp(session: Session) -> tuple[tuple[Any, ...], ...]:
    """Every list's id, digest, import time and what its explanations show: changes
    whenever a list's entries or its description change."""
    return tuple(tuple(r) for r in session.execute(
        select(IpList.id, IpList.sha256, IpList.imported_at, IpList.name, IpList.category,
               IpList.source_format, IpList.version, IpList.published_at, IpList.entries)
        .order_by(IpList.imported_at, IpList.id)))


def load(session: Session) -> Reputation:
    """The lists as stored, read once per change (the watcher's passes and screening's
    batches share them). A list imported while they are read is read again."""
    url = session.connection().engine.url.render_as_string(hide_password=True)
    for _attempt in range(3):
        current = _stamp(session)
        if not current:
            return EMPTY
        built = _built.get(url)
        if built is not None and built[0] == current:
            return built[1]
        reputation = _build(session, url, current)
        if _stamp(session) == current:
            _built[url] = (current, reputation)
            kept = {(url, row[0], row[1], row[2]) for row in current}
            for key in [k for k in _entries if k[0] == url and k not in kept]:
                del _entries[key]
            return reputation
    return reputation  # lists changing under every read: judged with the last, not kept


def _build(session: Session, url: str, rows: tuple[tuple[Any, ...], ...]) -> Reputation:
    ranges: list[tuple[ListView, list[int], list[int], list[str | None]]] = []
    asns: dict[int, tuple[ListView, str, str | None]] = {}
    for list_id, sha256, imported_at, name, category, fmt, version, published, n in rows:
        view = ListView(name, category, fmt, version, published, imported_at, n, sha256)
        key = (url, list_id, sha256, imported_at)
        if category == "asn":
            table = _entries.get(key)
            if table is None:
                table = _entries[key] = {int(asn): (cat, label) for asn, cat, label in
                                         session.execute(
                    select(AsnCategory.asn, AsnCategory.category, AsnCategory.name)
                    .where(AsnCategory.list_id == list_id))}
            assert isinstance(table, dict)
            # Lists come oldest first: the most recent import says what a network is.
            asns.update((asn, (view, cat, label)) for asn, (cat, label) in table.items())
            continue
        columns = _entries.get(key)
        if columns is None:
            firsts: list[int] = []
            lasts: list[int] = []
            notes: list[str | None] = []
            for first, last, note in session.execute(
                    select(IpListRange.first, IpListRange.last, IpListRange.note)
                    .where(IpListRange.list_id == list_id).order_by(IpListRange.first)):
                firsts.append(int(first, 16))
                lasts.append(int(last, 16))
                notes.append(note)
            columns = _entries[key] = (firsts, lasts, notes)
        assert isinstance(columns, tuple)
        ranges.append((view, *columns))
    ranges.sort(key=lambda item: item[0].name)
    return Reputation(ranges, asns)


def check(rt: Runtime, actor: Actor, ip: str | None, asn: int | None) -> tuple[Mark, ...]:
    """The marks of an IP and/or network, for `polysec iplists check`."""
    require(actor, "read")
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip.strip()))
        except ValueError:
            raise InputError(f"'{printable(ip, limit=60)}' is not an IP address") from None
    with rt.sessions() as session:
        return load(session).marks(ip, asn)

