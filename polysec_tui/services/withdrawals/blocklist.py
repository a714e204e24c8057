"""The destination-address blocklist the officers manage (`polysec blocklist`).

Adding (and importing) is open to every reviewing officer: it only makes screening
stricter. Removing weakens it, so it needs a senior officer. Every change is audited in
the transaction that makes it. Addresses are compared exactly, as the platform reports
them: whatever ingest accepts as a destination address (1 to 128 characters, not blank,
no NUL, valid Unicode) can be blocklisted, hidden characters and surrounding spaces
included, so that an address differing by an invisible character is not a way around
the list. Error messages never quote the address (it may come from an imported file).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from polysec_tui.db.models import BlockedAddress, Officer
from polysec_tui.errors import InputError
from polysec_tui.services.feed import records
from polysec_tui.services.feed.records import BadRecord
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import visible

MAX_ADDRESS = 128
MAX_REASON = 500
IMPORT_LIMIT = 100_000


@dataclass(frozen=True)
class BlockedView:
    address: str
    reason: str
    added_by: str | None
    added_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "reason": self.reason, "added_by": self.added_by,
                "added_at": self.added_at}


def clean_address(address: str) -> str:
    """``address`` unchanged if ingest would accept it as a destination address."""
    if not address.strip():
        raise InputError("not an address: empty or only spaces")
    try:
        return records.check_text("address", address, MAX_ADDRESS)
    except BadRecord as exc:
        raise InputError(f"not an address: {exc}") from None


def _clean_reason(raw: str) -> str:
    reason = " ".join(raw.split())
    if not reason or len(reason) > MAX_REASON:
        raise InputError(f"a reason of 1 to {MAX_REASON} characters is required")
    return reason


def add(rt: Runtime, actor: Actor, address: str, reason: str) -> bool:
    """Block ``address``; False if it was blocked already (nothing changes then)."""
    return import_addresses(rt, actor, [(address, reason)]) == 1


def import_addresses(rt: Runtime, actor: Actor, entries: Iterable[tuple[str, str]]) -> int:
    """Block many addresses in one transaction (all or none); returns how many were new."""
    require(actor, "blocklist.add")
    wanted: dict[str, str] = {}
    for address, reason in entries:
        wanted.setdefault(clean_address(address), _clean_reason(reason))
        if len(wanted) > IMPORT_LIMIT:
            raise InputError(f"at most {IMPORT_LIMIT} addresses per import")
    if not wanted:
        raise InputError("no addresses given")
    now = rt.clock()
    with rt.transaction() as session:
        known = _existing(session, list(wanted))
        new = []
        for address in wanted:
            key = _key(session, address)
            if key not in known:
                known.add(key)
                new.append(address)
        session.add_all(BlockedAddress(address=a, reason=wanted[a], added_by=actor.officer_id,
                                       added_at=now) for a in new)
        if new:
            target = f"address:{new[0]}" if len(new) == 1 else None
            rt.audit.append(session, officer=actor.name, action="blocklist.add", at=now,
                            target=target,
                            details={"addresses": new[:1000], "count": len(new),
                                     "reason": wanted[new[0]] if len(new) == 1 else None})
    return len(new)


def _key(session: Session, address: str) -> str:
    """The address as the database's equality sees it: MariaDB and MySQL compare
    strings without their trailing spaces (PAD SPACE), even under a binary collation."""
    if session.get_bind().dialect.name in ("mysql", "mariadb"):
        return address.rstrip(" ")
    return address


def _existing(session: Session, addresses: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(addresses), 500):
        found.update(_key(session, a) for a in session.scalars(
            select(BlockedAddress.address)
            .where(BlockedAddress.address.in_(addresses[i:i + 500]))))
    return found


def remove(rt: Runtime, actor: Actor, address: str, reason: str) -> None:
    require(actor, "blocklist.remove")
    address = clean_address(address)
    reason = _clean_reason(reason)
    with rt.transaction() as session:
        gone = session.execute(delete(BlockedAddress).where(BlockedAddress.address == address))
        if gone.rowcount != 1:  # type: ignore[attr-defined]
            raise InputError(f"{visible(address)} is not on the blocklist")
        rt.audit.append(session, officer=actor.name, action="blocklist.remove", at=rt.clock(),
                        target=f"address:{address}", details={"reason": reason})


def list_blocked(rt: Runtime, actor: Actor, *, limit: int = 1000) -> list[BlockedView]:
    require(actor, "read")
    with rt.sessions() as session:
        rows = session.execute(
            select(BlockedAddress, Officer.name)
            .outerjoin(Officer, Officer.id == BlockedAddress.added_by)
            .order_by(BlockedAddress.added_at.desc(), BlockedAddress.id.desc()).limit(limit)
        )
        return [BlockedView(b.address, b.reason, name, b.added_at) for b, name in rows]


def is_blocked(session: Session, address: str) -> bool:
    return session.scalar(
        select(BlockedAddress.id).where(BlockedAddress.address == address)) is not None
