"""IP reputation lists: the four layouts (small files written the way FireHOL, the Tor
Project, CrowdSec and an ASN table write theirs), the import's replacement of a list,
and the lists in use: login findings (incremental and full runs alike) and screening
hits that name the list and its age. All three databases where a database is
involved."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import AuditLogEntry, LoginAnomaly, LoginEvent
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.logins import anomalies
from polysec_tui.services.networks import reputation
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import screening
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, login, withdrawal
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.screening import CRON, HOME_ADDRESS, hits, iso, request

TOR_IP = "185.220.101.4"
BAD_IP = "45.155.205.233"
HOSTING_IP = "167.99.20.30"  # DigitalOcean, AS14061

FIREHOL = b"""#
# firehol_level1
#
# ipv4 hash:net ipset
#
# Maintainer      : FireHOL
# Source File Date: Tue Nov 17 09:55:02 UTC 2026
# This File Date  : Tue Nov 17 10:20:46 UTC 2026
# Update Frequency: 1 min
# Entries         : 7 subnets
#
0.0.0.0/8
10.0.0.0/8
45.155.205.0/24
45.155.204.0/24
45.155.205.128/25
192.168.0.0/16
2a0b:f4c0::/40
"""

TOR_EXITS = f"""ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E
Published 2026-11-18 01:47:39
LastStatus 2026-11-18 08:00:00
ExitAddress {TOR_IP} 2026-11-18 08:19:33
ExitNode 0111BA9B604669E636FFD5B503F382A4B7AD6E80
Published 2026-11-18 05:02:11
LastStatus 2026-11-18 10:00:00
ExitAddress 2001:67c:e60:c0c:192:42:116:16 2026-11-18 10:09:54
""".encode()

CROWDSEC_RAW = (
    "id,source,ip,reason,action,country,as,events_count,expiration,simulated,alert_id\n"
    "802,cscli,Ip:198.51.100.9,manual 'ban',ban,,,1,3h50m58s,false,802\n"
    f"801,crowdsec,Ip:{BAD_IP},crowdsecurity/ssh-bf,ban,RU,AS211252,6,3h59m45s,false,801\n"
    "800,crowdsec,Range:91.92.240.0/22,crowdsecurity/http-probing,ban,NL,,3,3h,false,800\n"
    "799,cscli,Username:bob,manual 'ban',ban,,,1,3h,false,799\n"
    "798,crowdsec,Ip:45.155.206.1,crowdsecurity/ssh-bf,ban,,,1,3h,true,798\n"
).encode()

CROWDSEC_IMPORT = (
    b"value,scope,duration,type,reason,origin\n"
    b"91.92.241.7,Ip,24h,ban,crowdsecurity/ssh-slow-bf,cscli-import\n"
    b"DE,Country,24h,ban,manual,cscli-import\n"
)

ASN_TABLE = (b"asn,category,name\nAS14061,hosting,DigitalOcean\n9009,vpn,M247\n"
             b"3320,residential,DTAG\n")


def parsed(data: bytes, fmt: str | None = None) -> reputation.Parsed:
    _fmt, result, _sha = reputation.read_file(io.BytesIO(data), fmt)
    return result


def ranges(p: reputation.Parsed) -> list[str]:
    return [reputation._range_text(first, last) for first, last, _ in p.ranges]


def test_the_four_layouts() -> None:
    firehol = parsed(FIREHOL)
    # Bogons and private ranges skipped; the two /24s (and the /25 inside) merged.
    assert ranges(firehol) == ["45.155.204.0/23", "2a0b:f4c0::/40"]
    assert firehol.skipped_local == 3
    assert firehol.published_at is not None
    assert firehol.published_at.isoformat() == "2026-11-17T10:20:46+00:00"

    tor = parsed(TOR_EXITS)
    assert reputation.detect_format(TOR_EXITS) == "tor"
    assert ranges(tor) == [TOR_IP, "2001:67c:e60:c0c:192:42:116:16"]
    assert tor.published_at is not None
    assert tor.published_at.isoformat() == "2026-11-18T10:09:54+00:00"

    raw = parsed(CROWDSEC_RAW)
    # 198.51.100.9 is a documentation address: not global, skipped.
    assert ranges(raw) == [BAD_IP, "91.92.240.0/22"]
    assert (raw.skipped_scope, raw.skipped_local, raw.skipped_simulated) == (1, 1, 1)
    assert [note for _, _, note in raw.ranges] == ["crowdsecurity/ssh-bf",
                                                   "crowdsecurity/http-probing"]
    imported = parsed(CROWDSEC_IMPORT)
    assert ranges(imported) == ["91.92.241.7"] and imported.skipped_scope == 1

    table = parsed(ASN_TABLE)
    assert table.asns == {14061: ("hosting", "DigitalOcean"), 9009: ("vpn", "M247"),
                          3320: ("residential", "DTAG")}
    plain = parsed(f"# Tor bulk exit list\n{TOR_IP}\n".encode())
    assert ranges(plain) == [TOR_IP]


def test_no_entry_reaches_private_space_or_all_of_ipv4() -> None:
    wide = parsed(b"172.0.0.0/8\n::/64\n::/80\n::ffff:45.155.205.0/120\n"
                  b"45.155.205.4 # ssh\n224.0.0.0/3\n")
    # 172.0.0.0/8 without 172.16/12; ::/64 and ::/80 lie in ::/8 (which holds IPv4's
    # mapped block) and reach nothing of IPv4; FireHOL's 224.0.0.0/3 is all reserved.
    assert wide.skipped_local == 4
    listed = reputation.Reputation(
        [(VIEW, [r[0] for r in wide.ranges], [r[1] for r in wide.ranges],
          [r[2] for r in wide.ranges])], {})
    assert listed.listed("45.155.205.9")  # the mapped /120 is the IPv4 /24
    assert listed.listed("172.1.1.1") and not listed.listed("8.8.8.8")
    assert not listed.listed("172.16.0.1") and not listed.listed("224.0.0.1")
    for wider_than_a_slash_8 in (b"128.0.0.0/1", b"::ffff:0:0/96", b"44.0.0.0/7"):
        with pytest.raises(InputError, match="covers more public addresses than a /8"):
            parsed(wider_than_a_slash_8 + b"\n")
    # Adjacent entries with different reasons stay apart (each keeps its own); the same
    # address twice, with and without a reason, is one entry.
    notes = parsed(b"value,reason\n45.155.205.4,http-probing\n45.155.205.5,ssh-bf\n"
                   b"45.155.205.5,\n", "crowdsec")
    assert [(reputation._range_text(a, b), n) for a, b, n in notes.ranges] == [
        ("45.155.205.4", "http-probing"), ("45.155.205.5", "ssh-bf")]


@pytest.mark.parametrize("data, fmt, message", [
    (b"45.155.205.0/24\nnot-an-ip\n", None, r"line 2: 'not-an-ip' is not an IP address"),
    (b"45.155.205.0/24\n300.1.2.3\n", "netset", r"line 2: '300\.1\.2\.3' is not"),
    (b"\xff\xfe4\x005\x00", "netset", "not a UTF-8 text file"),
    (b"# only comments\n", None, "no entry found"),
    (b"10.0.0.0/8\n", None, "no entry found"),  # nothing global: nothing to use
    (b"asn,category\nAS1,evil\n", None, "line 2: unknown category 'evil'"),
    (b"asn,category\nASX,hosting\n", None, "line 2: 'ASX' is not an AS number"),
    (b"asn,category\n99999999999,hosting\n", None, "is not an AS number"),
    (b"when,who\n1,2\n", "crowdsec", "no 'value' or 'ip' column"),
    (b"ExitNode ABC\nGarbage here\n", "tor", "line 2: not a line of Tor's exit-addresses"),
    (b"\x1b[2J1.2.3.4\n", None, r"line 1: '\\x1b\[2J1\.2\.3\.4' is not"),
    (b"value\n\"" + b"1" * 200_000 + b"\"\n", "crowdsec", "line 2: not CSV"),
    (b"# This File Date  : Tue Nov 17 10:20:46 UTC 1999\n45.155.205.0/24\n", None,
     "dated 1999-11-17: not a date a list can have"),
])
def test_bad_files_are_one_line_errors(data: bytes, fmt: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parsed(data, fmt)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


VIEW = reputation.ListView("t", "attack", "netset", "v", None, datetime(2026, 11, 1, tzinfo=UTC),
                           0, "")


def _import(staff: Staff, data: bytes, name: str, **kw: object) -> reputation.ImportReport:
    fmt, result, sha = reputation.read_file(io.BytesIO(data), None)
    return reputation.import_list(staff.rt, staff.actors["sue"], fmt, result, sha,
                                  name=name, **kw)  # type: ignore[arg-type]


def test_import_replaces_a_list_and_every_change_is_audited(staff: Staff) -> None:
    rt = staff.rt
    with pytest.raises(RefusedError, match=r"may not iplists\.import"):
        fmt, result, sha = reputation.read_file(io.BytesIO(FIREHOL), None)
        reputation.import_list(rt, staff.actors["ann"], fmt, result, sha, name="x")
    first = _import(staff, FIREHOL, "firehol_level1")
    assert (first.category, first.entries, first.previous_entries, first.version) == (
        "attack", 2, 0, "2026-11-17T10:20:46Z")
    again = _import(staff, f"{BAD_IP}\n".encode(), "firehol_level1")
    assert (again.entries, again.previous_entries) == (1, 2)
    _import(staff, TOR_EXITS, "Tor-Exits")  # names are kept in lower case
    _import(staff, ASN_TABLE, "asn-types")
    # A new version without --category keeps the list's category.
    tor_bulk = f"{TOR_IP}\n".encode()
    assert _import(staff, tor_bulk, "tor-bulk", category="tor").category == "tor"
    assert _import(staff, tor_bulk + b"185.220.101.5\n", "tor-bulk").category == "tor"
    reputation.remove_list(rt, staff.actors["sue"], "tor-bulk")
    with pytest.raises(InputError, match="in the future"):
        _import(staff, b"# This File Date  : Tue Nov 24 10:20:46 UTC 2026\n1.1.1.1\n", "x")
    with pytest.raises(InputError, match="an ASN table names a category per line"):
        _import(staff, ASN_TABLE, "asn-types", category="tor")
    with pytest.raises(InputError, match="asn-types is an ASN table"):
        _import(staff, FIREHOL, "asn-types")
    with pytest.raises(InputError, match="category is one of"):
        _import(staff, FIREHOL, "mobiles", category="mobile")
    views = {v.name: v for v in reputation.list_lists(rt, staff.actors["ann"])}
    assert {n: (v.category, v.format, v.entries) for n, v in views.items()} == {
        "asn-types": ("asn", "asn", 3), "firehol_level1": ("attack", "netset", 1),
        "tor-exits": ("tor", "tor", 2)}

    marks = reputation.check(rt, staff.actors["ann"], BAD_IP, 14061)
    assert [(m.list.name, m.rule) for m in marks] == [
        ("firehol_level1", "ip_reputation"), ("asn-types", "anonymizing_network")]
    assert reputation.check(rt, staff.actors["ann"], "45.155.205.234", 3320)[0].rule is None
    assert reputation.check(rt, staff.actors["ann"], "8.8.8.8", None) == ()
    # An IPv4-mapped IPv6 address is its IPv4 address.
    assert reputation.check(rt, staff.actors["ann"], f"::ffff:{BAD_IP}", None)

    removed = reputation.remove_list(rt, staff.actors["sue"], "tor-exits")
    assert removed.entries == 2
    assert reputation.check(rt, staff.actors["ann"], TOR_IP, None) == ()
    with pytest.raises(InputError, match="no IP list named 'tor-exits'"):
        reputation.remove_list(rt, staff.actors["sue"], "tor-exits")
    with rt.sessions() as s:
        audited = [(a, json.loads(d).get("entries")) for a, d in s.execute(
            select(AuditLogEntry.action, AuditLogEntry.details)
            .where(AuditLogEntry.action.like("iplists.%")).order_by(AuditLogEntry.seq))]
    assert audited == [("iplists.import", 2), ("iplists.import", 1), ("iplists.import", 2),
                       ("iplists.import", 3), ("iplists.import", 1),
                       ("iplists.import", 1),  # .4 and .5: one range
                       ("iplists.remove", 1), ("iplists.remove", 2)]


def _findings(staff: Staff) -> dict[tuple[str, str], str]:
    with staff.rt.sessions() as s:
        from polysec_tui.db.models import LoginEvent
        return {(kind, ext): explanation for kind, ext, explanation in s.execute(
            select(LoginAnomaly.kind, LoginEvent.external_id, LoginAnomaly.explanation)
            .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginAnomaly.kind.in_(("ip_reputation", "anonymizing_network"))))}


def test_logins_from_listed_networks_are_findings_that_name_the_list(staff: Staff) -> None:
    rt = staff.rt
    _import(staff, FIREHOL, "firehol_level1")
    _import(staff, TOR_EXITS, "tor-exits")
    _import(staff, ASN_TABLE, "asn-types")
    at = iso(timedelta(hours=3))
    ingest(rt, "logins",
           login("BAD", ip=BAD_IP, asn=211252, at=at),
           login("TOR", ip=TOR_IP, asn=208294, at=at),
           login("DO-1", ip=HOSTING_IP, asn=14061, at=at),
           login("DO-2", ip="167.99.20.31", asn=14061, at=iso(timedelta(hours=2))),
           login("HOME", at=at),  # the client's own residential network: nothing
           # From the client's usual network, country and device, but an address on a
           # threat list: no other detector looks at it (the full run's pre-filter must).
           login("USUAL-NET", ip="45.155.205.77", at=iso(timedelta(hours=1))))
    anomalies.analyze(rt, CRON)
    found = _findings(staff)
    assert set(found) == {("ip_reputation", "BAD"), ("anonymizing_network", "TOR"),
                          ("anonymizing_network", "DO-1"), ("ip_reputation", "USUAL-NET")}
    assert found[("ip_reputation", "BAD")] == (
        f"IP {BAD_IP} (in 45.155.204.0/23) is on firehol_level1 (attack list as of "
        "2026-11-17 10:20 UTC, 2 d 22 h old)")
    assert found[("anonymizing_network", "TOR")] == (
        f"IP {TOR_IP} is on tor-exits (tor list as of 2026-11-18 10:09 UTC, 1 d 22 h old); "
        "the account has not logged in from AS208294 in its 9 previous successful logins")
    assert found[("anonymizing_network", "DO-1")].startswith(
        "AS14061 (DigitalOcean, hosting) is on asn-types (asn list as of ")
    # DO-2 came from the same network an hour after DO-1: the client's network now.
    with rt.sessions() as s:
        severities = sorted(s.execute(select(LoginAnomaly.kind, LoginAnomaly.severity)
                                      .where(LoginAnomaly.kind.in_(
                                          ("ip_reputation", "anonymizing_network")))).all())
    # Tor weighs more than a hosting provider.
    assert [tuple(r) for r in severities] == [("anonymizing_network", "low"),
                                              ("anonymizing_network", "medium"),
                                              ("ip_reputation", "high"),
                                              ("ip_reputation", "high")]

    # A full run finds exactly the same.
    before = _findings(staff)
    anomalies.analyze(rt, CRON, full=True)
    assert _findings(staff) == before


def test_the_risk_score_weighs_a_new_anonymising_network_even_without_history(
        staff: Staff) -> None:
    """An account with no history borrows from the population: a hosting network, which
    few of the population's logins come from, adds log10(0.30 / its share) to the risk
    score; once the account has used that network, nothing."""
    import dataclasses

    from polysec_tui.services.logins import rules

    rt = staff.rt
    _import(staff, ASN_TABLE, "asn-types")
    ingest(rt, "accounts", account("NEW"))
    ingest(rt, "logins", login("FIRST", "NEW", ip=HOSTING_IP, asn=14061,
                               at=iso(timedelta(hours=3))),
           login("AGAIN", "NEW", ip=HOSTING_IP, asn=14061, at=iso(timedelta(hours=2))))
    low = dataclasses.replace(rules.DEFAULTS, risk_log10_threshold=0.1)
    anomalies.analyze(rt, CRON, thresholds=low)
    with rt.sessions() as s:
        risky = {ext: details for ext, details in s.execute(
            select(LoginEvent.external_id, LoginAnomaly.details)
            .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginAnomaly.kind == "risky_login"))}
        logins = s.scalar(select(func.count()).select_from(LoginEvent)
                          .where(LoginEvent.success.is_(True)))
    assert set(risky) == {"FIRST"}  # AGAIN: the account's network now
    # A population of a few logins, none from AS14061: about the reference share.
    assert logins is not None
    parts = risky["FIRST"]["log10_ratio"]
    low_share = rules.smoothed_share(0, logins, "hosting")
    high_share = rules.smoothed_share(2, logins, "hosting")
    assert math.log10(0.30 / high_share) <= parts.pop("network_kind") <= math.log10(
        0.30 / low_share) + 0.001
    assert set(parts.values()) == {0.0}  # nothing else known: nothing else counts
    assert risky["FIRST"]["unseen"][-1] == "hosting network"


def test_a_tor_exit_counts_in_the_risk_score_by_its_reference_share(staff: Staff) -> None:
    """Address lists (Tor exits here) name a kind of network too; no population count is
    kept per address, so its term uses the kind's reference share."""
    import dataclasses

    from polysec_tui.services.logins import rules

    rt = staff.rt
    _import(staff, TOR_EXITS, "tor-exits")
    ingest(rt, "logins", login("TOR", ip=TOR_IP, asn=208294, at=iso(timedelta(hours=3))))
    anything = dataclasses.replace(rules.DEFAULTS, risk_log10_threshold=0.0)
    anomalies.analyze(rt, CRON, thresholds=anything)
    with rt.sessions() as s:
        (details,) = s.scalars(select(LoginAnomaly.details)
                               .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
                               .where(LoginAnomaly.kind == "risky_login",
                                      LoginEvent.external_id == "TOR"))
    expected = math.log10(0.05 / rules.smoothed_share(0, 0, "tor"))
    assert details["log10_ratio"]["network_kind"] == round(expected, 3)
    assert details["unseen"][-1] == "tor network"


