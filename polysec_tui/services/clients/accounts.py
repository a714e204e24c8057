"""Reading client accounts: lookup by external id or by exact email (through the blind
index) and decryption of the PII fields, each failure naming table, column and row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session

from polysec_tui.db.models import ENCRYPTED_COLUMNS, Account, Balance, Hold, TotpEnrolment
from polysec_tui.errors import InputError
from polysec_tui.services.clients.masking import mask
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.holds import hold_in_force

PII_FIELDS = ENCRYPTED_COLUMNS["accounts"]


@dataclass(frozen=True)
class AccountPII:
    """Decrypted personal data. Never logged; screens show it masked."""

    account_id: UUID
    email: str
    full_name: str | None
    phone: str | None
    date_of_birth: str | None
    address: str | None

    def __repr__(self) -> str:  # keep plaintext out of logs and tracebacks
        return f"AccountPII(account_id={self.account_id}, <redacted>)"


def find_by_external_id(session: Session, external_id: str) -> Account | None:
    return session.scalars(select(Account).where(Account.external_id == external_id)).first()


def find_by_email(rt: Runtime, session: Session, email: str) -> Account | None:
    """Exact, case-insensitive email match via the blind index. A blind-index collision
    is ruled out by decrypting the candidate and comparing."""
    wanted = email.strip().lower()
    candidates = session.scalars(
        select(Account).where(Account.email_bidx == rt.blind_index.email(email))
    )
    for account in candidates:
        if decrypt_pii(rt, account).email.strip().lower() == wanted:
            return account
    return None


def decrypt_pii(rt: Runtime, account: Account) -> AccountPII:
    values: dict[str, str | None] = {}
    for column in PII_FIELDS:
        blob = getattr(account, f"{column}_enc")
        values[column] = (
            None if blob is None
            else rt.cipher.decrypt(blob, table="accounts", column=column, row_id=account.id)
        )
    email = values["email"]
    assert email is not None
    return AccountPII(account.id, email, values["full_name"], values["phone"],
                      values["date_of_birth"], values["address"])


# ------------------------------------------------------------------ officer-facing views


@dataclass(frozen=True)
class AccountSummary:
    """What an officer sees of an account: PII masked, never in full."""

    id: UUID
    external_id: str
    created_at: datetime
    country: str | None
    status: str
    masked: dict[str, str | None]
    has_2fa: bool
    balances: dict[str, Decimal]
    # The withdrawal holds in force: "freeze since 2026-12-03 14:05: reason" (text the
    # officers wrote: shown inert).
    holds: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "external_id": self.external_id, "created_at": self.created_at,
            "country": self.country, "status": self.status, **self.masked,
            "has_2fa": self.has_2fa, "balances": self.balances, "holds": list(self.holds),
        }


def resolve(rt: Runtime, session: Session, ident: str) -> Account:
    """An account by its platform id, or by exact email (through the blind index)."""
    account = find_by_email(rt, session, ident) if "@" in ident else None
    account = account or find_by_external_id(session, ident)
    if account is None:
        raise InputError(f"no account {ident!r}")
    return account


def summary(rt: Runtime, actor: Actor, ident: str) -> AccountSummary:
    require(actor, "read")
    with rt.sessions() as session:
        account = resolve(rt, session, ident)
        pii = decrypt_pii(rt, account)
        masked = {field: mask(field, getattr(pii, field)) for field in PII_FIELDS}
        has_2fa = session.scalar(
            select(TotpEnrolment.id).where(TotpEnrolment.account_id == account.id)
        ) is not None
        balances = {
            b.asset: b.amount
            for b in session.scalars(select(Balance).where(Balance.account_id == account.id))
        }
        holds = tuple(
            f"{h.kind} #{h.id} since {h.created_at:%Y-%m-%d %H:%M}"
            + (f" until {h.expires_at:%Y-%m-%d %H:%M}" if h.expires_at else "")
            + f": {h.reason}"
            for h in session.scalars(select(Hold).where(
                Hold.account_id == account.id, hold_in_force(rt.clock())).order_by(Hold.id)))
        return AccountSummary(account.id, account.external_id, account.created_at,
                              account.country, account.status, masked, has_2fa, balances,
                              holds)


def reveal(rt: Runtime, actor: Actor, ident: str, field: str, reason: str) -> str:
    """One PII field in full, for a senior officer with a stated reason; audited."""
    require(actor, "pii.reveal")
    if field not in PII_FIELDS:
        raise InputError(f"unknown field {field!r}; use one of {', '.join(PII_FIELDS)}")
    reason = reason.strip()
    if len(reason) < 5:
        raise InputError("a reason (at least 5 characters) is required to reveal PII")
    with rt.transaction() as session:
        account = resolve(rt, session, ident)
        value = getattr(decrypt_pii(rt, account), field)
        rt.audit.append(session, officer=actor.name, action="pii.reveal", at=rt.clock(),
                        target=f"account:{account.external_id}",
                        details={"field": field, "reason": reason})
    return value if value is not None else ""
