"""Sanctioned and known-bad destination addresses (`polysec sanctions`).

Lists are imported from the files their publishers distribute, in their own layouts:

- **OFAC SDN, advanced XML** (``sdn_advanced.xml``): every ``Feature`` whose type is a
  "Digital Currency Address - <currency>" (declared in ``FeatureTypeValues``) of a
  ``DistinctParty``; the party's primary name is the entity; ``DateOfIssue`` dates the
  version. Read as a stream (the file is about 100 MB), one party at a time.
- **OFAC SDN, CSV** (``SDN.CSV``, and ``ADD.CSV`` beside it): the "Digital Currency
  Address - <currency> <address>" remarks of each entry; the entity is its SDN name
  (``ADD.CSV`` rows take the name of their ``ent_num`` from ``SDN.CSV`` when both are
  given). The CSV carries no date: ``--version`` names it, else its SHA-256.
- **OpenSanctions, FollowTheMoney JSON lines** (the crypto wallet export): entities of
  schema ``CryptoWallet`` (``publicKey``, ``currency``, ``holder``); the holder's caption
  or name when the file has the holder, else its id; the newest ``last_change`` dates it.

An import replaces the list's addresses with the file's in one transaction (a file with
no address at all is refused: a wrong file never empties a list). Addresses newly listed
are looked up among past destinations: a withdrawal still pending is held with the
``address_sanctioned`` hit, one waiting for review gets the hit, and every account that
ever sent to such an address gets a critical alert (``monitoring.alerts``). Screening
holds a withdrawal to a listed address whatever the weights, and approving one needs a
second officer (``withdrawals.review``). A destination of a withdrawal whose outcome was
recorded as confirmed fraud is known-bad for every account (``address_known_bad``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import IO, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    CaseOutcome,
    SanctionedAddress,
    SanctionsList,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.errors import InputError
from polysec_tui.services.feed import records
from polysec_tui.services.feed.records import BadRecord
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import printable

FORMATS = ("ofac-xml", "ofac-csv", "opensanctions")
DEFAULT_NAMES = {"ofac-xml": "OFAC SDN", "ofac-csv": "OFAC SDN",
                 "opensanctions": "OpenSanctions crypto wallets"}
MAX_ADDRESSES = 1_000_000
CHUNK = 500
RULE = "address_sanctioned"
KNOWN_BAD_RULE = "address_known_bad"
# Statuses in which a newly listed destination still changes what happens next.
OPEN = ("pending", "held", "in_review", "escalated")
_CSV_ADDRESS = re.compile(r"Digital Currency Address - ([A-Za-z0-9]+)\s+([^\s;,]+)")
_XML_FEATURE = re.compile(r"^Digital Currency Address - ([A-Za-z0-9]+)$")


@dataclass(frozen=True)
class Listed:
    address: str
    currency: str | None
    entity: str
    entity_ref: str


@dataclass
class Parsed:
    entries: list[Listed] = field(default_factory=list)
    version: str | None = None
    published_at: datetime | None = None
    skipped: int = 0  # addresses no withdrawal could have (over 128 characters, control)

    def add(self, address: str, currency: str | None, entity: str, ref: str) -> None:
        try:
            exact = records.check_text("address", address.strip(), 128)
        except BadRecord:
            self.skipped += 1
            return
        if not exact:
            self.skipped += 1
            return
        self.entries.append(Listed(exact, currency[:32] if currency else None,
                                   entity.strip()[:256] or ref, ref[:128]))
        if len(self.entries) > MAX_ADDRESSES:
            raise InputError(f"more than {MAX_ADDRESSES:,} addresses in one list")


def detect_format(head: bytes) -> str:
    """The format of a file from its first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "ofac-xml"
    if text.startswith(b"{"):
        return "opensanctions"
    return "ofac-csv"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_ofac_xml(stream: IO[bytes]) -> Parsed:
    parsed = Parsed()
    currencies: dict[str, str] = {}  # FeatureType ID -> currency
    issued: dict[str, int] = {}
    try:
        # Declarations (entities, external ones) are refused before parsing (read_files).
        for _event, elem in ET.iterparse(stream, events=("end",)):  # noqa: S314
            tag = _local(elem.tag)
            if tag == "FeatureType":
                found = _XML_FEATURE.match((elem.text or "").strip())
                if found and elem.get("ID"):
                    currencies[str(elem.get("ID"))] = found.group(1)
            elif tag in ("Year", "Month", "Day") and not parsed.version:
                issued[tag] = int((elem.text or "0").strip() or 0)
            elif tag == "DateOfIssue" and len(issued) == 3 and not parsed.version:
                day = date(issued["Year"], issued["Month"], issued["Day"])
                parsed.version = day.isoformat()
                parsed.published_at = datetime(day.year, day.month, day.day, tzinfo=UTC)
            elif tag == "DistinctParty":
                _party(elem, currencies, parsed)
                elem.clear()  # memory stays flat over the whole list
    except ET.ParseError as exc:
        raise InputError(f"not OFAC advanced XML: {exc}") from None
    except ValueError as exc:
        raise InputError(f"not OFAC advanced XML: a bad DateOfIssue ({exc})") from None
    return parsed


