"""What a withdrawal is worth in the exchange's reference currency (``[prices] currency``,
USD by default), from the prices the platform feeds (`polysec ingest prices`).

A withdrawal's value is its amount times the price of its asset in force when the client
asked: the latest price at or before the request or, when the feed starts later, the
first price after it. Without a price there is no value: such amounts are compared only
within their asset (34,741 DOGE is not more than 12,621 USDT), and the console says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, case, cast, func, literal, select
from sqlalchemy.orm import Session

from polysec_tui.config import Settings
from polysec_tui.db.models import AssetPrice
from polysec_tui.db.types import Amount
from polysec_tui.errors import InputError

DEFAULT_CURRENCY = "USD"
CENT = Decimal("0.01")
_CODE = re.compile(r"[A-Z0-9]{2,16}")


def reference_currency(settings: Settings) -> str:
    """The currency values are shown in: ``[prices] currency`` (an asset code)."""
    raw = settings.section("prices").get("currency", DEFAULT_CURRENCY)
    if not isinstance(raw, str) or not _CODE.fullmatch(raw):
        raise InputError("config: [prices] currency must be a code such as USD "
                         "(2-16 of A-Z, 0-9)")
    return raw


def _price_query(asset: Any, at: Any, currency: str, *, before: bool
                 ) -> Select[Decimal, datetime]:
    p = AssetPrice
    when = p.at <= at if before else p.at > at
    order = p.at.desc() if before else p.at
    return (select(p.price, p.at)
            .where(p.asset == asset, p.currency == currency, when)
            .order_by(order).limit(1))


def price_column(asset: Any, at: Any, currency: str) -> ColumnElement[Any]:
    """SQL: the price of ``asset`` in ``currency`` in force at ``at`` (columns of the
    outer query), or NULL; 1 for the currency itself. The unique (currency, asset, at)
    index serves both probes."""
    return case(
        (asset == currency, literal(Decimal(1), Amount())),
        else_=func.coalesce(
            _price_query(asset, at, currency, before=True)
            .with_only_columns(AssetPrice.price).scalar_subquery(),
            _price_query(asset, at, currency, before=False)
            .with_only_columns(AssetPrice.price).scalar_subquery()))


def value_order(amount: Any, price: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """SQL: amount times price, for ordering (SQLite stores both as decimal strings)."""
    if dialect == "sqlite":
        return cast(amount, Float) * cast(price, Float)
    return amount * price  # type: ignore[no-any-return]


def value_of(amount: Decimal, price: Decimal | None) -> Decimal | None:
    """The value to the cent (or None without a price). Exact for every amount and price
    the feed accepts (20 integer digits each: a product of 40, more than Decimal's
    default 28 digits of precision)."""
    if price is None:
        return None
    with localcontext(prec=80):
        return (amount * price).quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Price:
    price: Decimal
    at: datetime  # when the platform priced it
    currency: str


def price_at(session: Session, asset: str, at: datetime, currency: str) -> Price | None:
    """The price of ``asset`` in force at ``at`` and when it was set, or None; 1 at the
    request's time for the currency itself."""
    if asset == currency:
        return Price(Decimal(1), at, currency)
    for before in (True, False):
        row = session.execute(_price_query(asset, at, currency, before=before)).first()
        if row is not None:
            return Price(row[0], row[1], currency)
    return None


def known(session: Session, currency: str) -> bool:
    """Whether the platform has fed any price in ``currency``."""
    return session.scalar(select(AssetPrice.id).where(AssetPrice.currency == currency)
                          .limit(1)) is not None
