"""Sanctioned and known-bad destinations: the three list layouts (small files written
the way OFAC and OpenSanctions write theirs), the import's replacement of a list and
its re-screening of past destinations, screening's hold, four-eyes on approval, the
alerts, and the command. All three databases where a database is involved."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from polysec_tui.config import Settings
from polysec_tui.db.models import ApprovalRequest, AuditLogEntry, SanctionedAddress, Withdrawal
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import four_eyes, outcomes
from polysec_tui.services.monitoring import alerts
from polysec_tui.services.withdrawals import review as wds
from polysec_tui.services.withdrawals import sanctions, screening
from tests.support.helpers import ingest, login, withdrawal
from tests.support.officers import Staff
from tests.support.screening import CRON, hits, iso, request, status

BTC = "1GarantexBTCk7vZ4bTu3pAqEfq9c2UpWJmB"
ETH = "0x7FF9cFad3877F21d41Da833E2F775dB0569eE3D9"
TRX = "TNqjpBa5nRZoM3fLvaBz4E7Mh9ZxG2Wmxs"

SDN_ADVANCED_XML = f"""<?xml version="1.0" encoding="utf-8"?>
<Sanctions xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns="https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/ADVANCED_XML">
  <DateOfIssue><Year>2026</Year><Month>11</Month><Day>28</Day></DateOfIssue>
  <ReferenceValueSets>
    <FeatureTypeValues>
      <FeatureType ID="8" FeatureTypeGroupID="1">Birthdate</FeatureType>
      <FeatureType ID="344" FeatureTypeGroupID="3">Digital Currency Address - XBT</FeatureType>
      <FeatureType ID="345" FeatureTypeGroupID="3">Digital Currency Address - ETH</FeatureType>
    </FeatureTypeValues>
  </ReferenceValueSets>
  <DistinctParties>
    <DistinctParty FixedRef="36216">
      <Comment />
      <Profile ID="36216" PartySubTypeID="4">
        <Identity ID="9001" FixedRef="36216" Primary="true" False="false">
          <Alias FixedRef="36216" AliasTypeID="1400" Primary="false" LowQuality="false">
            <DocumentedName ID="2" FixedRef="36216" DocNameStatusID="2">
              <DocumentedNamePart><NamePartValue NamePartGroupID="1" ScriptID="215"
                ScriptStatusID="1" Acronym="false">GARANTEX</NamePartValue></DocumentedNamePart>
            </DocumentedName>
          </Alias>
          <Alias FixedRef="36216" AliasTypeID="1403" Primary="true" LowQuality="false">
            <DocumentedName ID="1" FixedRef="36216" DocNameStatusID="1">
              <DocumentedNamePart><NamePartValue NamePartGroupID="1" ScriptID="215"
                ScriptStatusID="1" Acronym="false">GARANTEX EUROPE OU</NamePartValue>
              </DocumentedNamePart>
            </DocumentedName>
          </Alias>
        </Identity>
        <Feature ID="1111" FeatureTypeID="344">
          <FeatureVersion ID="2222" ReliabilityID="1">
            <VersionDetail DetailTypeID="1432">{BTC}</VersionDetail>
          </FeatureVersion>
          <IdentityReference IdentityID="9001" IdentityFeatureLinkTypeID="1" />
        </Feature>
        <Feature ID="1112" FeatureTypeID="345">
          <FeatureVersion ID="2223" ReliabilityID="1">
            <VersionDetail DetailTypeID="1432">{ETH}</VersionDetail>
          </FeatureVersion>
        </Feature>
        <Feature ID="1113" FeatureTypeID="8">
          <FeatureVersion ID="2224" ReliabilityID="1">
            <VersionDetail DetailTypeID="1432">not an address</VersionDetail>
          </FeatureVersion>
        </Feature>
      </Profile>
    </DistinctParty>
    <DistinctParty FixedRef="12345">
      <Profile ID="12345" PartySubTypeID="4" />
    </DistinctParty>
  </DistinctParties>