def _party(party: ET.Element, currencies: dict[str, str], parsed: Parsed) -> None:
    ref = party.get("FixedRef") or "?"
    name = ""
    for alias in party.iter():
        if _local(alias.tag) == "Alias" and alias.get("Primary") == "true":
            parts = [p.text.strip() for p in alias.iter()
                     if _local(p.tag) == "NamePartValue" and p.text and p.text.strip()]
            name = " ".join(parts)
            break
    for feature in party.iter():
        if _local(feature.tag) != "Feature":
            continue
        currency = currencies.get(feature.get("FeatureTypeID") or "")
        if currency is None:
            continue
        for detail in feature.iter():
            if _local(detail.tag) == "VersionDetail" and detail.text and detail.text.strip():
                parsed.add(detail.text, currency, name or f"SDN {ref}", ref)


def parse_ofac_csv(files: Sequence[bytes]) -> Parsed:
    """SDN.CSV and ADD.CSV rows (no header; OFAC writes ``-0-`` for an empty field)."""
    parsed = Parsed()
    names: dict[str, str] = {}
    rows: list[tuple[str, list[str]]] = []
    for data in files:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")  # OFAC's files are Windows-1252
        for row in csv.reader(io.StringIO(text)):
            if not row or not row[0].strip() or not row[0].strip().isdigit():
                continue
            ent_num = row[0].strip()
            if len(row) >= 12:  # SDN.CSV: ent_num, SDN_Name, SDN_Type, ..., Remarks
                names[ent_num] = row[1].strip()
            rows.append((ent_num, row[1:]))
    for ent_num, fields in rows:
        for text in fields:
            for currency, address in _CSV_ADDRESS.findall(text):
                parsed.add(address.rstrip("."), currency, names.get(ent_num, ""),
                           ent_num)
    return parsed


def parse_opensanctions(lines: Iterable[bytes]) -> Parsed:
    parsed = Parsed()
    wallets: list[tuple[str, str | None, str]] = []  # (address, currency, holder id)
    holders: dict[str, str] = {}
    newest = ""
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entity = json.loads(raw)
        except ValueError:
            raise InputError(f"line {n}: not a JSON object (FollowTheMoney JSON lines "
                             "expected)") from None
        if not isinstance(entity, dict) or not isinstance(entity.get("properties"), dict):
            raise InputError(f"line {n}: not a FollowTheMoney entity (no properties)")
        props = entity["properties"]
        changed = entity.get("last_change")
        if isinstance(changed, str) and changed > newest:
            newest = changed
        eid = str(entity.get("id") or "")
        if entity.get("schema") == "CryptoWallet":
            currency = _first(props.get("currency"))
            holder = _first(props.get("holder")) or eid
            for key in _strings(props.get("publicKey")):
                wallets.append((key, currency, holder))
        else:
            caption = entity.get("caption") if isinstance(entity.get("caption"), str) else None
            name = caption or _first(props.get("name"))
            if eid and name:
                holders[eid] = name
    for address, currency, holder in wallets:
        parsed.add(address, currency, holders.get(holder, holder), holder)
    if newest:
        parsed.version = newest[:64]
        try:
            stamp = datetime.fromisoformat(newest)
            parsed.published_at = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        except ValueError:
            pass
    return parsed


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _first(value: Any) -> str | None:
    found = _strings(value)
    return found[0] if found else None


def read_files(files: Sequence[IO[bytes]], fmt: str | None) -> tuple[str, Parsed, str]:
    """Parse the files of one list: (format, what they list, their SHA-256 together)."""
    digest = hashlib.sha256()
    datas = [f.read() for f in files]
    for data in datas:
        digest.update(data)
    if not datas:
        raise InputError("no file given")
    fmt = fmt or detect_format(datas[0][:64])
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "ofac-xml":
        if len(datas) != 1:
            raise InputError("the OFAC advanced XML is one file")
        # The list declares nothing: a DOCTYPE could only bring entity expansion (XML
        # bombs) or external entities, and UTF-16 would hide one from this check.
        if (b"<!DOCTYPE" in datas[0] or b"<!ENTITY" in datas[0]
                or datas[0].startswith((b"\xff\xfe", b"\xfe\xff"))):
            raise InputError("not OFAC advanced XML: a DOCTYPE, entity declaration or "
                             "UTF-16 text is refused")
        parsed = parse_ofac_xml(io.BytesIO(datas[0]))
    elif fmt == "ofac-csv":
        parsed = parse_ofac_csv(datas)
    else:
        parsed = parse_opensanctions(line for data in datas for line in data.splitlines())
    if not parsed.entries:
        raise InputError(f"no digital currency address found in the {fmt} file(s); the "
                         "list is left as it was")
    return fmt, parsed, digest.hexdigest()