def test_screening_names_the_list_and_spares_the_clients_own_network(staff: Staff) -> None:
    rt = staff.rt
    _import(staff, FIREHOL, "firehol_level1")
    _import(staff, ASN_TABLE, "asn-types")
    bad = analysed_request(rt, "T1", ip=BAD_IP, login_extra={"asn": 211252})
    assert bad["ip_reputation"] == (
        f"request IP {BAD_IP} (in 45.155.204.0/23) is on firehol_level1 (attack list as of "
        "2026-11-17 10:20 UTC, 3 d old)")
    # The login behind it, from the same address, is flagged too: not counted again.
    assert "risky_session" not in bad
    # A session from a listed address, the request from the client's home: both count.
    ingest(rt, "logins", login("T4-login", ip=BAD_IP, asn=211252,
                               at=iso(timedelta(minutes=65))))
    ingest(rt, "withdrawals", withdrawal("T4", at=iso(timedelta(hours=1)), amount="0.35",
                                         address=HOME_ADDRESS, available_balance="5",
                                         login_id="T4-login"))
    anomalies.analyze(rt, CRON)
    screening.screen(rt, CRON)
    moved = hits(rt, "T4")
    assert "ip_reputation" not in moved
    assert moved["risky_session"].endswith("was itself flagged: ip_reputation (high)")
    hosted = request(rt, "T2", ip=HOSTING_IP, login_extra={"asn": 14061})
    assert hosted["anonymizing_network"].startswith(
        "request AS14061 (DigitalOcean, hosting) is on asn-types (asn list as of ")
    assert hosted["anonymizing_network"].endswith(
        "no successful login of this account came from AS14061 in the 180 days before")
    # The client's home network is residential: no rule.
    assert not {"ip_reputation", "anonymizing_network"} & set(request(rt, "T3"))


