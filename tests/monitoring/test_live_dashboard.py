"""The live dashboard (issue 9): its figures and alerts on every database, the change
token, acknowledging an alert (audited), and the console updating by itself while the
platform writes, with a notification and one bell per high-severity event."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update
from textual import events
from textual.pilot import Pilot
from textual.scrollbar import ScrollBar, ScrollBarCorner
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from polysec_tui.app import PolysecApp
from polysec_tui.cli import cli
from polysec_tui.db.models import (
    Account,
    AlertAck,
    ApprovalRequest,
    AuditFinding,
    AuditLogEntry,
    AuditRun,
    BackupRecord,
    CaseOutcome,
    LoginAnomaly,
    LoginEvent,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.screens import dashboard as dashboard_screen
from polysec_tui.screens.alerts import AlertsScreen
from polysec_tui.screens.dashboard import DashboardScreen
from polysec_tui.screens.incidents import AttachScreen
from polysec_tui.screens.widgets import ConfirmScreen, FigureCard
from polysec_tui.services.clients import incidents
from polysec_tui.services.monitoring import alerts, live
from polysec_tui.services.monitoring.dashboard import DashboardService
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.dashboard import account, ago, ingest, load_sample, login
from tests.support.tui import Session, card_text, log_in, settle, sync

READER = Actor(uuid.uuid4(), "reader", "analyst")


def add_anomaly(rt: Runtime, login_ext: str, severity: str, *, kind: str = "impossible_travel",
                minutes_ago: float = 5) -> int:
    with rt.transaction() as s:
        login_id, account_id = s.execute(
            select(LoginEvent.id, LoginEvent.account_id)
            .where(LoginEvent.external_id == login_ext)).one()
        anomaly = LoginAnomaly(kind=kind, severity=severity, score=0.9, account_id=account_id,
                               login_event_id=login_id,
                               at=FIXED_NOW - timedelta(minutes=minutes_ago),
                               source_ip="203.0.113.7", source_asn=64500,
                               explanation="Lagos then Porto in 5 minutes", details={},
                               detected_at=FIXED_NOW)
        s.add(anomaly)
        s.flush()
        return anomaly.id


def hold(rt: Runtime, external_id: str) -> int:
    with rt.transaction() as s:
        s.execute(update(Withdrawal).where(Withdrawal.external_id == external_id)
                  .values(status="held"))
        wid = int(s.scalar(select(Withdrawal.id).where(Withdrawal.external_id == external_id))
                  or 0)
        s.add(WithdrawalScreening(withdrawal_id=wid, screened_at=FIXED_NOW, risk_score=80.0))
        return wid


def withdraw(rt: Runtime, ext: str, asset: str, amount: str, minutes_ago: float = 1) -> None:
    ingest(rt, "withdrawals", [
        {"id": ext, "account": "acc-001", "at": ago(minutes=minutes_ago), "asset": asset,
         "amount": amount, "address": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",
         "ip": "198.51.100.66"}])


def add_audit_run(rt: Runtime, who: uuid.UUID, result: str, *, hours_ago: float = 1) -> int:
    with rt.transaction() as s:
        run = AuditRun(started_at=FIXED_NOW - timedelta(hours=hours_ago),
                       finished_at=FIXED_NOW - timedelta(hours=hours_ago), officer_id=who,
                       result=result)
        s.add(run)
        s.flush()
        for name, status in (("backup_freshness", "fail" if result == "fail" else "pass"),
                             ("key_hygiene", "pass"), ("officer_hygiene", "fail"
                                                       if result == "fail" else "warn")):
            s.add(AuditFinding(run_id=run.id, check_name=name, status=status, summary="s",
                               evidence={}, remediation="r"))
        return run.id


def add_backup(rt: Runtime, hours_ago: float, *, verified: bool, shipped: bool,
               status: str = "complete") -> None:
    at = FIXED_NOW - timedelta(hours=hours_ago)
    with rt.transaction() as s:
        s.add(BackupRecord(id=uuid.uuid4(), created_at=at, path="/b/x.polybak", engine="sqlite",
                           size_bytes=10, sha256="0" * 64, alembic_revision="0006",
                           field_key_ids={}, verified_at=at if verified else None,
                           shipped_at=at if shipped else None,
                           shipped_to="sftp://b" if shipped else None, status=status))


def add_approval(rt: Runtime, who: uuid.UUID, hours_ago: float, *, expired: bool = False,
                 status: str = "pending") -> None:
    at = FIXED_NOW - timedelta(hours=hours_ago)
    with rt.transaction() as s:
        s.add(ApprovalRequest(id=uuid.uuid4(), kind="withdrawal.approve", requester_id=who,
                              reason="r", payload={}, created_at=at,
                              expires_at=FIXED_NOW - timedelta(minutes=1) if expired
                              else FIXED_NOW + timedelta(hours=4), status=status))


# ------------------------------------------------------------------ service figures


def test_live_figures_empty(runtime: Runtime) -> None:
    s = DashboardService(runtime, READER).summary()
    assert (s.logins_failed_1h, s.anomalies_24h, s.anomalies_high_24h) == (0, 0, 0)
    assert (s.approvals_pending, s.approvals_oldest_at) == (0, None)
    assert (s.backup, s.audit, s.incidents_open, s.alerts) == (None, None, 0, ())


def test_live_figures(runtime: Runtime) -> None:
    load_sample(runtime)
    chief = log_in(runtime)
    who = chief[1].officer_id
    ingest(runtime, "logins", [
        login("r1", "acc-005", ago(minutes=59), False, "192.0.2.60"),
        login("r2", "acc-005", ago(minutes=61), False, "192.0.2.60"),  # outside the hour
    ])
    add_anomaly(runtime, "l2", "critical")
    add_anomaly(runtime, "l5", "high", kind="new_country", minutes_ago=10)
    add_anomaly(runtime, "l3", "medium", kind="new_device")
    add_anomaly(runtime, "l4", "critical", kind="brute_force", minutes_ago=60 * 25)  # too old
    add_approval(runtime, who, 3)
    add_approval(runtime, who, 1)
    add_approval(runtime, who, 5, expired=True)
    add_approval(runtime, who, 6, status="approved")
    add_backup(runtime, 30, verified=True, shipped=True)
    add_backup(runtime, 6, verified=True, shipped=False)
    add_backup(runtime, 1, verified=False, shipped=False, status="pruned")
    add_audit_run(runtime, who, "pass", hours_ago=30)
    run = add_audit_run(runtime, who, "fail", hours_ago=2)
    incidents.open_incident(runtime, chief[1], title="stuffing", severity="high",
                            accounts=["acc-001"])

    s = DashboardService(runtime, READER).summary()
    # failed logins in (now - 1 h, now]: l8 (now) and r1; r2 is 61 minutes old
    assert s.logins_failed_1h == 2
    assert s.logins_failed_24h == 6 and s.failed_per_hour_24h == 0.2
    assert not s.failed_rate_alarming
    assert (s.anomalies_24h, s.anomalies_high_24h) == (3, 2)
    assert s.approvals_pending == 2
    assert s.approvals_oldest_at == FIXED_NOW - timedelta(hours=3)
    # l2 (acc-001, critical) and l5 (acc-003, high): one alert per account.
    assert len(alerts_list := [a for a in s.alerts if a.kind == "account"]) == 2
    assert (alerts_list[0].title, alerts_list[0].severity) == ("impossible travel",
                                                               "critical")
    assert s.backup is not None
    assert (s.backup.created_at, s.backup.verified, s.backup.shipped) == (
        FIXED_NOW - timedelta(hours=6), True, False)
    assert s.backup.age_hours(s.as_of) == 6.0
    assert s.audit is not None and (s.audit.run_id, s.audit.result, s.audit.failed) == (
        run, "fail", 2)
    assert s.incidents_open == incidents.open_count(runtime) == 1


def test_failed_rate_alarm(runtime: Runtime) -> None:
    load_sample(runtime)
    ingest(runtime, "logins", [login(f"b{i}", "acc-005", ago(minutes=i + 1), False, "192.0.2.9")
                               for i in range(12)])
    s = DashboardService(runtime, READER).summary()
    assert s.logins_failed_1h == 13  # and l8
    assert s.failed_rate_alarming  # 13 in the hour against a 24-hour average of 0.7


def test_approvals_count_matches_list_requests(runtime: Runtime) -> None:
    from polysec_tui.services import four_eyes

    chief = log_in(runtime)
    add_approval(runtime, chief[1].officer_id, 2)
    add_approval(runtime, chief[1].officer_id, 2, expired=True)
    s = DashboardService(runtime, READER).summary()
    assert s.approvals_pending == len(four_eyes.list_requests(runtime, READER)) == 1


# ------------------------------------------------------------------------- alerts


def account_key(rt: Runtime, external_id: str) -> str:
    with rt.sessions() as s:
        return f"account:{s.scalar(select(Account.id).where(Account.external_id == external_id))}"


def test_alerts_kinds_and_thresholds(runtime: Runtime) -> None:
    load_sample(runtime)  # w2 is held, but 3.25 ETH is under the ETH four-eyes limit (15)
    chief = log_in(runtime)
    assert alerts.list_alerts(runtime, READER) == []
    withdraw(runtime, "big", "BTC", "2.5")  # BTC limit 0.75
    withdraw(runtime, "small", "BTC", "0.5")
    withdraw(runtime, "odd", "PEPE", "1")  # no limit configured: always four-eyes
    hold(runtime, "big"), hold(runtime, "small"), hold(runtime, "odd")
    add_anomaly(runtime, "l2", "high")  # acc-001 as well
    add_anomaly(runtime, "l5", "low")
    run = add_audit_run(runtime, chief[1].officer_id, "fail")
    add_audit_run(runtime, chief[1].officer_id, "fail", hours_ago=30)  # older than 24 h
    add_audit_run(runtime, chief[1].officer_id, "warn")
    found = alerts.list_alerts(runtime, READER)
    acc1 = account_key(runtime, "acc-001")
    assert {a.key for a in found} == {acc1, f"audit:{run}"}
    assert [a.at for a in found] == sorted((a.at for a in found), reverse=True)
    by_key = {a.key: a for a in found}
    account = by_key[acc1]
    assert (account.account, account.severity, account.events) == ("acc-001", "high", 3)
    assert account.title == "held withdrawal (2), impossible travel"
    assert dict(account.parts) == {"held withdrawal": 2, "impossible travel": 1}
    assert "held above the four-eyes limit: 1 PEPE, 2.5 BTC" in account.detail
    assert by_key[f"audit:{run}"].detail == "failed: backup_freshness, officer_hygiene"


def test_large_held_withdrawal_alerts_behind_a_long_queue(runtime: Runtime) -> None:
    """The amount test is in SQL: small held withdrawals, however many and however new,
    do not hide a large one."""
    load_sample(runtime)
    withdraw(runtime, "big", "ETH", "15.01", minutes_ago=50)  # ETH limit 15
    hold(runtime, "big")
    for i in range(5):
        withdraw(runtime, f"s{i}", "ETH", "15", minutes_ago=i + 1)  # at the limit: no alert
        hold(runtime, f"s{i}")
    (alert,) = alerts.list_alerts(runtime, READER)
    assert alert.key == account_key(runtime, "acc-001") and alert.events == 1
    assert "15.01 ETH" in alert.detail


def brute_force(rt: Runtime, account: str, n: int, *, severity: str = "high",
                minutes_ago: float = 30, kind: str = "brute_force",
                ip: str = "203.0.113.7") -> None:
    """``n`` findings on ``n`` new failed logins of ``account``, a minute apart."""
    ingest(rt, "logins", [login(f"{account}-{kind}-{minutes_ago}-{i}", account,
                                ago(minutes=minutes_ago - i), False, ip)
                          for i in range(n)])
    with rt.transaction() as s:
        for event in s.scalars(select(LoginEvent).where(
                LoginEvent.external_id.like(f"{account}-{kind}-{minutes_ago}-%"))):
            s.add(LoginAnomaly(kind=kind, severity=severity, score=float(n),
                               account_id=event.account_id, login_event_id=event.id,
                               at=event.at, source_ip=ip, source_asn=64500,
                               explanation="failed logins", details={"source": ip},
                               detected_at=event.at + timedelta(seconds=30)))


def test_a_campaign_is_one_alert_that_grows_and_rises(runtime: Runtime) -> None:
    """100 brute-force findings on one account are one alert with its count; a stuffing
    campaign from one IP over 150 accounts is one alert, however many rows; more
    findings grow the alert, a worse one raises its severity, and an acknowledgement
    covers what was seen: a later finding brings the alert back."""
    load_sample(runtime)
    chief = log_in(runtime)
    brute_force(runtime, "acc-002", 100, minutes_ago=200)
    ingest(runtime, "accounts", [account(f"victim-{i:03d}", totp=False) for i in range(150)])
    for i in range(150):
        brute_force(runtime, f"victim-{i:03d}", 1, kind="credential_stuffing",
                    ip="198.51.100.250", minutes_ago=100)
    found = {a.key: a for a in alerts.list_alerts(runtime, READER)}
    assert len(found) == 2  # not 250
    victim = found[account_key(runtime, "acc-002")]
    assert (victim.title, victim.events, victim.severity) == ("brute force (100)", 100, "high")
    campaign = found["source:198.51.100.250"]
    assert (campaign.events, campaign.accounts, campaign.ips) == (150, 150, 1)
    assert campaign.title == "credential stuffing (150) from 198.51.100.250"
    summary = DashboardService(runtime, READER).summary()
    assert len(summary.alerts) == 2
    # Acknowledged as seen; one more attempt later brings it back, grown.
    alerts.acknowledge(runtime, chief[1], victim.key, "client reset the password",
                       through=victim.arrived, outcome="benign")
    assert victim.key not in {a.key for a in alerts.list_alerts(runtime, READER)}
    brute_force(runtime, "acc-002", 1, minutes_ago=3, severity="critical")
    (again,) = [a for a in alerts.list_alerts(runtime, READER) if a.key == victim.key]
    assert (again.events, again.severity) == (101, "critical")
    with pytest.raises(ConflictError, match="already acknowledged by chief"):
        alerts.acknowledge(runtime, chief[1], victim.key, through=victim.arrived,
                           outcome="benign")
    results = alerts.acknowledge_many(runtime, chief[1], [(again.key, again.arrived),
                                                          (campaign.key, campaign.arrived),
                                                          ("account:nobody", None)], "seen",
                                      outcome="benign")
    assert [(k, type(e).__name__ if e else None) for k, e in results] == [
        (again.key, None), (campaign.key, None), ("account:nobody", "InputError")]
    assert alerts.list_alerts(runtime, READER) == []
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditLogEntry).where(
            AuditLogEntry.action == "alert.acknowledge")) == 3


def test_a_spraying_campaign_and_a_takeover_chain_alert(runtime: Runtime) -> None:
    """Each failed attempt of a spraying campaign is only medium, but the campaign is an
    alert (high); a small held withdrawal alerts when it ends a takeover chain (a
    security change, then a request from an anomalous session), not otherwise."""
    load_sample(runtime)
    ingest(runtime, "accounts", [account(f"sprayed-{i:03d}", totp=False) for i in range(30)])
    for i in range(30):
        brute_force(runtime, f"sprayed-{i:03d}", 1, kind="password_spraying",
                    severity="medium", ip="192.0.2.200", minutes_ago=300)
    withdraw(runtime, "chain", "BTC", "0.1")
    withdraw(runtime, "plain", "BTC", "0.2")
    chain, plain = hold(runtime, "chain"), hold(runtime, "plain")
    with runtime.transaction() as s:
        for rule in ("security_change_hold", "risky_session"):
            s.add(WithdrawalFlag(withdrawal_id=chain, rule=rule, score=60.0, explanation="x",
                                 details={}, created_at=FIXED_NOW))
        s.add(WithdrawalFlag(withdrawal_id=plain, rule="security_change_hold", score=60.0,
                             explanation="x", details={}, created_at=FIXED_NOW))
        # The client's own change from their usual device (15) ends no takeover chain.
        s.add(WithdrawalFlag(withdrawal_id=plain, rule="risky_session", score=35.0,
                             explanation="x", details={}, created_at=FIXED_NOW))
        s.execute(update(WithdrawalFlag).where(WithdrawalFlag.withdrawal_id == plain,
                                               WithdrawalFlag.rule == "security_change_hold")
                  .values(score=15.0))
    found = {a.key: a for a in alerts.list_alerts(runtime, READER)}
    assert set(found) == {"source:192.0.2.200", account_key(runtime, "acc-001")}
    spraying = found["source:192.0.2.200"]
    assert (spraying.severity, spraying.events, spraying.accounts) == ("high", 30, 30)
    takeover = found[account_key(runtime, "acc-001")]
    assert takeover.severity == "critical" and takeover.events == 1
    assert takeover.title == "takeover chain: security change, anomalous session, withdrawal"


def test_a_late_finding_with_an_old_time_brings_the_alert_back(runtime: Runtime) -> None:
    """An acknowledgement covers what had *arrived*: a finding that a later run makes
    about an older login (a late feed, a watcher catching up) is not hidden by it."""
    load_sample(runtime)
    chief = log_in(runtime)
    brute_force(runtime, "acc-002", 3, minutes_ago=60)
    (alert,) = alerts.list_alerts(runtime, READER)
    alerts.acknowledge(runtime, chief[1], alert.key, through=alert.arrived, outcome="benign")
    assert alerts.list_alerts(runtime, READER) == []
    brute_force(runtime, "acc-002", 1, minutes_ago=120, severity="critical")  # older login
    with runtime.transaction() as s:  # ...found only now
        s.execute(update(LoginAnomaly).where(LoginAnomaly.severity == "critical")
                  .values(detected_at=FIXED_NOW))
    (back,) = alerts.list_alerts(runtime, READER)
    assert (back.key, back.events, back.severity) == (alert.key, 4, "critical")
    with pytest.raises(ConflictError):  # a screen showing the old extent changes nothing
        alerts.acknowledge(runtime, chief[1], alert.key, through=alert.arrived,
                           outcome="benign")


def test_a_snooze_is_bounded_audited_listed_and_broken_by_a_worse_event(
        runtime: Runtime) -> None:
    load_sample(runtime)
    chief = log_in(runtime)
    brute_force(runtime, "acc-002", 3, minutes_ago=60)
    (alert,) = alerts.list_alerts(runtime, READER)
    with pytest.raises(InputError, match="1 to 1440 minutes"):
        alerts.snooze(runtime, chief[1], alert.key, 2000, "pentest")
    with pytest.raises(InputError, match="reason"):
        alerts.snooze(runtime, chief[1], alert.key, 60, " ")
    with pytest.raises(InputError, match="not part of alert"):
        alerts.snooze(runtime, chief[1], alert.key, 60, "x", rule="new_country")
    with pytest.raises(RefusedError):
        alerts.snooze(runtime, READER, alert.key, 60, "an analyst may not")
    view = alerts.snooze(runtime, chief[1], alert.key, 60, "client's own pentest",
                         rule="brute_force")
    assert (view.until, view.severity) == (FIXED_NOW + timedelta(hours=1), "high")
    assert alerts.list_alerts(runtime, READER) == []
    assert [s.subject for s in alerts.list_snoozes(runtime, READER)] == [alert.key]
    with runtime.sessions() as s:
        entry = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "alert.snooze")).one()
        assert entry.target == f"alert:{alert.key}"
    # A worse event on the snoozed subject breaks through at once.
    brute_force(runtime, "acc-002", 1, minutes_ago=5, severity="critical")
    (back,) = alerts.list_alerts(runtime, READER)
    assert back.key == alert.key and back.severity == "critical"
    # And the time is bounded: an hour later nothing is snoozed.
    later = runtime.clock
    runtime.clock = lambda: FIXED_NOW + timedelta(minutes=61)
    try:
        assert alerts.list_snoozes(runtime, READER) == []
    finally:
        runtime.clock = later


def test_alerts_are_attached_to_an_incident(runtime: Runtime) -> None:
    """An account's alert and a campaign's alert join an incident by their keys: the
    incident gathers the account (found by it) and every finding of the campaign's
    source; what does not exist is refused and listed while the rest is linked, in one
    audited action; a closed incident takes nothing."""
    load_sample(runtime)
    chief = log_in(runtime)[1]
    brute_force(runtime, "acc-002", 3, minutes_ago=200)
    ingest(runtime, "accounts", [account(f"victim-{i}", totp=False) for i in range(4)])
    for i in range(4):
        brute_force(runtime, f"victim-{i}", 1, kind="credential_stuffing",
                    ip="198.51.100.250", minutes_ago=100)
    victim = account_key(runtime, "acc-002")
    assert {a.key for a in alerts.list_alerts(runtime, READER)} >= {
        victim, "source:198.51.100.250"}
    number = incidents.open_incident(runtime, chief, title="spraying and a victim",
                                     severity="high", accounts=[])
    results = incidents.link_many(runtime, chief, number, [
        ("alert", "account:" + victim.partition(":")[2].upper()),
        ("alert", "source:198.51.100.250"),
        ("alert", "source:192.0.2.99"), ("alert", "monitoring:0"),
        ("anomaly", "99999999")])
    assert [(r.ref, r.added, r.error is not None) for r in results] == [
        (victim, True, False), ("source:198.51.100.250", True, False),
        ("source:192.0.2.99", False, True), ("monitoring:0", False, True),
        ("99999999", False, True)]
    assert results[2].error == "no alert source:192.0.2.99"
    detail = incidents.show(runtime, chief, number)
    assert detail.summary.accounts == ["acc-002"]
    assert ("alert", "source:198.51.100.250") in detail.links
    findings = [t for t in detail.timeline if t.kind == "anomaly"]
    assert len(findings) == 3 + 4  # the victim's brute force, the campaign's stuffing
    assert [i.id for i in incidents.list_incidents(runtime, READER, account="acc-002")] == [
        number]
    with runtime.sessions() as s:
        links = s.scalars(select(AuditLogEntry.details).where(
            AuditLogEntry.action == "incident.link")).all()
    assert sorted(json.loads(d)["kind"] for d in links) == ["account", "alert", "alert"]
    again = incidents.link_many(runtime, chief, number, [("alert", victim)])
    assert [(r.added, r.error) for r in again] == [(False, None)]
    incidents.set_state(runtime, chief, number, "closed", outcome="false_alarm")
    with pytest.raises(ConflictError, match="closed"):
        incidents.link_many(runtime, chief, number, [("alert", victim)])


def test_acknowledge_is_audited_once(runtime: Runtime) -> None:
    load_sample(runtime)
    chief = log_in(runtime)
    add_anomaly(runtime, "l2", "critical")
    key = account_key(runtime, "acc-001")
    before = DashboardService(runtime, READER).change_token()
    alerts.acknowledge(runtime, chief[1], key, note="  called the client  ", outcome="benign")
    assert alerts.list_alerts(runtime, READER) == []
    assert DashboardService(runtime, READER).change_token() != before  # the audit head moved
    with runtime.sessions() as s:
        ack = s.scalars(select(AlertAck)).one()
        assert (ack.kind, f"account:{ack.ref}", ack.officer_id, ack.note, ack.through_at) == (
            "account", key, chief[1].officer_id, "called the client",
            FIXED_NOW)  # the newest finding's arrival (detected_at), not its login time
        entry = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "alert.acknowledge")).one()
        assert (entry.officer, entry.target) == ("chief", f"alert:{key}")
        assert json.loads(entry.details) == {
            "kind": "account", "note": "called the client", "events": 1,
            "severity": "critical", "title": "impossible travel", "outcome": "benign",
            "through": FIXED_NOW.isoformat()}
        recorded = s.scalars(select(CaseOutcome)).one()
        assert (recorded.subject, recorded.outcome, recorded.reason, recorded.rules) == (
            f"alert:{key}", "benign", "called the client",
            {"fired": ["detector:impossible_travel"]})
    with pytest.raises(ConflictError, match="already acknowledged by chief"):
        alerts.acknowledge(runtime, chief[1], key, outcome="benign")
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AlertAck)) == 1
        assert s.scalar(select(func.count()).select_from(AuditLogEntry).where(
            AuditLogEntry.action == "alert.acknowledge")) == 1
    assert runtime.audit.verify(runtime.engine).ok


def test_acknowledge_rolls_back_without_its_audit_entry(runtime: Runtime,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    load_sample(runtime)
    chief = log_in(runtime)
    add_anomaly(runtime, "l2", "critical")

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(runtime.audit, "append", broken)
    with pytest.raises(RuntimeError):
        alerts.acknowledge(runtime, chief[1], account_key(runtime, "acc-001"), outcome="benign")
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AlertAck)) == 0
    assert len(alerts.list_alerts(runtime, READER)) == 1


@pytest.mark.parametrize("key", ["account:", "anomaly:1", "bogus:1", "account:" + "x" * 65,
                                 "account:99999", "source:192.0.2.1"])
def test_acknowledge_bad_keys(runtime: Runtime, key: str) -> None:
    chief = log_in(runtime)
    with pytest.raises(InputError):
        alerts.acknowledge(runtime, chief[1], key, outcome="benign")


def test_automation_may_not_acknowledge(runtime: Runtime) -> None:
    robot = Actor(uuid.uuid4(), "cron", "automation")
    with pytest.raises(RefusedError):
        alerts.acknowledge(runtime, robot, "audit:1", outcome="benign")


# ------------------------------------------------------------------- change token


def test_change_token(runtime: Runtime) -> None:
    load_sample(runtime)
    service = DashboardService(runtime, READER)
    first = service.change_token()
    assert service.change_token() == first  # nothing written: nothing to reload
    ingest(runtime, "logins", [login("t1", "acc-001", ago(minutes=1), False, "192.0.2.1")])
    second = service.change_token()
    assert second != first
    withdraw(runtime, "t2", "BTC", "0.1", minutes_ago=3)
    third = service.change_token()
    assert third != second
    hold(runtime, "t2")  # screening holds it: no new row, but the token moves
    assert service.change_token() != third


def test_listener(runtime: Runtime) -> None:
    """PostgreSQL: a committed write to a watched table wakes the listener once; a
    rolled-back one does not. Elsewhere there is no listener (the dashboard polls)."""
    listener = live.listener_for(runtime.engine)
    if runtime.engine.dialect.name != "postgresql":
        assert listener is None
        return
    assert listener is not None
    try:
        assert listener.wait(0.2) is False
        load_sample(runtime)  # several transactions, many statements
        assert listener.wait(5.0) is True
        # The sample is several transactions: under load their notifications can arrive
        # in more than one batch. Drain them; then the listener must fall quiet.
        for _ in range(20):
            if not listener.wait(0.3):
                break
        else:
            pytest.fail("the listener kept waking with no writes")
        with pytest.raises(ZeroDivisionError), runtime.transaction() as s:
            s.execute(update(Withdrawal).values(status="held"))
            raise ZeroDivisionError
        assert listener.wait(0.5) is False
        hold(runtime, "w1")
        assert listener.wait(5.0) is True
    finally:
        listener.close()


# --------------------------------------------------------------------------- CLI


@pytest.mark.usefixtures("pinned_cli")
def test_status_json_live_figures(runtime: Runtime, cli_env: dict[str, str]) -> None:
    load_sample(runtime)
    withdraw(runtime, "big", "BTC", "2.5")
    hold(runtime, "big")
    key = account_key(runtime, "acc-001")
    add_backup(runtime, 6, verified=True, shipped=False)
    result = CliRunner().invoke(cli, ["status", "--json"], env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["logins_failed_1h"] == 1 and doc["logins_failed_per_hour_24h"] == 0.2
    assert doc["approvals_pending"] == 0 and doc["incidents_open"] == 0
    assert doc["backup"]["age_hours"] == 6.0 and doc["backup"]["verified"] is True
    assert doc["audit"] is None
    (alert,) = doc["alerts"]
    assert alert["key"] == key and alert["severity"] == "high"
    assert alert["parts"] == {"held withdrawal": 1} and alert["events"] == 1
    text = CliRunner().invoke(cli, ["status", "--events", "0"], env=cli_env,
                              catch_exceptions=False).output
    assert "alerts        1 unacknowledged" in text
    assert f"{key}  held withdrawal acc-001" in text
    assert "last backup   2026-11-20 06:00 UTC (6.0 h ago), complete, verified, not shipped" \
        in text


@pytest.fixture
def alerts_cli(monkeypatch: pytest.MonkeyPatch, runtime: Runtime,
               cli_env: dict[str, str]) -> Actor:
    """`polysec alerts` on the real CLI path, on the pinned clock, logged in as chief."""
    from polysec_tui.commands import alerts as alerts_command
    from polysec_tui.commands import common

    def runtime_of(ctx: Any) -> Runtime:
        rt = common.runtime_of(ctx)
        rt.clock = lambda: FIXED_NOW
        return rt

    monkeypatch.setattr(alerts_command, "runtime_of", runtime_of)
    token, actor = log_in(runtime)
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    cli_env["POLYSEC_TOKEN"] = token
    return actor


def test_alerts_cli_list_and_ack(runtime: Runtime, cli_env: dict[str, str],
                                 alerts_cli: Actor) -> None:
    from polysec_tui.cli import main

    load_sample(runtime)
    withdraw(runtime, "big", "BTC", "2.5")
    hold(runtime, "big")
    key = account_key(runtime, "acc-001")
    listed = CliRunner().invoke(cli, ["alerts", "list", "--json"], env=cli_env,
                                catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    (doc,) = json.loads(listed.output)
    assert doc["key"] == key and doc["account"] == "acc-001"
    text = CliRunner().invoke(cli, ["alerts", "list"], env=cli_env, catch_exceptions=False)
    assert text.output.splitlines()[0].endswith(f"{key}  high      held withdrawal  "
                                                "account acc-001")
    acked = CliRunner().invoke(cli, ["alerts", "ack", doc["key"], "--outcome", "benign",
                                     "--note", "called"],
                               env=cli_env, catch_exceptions=False)
    assert acked.exit_code == 0, acked.output
    assert acked.output == f"acknowledged {key}\n"
    with runtime.sessions() as s:
        entry = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "alert.acknowledge")).one()
        assert (entry.officer, entry.target) == ("chief", f"alert:{key}")
    text = CliRunner().invoke(cli, ["alerts", "list"], env=cli_env, catch_exceptions=False)
    assert text.output == "no unacknowledged alerts\n"
    with pytest.raises(SystemExit) as again:
        main(["alerts", "ack", key, "--outcome", "benign"])
    assert again.value.code == 4
    with pytest.raises(SystemExit) as bad:
        main(["alerts", "ack", "nonsense", "--outcome", "benign"])
    assert bad.value.code == 2


# ----------------------------------------------------------------- the console


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_screen, "POLL_SECONDS", 0.1)
    monkeypatch.setattr(dashboard_screen, "LISTEN_POLL_SECONDS", 0.1)


async def wait_until(pilot: Pilot[Any], check: Callable[[], bool], what: str,
                     tries: int = 300) -> None:
    """Let time pass (timers fire, workers run) without pressing any key."""
    for _ in range(tries):
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def quiet_spell(pilot: Pilot[Any], screen: DashboardScreen,
                      repaints: list[list[str]]) -> None:
    """Wait for three polls in a row that repaint nothing, then empty `repaints`.

    A load that was just shown still lays out its table's scroll bars a frame or two
    later, more later on a loaded machine: that is the last change's repaint, not one
    of an unchanged poll. A screen that repaints on every poll never gets here."""
    for _ in range(20):
        for seen in repaints:
            seen.clear()
        await wait_until(pilot, functools.partial(polled, screen, screen.polls + 3),
                         "three polls")
        if not any(repaints):
            return
    raise AssertionError(f"the dashboard repaints on every poll: {repaints}")


def polled(screen: DashboardScreen, polls: int) -> bool:
    return screen.polls >= polls


def dashboard(app: PolysecApp) -> DashboardScreen:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    return screen


def toasts(app: PolysecApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


@pytest.mark.usefixtures("fast_poll")
@sync
async def test_figures_update_by_themselves(runtime: Runtime) -> None:
    load_sample(runtime)
    officer = log_in(runtime)
    app = PolysecApp(runtime, session=officer)
    bells: list[int] = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
        await settle(pilot)
        assert card_text(app, "#card-logins") == "2 ok\n4 failed"
        assert not app.screen.query_one("#alert-bar").display
        # the platform writes; nobody touches the keyboard
        ingest(runtime, "logins", [login("n1", "acc-005", ago(minutes=2), False, "192.0.2.99",
                                         user_agent="[@click=app.quit]x[/]")])
        await wait_until(pilot, lambda: card_text(app, "#card-logins") == "2 ok\n5 failed",
                         "the new failed login")
        assert card_text(app, "#card-rate") == "2 last h\navg 0.2"
        assert bells == []  # a failed login is not a high-severity event
        # a large withdrawal comes in and screening holds it: an alert, a bell
        withdraw(runtime, "big", "BTC", "2.5")
        hold(runtime, "big")
        await wait_until(pilot, lambda: bool(bells), "the alert")
        assert card_text(app, "#card-withdrawals") == "2 held\n2 pending"
        acc1 = account_key(runtime, "acc-001")
        assert (acc1, "high") in dashboard(app)._announced
        await wait_until(pilot, lambda: any(
            "held withdrawal · acc-001" in t and "2.5 BTC" in t for t in toasts(app)),
            "the toast")
        bar = app.screen.query_one("#alert-bar")
        assert bar.display and "1 ALERT" in str(bar.render())
        # polls go on: the same event never rings twice
        polls = dashboard(app).polls
        await wait_until(pilot, lambda: dashboard(app).polls >= polls + 5, "more polls")
        assert bells == [1]
        # a critical anomaly: one more bell, one more notification
        add_anomaly(runtime, "n1", "critical", minutes_ago=2)
        await wait_until(pilot, lambda: len(bells) == 2, "the anomaly alert")
        assert card_text(app, "#card-anomalies") == "1 in 24 h\n1 high+"
        await wait_until(pilot, lambda: any(  # notify() posts a message: wait for it
            "impossible travel · acc-005" in t and "(critical)" in t for t in toasts(app)),
            "toast")
        polls = dashboard(app).polls
        await wait_until(pilot, lambda: dashboard(app).polls >= polls + 5, "more polls")
        assert len(bells) == 2
        assert app.is_running  # the markup in the user agent did nothing


@pytest.mark.usefixtures("fast_poll")
@sync
async def test_alerts_wait_while_locked(runtime: Runtime) -> None:
    load_sample(runtime)
    app = PolysecApp(runtime, session=log_in(runtime))
    bells: list[int] = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
        await settle(pilot)
        screen = dashboard(app)
        app.locked = True  # what app.lock() sets (without pushing the lock screen here)
        add_anomaly(runtime, "l2", "critical")
        await wait_until(pilot, lambda: screen.summary is not None and bool(
            screen.summary.alerts), "the alert to load")
        polls = screen.polls
        await wait_until(pilot, lambda: screen.polls >= polls + 3, "more polls")
        await pilot.pause()
        assert bells == [] and not toasts(app)
        app.locked = False  # the next poll announces it, without a reload
        await wait_until(pilot, lambda: bool(bells), "the alert after the unlock")
        assert bells == [1]


@pytest.mark.usefixtures("fast_poll")
@sync
async def test_acknowledge_from_the_console(runtime: Runtime) -> None:
    load_sample(runtime)
    officer = log_in(runtime)
    add_anomaly(runtime, "l5", "critical")  # acc-003
    withdraw(runtime, "big", "BTC", "2.5")  # acc-001
    hold(runtime, "big")
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert len(dashboard(app).summary.alerts) == 2  # type: ignore[union-attr]
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AlertsScreen), "the alerts")
        modal = app.screen
        assert isinstance(modal, AlertsScreen)
        first = modal.items[0].key  # newest first: the withdrawal (1 min ago)
        assert first == account_key(runtime, "acc-001")
        await pilot.press("f")  # a false positive
        await wait_until(pilot, lambda: len(modal.items) == 1, "the acknowledgement")
        with runtime.sessions() as s:
            assert s.scalar(select(AuditLogEntry.target).where(
                AuditLogEntry.action == "alert.acknowledge")) == f"alert:{first}"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen)
                         and app.screen.summary is not None
                         and len(app.screen.summary.alerts) == 1, "the reload")
        bar = app.screen.query_one("#alert-bar")
        assert "1 ALERT " in str(bar.render()) and "impossible travel" in str(bar.render())


@sync
async def test_attach_alerts_from_the_console(runtime: Runtime) -> None:
    """shift+down marks both alerts, i attaches them to a new incident; they stay in the
    modal, unmarked, until acknowledged (after one confirmation naming both)."""
    load_sample(runtime)
    officer = log_in(runtime)
    add_anomaly(runtime, "l5", "critical")  # acc-003
    withdraw(runtime, "big", "BTC", "2.5")  # acc-001
    hold(runtime, "big")
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AlertsScreen), "the alerts")
        modal = app.screen
        assert isinstance(modal, AlertsScreen)
        shown: AlertsScreen = modal
        await pilot.press("shift+down", "shift+down")
        assert modal.marked == {a.key for a in modal.items}
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, AttachScreen), "attach")
        app.screen.query_one("#attach-title", Input).focus()
        await pilot.press(*"two accounts", "enter")
        await wait_until(pilot, lambda: app.screen is shown and not shown.marked, "attached")
        assert len(modal.items) == 2
        # Both marked again: acknowledging many asks once, naming them.
        modal.query_one("#alerts-table", DataTable).move_cursor(row=0)
        await pilot.press("shift+down", "shift+down", "f")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "confirm")
        assert "Acknowledge 2 alerts as false positive" in str(
            app.screen.query_one(Static).render())
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen is shown and not shown.items, "acks")
    (made,) = incidents.list_incidents(runtime, READER)
    detail = incidents.show(runtime, READER, made.id)
    assert sorted(ref for kind, ref in detail.links if kind == "alert") == sorted(
        [account_key(runtime, "acc-001"), account_key(runtime, "acc-003")])
    assert sorted(detail.summary.accounts) == ["acc-001", "acc-003"]


@sync
async def test_keys_typed_into_the_note_stay_there(runtime: Runtime) -> None:
    """The note field is modal for keys: shift+down typed into it marks no alert and a
    letter acknowledges none; Esc goes back to the list, a second Esc closes."""
    load_sample(runtime)
    officer = log_in(runtime)
    add_anomaly(runtime, "l5", "critical")
    withdraw(runtime, "big", "BTC", "2.5")
    hold(runtime, "big")
    app = PolysecApp(runtime, session=officer)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AlertsScreen), "the alerts")
        assert isinstance(app.screen, AlertsScreen)
        modal: AlertsScreen = app.screen
        await pilot.press("tab")
        note = modal.query_one("#alerts-note", Input)
        assert app.focused is note
        await pilot.press("shift+down", "shift+down", *"false c", "space")
        await pilot.pause()
        assert note.value == "false c " and not modal.marked
        assert len(modal.items) == 2 and modal.acknowledged == 0
        await pilot.press("escape")
        assert app.screen is modal and app.focused is modal.query_one("#alerts-table")
        await pilot.press("f")  # from the list: acknowledged, with the note
        await wait_until(pilot, lambda: len(modal.items) == 1, "the acknowledgement")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), "closed")
    with runtime.sessions() as s:
        details = s.scalar(select(AuditLogEntry.details).where(
            AuditLogEntry.action == "alert.acknowledge"))
    assert "false c" in str(details)


@pytest.mark.usefixtures("fast_poll")
@sync
async def test_no_repaint_when_nothing_changed(runtime: Runtime,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    load_sample(runtime)
    app = PolysecApp(runtime, session=log_in(runtime))
    refreshed: list[str] = []
    shown: list[str] = []
    original_refresh = Widget.refresh
    original_show = FigureCard.show

    def counting_refresh(self: Widget, *args: Any, **kwargs: Any) -> Any:
        # Scroll bars are left out: the headless driver now and then blurs the app,
        # which restyles the focused table's scroll bars and their corner (nothing of
        # ours); under load the focused table with them (see `restyled` below).
        if (self.is_attached and isinstance(self.screen, DashboardScreen)
                and not isinstance(self, ScrollBar | ScrollBarCorner)):
            refreshed.append(f"{type(self).__name__}#{self.id}")
        return original_refresh(self, *args, **kwargs)

    def counting_show(self: FigureCard, *args: Any, **kwargs: Any) -> None:
        shown.append(str(self.id))
        original_show(self, *args, **kwargs)

    messages: list[Any] = []
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await settle(pilot)
        screen = dashboard(app)
        monkeypatch.setattr(Widget, "refresh", counting_refresh)
        monkeypatch.setattr(FigureCard, "show", counting_show)
        await quiet_spell(pilot, screen, [refreshed, shown])
        polls = screen.polls
        loads = sum(isinstance(m, DashboardScreen.Loaded) for m in messages)
        seen = len(messages)
        await wait_until(pilot, lambda: screen.polls >= polls + 10, "ten polls")
        if any(isinstance(m, events.AppBlur | events.AppFocus) for m in messages[seen:]):
            refreshed[:] = [r for r in refreshed if r != "ConsoleTable#events"]  # restyled
        assert shown == [] and refreshed == []
        # an unchanged token loads nothing: not even the summary is read again
        assert sum(isinstance(m, DashboardScreen.Loaded) for m in messages) == loads
        # one failed login: only the cards whose figures moved are redrawn
        ingest(runtime, "logins", [login("n1", "acc-005", ago(minutes=2), False, "192.0.2.99")])
        await wait_until(pilot, lambda: card_text(app, "#card-logins") == "2 ok\n5 failed",
                         "the new login")
        assert sorted(shown) == ["card-ips", "card-logins", "card-rate"]
        await settle(pilot)
        await quiet_spell(pilot, screen, [refreshed, shown])
        polls = screen.polls
        await wait_until(pilot, lambda: screen.polls >= polls + 10, "ten more polls")
        assert shown == [] and refreshed == []


@sync
async def test_poll_goes_on_while_another_screen_is_shown(runtime: Runtime,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(dashboard_screen, "POLL_SECONDS", 0.1)
    monkeypatch.setattr(dashboard_screen, "LISTEN_POLL_SECONDS", 0.1)
    load_sample(runtime)
    app = PolysecApp(runtime, session=log_in(runtime))
    bells: list[int] = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
        await settle(pilot)
        home = dashboard(app)
        await pilot.press("2")
        await wait_until(pilot, lambda: not isinstance(app.screen, DashboardScreen), "account")
        add_anomaly(runtime, "l2", "critical")
        await wait_until(pilot, lambda: bool(bells), "the alert on another screen")
        assert home._timer is not None and not home._timer._active.is_set()
        await wait_until(pilot, lambda: any("ALERT (critical)" in t for t in toasts(app)),
                         "the toast")


@sync
async def test_postgresql_notifications_wake_the_dashboard(runtime: Runtime,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL only; the other engines poll")
    monkeypatch.setattr(dashboard_screen, "POLL_SECONDS", 60.0)  # no polling in this test
    monkeypatch.setattr(dashboard_screen, "LISTEN_POLL_SECONDS", 60.0)
    load_sample(runtime)
    app = PolysecApp(runtime, session=log_in(runtime))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = dashboard(app)
        await wait_until(pilot, lambda: screen.listening, "the listener")
        ingest(runtime, "logins", [login("n1", "acc-005", ago(minutes=2), False, "192.0.2.99")])
        await wait_until(pilot, lambda: card_text(app, "#card-logins") == "2 ok\n5 failed",
                         "the notified change")
        assert screen.polls == 1  # woken by the notification, not by the timer


@pytest.mark.usefixtures("fast_poll")
@sync
async def test_alert_text_is_inert(runtime: Runtime) -> None:
    """Platform text in an alert (account id, anomaly explanation) is shown literally in
    the notification, the alert bar and the alerts list: markup does nothing, escape
    sequences and control characters are shown as their escapes, never acted on."""
    hostile = "acc-[@click=app.quit]x[/]"
    ingest(runtime, "accounts", [{"id": hostile, "created_at": "2026-01-02T03:04:05Z",
                                  "email": "h@example.com"}])
    ingest(runtime, "logins", [login("h1", hostile, ago(minutes=3), False, "192.0.2.7")])
    anomaly = add_anomaly(runtime, "h1", "critical")
    with runtime.transaction() as s:
        s.execute(update(LoginAnomaly).where(LoginAnomaly.id == anomaly).values(
            explanation="[link=http://evil]click[/link] \x1b[31mred\x1b[0m\x07 [b]x[/b]"))
    app = PolysecApp(runtime, session=log_in(runtime))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: bool(toasts(app)), "the toast")
        (toast,) = list(app._notifications)
        assert toast.markup is False
        shown = ("from 203.0.113.7: [link=http://evil]click[/link] \\x1b[31mred\\x1b[0m"
                 "\\x07 [b]x[/b]")
        assert toast.message.startswith(f"impossible travel · {hostile}\n{shown}; 1 event")
        bar = str(app.screen.query_one("#alert-bar").render())
        assert hostile in bar
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, AlertsScreen), "the alerts")
        table = app.screen.query_one("#alerts-table", DataTable)
        cells = [c.plain for c in table.get_row_at(0)]
        assert cells[4] == hostile
        assert cells[7].startswith(shown)
        await pilot.click("#alerts-table", offset=(60, 1))  # clicking the text runs nothing
        await pilot.pause()
        assert app.is_running


# ------------------------------------------------------------------------ snapshots


def alert_data(rt: Runtime) -> None:
    add_anomaly(rt, "l2", "critical")
    withdraw(rt, "big", "BTC", "2.5")
    hold(rt, "big")


def snapshot_app(request: pytest.FixtureRequest) -> tuple[Runtime, Session]:
    """test_tui's snapshot runtime (fixed database label, sample data) and officer."""
    return (request.getfixturevalue("snapshot_runtime"),
            request.getfixturevalue("snapshot_officer"))