@dataclass(frozen=True)
class ImportReport:
    name: str
    format: str
    version: str
    published_at: datetime | None
    addresses: int
    added: int
    removed: int
    skipped: int
    past_withdrawals: int  # to a newly listed address, ever
    accounts: int
    held: int  # pending withdrawals held now
    flagged: int  # withdrawals waiting for review that got the hit

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_list(rt: Runtime, actor: Actor, fmt: str, parsed: Parsed, sha256: str, *,
                weight: float, name: str | None = None,
                version: str | None = None) -> ImportReport:
    """Replace list ``name``'s addresses with ``parsed`` and re-screen past destinations
    against the newly listed ones (their hit scores ``weight``: screening's weight of
    ``address_sanctioned``); one transaction, audited."""
    require(actor, "sanctions.import")
    name = printable(name or DEFAULT_NAMES[fmt], limit=64).strip()
    if not name:
        raise InputError("a list name is required")
    version = printable(version or parsed.version or f"sha256:{sha256[:16]}", limit=64)
    wanted: dict[str, Listed] = {}
    for entry in parsed.entries:
        wanted.setdefault(entry.address, entry)
    now = rt.clock()
    with rt.transaction() as session:
        listing = session.scalar(select(SanctionsList).where(SanctionsList.name == name)
                                 .with_for_update())
        if listing is None:
            listing = SanctionsList(name=name, source_format=fmt, version=version,
                                    published_at=parsed.published_at, imported_at=now,
                                    imported_by=actor.officer_id, addresses=0, sha256=sha256)
            session.add(listing)
            session.flush()
        stored = {_key(session, a): i for a, i in session.execute(
            select(SanctionedAddress.address, SanctionedAddress.id)
            .where(SanctionedAddress.list_id == listing.id))}
        keys = {_key(session, a): a for a in wanted}
        removed = [i for k, i in stored.items() if k not in keys]
        added = [a for k, a in keys.items() if k not in stored]
        for start in range(0, len(removed), CHUNK):
            session.execute(delete(SanctionedAddress)
                            .where(SanctionedAddress.id.in_(removed[start:start + CHUNK])))
        session.add_all(SanctionedAddress(
            list_id=listing.id, address=a, currency=wanted[a].currency,
            entity=wanted[a].entity, entity_ref=wanted[a].entity_ref, listed_at=now)
            for a in added)
        listing.source_format, listing.version = fmt, version
        listing.published_at, listing.imported_at = parsed.published_at, now
        listing.imported_by, listing.sha256 = actor.officer_id, sha256
        listing.addresses = len(wanted)
        session.flush()
        past, accounts, held, flagged = _rescreen(session, added, wanted, name, version,
                                                  weight, now)
        report = ImportReport(name, fmt, version, parsed.published_at, len(wanted),
                              len(added), len(removed), parsed.skipped, past, accounts,
                              held, flagged)
        rt.audit.append(session, officer=actor.name, action="sanctions.import", at=now,
                        target=f"sanctions:{name}",
                        details={**report.as_dict(), "sha256": sha256,
                                 "published_at": None if parsed.published_at is None
                                 else parsed.published_at.isoformat()})
    return report


def _key(session: Session, address: str) -> str:
    """The address as the database's equality sees it (MariaDB ignores trailing spaces)."""
    if session.get_bind().dialect.name in ("mysql", "mariadb"):
        return address.rstrip(" ")
    return address


def _rescreen(session: Session, added: list[str], wanted: dict[str, Listed], name: str,
              version: str, weight: float, now: datetime) -> tuple[int, int, int, int]:
    """Past withdrawals to the newly listed addresses: hold the pending ones and give
    those waiting for review the hit (screened ones only: screening gives it to the
    rest). Returns (withdrawals, accounts, held, flagged)."""
    w = Withdrawal
    past = held = flagged = 0
    seen_accounts: set[Any] = set()
    for start in range(0, len(added), CHUNK):
        chunk = added[start:start + CHUNK]
        rows = session.execute(
            select(w.id, w.account_id, w.address, w.status,
                   WithdrawalScreening.withdrawal_id)
            .outerjoin(WithdrawalScreening, WithdrawalScreening.withdrawal_id == w.id)
            .where(w.address.in_(chunk))).all()
        past += len(rows)
        seen_accounts.update(r[1] for r in rows)
        open_ids = [r[0] for r in rows if r[3] in OPEN and r[4] is not None]
        if not open_ids:
            continue
        has_hit = set(session.scalars(select(WithdrawalFlag.withdrawal_id).where(
            WithdrawalFlag.withdrawal_id.in_(open_ids), WithdrawalFlag.rule == RULE)))
        by_id = {r[0]: r for r in rows}
        for wid in open_ids:
            if wid in has_hit:
                continue
            entry = wanted.get(by_id[wid][2])
            explanation, details = describe(name, version, entry, by_id[wid][2])
            session.add(WithdrawalFlag(withdrawal_id=wid, rule=RULE, score=weight,
                                       explanation=explanation, details=details,
                                       created_at=now))
            session.execute(update(WithdrawalScreening)
                            .where(WithdrawalScreening.withdrawal_id == wid)
                            .values(risk_score=WithdrawalScreening.risk_score + weight))
            flagged += 1
        pending = [wid for wid in open_ids if by_id[wid][3] == "pending"]
        if pending:
            held += session.execute(update(w).where(w.id.in_(pending), w.status == "pending")
                                    .values(status="held")
                                    .execution_options(synchronize_session=False)
                                    ).rowcount  # type: ignore[attr-defined]
    return past, len(seen_accounts), held, flagged


