"""Outcomes and the rules report: decisions and alert acknowledgements record whether
the hold or alert was right, and `rules report` gives each rule its hits, holds,
outcomes and precision; the figures are checked against a count by hand. All three
databases."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from textual.widgets import DataTable

from polysec_tui.db.models import (
    CaseOutcome,
    LoginAnomaly,
    LoginEvent,
    Withdrawal,
    WithdrawalFlag,
)
from polysec_tui.errors import InputError
from polysec_tui.services import four_eyes, outcomes
from polysec_tui.services.monitoring import alerts
from polysec_tui.services.withdrawals import review as wds
from tests.support import FIXED_NOW
from tests.support.officers import Staff
from tests.support.screening import held
from tests.support.tui import idle, sync


def test_decisions_and_acknowledgements_feed_the_rules_report(staff: Staff) -> None:
    rt, ann, sue = staff.rt, staff.actors["ann"], staff.actors["sue"]
    for n, ext in enumerate(("FRAUD", "TRAVEL", "FINE", "BIG"), 1):
        held(rt, ext, n, **({"amount": "1.5"} if ext == "BIG" else {}))
    wds.reject(rt, ann, "FRAUD", "confirmed with the client: not them")
    wds.approve(rt, ann, "TRAVEL", "called the client", outcome="benign",
                outcome_reason="client travelling")
    wds.approve(rt, ann, "FINE", "usual pattern")  # the default: a false positive
    opened = wds.approve(rt, ann, "BIG", "client confirmed", outcome="benign")
    assert opened.approval_id is not None
    with rt.sessions() as s:  # nothing recorded until the four-eyes approval executes
        assert s.scalar(select(func.count()).select_from(CaseOutcome)) == 3
    four_eyes.approve(rt, sue, opened.approval_id, staff.next_code("sue"))
    with pytest.raises(InputError, match="unknown outcome"):
        wds.reject(rt, ann, "FRAUD", "x", outcome="maybe")

    # A high anomaly on A1's last login: an alert, acknowledged as a false positive.
    with rt.transaction() as s:
        login = s.scalars(select(LoginEvent).order_by(LoginEvent.at.desc())).first()
        assert login is not None
        s.add(LoginAnomaly(kind="impossible_travel", severity="high", score=1.0,
                           account_id=login.account_id, login_event_id=login.id,
                           at=login.at, source_ip=login.ip, source_asn=None,
                           explanation="far", details={}, detected_at=FIXED_NOW))
    (alert,) = [a for a in alerts.list_alerts(rt, ann) if a.kind == "account"]
    alerts.acknowledge(rt, ann, alert.key, "the client's VPN", outcome="false_positive")

    with rt.sessions() as s:
        recorded = {o.subject: (o.outcome, o.reason) for o in s.scalars(select(CaseOutcome))}
        # The count by hand: the flags of the four withdrawals, per rule.
        flags: dict[str, set[str]] = {}
        for ext, rule in s.execute(
                select(Withdrawal.external_id, WithdrawalFlag.rule)
                .join(Withdrawal, Withdrawal.id == WithdrawalFlag.withdrawal_id)):
            flags.setdefault(rule, set()).add(ext)
        anomaly_kinds = dict(s.execute(select(LoginAnomaly.kind, func.count())
                                       .group_by(LoginAnomaly.kind)).all())
    assert recorded == {
        "withdrawal:FRAUD": ("confirmed_fraud", "confirmed with the client: not them"),
        "withdrawal:TRAVEL": ("benign", "client travelling"),
        "withdrawal:FINE": ("false_positive", "usual pattern"),
        "withdrawal:BIG": ("benign", "client confirmed"),
        f"alert:{alert.key}": ("false_positive", "the client's VPN"),
    }
    judged = {"FRAUD": "confirmed", "TRAVEL": "benign", "FINE": "fp", "BIG": "benign"}
    figures = {f.rule: f for f in outcomes.report(rt, ann, FIXED_NOW - timedelta(days=30))}
    for rule, exts in flags.items():
        f = figures[f"screening:{rule}"]
        mine = exts & set(judged)
        by_hand = [sum(judged[e] == k for e in mine) for k in ("confirmed", "fp", "benign")]
        assert [f.confirmed, f.false_positives, f.benign] == by_hand, rule
        assert f.hits >= len(mine) and f.holds is not None and f.holds >= len(mine)
    ip = figures["screening:ip_not_seen"]
    assert (ip.confirmed, ip.false_positives, ip.benign) == (1, 1, 2)
    assert ip.precision == 0.25 and ip.decided == 4
    travel = figures["detector:impossible_travel"]
    assert (travel.hits, travel.false_positives, travel.precision) == (
        anomaly_kinds["impossible_travel"], 1, 0.0)
    assert figures["detector:brute_force"].precision is None  # nothing decided


def test_rules_report_cli(staff: Staff, cli_env: dict[str, str],
                          monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.cli import run_cli
    from tests.support.officers import commands_use_clock

    rt, ann = staff.rt, staff.actors["ann"]
    held(rt, "FRAUD", 1)
    wds.reject(rt, ann, "FRAUD", "not the client")
    commands_use_clock(monkeypatch, staff.clock)
    token, _ = staff.login("ann")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    doc = json.loads(run_cli(capsys, "rules", "report", "--since", "7d", "--json").out)
    by_rule = {r["rule"]: r for r in doc["rules"]}
    assert by_rule["screening:new_destination"]["confirmed"] == 1
    assert by_rule["screening:new_destination"]["precision"] == 1.0
    text = run_cli(capsys, "rules", "report").out
    assert "precision = confirmed / decided" in text
    line = next(x for x in text.splitlines() if x.startswith("screening:new_destination"))
    assert line.split()[-1] == "100%"
    bad = run_cli(capsys, "rules", "report", "--since", "yesterday")
    assert bad.code == 2 and "--since" in bad.err


@sync
async def test_rules_report_in_the_console(staff: Staff) -> None:
    """Dashboard o: the same figures as the CLI, one row per rule; p changes the
    period."""
    from polysec_tui.app import PolysecApp
    from polysec_tui.screens.rules import RulesReportScreen

    rt, ann = staff.rt, staff.actors["ann"]
    held(rt, "FRAUD", 1)
    held(rt, "FINE", 2)
    wds.reject(rt, ann, "FRAUD", "not the client")
    wds.approve(rt, ann, "FINE", "usual pattern")
    app = PolysecApp(rt, session=staff.login("ann"))
    async with app.run_test(size=(120, 40)) as pilot:
        await idle(pilot)
        await pilot.press("o")
        await idle(pilot)
        screen = app.screen
        assert isinstance(screen, RulesReportScreen)
        table = screen.query_one("#rules-table", DataTable)
        shown = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)]
                 for i in range(table.row_count)}
        figures = outcomes.report(rt, ann, rt.clock() - timedelta(days=30))
        assert list(shown) == [f.rule for f in figures]
        for f in figures:
            assert shown[f.rule][1:6] == [str(f.hits), "" if f.holds is None else str(f.holds),
                                          str(f.confirmed), str(f.false_positives),
                                          str(f.benign)]
        assert shown["screening:new_destination"][3:] == ["1", "1", "0", "50%"]
        assert shown["detector:brute_force"][6] == ""  # nothing decided: no precision
        await pilot.press("p")
        await idle(pilot)
        assert "last 90 days" in str(screen.query_one("#rules-status").render())