def analysed_request(rt: Runtime, ext: str, **kw: Any) -> dict[str, str]:
    """``request``, with the login analysed before screening (as the watcher does)."""
    screen = screening.screen
    try:
        screening.screen = lambda *a, **k: (anomalies.analyze(rt, CRON), screen(*a, **k))[1]
        return request(rt, ext, **kw)
    finally:
        screening.screen = screen


def test_lists_of_one_database_are_never_used_for_another(tmp_path: Path) -> None:
    def make_runtime(name: str) -> Runtime:
        url = f"sqlite:///{tmp_path / name}.db"
        engine = make_engine(url)
        migrate.upgrade(engine)
        keys = tmp_path / f"{name}-keyring.json"
        write_new_keyring(keys, Keyring.generate(now=FIXED_NOW))
        return Runtime(Settings(db_url=url, keyring_path=keys), engine, load_keyring(keys),
                       clock=MovableClock(FIXED_NOW))

    one, two = make_runtime("one"), make_runtime("two")
    actor = make_staff(one, one.clock).actors["sue"]  # type: ignore[arg-type]
    other = make_staff(two, two.clock).actors["sue"]  # type: ignore[arg-type]
    for rt, who, body in ((one, actor, f"{BAD_IP}\n"), (two, other, f"{TOR_IP}\n")):
        fmt, result, sha = reputation.read_file(io.BytesIO(body.encode()), None)
        reputation.import_list(rt, who, fmt, result, sha, name="same")
    for _ in range(2):
        with one.sessions() as s:
            assert reputation.load(s).listed(BAD_IP) and not reputation.load(s).listed(TOR_IP)
        with two.sessions() as s:
            assert reputation.load(s).listed(TOR_IP) and not reputation.load(s).listed(BAD_IP)