def describe(name: str, version: str, entry: Listed | None, address: str
             ) -> tuple[str, dict[str, Any]]:
    """The explanation and details of an ``address_sanctioned`` hit."""
    entity = entry.entity if entry else "?"
    currency = f" ({entry.currency})" if entry and entry.currency else ""
    ref = entry.entity_ref if entry else "?"
    return (f"destination {address}{currency} is on {name} (version {version}): "
            f"{entity} [{ref}]",
            {"address": address, "list": name, "version": version, "entity": entity,
             "entity_ref": ref, "currency": entry.currency if entry else None})


@dataclass(frozen=True)
class Listing:
    """Where one address is listed."""

    address: str
    list: str
    version: str
    published_at: datetime | None
    imported_at: datetime
    listed_at: datetime
    currency: str | None
    entity: str
    entity_ref: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def explanation(self) -> str:
        entry = Listed(self.address, self.currency, self.entity, self.entity_ref)
        return describe(self.list, self.version, entry, self.address)[0]


def listings(session: Session, addresses: Iterable[str]) -> dict[str, list[Listing]]:
    """Every list each of the addresses is on (none: absent from the result)."""
    found: dict[str, list[Listing]] = {}
    wanted = sorted(set(addresses))
    for start in range(0, len(wanted), CHUNK):
        for row in session.execute(
            select(SanctionedAddress.address, SanctionsList.name, SanctionsList.version,
                   SanctionsList.published_at, SanctionsList.imported_at,
                   SanctionedAddress.listed_at, SanctionedAddress.currency,
                   SanctionedAddress.entity, SanctionedAddress.entity_ref)
            .join(SanctionsList, SanctionsList.id == SanctionedAddress.list_id)
            .where(SanctionedAddress.address.in_(wanted[start:start + CHUNK]))
            .order_by(SanctionsList.name)
        ):
            found.setdefault(row[0], []).append(Listing(*row))
    return found


def known_bad(session: Session, addresses: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """The addresses among these that a withdrawal recorded as confirmed fraud went to,
    each with those withdrawals (id, platform id). From the outcomes first (few), so a
    destination that thousands of withdrawals share costs nothing."""
    wanted = set(addresses)
    prefix = "withdrawal:"
    paid = sorted({subject[len(prefix):] for subject in session.scalars(
        select(CaseOutcome.subject).where(CaseOutcome.outcome == "confirmed_fraud",
                                          CaseOutcome.subject.startswith(prefix)))})
    found: dict[str, list[tuple[int, str]]] = {}
    w = Withdrawal
    for start in range(0, len(paid), CHUNK):
        for address, wid, ext in session.execute(
            select(w.address, w.id, w.external_id)
            .where(w.external_id.in_(paid[start:start + CHUNK])).order_by(w.external_id)
        ):
            if address in wanted:
                found.setdefault(address, []).append((wid, ext))
    return found


@dataclass(frozen=True)
class ListView:
    name: str
    format: str
    version: str
    published_at: datetime | None
    imported_at: datetime
    addresses: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_lists(rt: Runtime, actor: Actor) -> list[ListView]:
    require(actor, "read")
    with rt.sessions() as session:
        return [ListView(r.name, r.source_format, r.version, r.published_at, r.imported_at,
                         r.addresses, r.sha256)
                for r in session.scalars(select(SanctionsList).order_by(SanctionsList.name))]


def check_address(rt: Runtime, actor: Actor, address: str) -> tuple[list[Listing], list[str]]:
    """Where ``address`` is listed, and the confirmed-fraud withdrawals that went to it."""
    require(actor, "read")
    with rt.sessions() as session:
        return (listings(session, [address]).get(address, []),
                [ext for _wid, ext in known_bad(session, [address]).get(address, [])])
