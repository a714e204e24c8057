"""The platform's price feed (`polysec ingest prices`) and the value of withdrawals in the
reference currency: checked, idempotent ingest; the price in force at the request; the
amount sort by value, amounts without a price after it, grouped by asset. All three
databases."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from polysec_tui.config import Settings
from polysec_tui.db.models import AssetPrice
from polysec_tui.errors import InputError
from polysec_tui.services.feed.ingest import IngestRejected
from polysec_tui.services.withdrawals import review as wds
from tests.support.cli import run_cli
from tests.support.helpers import ingest
from tests.support.officers import Staff
from tests.support.screening import iso, request


def price(asset: str, value: str, ago: timedelta, currency: str = "USD") -> dict[str, Any]:
    return {"asset": asset, "currency": currency, "price": value, "at": iso(ago)}


def stored(staff: Staff) -> int:
    with staff.rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(AssetPrice)) or 0)


def test_prices_are_checked_and_ingested_once(staff: Staff) -> None:
    rt = staff.rt
    day = timedelta(days=1)
    good = [price("BTC", "40000.5", 2 * day), price("BTC", "41000", day),
            price("DOGE", "0.1", day)]
    report = ingest(rt, "prices", *good)
    assert (report.inserted, report.duplicates, report.bad_count) == (3, 0, 0)
    # Sent again, or the same time written in another zone: duplicates, the first stays.
    same_time = {**good[1], "price": "1", "at": (good[1]["at"].replace("Z", "+00:00")
                                                   if good[1]["at"].endswith("Z")
                                                   else good[1]["at"])}
    report = ingest(rt, "prices", *good, same_time)
    assert (report.inserted, report.duplicates) == (0, 4)
    assert stored(staff) == 3
    bad = [
        {**good[0], "currency": "BTC"},
        {**good[0], "price": "-3"},
        {**good[0], "price": "0"},
        {k: v for k, v in good[0].items() if k != "currency"},
        {**good[0], "asset": "bt c"},
        {**good[0], "price": 40000},
    ]
    with pytest.raises(IngestRejected) as rejected:
        ingest(rt, "prices", price("ETH", "2000", day), *bad)
    message = str(rejected.value)
    assert "6 bad line(s)" in message and "nothing written" in message
    assert stored(staff) == 3  # all or nothing
    report = ingest(rt, "prices", price("ETH", "2000", day), *bad, skip_bad=True)
    assert (report.inserted, report.bad_count) == (1, 6)
    reasons = [b.reason for b in report.bad]
    assert any("'currency' must differ" in r for r in reasons)
    assert any("'price' must be positive" in r for r in reasons)
    assert any("'currency' is required" in r for r in reasons)


def test_values_use_the_price_in_force_and_sort_the_queue(staff: Staff) -> None:
    rt, ann = staff.rt, staff.actors["ann"]
    hour = timedelta(hours=1)
    request(rt, "BTC-small", amount="0.1", ago=hour)  # 0.1 BTC
    request(rt, "DOGE-big", asset="DOGE", amount="5000", ago=hour)
    request(rt, "XRP-none", asset="XRP", amount="900000", ago=hour)  # no price: after
    request(rt, "BTC-early", amount="0.05", ago=10 * hour)  # before the first BTC price
    ingest(rt, "prices",
           price("BTC", "30000", 5 * hour), price("BTC", "40000", 2 * hour),
           price("BTC", "99999", timedelta(minutes=30)),  # after the requests: not used
           price("DOGE", "0.5", 3 * hour), price("BTC", "1", 2 * hour, currency="EUR"))
    page = wds.list_queue(rt, ann, status="pending", sort="amount", limit=1000)
    assert page.priced and page.currency == "USD"
    values = {i.external_id: i.value for i in page.items}
    assert values["BTC-small"] == Decimal("4000.00")  # the price of 2 h ago, not 30 min
    assert values["DOGE-big"] == Decimal("2500.00")
    assert values["BTC-early"] == Decimal("1500.00")  # the feed starts later: its first
    assert values["XRP-none"] is None
    mine = ("BTC-small", "DOGE-big", "XRP-none", "BTC-early")
    order = [i.external_id for i in page.items if i.external_id in mine]
    assert order[:3] == ["BTC-small", "DOGE-big", "BTC-early"]
    assert order[-1] == "XRP-none"  # without a price: after every priced amount
    detail = wds.show(rt, ann, "BTC-small")
    assert detail.item.value == Decimal("4000.00") and detail.price is not None
    assert detail.price.price == Decimal("40000")
    assert detail.as_dict()["price"]["currency"] == "USD"


def test_the_reference_currency_comes_from_the_config(staff: Staff) -> None:
    rt, ann = staff.rt, staff.actors["ann"]
    request(rt, "B1", amount="2", ago=timedelta(hours=1))
    ingest(rt, "prices", price("BTC", "30000", timedelta(hours=2), currency="EUR"))
    assert not wds.list_queue(rt, ann, status="pending").priced  # USD: none fed
    rt.settings = Settings(rt.settings.db_url, rt.settings.keyring_path,
                           options={"prices": {"currency": "EUR"}})
    page = wds.list_queue(rt, ann, status="pending")
    assert page.priced and page.currency == "EUR"
    assert [i.value for i in page.items if i.external_id == "B1"] == [Decimal("60000.00")]
    rt.settings = Settings(rt.settings.db_url, rt.settings.keyring_path,
                           options={"prices": {"currency": "euro"}})
    with pytest.raises(InputError, match=r"\[prices\] currency"):
        wds.list_queue(rt, ann)


def test_cli_lists_values(cli_staff: Staff, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    rt = cli_staff.rt
    request(rt, "B1", amount="2", ago=timedelta(hours=1))
    ingest(rt, "prices", price("BTC", "30000", timedelta(hours=2)))
    token, _ = cli_staff.login("ann")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    result = run_cli(capsys, "withdrawals", "list", "--status", "pending", "--json")
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert listed["currency"] == "USD" and listed["priced"] is True
    assert [i["value"] for i in listed["items"] if i["external_id"] == "B1"] == ["60000.00"]
    text = run_cli(capsys, "withdrawals", "list", "--status", "pending").out
    assert "2 BTC (~60,000.00 USD)" in text


def test_the_largest_values_and_the_reference_currency_itself(staff: Staff) -> None:
    """Any amount times any price the feed accepts has a value (20 integer digits each:
    more than Decimal's default precision); a withdrawal in the reference currency is
    worth its amount, without a price."""
    rt, ann = staff.rt, staff.actors["ann"]
    request(rt, "HUGE", asset="SHIB", amount="10000000000", ago=timedelta(hours=1))
    request(rt, "DOLLARS", asset="USD", amount="1234.5", ago=timedelta(hours=1))
    ingest(rt, "prices", price("SHIB", "100000000000000000", timedelta(hours=2)))
    page = wds.list_queue(rt, ann, status="pending", sort="amount", limit=1000)
    values = {i.external_id: i.value for i in page.items}
    assert values["HUGE"] == Decimal("1000000000000000000000000000.00")
    assert values["DOLLARS"] == Decimal("1234.50")
    assert [i.external_id for i in page.items][:2] == ["HUGE", "DOLLARS"]
    detail = wds.show(rt, ann, "DOLLARS")
    assert detail.item.value == Decimal("1234.50") and detail.price is not None
    assert detail.price.price == 1