def test_a_vpn_client_is_not_flagged_for_their_usual_vpn(staff: Staff) -> None:
    rt = staff.rt
    _import(staff, ASN_TABLE, "asn-types")
    ingest(rt, "logins", *(login(f"V{d}", ip="5.181.234.10", asn=9009,
                                 at=iso(timedelta(days=d, hours=5))) for d in range(1, 4)))
    anomalies.analyze(rt, CRON)
    assert set(_findings(staff)) == {("anonymizing_network", "V3")}  # the first only
    found = request(rt, "T1", ip="5.181.234.11", login_extra={"asn": 9009})
    assert "anonymizing_network" not in found


MOBILE_TABLE = ASN_TABLE + b"26615,mobile,Telefonica DE\n29465,mobile,MTN Nigeria\n"
BERLIN = {"country": "DE", "city": "Berlin", "lat": 52.52, "lon": 13.405}
FRANKFURT = {"country": "DE", "city": "Frankfurt", "lat": 50.11, "lon": 8.68}  # 424 km
BARCELONA = {"country": "ES", "city": "Barcelona", "lat": 41.39, "lon": 2.17}  # 1,500 km
COPENHAGEN = {"country": "DK", "city": "Copenhagen", "lat": 55.68, "lon": 12.57}  # 355 km
LAGOS = {"country": "NG", "city": "Lagos", "lat": 6.52, "lon": 3.38}  # 5,196 km
NEW_YORK = {"country": "US", "city": "New York", "lat": 40.71, "lon": -74.0}


