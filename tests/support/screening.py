"""A small exchange for the screening and review tests: one account with an ordinary
history (logins from one IP in Germany, BTC withdrawals of about 0.35 to one address)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from polysec_tui.db.models import Withdrawal, WithdrawalFlag
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import screening
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, login, withdrawal

CRON = Actor(uuid.uuid4(), "cron", "automation")
HOME_IP = "203.0.113.7"
HOME_ADDRESS = "bc1qhomeaddress"
PAST_AMOUNTS = ("0.30", "0.35", "0.40", "0.33", "0.37", "0.36")


def iso(delta: timedelta) -> str:
    return (FIXED_NOW - delta).isoformat().replace("+00:00", "Z")


def build_history(rt: Runtime, acct: str = "A1") -> None:
    ingest(rt, "accounts", account(acct))
    ingest(rt, "logins", *(login(f"{acct}-L{d}", acct, at=iso(timedelta(days=d, hours=2)))
                           for d in range(1, 9)))
    ingest(rt, "withdrawals", *(
        withdrawal(f"{acct}-W{i}", acct, at=iso(timedelta(days=i + 2)), amount=amount,
                   address=HOME_ADDRESS, available_balance="5", login_id=f"{acct}-L{i + 2}")
        for i, amount in enumerate(PAST_AMOUNTS)))
    screening.screen(rt, CRON)


def request(rt: Runtime, ext: str = "T1", acct: str = "A1", *,
            login_extra: dict[str, Any] | None = None, ago: timedelta = timedelta(hours=1),
            **extra: Any) -> dict[str, str]:
    """A withdrawal ``ago`` before FIXED_NOW (one hour) behind a login five minutes
    earlier; screened; returns {rule: explanation} of its hits. A login from an address
    other than home has no network (ASN) unless ``login_extra`` gives one: a new address
    on the home network weighs less (`ip_not_seen`), and most tests mean a stranger's."""
    ip = extra.get("ip", HOME_IP)
    network = {} if ip == HOME_IP else {"asn": None}
    ingest(rt, "logins", login(f"{ext}-login", acct, at=iso(ago + timedelta(minutes=5)),
                               ip=ip, **{**network, **(login_extra or {})}))
    record = {"at": iso(ago), "amount": "0.35", "address": HOME_ADDRESS,
              "available_balance": "5", "login_id": f"{ext}-login", "ip": ip}
    record.update(extra)
    ingest(rt, "withdrawals", withdrawal(ext, acct, **record))
    screening.screen(rt, CRON)
    return hits(rt, ext)


def hits(rt: Runtime, ext: str) -> dict[str, str]:
    with rt.sessions() as session:
        wid = session.scalars(select(Withdrawal.id).where(Withdrawal.external_id == ext)).one()
        return {f.rule: f.explanation for f in session.scalars(
            select(WithdrawalFlag).where(WithdrawalFlag.withdrawal_id == wid))}


def status(rt: Runtime, ext: str) -> str:
    with rt.sessions() as session:
        return session.scalars(select(Withdrawal.status)
                               .where(Withdrawal.external_id == ext)).one()


def held(rt: Runtime, ext: str, n: int, **extra: Any) -> None:
    """A withdrawal screening holds: from a new IP and country, to a new address (``n``
    makes each one's IP and address its own)."""
    request(rt, ext, ip=f"198.51.100.{n}", address=f"bc1qnew{n}",
            login_extra={"country": "FR"}, **extra)
    assert status(rt, ext) == "held"