</Sanctions>
""".encode()

SDN_CSV = (
    '36216,"GARANTEX EUROPE OU","-0- ","CYBER2] [RUSSIA-EO14024","-0- ","-0- ","-0- ",'
    '"-0- ","-0- ","-0- ","-0- ","Website www.garantex.io; Digital Currency Address - XBT '
    f'{BTC}; alt. Digital Currency Address - ETH {ETH}; Organization Established Date '
    '2019; Digital Currency Address - TRX TNqjpBa5nRZo"\r\n'
    '12345,"DOE, John","individual","SDGT","-0- ","-0- ","-0- ","-0- ","-0- ","-0- ",'
    '"-0- ","DOB 01 Jan 1970."\r\n'
).encode("cp1252")
# OFAC cuts remarks over its limit, mid-word, and continues them in SDN_COMMENTS.CSV.
SDN_COMMENTS_CSV = f'36216,"{TRX[12:]}; Secondary sanctions risk."\r\n'.encode()

OPENSANCTIONS_JSONL = "\n".join(json.dumps(e) for e in (
    {"id": "ofac-36216", "schema": "Organization", "caption": "Garantex Europe OU",
     "properties": {"name": ["Garantex Europe OU"]}, "datasets": ["us_ofac_sdn"],
     "last_change": "2026-11-27T10:00:00"},
    {"id": "ofac-wallet-btc", "schema": "CryptoWallet", "caption": BTC,
     "properties": {"publicKey": [BTC], "currency": ["XBT"], "holder": ["ofac-36216"]},
     "datasets": ["us_ofac_sdn"], "last_change": "2026-11-28T09:30:00"},
    {"id": "ofac-wallet-trx", "schema": "CryptoWallet", "caption": TRX,
     "properties": {"publicKey": [TRX], "currency": ["TRX"], "holder": ["unknown-holder"]},
     "datasets": ["us_ofac_sdn"], "last_change": "2026-11-01T00:00:00"},
)).encode() + b"\n"


def parsed_of(data: bytes | list[bytes], fmt: str | None = None) -> sanctions.Parsed:
    files = [io.BytesIO(d) for d in (data if isinstance(data, list) else [data])]
    _fmt, parsed, _sha = sanctions.read_files(files, fmt)
    return parsed


def test_the_three_layouts_give_the_same_listing() -> None:
    xml = parsed_of(SDN_ADVANCED_XML)
    assert [(e.address, e.currency, e.entity, e.entity_ref) for e in xml.entries] == [
        (BTC, "XBT", "GARANTEX EUROPE OU", "36216"),
        (ETH.lower(), "ETH", "GARANTEX EUROPE OU", "36216")]  # hex: compared in lower case
    assert xml.version == "2026-11-28"
    assert xml.published_at == datetime(2026, 11, 28, tzinfo=UTC)

    csv = parsed_of([SDN_CSV, SDN_COMMENTS_CSV])  # the cut TRX address joined again
    assert [(e.address, e.currency, e.entity) for e in csv.entries] == [
        (BTC, "XBT", "GARANTEX EUROPE OU"), (ETH.lower(), "ETH", "GARANTEX EUROPE OU"),
        (TRX, "TRX", "GARANTEX EUROPE OU")]
    # Without the overflow file the cut address is a wrong one, not the real one.
    assert TRX not in {e.address for e in parsed_of(SDN_CSV).entries}
    assert csv.version is None  # the CSV has no date: the import names it by its digest

    ftm = parsed_of(OPENSANCTIONS_JSONL)
    assert [(e.address, e.currency, e.entity, e.entity_ref) for e in ftm.entries] == [
        (BTC, "XBT", "Garantex Europe OU", "ofac-36216"),
        (TRX, "TRX", "unknown-holder", "unknown-holder")]
    assert ftm.version == "2026-11-28T09:30:00"


@pytest.mark.parametrize("data, message", [
    (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><Sanctions>&a;</Sanctions>",
     "DOCTYPE"),
    (b"<Sanctions><DistinctParties>", "not OFAC advanced XML"),
    # UTF-16 without a byte-order mark, and an encoding that can spell a DOCTYPE otherwise
    ('<?xml version="1.0" encoding="UTF-16LE"?><!DOCTYPE S [<!ENTITY n "EVIL">]>'
     '<Sanctions>&n;</Sanctions>'.encode("utf-16-le"), "only UTF-8"),
    (b'<?xml version="1.0" encoding="cp500"?><Sanctions/>', "only UTF-8"),
    (b"<Sanctions><DateOfIssue><Year>2026</Year><Month>13</Month><Day>1</Day>"
     b"</DateOfIssue></Sanctions>", "DateOfIssue is not a date"),
    (b'{"id": "x", "schema": "CryptoWallet", "properties": {}}\nnot json\n', "line 2"),
    (b'{"id": "x", "schema": "Person"}\n', "line 1: not a FollowTheMoney entity"),
    (b"1,2,3\n", "no digital currency address found"),
])
def test_hostile_or_wrong_files_are_one_line_errors(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as failed:
        parsed_of(data)
    assert "\n" not in failed.value.message


def _import(staff: Staff, data: bytes | list[bytes], **kw: Any) -> sanctions.ImportReport:
    fmt_, parsed, sha = sanctions.read_files(
        [io.BytesIO(d) for d in (data if isinstance(data, list) else [data])], None)
    return sanctions.import_list(staff.rt, staff.actors["sue"], fmt_, parsed, sha,
                                 weight=1000, **kw)


def test_import_replaces_the_list_and_rescreens_past_destinations(staff: Staff) -> None:
    rt = staff.rt
    # Before the list: one withdrawal paid BTC and completed, one to ETH waits (pending,
    # screened: nothing fired), and one of another account to an unlisted address.
    request(rt, "PAID", address=BTC, ago=timedelta(days=2))
    assert "address_sanctioned" not in hits(rt, "PAID")
    with rt.transaction() as s:
        s.execute(update(Withdrawal).where(Withdrawal.external_id == "PAID")
                  .values(status="completed"))
    request(rt, "WAITING", address=ETH)
    assert status(rt, "WAITING") == "pending"
    with pytest.raises(RefusedError, match=r"may not sanctions\.import"):
        sanctions.import_list(rt, staff.actors["ann"], "ofac-xml",
                              parsed_of(SDN_ADVANCED_XML), "0" * 64, weight=1000)

    report = _import(staff, SDN_ADVANCED_XML)
    assert (report.name, report.version, report.addresses, report.added,
            report.removed) == ("OFAC SDN", "2026-11-28", 2, 2, 0)
    assert (report.past_withdrawals, report.accounts, report.held, report.flagged) == (
        2, 1, 1, 1)
    assert status(rt, "WAITING") == "held"
    assert hits(rt, "WAITING")["address_sanctioned"] == (
        f"destination {ETH} (ETH) is on OFAC SDN (version 2026-11-28): GARANTEX EUROPE OU "
        "[36216]")  # the withdrawal's own spelling of the address
    assert status(rt, "PAID") == "completed"  # history is not rewritten: an alert says it
    with rt.sessions() as s:
        current = alerts.current(s, rt.clock(), screening.load_config(rt.settings))
    [alert] = [a for a in current if "alert:sanctioned_destination" in a.rules]
    assert alert.severity == "critical" and alert.account == "A1"
    # PAID (completed) as a past payment; WAITING, held now, as a held withdrawal.
    assert dict(alert.parts) == {"past withdrawal to a newly sanctioned address": 1,
                                 "held withdrawal to a sanctioned or known-bad destination": 1}

    # The CSV version of the same list: BTC and ETH stay (their listing time too), TRX
    # is new; a version without ETH then removes it.
    with rt.sessions() as s:
        listed_at = s.scalar(select(SanctionedAddress.listed_at)
                             .where(SanctionedAddress.address == BTC))
    again = _import(staff, [SDN_CSV, SDN_COMMENTS_CSV], version="2026-11-29")
    assert (again.added, again.removed, again.addresses, again.held) == (1, 0, 3, 0)
    with rt.sessions() as s:
        assert s.scalar(select(SanctionedAddress.listed_at)
                        .where(SanctionedAddress.address == BTC)) == listed_at
    fewer = _import(staff, SDN_CSV.replace(f"alt. Digital Currency Address - ETH {ETH}; "
                                           .encode(), b""), version="2026-11-30")
    # ETH and the whole TRX go; without its overflow file the cut TRX is a new entry.
    assert (fewer.added, fewer.removed, fewer.addresses) == (1, 2, 2)
    [view] = sanctions.list_lists(rt, staff.actors["ann"])
    assert (view.name, view.version, view.addresses, view.format) == (
        "OFAC SDN", "2026-11-30", 2, "ofac-csv")
    # A wrong file changes nothing.
    with pytest.raises(InputError, match="no digital currency address"):
        _import(staff, b"nothing here\n")
    assert sanctions.list_lists(rt, staff.actors["ann"])[0].addresses == 2
    with rt.sessions() as s:
        audited = s.scalars(select(AuditLogEntry.details)
                            .where(AuditLogEntry.action == "sanctions.import")).all()
    assert [json.loads(d)["added"] for d in audited] == [2, 1, 1]


def test_screening_holds_a_listed_destination_whatever_the_weights(staff: Staff) -> None:
    rt = staff.rt
    _import(staff, OPENSANCTIONS_JSONL)
    # Even with its weight at 0 (the rule's hit then adds nothing to the score).
    rt.settings = Settings(rt.settings.db_url, rt.settings.keyring_path, options={
        "screening": {"weights": {"address_sanctioned": 0}}})
    found = request(rt, "T1", address=TRX, amount="0.01")
    assert found["address_sanctioned"] == (
        f"destination {TRX} (TRX) is on OpenSanctions crypto wallets (version "
        "2026-11-28T09:30:00): unknown-holder [unknown-holder]")
    assert status(rt, "T1") == "held"
    assert "address_sanctioned" not in request(rt, "T2", amount="0.01")


def test_a_sanctioned_destination_always_needs_a_second_officer(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    _import(staff, SDN_ADVANCED_XML)
    request(rt, "T1", address=BTC, amount="0.01")  # far below the approval limit
    assert status(rt, "T1") == "held"
    opened = wds.approve(rt, ann, "T1", "client says it is their own wallet")
    assert opened.approval_id is not None and status(rt, "T1") == "in_review"
    assert "its destination is sanctioned or known-bad; four-eyes request" in (
        opened.summary())
    with rt.sessions() as s:
        request_row = s.get(ApprovalRequest, opened.approval_id)
        assert request_row is not None
        reason = request_row.reason
    assert reason.startswith("SANCTIONED or KNOWN-BAD destination") and "OFAC SDN" in reason
    four_eyes.approve(rt, sue, opened.approval_id, staff.next_code("sue"))
    assert status(rt, "T1") == "approved"


def test_listing_between_the_choice_and_the_approval_is_a_conflict(
        staff: Staff, monkeypatch) -> None:
    """The officer's approve() read the lists before a list naming the destination was
    imported: its transaction, under the sanctions lock, sees the list and refuses."""
    rt = staff.rt
    request(rt, "T1", address=BTC, amount="0.01", ip="198.51.100.77",
            login_extra={"country": "FR"})
    assert status(rt, "T1") == "held"
    real = sanctions.second_officer_reasons
    calls = []

    def before_the_import(session, withdrawal_id, address):
        calls.append(address)
        if len(calls) == 1:  # approve()'s first read: the list is not there yet
            _import(staff, SDN_ADVANCED_XML)
            return []
        return real(session, withdrawal_id, address)

    monkeypatch.setattr(sanctions, "second_officer_reasons", before_the_import)
    with pytest.raises(ConflictError, match="on a sanctions list"):
        wds.approve(rt, staff.actors["ann"], "T1", "looks fine")
    assert len(calls) == 2 and status(rt, "T1") == "held"


def test_an_approval_waits_for_an_import_that_is_still_running(staff: Staff,
                                                             monkeypatch) -> None:
    """An import holds the sanctions lock until it commits: an approval by one officer
    that began while it ran (and read no list yet) waits, then sees the list."""
    rt = staff.rt
    request(rt, "T1", address=BTC, amount="0.01", ip="198.51.100.77",
            login_extra={"country": "FR"})
    assert status(rt, "T1") == "held"
    inside, release = threading.Event(), threading.Event()
    real = sanctions._rescreen

    def slow_rescreen(*args: Any) -> Any:
        inside.set()
        assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(sanctions, "_rescreen", slow_rescreen)
    importer = threading.Thread(target=_import, args=(staff, SDN_ADVANCED_XML))
    importer.start()
    assert inside.wait(30)
    results: list[BaseException | str] = []

    def approve() -> None:
        try:
            results.append(wds.approve(rt, staff.actors["ann"], "T1", "looks fine").status)
        except BaseException as exc:
            results.append(exc)

    approver = threading.Thread(target=approve)
    approver.start()
    approver.join(1.0)
    assert approver.is_alive()  # waiting for the import's lock
    release.set()
    importer.join(30)
    approver.join(30)
    [result] = results
    assert isinstance(result, ConflictError), result
    assert status(rt, "T1") == "held"


def test_a_batch_judged_before_an_import_is_held_when_recorded(staff: Staff) -> None:
    """Screening judges, a list is imported, then the verdict is recorded: the lists are
    looked up again under the screening lock and the withdrawal is held."""
    rt = staff.rt
    request(rt, "T0")  # the history's usual request, screened
    ingest(rt, "logins", login("T1-login", at=iso(timedelta(hours=1, minutes=5))))
    ingest(rt, "withdrawals", withdrawal("T1", at=iso(timedelta(hours=1)), address=BTC,
                                         amount="0.35", available_balance="5",
                                         login_id="T1-login"))
    with rt.sessions() as s:
        wid = s.scalars(select(Withdrawal.id).where(Withdrawal.external_id == "T1")).one()
    cfg = screening.load_config(rt.settings)
    verdict = screening._judge(rt.sessions, [wid], cfg)
    assert "address_sanctioned" not in {h.rule for h in verdict.hits.get(wid, [])}
    _import(staff, SDN_ADVANCED_XML)
    screening._record(rt, verdict, cfg, screening.ScreenReport())
    assert status(rt, "T1") == "held"
    assert "address_sanctioned" in hits(rt, "T1")


def test_addresses_match_whatever_their_case_and_spaces(staff: Staff) -> None:
    rt = staff.rt
    _import(staff, SDN_ADVANCED_XML)
    for n, address in enumerate((ETH.upper().replace("0X", "0x"), f" {ETH.lower()} ")):
        found = request(rt, f"C{n}", address=address, amount="0.01")
        assert "address_sanctioned" in found and status(rt, f"C{n}") == "held"
    # Base58 addresses keep their case: it is part of the address, also where a mixed-case
    # base58 string happens to fit bech32's alphabet (bech32 is never mixed-case).
    assert "address_sanctioned" not in request(rt, "C9", address=BTC.lower(),
                                               amount="0.01")
    assert sanctions.address_key("Tq1pzqx5v8cw2") == "Tq1pzqx5v8cw2"
    assert sanctions.address_key("BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ") == (
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")


def test_an_older_or_much_smaller_file_needs_allow_shrink(staff: Staff) -> None:
    rt = staff.rt
    many = "\n".join(json.dumps(
        {"id": f"w{i}", "schema": "CryptoWallet", "last_change": "2026-11-28T00:00:00",
         "properties": {"publicKey": [f"bc1qlisted{i:04d}xyzxyzxyzxyz"], "currency": ["XBT"]}})
        for i in range(20)).encode()
    assert _import(staff, many).addresses == 20
    few = b"\n".join(many.splitlines()[:5])
    with pytest.raises(InputError, match="would remove 15 of the 20 addresses"):
        _import(staff, few)
    older = many.replace(b"2026-11-28", b"2026-10-01")
    with pytest.raises(InputError, match="dated 2026-10-01, before the imported version"):
        _import(staff, older)
    assert sanctions.list_lists(rt, staff.actors["ann"])[0].addresses == 20
    assert _import(staff, few, allow_shrink=True).addresses == 5
    # Listed again: its payments were recorded before, and the import still works.
    request(rt, "PAID", address="bc1qlisted0007xyzxyzxyzxyz", amount="0.01")
    assert _import(staff, many, allow_shrink=True).added == 15
    assert _import(staff, few, allow_shrink=True).removed == 15
    assert _import(staff, many, allow_shrink=True).past_withdrawals == 1


def test_a_destination_paid_by_confirmed_fraud_is_known_bad_for_everyone(
        staff: Staff) -> None:
    rt, ann = staff.rt, staff.actors["ann"]
    request(rt, "FRAUD", address="bc1qthiefwallet", ip="198.51.100.8",
            login_extra={"country": "FR"})
    assert status(rt, "FRAUD") == "held"
    wds.reject(rt, ann, "FRAUD", "confirmed with the client: not them")
    from tests.support.screening import build_history

    build_history(rt, "A2")
    found = request(rt, "NEXT", "A2", address="bc1qthiefwallet", amount="0.01")
    assert found["address_known_bad"] == (
        "destination bc1qthiefwallet received withdrawal(s) recorded as confirmed fraud: "
        "FRAUD")
    assert status(rt, "NEXT") == "held"
    assert sanctions.check_address(rt, ann, "bc1qthiefwallet") == ([], ["FRAUD"])
    opened = wds.approve(rt, ann, "NEXT", "client insists")  # a second officer decides
    assert opened.approval_id is not None and status(rt, "NEXT") == "in_review"
    # A later outcome for the fraud's withdrawal (it was not fraud after all) wins.
    with rt.transaction() as s:
        outcomes.record(s, ann.officer_id, rt.clock(), "withdrawal:FRAUD", "false_positive",
                        "the client's own second wallet", [])
    assert sanctions.check_address(rt, ann, "bc1qthiefwallet") == ([], [])


def test_the_command(staff: Staff, tmp_path: Path, db_url: str, capsys,
                     monkeypatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the command's wiring does not depend on the engine")
    from tests.support.cli import as_automation, run_cli

    rt = staff.rt
    as_automation(monkeypatch, rt, staff.actors["root"], db_url)
    xml = tmp_path / "sdn_advanced.xml"
    xml.write_bytes(SDN_ADVANCED_XML)
    done = run_cli(capsys, "sanctions", "import", str(xml), "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["added"] == 2
    assert sanctions.list_lists(rt, staff.actors["ann"])[0].version == "2026-11-28"
    # Reading lists is for officers; the automation account only imports.
    listing = run_cli(capsys, "sanctions", "lists", "--json")
    assert listing.code == 3 and "may not read" in listing.err
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    refused = run_cli(capsys, "sanctions", "import", str(bad))
    assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1
    ingest(rt, "withdrawals", withdrawal("X1", at=iso(timedelta(hours=1)), address=BTC))
    screening.screen(rt, CRON)
    assert status(rt, "X1") == "held"