def _travels(rt: Runtime) -> dict[str, dict[str, Any]]:
    with rt.sessions() as s:
        return {ext: details for ext, details in s.execute(
            select(LoginEvent.external_id, LoginAnomaly.details)
            .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginAnomaly.kind == "impossible_travel"))}


def test_travel_is_judged_by_what_the_network_says_of_the_place(staff: Staff) -> None:
    """A VPN's location is its exit's; a carrier places a phone at its gateway anywhere in
    the country, and a roaming phone at its home carrier: none of that is travel. A
    carrier elsewhere may be off by ``travel_mobile_km``, no more."""
    rt = staff.rt
    _import(staff, MOBILE_TABLE, "asn-types")
    before, after = iso(timedelta(hours=3)), iso(timedelta(hours=2, minutes=45))
    cases = {  # account: (its second login, 15 minutes after one from Berlin at home)
        "VPN": {"ip": "5.181.234.10", "asn": 9009, **NEW_YORK},
        "HOP": {"ip": "5.181.234.11", "asn": 9009, **NEW_YORK},
        "HOSTED": {"ip": HOSTING_IP, "asn": 14061, **NEW_YORK},
        "CARRIER": {"ip": "176.0.0.9", "asn": 26615, **FRANKFURT},
        "ROAMING": {"ip": "176.0.0.10", "asn": 26615, **FRANKFURT},
        "NEAR": {"ip": "105.112.0.9", "asn": 29465, "device_id": "dev-other", **COPENHAGEN},
        "FAR": {"ip": "105.112.0.10", "asn": 29465, "device_id": "dev-other", **LAGOS},
        "HOME-ISP": {"ip": "198.51.100.20", "asn": 3320, **FRANKFURT},
    }
    ingest(rt, "accounts", *(account(a) for a in cases))
    ingest(rt, "logins", *(
        login(f"{a}-1", a, at=before, **(BARCELONA | {"asn": 3352, "ip": "80.58.0.9"}
                                         if a == "ROAMING" else BERLIN))
        for a in cases))
    ingest(rt, "logins", *(login(f"{a}-2", a, at=after, **second)
                           for a, second in cases.items()))
    # A VPN hop is not the start of the next travel: Berlin, New York on a data centre,
    # then Lagos ten minutes later is judged from Berlin.
    ingest(rt, "accounts", account("HOP"))
    ingest(rt, "logins", login("HOP-3", "HOP", at=iso(timedelta(hours=2, minutes=35)),
                               ip="105.113.0.1", asn=36873, **LAGOS))
    anomalies.analyze(rt, CRON)
    travels = _travels(rt)
    assert set(travels) == {"FAR-2", "HOME-ISP-2", "ROAMING-2", "HOP-3"}
    assert round(travels["HOP-3"]["km"]) == 5196  # from Berlin, not from New York
    # The same device went from Wi-Fi in Barcelona to its home carrier: possibly
    # roaming, a lesser finding (a device id is an intruder's to copy).
    assert travels["ROAMING-2"]["possibly_roaming"] and not travels["FAR-2"][
        "possibly_roaming"]
    far = travels["FAR-2"]
    assert far["coarse_km"] == 500 and round(far["km"]) == 5196
    assert far["kmh"] == pytest.approx((far["km"] - 500) * 4, abs=0.5)
    assert travels["HOME-ISP-2"]["coarse_km"] == 0  # a residential ISP locates precisely
    with rt.sessions() as s:
        text = s.scalar(select(LoginAnomaly.explanation)
                        .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
                        .where(LoginEvent.external_id == "FAR-2",
                               LoginAnomaly.kind == "impossible_travel"))
    assert text is not None and "500 km allowed for the mobile network" in text
    # The anonymising networks are not hidden: they are judged as what they are.
    assert {("anonymizing_network", "VPN-2"), ("anonymizing_network", "HOSTED-2")} <= set(
        _findings(staff))
    anomalies.analyze(rt, CRON, full=True)  # a full run judges the same
    assert _travels(rt) == travels

    with rt.sessions() as s:
        severity = dict(s.execute(
            select(LoginEvent.external_id, LoginAnomaly.severity)
            .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
            .where(LoginAnomaly.kind == "impossible_travel")).all())
    assert severity["ROAMING-2"] == "medium" and severity["FAR-2"] == "high"

    # Without an ASN table nothing says what the networks are: every hop is judged.
    reputation.remove_list(rt, staff.actors["sue"], "asn-types")
    anomalies.analyze(rt, CRON, full=True)
    assert set(_travels(rt)) == {f"{a}-2" for a in cases} | {"HOP-3"}


