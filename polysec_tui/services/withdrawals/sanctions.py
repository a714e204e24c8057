"""Sanctioned and known-bad destination addresses (`polysec sanctions`).

Lists are imported from the files their publishers distribute, in their own layouts:

- **OFAC SDN, advanced XML** (``sdn_advanced.xml``): every ``Feature`` whose type is a
  "Digital Currency Address - <currency>" (declared in ``FeatureTypeValues``) of a
  ``DistinctParty``; the party's primary name is the entity; ``DateOfIssue`` dates the
  version. Parsed as a stream, each section dropped once read. Only UTF-8 (or ASCII)
  without a DOCTYPE is read: a DTD could only bring entity expansion or external
  entities.
- **OFAC SDN, CSV** (``SDN.CSV``, with ``SDN_COMMENTS.CSV`` where remarks overflow):
  the "Digital Currency Address - <currency> <address>" remarks of each entry, its
  remarks and their overflow joined first (OFAC cuts long remarks mid-word); the entity
  is its SDN name. The CSV carries no date: ``--version`` names it, else its SHA-256.
- **OpenSanctions, FollowTheMoney JSON lines** (the crypto wallet export): entities of
  schema ``CryptoWallet`` (``publicKey``, ``currency``, ``holder``); the holder's caption
  or name when the file has the holder, else its id; the newest ``last_change`` dates it.

Addresses are compared by a key (:func:`address_key`): trimmed, and hexadecimal (``0x``)
and bech32 addresses, which no chain tells apart by case, in lower case; base58 ones
(Bitcoin's legacy, Tron) keep their case, which is part of them. A listed address with
hidden characters cannot be a real one and is skipped; entity names and references are
stored printable.

An import replaces the list's addresses with the file's in one transaction. A file with
no address is refused, and so is one dated before the imported version or removing more
than half of a list's addresses unless ``allow_shrink`` (a replayed or truncated file
never quietly empties a list). It takes the ``screening`` and ``sanctions`` locks
(:mod:`withdrawals.locks`), so that no screening batch records and no single-officer
approval decides against the list while it changes. Addresses newly listed are looked
up among past destinations: a withdrawal still pending is held with the
``address_sanctioned`` hit, one waiting for review gets the hit, and each is recorded in
``sanctioned_payments``, from which every such account gets a critical alert
(``monitoring.alerts``). Screening holds a withdrawal to a listed or known-bad address
whatever the weights, and approving one needs a second officer (``withdrawals.review``).
A destination of a withdrawal whose latest recorded outcome is confirmed fraud is
known-bad for every account (``address_known_bad``).
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
    SanctionedPayment,
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
from polysec_tui.services.withdrawals import locks
from polysec_tui.text import is_hidden, printable

FORMATS = ("ofac-xml", "ofac-csv", "opensanctions")
DEFAULT_NAMES = {"ofac-xml": "OFAC SDN", "ofac-csv": "OFAC SDN",
                 "opensanctions": "OpenSanctions crypto wallets"}
MAX_ADDRESSES = 1_000_000
CHUNK = 500
RULE = "address_sanctioned"
# Statuses in which a newly listed destination still changes what happens next.
OPEN = ("pending", "held", "in_review", "escalated")
_CSV_ADDRESS = re.compile(r"Digital Currency Address - ([A-Za-z0-9]+)\s+([^\s;,]+)")
_XML_FEATURE = re.compile(r"^Digital Currency Address - ([A-Za-z0-9]+)$")
_HEX = re.compile(r"0x[0-9a-f]+")
# bech32/bech32m: a human-readable part, "1", then the data characters (BIP 173).
_BECH32 = re.compile(r"[a-z0-9]{1,83}1[ac-hj-np-z02-9]{6,}")
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# Shrinking a list by more than this share needs ``allow_shrink`` (from this many up).
SHRINK_SHARE = 0.5
SHRINK_FROM = 10


def address_key(address: str) -> str:
    """How destinations are compared with listed addresses: trimmed; a hexadecimal or
    bech32 address in lower case (the same address in either case on its chain)."""
    key = address.strip()
    lower = key.lower()
    if _HEX.fullmatch(lower):
        return lower
    # bech32 is written all in lower or all in upper case, never mixed: a mixed-case
    # string that fits its alphabet is base58 (a Tron address, say), whose case counts.
    if _BECH32.fullmatch(lower) and key in (lower, key.upper()):
        return lower
    return key


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
        key = address_key(address)
        try:
            records.check_text("address", key, 128)
        except BadRecord:
            self.skipped += 1
            return
        if not key or any(is_hidden(c) or c.isspace() for c in key):
            self.skipped += 1  # no chain has such an address
            return
        ref = printable(ref, limit=128)
        self.entries.append(Listed(key, printable(currency, limit=32) if currency else None,
                                   printable(entity.strip(), limit=256) or ref, ref))
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
    issued: dict[str, str] = {}
    depth = 0
    try:
        # Declarations are refused before parsing (read_files).
        for event, elem in ET.iterparse(stream, events=("start", "end")):  # noqa: S314
            if event == "start":
                depth += 1
                continue
            depth -= 1
            tag = _local(elem.tag)
            if tag == "FeatureType":
                found = _XML_FEATURE.match((elem.text or "").strip())
                if found and elem.get("ID"):
                    currencies[str(elem.get("ID"))] = found.group(1)
            elif tag in ("Year", "Month", "Day") and not parsed.version:
                issued[tag] = (elem.text or "").strip()
            elif tag == "DateOfIssue" and not parsed.version:
                _issue_date(issued, parsed)
            elif tag == "DistinctParty":
                _party(elem, currencies, parsed)
                elem.clear()
            if depth == 1:
                elem.clear()  # a whole section read: memory stays flat
    except ET.ParseError as exc:
        raise InputError(f"not OFAC advanced XML: {exc}") from None
    return parsed


def _issue_date(issued: dict[str, str], parsed: Parsed) -> None:
    try:
        day = date(int(issued["Year"]), int(issued["Month"]), int(issued["Day"]))
    except (KeyError, ValueError):
        raise InputError("not OFAC advanced XML: its DateOfIssue is not a date") from None
    parsed.version = day.isoformat()
    parsed.published_at = datetime(day.year, day.month, day.day, tzinfo=UTC)


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
    """SDN.CSV rows (no header; OFAC writes ``-0-`` for an empty field), and the
    ``ent_num, remarks`` rows of SDN_COMMENTS.CSV that continue their remarks."""
    parsed = Parsed()
    names: dict[str, str] = {}
    remarks: dict[str, list[str]] = {}  # ent_num -> remarks, then their overflow
    overflow: dict[str, list[str]] = {}
    for data in files:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")  # OFAC's files are Windows-1252
        for row in csv.reader(io.StringIO(text)):
            if not row or not row[0].strip().isdigit():
                continue
            ent_num = row[0].strip()
            if len(row) >= 12:  # SDN.CSV: ent_num, SDN_Name, SDN_Type, ..., Remarks
                names[ent_num] = row[1].strip()
                remarks.setdefault(ent_num, []).append(row[11])
            elif len(row) == 2:  # SDN_COMMENTS.CSV: ent_num, Remarks_Extended
                overflow.setdefault(ent_num, []).append(row[1])
            else:  # ALT.CSV, ADD.CSV: no currency addresses in OFAC's layout, but read
                remarks.setdefault(ent_num, []).append(" ".join(row[1:]))
    for ent_num in sorted(set(remarks) | set(overflow), key=int):
        # A remark cut mid-address continues in the overflow file: joined as written.
        text = "".join(remarks.get(ent_num, [])) + "".join(overflow.get(ent_num, []))
        for currency, address in _CSV_ADDRESS.findall(text):
            parsed.add(address.rstrip("."), currency, names.get(ent_num, ""), ent_num)
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
        # bombs) or external entities. Only UTF-8 (ASCII) is read, in which this byte
        # search cannot miss one (UTF-16, with or without a BOM, has NUL bytes; another
        # declared encoding could spell "<!DOCTYPE" otherwise).
        head = datas[0][:4096]
        declared = _XML_ENCODING.match(head.removeprefix(b"\xef\xbb\xbf"))
        if (b"\x00" in head or (declared and declared.group(1).lower()
                                not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"))):
            raise InputError("not OFAC advanced XML: only UTF-8 is read")
        if b"<!DOCTYPE" in datas[0] or b"<!ENTITY" in datas[0]:
            raise InputError("not OFAC advanced XML: a DOCTYPE or entity declaration is "
                             "refused")
        parsed = parse_ofac_xml(io.BytesIO(datas[0]))
    elif fmt == "ofac-csv":
        parsed = parse_ofac_csv(datas)
    else:
        parsed = parse_opensanctions(line for data in datas for line in io.BytesIO(data))
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
                weight: float, name: str | None = None, version: str | None = None,
                allow_shrink: bool = False) -> ImportReport:
    """Replace list ``name``'s addresses with ``parsed`` and re-screen past destinations
    against the newly listed ones (their hit scores ``weight``: screening's weight of
    ``address_sanctioned``); one transaction under the screening and sanctions locks,
    audited."""
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
        locks.take(session, locks.SCREENING, now)
        locks.take(session, locks.SANCTIONS, now)
        listing = session.scalar(select(SanctionsList).where(SanctionsList.name == name))
        if listing is None:
            listing = SanctionsList(name=name, source_format=fmt, version=version,
                                    published_at=parsed.published_at, imported_at=now,
                                    imported_by=actor.officer_id, addresses=0, sha256=sha256)
            session.add(listing)
            session.flush()
        stored: dict[str, int] = {address: row_id for address, row_id in session.execute(
            select(SanctionedAddress.address, SanctionedAddress.id)
            .where(SanctionedAddress.list_id == listing.id))}
        removed = [i for a, i in stored.items() if a not in wanted]
        added = [a for a in wanted if a not in stored]
        if not allow_shrink:
            _refuse_shrink(listing, parsed, len(stored), len(removed))
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
        past, accounts, held, flagged = _rescreen(session, listing.id, set(added), wanted,
                                                  name, version, weight, now)
        report = ImportReport(name, fmt, version, parsed.published_at, len(wanted),
                              len(added), len(removed), parsed.skipped, past, accounts,
                              held, flagged)
        rt.audit.append(session, officer=actor.name, action="sanctions.import", at=now,
                        target=f"sanctions:{name}",
                        details={**report.as_dict(), "sha256": sha256,
                                 "published_at": None if parsed.published_at is None
                                 else parsed.published_at.isoformat()})
    return report


def _refuse_shrink(listing: SanctionsList, parsed: Parsed, stored: int, removed: int) -> None:
    """A replayed older version, or a file that lost most of the list (cut short, the
    wrong one), is refused unless the officer says it is meant."""
    if (parsed.published_at is not None and listing.published_at is not None
            and parsed.published_at < listing.published_at):
        raise InputError(f"this file is dated {parsed.published_at:%Y-%m-%d}, before the "
                         f"imported version of {listing.name} "
                         f"({listing.published_at:%Y-%m-%d}); give --allow-shrink if meant")
    if stored >= SHRINK_FROM and removed > SHRINK_SHARE * stored:
        raise InputError(f"this file would remove {removed:,} of the {stored:,} addresses "
                         f"of {listing.name}; give --allow-shrink if meant")


def _rescreen(session: Session, list_id: int, added: set[str], wanted: dict[str, Listed],
              name: str, version: str, weight: float, now: datetime
              ) -> tuple[int, int, int, int]:
    """Past withdrawals to the newly listed addresses, compared by key (one pass over the
    withdrawals' addresses): each is recorded in ``sanctioned_payments``; the pending
    ones are held with the hit and those waiting for review get it (screened ones only:
    screening gives it to the rest). Returns (withdrawals, accounts, held, flagged)."""
    if not added:
        return 0, 0, 0, 0
    w = Withdrawal
    # (id, account, address, status, screened) of each withdrawal to a new listing
    matched: list[tuple[int, Any, str, str, bool]] = []
    result = session.execute(
        select(w.id, w.account_id, w.address, w.status, WithdrawalScreening.withdrawal_id)
        .outerjoin(WithdrawalScreening, WithdrawalScreening.withdrawal_id == w.id),
        execution_options={"yield_per": 10_000})
    for wid, account_id, address, status, screened in result:
        if address_key(address) in added:
            matched.append((wid, account_id, address, status, screened is not None))
    known: set[int] = set()  # an address listed again: its payments were found before
    ids = [m[0] for m in matched]
    for start in range(0, len(ids), CHUNK):
        known.update(session.scalars(select(SanctionedPayment.withdrawal_id).where(
            SanctionedPayment.list_id == list_id,
            SanctionedPayment.withdrawal_id.in_(ids[start:start + CHUNK]))))
    session.add_all(SanctionedPayment(withdrawal_id=wid, list_id=list_id, found_at=now)
                    for wid in ids if wid not in known)
    open_ids = [m for m in matched if m[3] in OPEN and m[4]]
    flagged_ids: set[int] = set()
    for start in range(0, len(open_ids), CHUNK):
        chunk = open_ids[start:start + CHUNK]
        has_hit = set(session.scalars(select(WithdrawalFlag.withdrawal_id).where(
            WithdrawalFlag.withdrawal_id.in_([m[0] for m in chunk]),
            WithdrawalFlag.rule == RULE)))
        for wid, _account, address, _status, _screened in chunk:
            if wid in has_hit:
                continue
            explanation, details = describe(name, version, wanted.get(address_key(address)),
                                            address)
            session.add(WithdrawalFlag(withdrawal_id=wid, rule=RULE, score=weight,
                                       explanation=explanation, details=details,
                                       created_at=now))
            session.execute(update(WithdrawalScreening)
                            .where(WithdrawalScreening.withdrawal_id == wid)
                            .values(risk_score=WithdrawalScreening.risk_score + weight))
            flagged_ids.add(wid)
    pending = [m[0] for m in open_ids if m[3] == "pending"]
    held = 0
    for start in range(0, len(pending), CHUNK):
        held += session.execute(
            update(w).where(w.id.in_(pending[start:start + CHUNK]), w.status == "pending")
            .values(status="held").execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    return len(matched), len({m[1] for m in matched}), held, len(flagged_ids)


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
    """Every list each of the addresses is on, by the address as given (none: absent
    from the result)."""
    by_key: dict[str, list[str]] = {}
    for address in set(addresses):
        by_key.setdefault(address_key(address), []).append(address)
    found: dict[str, list[Listing]] = {}
    keys = sorted(by_key)
    for start in range(0, len(keys), CHUNK):
        for row in session.execute(
            select(SanctionedAddress.address, SanctionsList.name, SanctionsList.version,
                   SanctionsList.published_at, SanctionsList.imported_at,
                   SanctionedAddress.listed_at, SanctionedAddress.currency,
                   SanctionedAddress.entity, SanctionedAddress.entity_ref)
            .join(SanctionsList, SanctionsList.id == SanctionedAddress.list_id)
            .where(SanctionedAddress.address.in_(keys[start:start + CHUNK]))
            .order_by(SanctionsList.name)
        ):
            for address in by_key.get(row[0], ()):  # MariaDB: a key's trailing spaces
                found.setdefault(address, []).append(Listing(*row))
    return found


def known_bad(session: Session, addresses: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """The addresses among these that a withdrawal went to whose latest recorded
    outcome is confirmed fraud, each with those withdrawals (id, platform id), compared
    by key. From the outcomes first (few), so a destination that thousands of
    withdrawals share costs nothing."""
    by_key: dict[str, list[str]] = {}
    for address in set(addresses):
        by_key.setdefault(address_key(address), []).append(address)
    prefix = "withdrawal:"
    latest: dict[str, str] = {}  # subject -> its latest outcome
    for subject, outcome in session.execute(
        select(CaseOutcome.subject, CaseOutcome.outcome)
        .where(CaseOutcome.subject.in_(
            select(CaseOutcome.subject).where(CaseOutcome.outcome == "confirmed_fraud",
                                              CaseOutcome.subject.startswith(prefix))))
        .order_by(CaseOutcome.at, CaseOutcome.id)
    ):
        latest[subject] = outcome
    paid = sorted(s[len(prefix):] for s, o in latest.items() if o == "confirmed_fraud")
    found: dict[str, list[tuple[int, str]]] = {}
    w = Withdrawal
    for start in range(0, len(paid), CHUNK):
        for address, wid, ext in session.execute(
            select(w.address, w.id, w.external_id)
            .where(w.external_id.in_(paid[start:start + CHUNK])).order_by(w.external_id)
        ):
            for given in by_key.get(address_key(address), ()):
                found.setdefault(given, []).append((wid, ext))
    return found


def lists_stamp(session: Session) -> tuple[tuple[int, str, str], ...]:
    """Changes whenever a list's content changes (each list's id, version and file
    digest; no clock involved): screening compares it between judging a batch and
    recording it."""
    return tuple((int(i), str(v), str(d)) for i, v, d in session.execute(
        select(SanctionsList.id, SanctionsList.version, SanctionsList.sha256)
        .order_by(SanctionsList.id)))


def second_officer_reasons(session: Session, withdrawal_id: int, address: str) -> list[str]:
    """Why withdrawal ``withdrawal_id`` to ``address`` needs a second officer whatever its
    amount: the lists naming the address and the confirmed frauds (other withdrawals)
    that paid it (none: it does not)."""
    reasons = [listing.explanation() for listing in listings(session, [address]).get(
        address, [])]
    paid = [ext for wid, ext in known_bad(session, [address]).get(address, [])
            if wid != withdrawal_id]
    if paid:
        reasons.append(f"destination paid by confirmed fraud: {', '.join(paid[:3])}")
    return reasons


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