def test_snapshot_alerts_80x24(snap_compare: Any, request: pytest.FixtureRequest,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The picture shows the toasts: they must outlast a slow run (they go after 12 s of
    # the wall clock, which the pinned clock does not hold).
    monkeypatch.setattr(dashboard_screen, "ALERT_TOAST_SECONDS", 3600)
    rt, officer = snapshot_app(request)
    alert_data(rt)
    add_backup(rt, 6, verified=True, shipped=True)
    add_audit_run(rt, officer[1].officer_id, "fail")
    assert snap_compare(PolysecApp(rt, session=officer),
                        terminal_size=(80, 24), run_before=settle)


def test_snapshot_alerts_no_color_80x24(snap_compare: Any, request: pytest.FixtureRequest,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rt, officer = snapshot_app(request)
    alert_data(rt)
    monkeypatch.setenv("NO_COLOR", "1")

    async def quiet(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.clear_notifications()  # the alert bar alone
        await pilot.pause()

    assert snap_compare(PolysecApp(rt, session=officer), terminal_size=(80, 24),
                        run_before=quiet)


def test_snapshot_alerts_modal_160x48(snap_compare: Any, request: pytest.FixtureRequest
                                      ) -> None:
    rt, officer = snapshot_app(request)
    alert_data(rt)

    async def open_alerts(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, AlertsScreen), "alerts")
        await pilot.pause()

    assert snap_compare(PolysecApp(rt, session=officer),
                        terminal_size=(160, 48), run_before=open_alerts)


def test_amount_threshold_is_the_four_eyes_limit() -> None:
    from polysec_tui.services.withdrawals.screening import ScreeningConfig

    cfg = ScreeningConfig()
    assert not alerts.above_limit(cfg, "BTC", Decimal("0.75"))
    assert alerts.above_limit(cfg, "BTC", Decimal("0.75000001"))
    assert alerts.above_limit(cfg, "UNKNOWN", Decimal("0.01"))


def test_alert_bindings_have_ids_and_descriptions() -> None:
    from textual.binding import Binding

    for owner in (DashboardScreen, AlertsScreen):
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding)
            assert binding.id and binding.description and binding.tooltip, binding


@sync
async def test_palette_lists_the_alerts_action(runtime: Runtime) -> None:
    from polysec_tui.app import ScreenCommands

    app = PolysecApp(runtime, session=log_in(runtime))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        names = [name for name, _help, _run in ScreenCommands(app.screen)._commands()]
        assert "Alerts" in names and "Refresh" in names


@pytest.mark.usefixtures("fast_poll")
@sync
async def test_a_failing_poll_is_reported_once(runtime: Runtime,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    app = PolysecApp(runtime, session=log_in(runtime))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = dashboard(app)
        calls: list[int] = []

        def down() -> tuple[Any, ...]:
            calls.append(1)
            raise ConnectionError("database went away")

        monkeypatch.setattr(screen.service, "change_token", down)
        await wait_until(pilot, lambda: len(calls) >= 8, "several failed polls")
        await pilot.pause(0.2)
        errors = [t for t in toasts(app) if "database went away" in t]
        assert len(errors) == 1
        assert (screen.query_one("#events", DataTable).border_subtitle or "").endswith(
            "load failed: figures may be stale")