def test_an_exit_teaches_the_profile_no_place_of_the_client(staff: Staff) -> None:
    """A VPN session's New York exit does not make New York a place of the client's: an
    intruder logging in from a New York ISP twenty minutes after the client's Berlin
    login is impossible travel, in an incremental run and a full one alike (the exit's
    country still counts: a client who always uses their VPN appears from there)."""
    rt = staff.rt
    _import(staff, MOBILE_TABLE, "asn-types")
    ingest(rt, "accounts", account("V"))
    ingest(rt, "logins",
           *(login(f"V-h{d}", "V", at=iso(timedelta(days=d + 3))) for d in range(6)),
           login("V-vpn", "V", at=iso(timedelta(days=2)), ip="5.181.234.10", asn=9009,
                 **NEW_YORK),
           login("V-home", "V", at=iso(timedelta(hours=3))),
           login("V-intruder", "V", at=iso(timedelta(hours=2, minutes=40)),
                 ip="198.51.100.20", asn=7922, device_id="dev-x", **NEW_YORK))

    def kinds() -> set[str]:
        with rt.sessions() as s:
            return set(s.scalars(
                select(LoginAnomaly.kind)
                .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
                .where(LoginEvent.external_id == "V-intruder")))

    anomalies.analyze(rt, CRON)
    incremental = kinds()
    assert "impossible_travel" in incremental
    anomalies.analyze(rt, CRON, full=True)
    assert kinds() == incremental


def test_the_command(staff: Staff, tmp_path: Path, db_url: str, capsys,
                     monkeypatch) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the command's wiring does not depend on the engine")
    from tests.support.cli import as_automation, run_cli

    rt = staff.rt
    as_automation(monkeypatch, rt, staff.actors["root"], db_url)
    netset = tmp_path / "firehol_level1.netset"
    netset.write_bytes(FIREHOL)
    done = run_cli(capsys, "iplists", "import", str(netset), "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["name"] == "firehol_level1"
    plain = run_cli(capsys, "iplists", "import", str(netset), "--name", "level1-copy",
                    "--category", "scanner")
    assert plain.code == 0 and "level1-copy (scanner, netset)" in plain.out
    bad = tmp_path / "bad.netset"
    bad.write_bytes(b"1.2.3.4\nnope\n")
    refused = run_cli(capsys, "iplists", "import", str(bad))
    assert refused.code == 2 and refused.err.strip().count("\n") == 0
    assert "line 2" in refused.err
    missing = run_cli(capsys, "iplists", "remove", "no-such-list")
    assert missing.code == 2 and "no IP list named" in missing.err
    usage = run_cli(capsys, "iplists", "check")
    assert usage.code == 2
    assert run_cli(capsys, "iplists", "remove", "level1-copy").code == 0
