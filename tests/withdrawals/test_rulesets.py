"""Rule sets changed like code: a proposal over the version in force, a backtest whose
figures are recomputed here by hand from the recorded hits and outcomes, four-eyes
approval that refuses an untested or stale proposal, screening under the approved
version, and a proposal running in shadow that holds nothing. All three databases."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from textual.widgets import Button, DataTable, Input

from polysec_tui.db.models import (
    Account,
    AuditLogEntry,
    LoginAnomaly,
    LoginEvent,
    Withdrawal,
    WithdrawalFlag,
    WithdrawalScreening,
)
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import four_eyes, outcomes
from polysec_tui.services.logins import anomalies
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals import review as wds
from polysec_tui.services.withdrawals import rulesets, screening
from tests.support import FIXED_NOW
from tests.support.officers import Staff
from tests.support.screening import CRON, iso, request, status
from tests.support.tui import idle, sync


def _proposal(tmp_path: Path, body: str, name: str = "proposal.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _scores(staff: Staff) -> dict[str, float]:
    """The recorded score of each withdrawal of `_cases`, from its hits."""
    with staff.rt.sessions() as s:
        scores: dict[str, float] = {}
        for ext, score in s.execute(
                select(Withdrawal.external_id, WithdrawalFlag.score)
                .join(WithdrawalFlag, WithdrawalFlag.withdrawal_id == Withdrawal.id)
                .where(Withdrawal.external_id.in_(("FRAUD", "FINE", "QUIET", "HOME")))):
            scores[ext] = scores.get(ext, 0.0) + score
        return scores


def _cases(staff: Staff) -> None:
    """Three requests from new IPs to new addresses (two of them from new countries) and one
    ordinary; outcomes: FRAUD confirmed, FINE a false positive, QUIET (not held) reported
    as fraud afterwards by the client, HOME none."""
    rt, ann = staff.rt, staff.actors["ann"]
    # Small amounts: the day's sum stays under the velocity limit.
    request(rt, "FRAUD", ip="198.51.100.1", address="bc1qnew1", amount="0.2",
            login_extra={"country": "FR"}, ago=timedelta(hours=4))
    request(rt, "FINE", ip="198.51.100.2", address="bc1qnew2", amount="0.2",
            login_extra={"country": "ES"}, ago=timedelta(hours=3))
    request(rt, "QUIET", ip="198.51.100.3", address="bc1qnew3", amount="0.2",
            ago=timedelta(hours=2))
    request(rt, "HOME", amount="0.1", ago=timedelta(hours=1))
    assert [status(rt, e) for e in ("FRAUD", "FINE", "QUIET", "HOME")] == \
        ["held", "held", "pending", "pending"]
    wds.reject(rt, ann, "FRAUD", "not the client")  # confirmed fraud
    wds.approve(rt, ann, "FINE", "the client on holiday")  # a false positive
    with rt.transaction() as s:
        outcomes.record(s, ann.officer_id, rt.clock(), "withdrawal:QUIET", "confirmed_fraud",
                        "the client reported it", [])


def test_propose_backtest_approve(staff: Staff, tmp_path: Path) -> None:
    rt, sue, sam, ann = staff.rt, staff.actors["sue"], staff.actors["sam"], staff.actors["ann"]
    _cases(staff)
    scores = _scores(staff)
    proposal = _proposal(tmp_path, "[screening]\nhold_threshold = 35\n")

    with pytest.raises(RefusedError, match=r"may not rules\.propose"):
        rulesets.propose(rt, ann, proposal, "lower the bar")
    done = rulesets.propose(rt, sue, proposal, "QUIET slipped through at 35 points")
    assert done.based_on is None  # the configuration file's was in force
    assert done.changes == {"hold_threshold": [50.0, 35.0]}
    with pytest.raises(RefusedError, match="no backtest"):
        four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))

    result = rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=1))
    # By hand: held where the recorded score reaches the threshold (50 now, 35 proposed).
    labels = {"FRAUD": "confirmed_fraud", "FINE": "false_positive", "QUIET": "confirmed_fraud"}
    today = {e for e in ("FRAUD", "FINE", "QUIET", "HOME") if scores.get(e, 0) >= 50}
    proposed = {e for e in ("FRAUD", "FINE", "QUIET", "HOME") if scores.get(e, 0) >= 35}
    assert today == {"FRAUD", "FINE"} and proposed == {"FRAUD", "FINE", "QUIET"}
    assert result.judged == 4 and result.fraud == 2 and result.decided == 3
    assert (result.live.holds, result.live.confirmed, result.live.decided) == (2, 1, 2)
    assert result.live.precision == 1 / 2 and result.live.recall == 1 / 2
    assert (result.proposed.holds, result.proposed.confirmed) == (3, 2)
    assert result.proposed.precision == 2 / 3 and result.proposed.recall == 1.0
    assert result.added == ["QUIET"] and result.removed == [] and result.added_count == 1
    by_rule = {r.rule: r for r in result.rules}
    with rt.sessions() as s:
        fired: dict[str, set[str]] = {}
        for ext, rule in s.execute(select(Withdrawal.external_id, WithdrawalFlag.rule)
                                   .join(WithdrawalFlag)
                                   .where(Withdrawal.external_id.in_(scores))):
            fired.setdefault(rule, set()).add(ext)
    assert set(by_rule) == set(fired)
    for rule, exts in fired.items():  # thresholds change no rule's hits
        confirmed = sum(1 for e in exts if labels.get(e) == "confirmed_fraud")
        decided = sum(1 for e in exts if e in labels)
        for figures in (by_rule[rule].live, by_rule[rule].proposed):
            assert figures.holds == len(exts)
            assert figures.precision == (confirmed / decided if decided else None)
            assert figures.recall == confirmed / 2

    with pytest.raises(RefusedError, match="cannot decide their own"):
        four_eyes.approve(rt, sue, done.request_id, staff.next_code("sue"))
    view = four_eyes.get_request(rt, sam, done.request_id)
    evidence = dict(view.evidence)
    assert evidence["changes"] == "hold_threshold 50 -> 35"
    assert "holds 2 -> 3 (+1 -0)" in evidence["backtest"]
    assert "precision 50% -> 67%" in evidence["backtest"]
    four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))

    # In force: a request like QUIET is held now, its verdict names the version.
    request(rt, "AGAIN", ip="198.51.100.4", address="bc1qnew4")
    assert status(rt, "AGAIN") == "held"
    with rt.sessions() as s:
        versions = dict(s.execute(select(Withdrawal.external_id, WithdrawalScreening.rule_set)
                                  .join(WithdrawalScreening)).all())
        actions = list(s.scalars(select(AuditLogEntry.action)
                                 .where(AuditLogEntry.action.like("rules.%"))
                                 .order_by(AuditLogEntry.seq)))
    assert versions["AGAIN"] == done.version and versions["HOME"] is None
    assert actions == ["rules.propose", "rules.backtest", "rules.activate"]
    (v1,) = rulesets.list_sets(rt, ann)
    assert (v1.status, v1.proposed_by, v1.activated_by) == ("in force", "sue", "sam")
    _view, parameters = rulesets.show(rt, ann, None)
    assert parameters["hold_threshold"] == 35.0

    # Two proposals on it: once one is approved, the other is stale.
    first = rulesets.propose(rt, sue, _proposal(tmp_path, "[screening.weights]\nvelocity = 30\n"),
                             "velocity")
    second = rulesets.propose(rt, sam, _proposal(tmp_path, "[screening]\ndormant_days = 60\n"),
                              "dormancy")
    assert first.based_on == second.based_on == done.version
    for version in (first.version, second.version):
        rulesets.backtest(rt, sue, version, FIXED_NOW - timedelta(days=1))
    four_eyes.approve(rt, sam, first.request_id, staff.next_code("sam"))
    stale = f"proposed on v{done.version}, but v{first.version} is in force"
    with pytest.raises(ConflictError, match=stale):
        four_eyes.approve(rt, sue, second.request_id, staff.next_code("sue"))
    assert [v.status for v in rulesets.list_sets(rt, ann)] == \
        ["proposed", "in force", "superseded"]
    with pytest.raises(InputError, match="no longer a proposal"):
        rulesets.backtest(rt, sue, first.version, FIXED_NOW - timedelta(days=1))


def test_a_proposal_in_shadow_holds_nothing(staff: Staff, tmp_path: Path) -> None:
    rt, sue, sam, ann = staff.rt, staff.actors["sue"], staff.actors["sam"], staff.actors["ann"]
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[screening]\nhold_threshold = 35\n"),
                            "try a lower bar")
    request(rt, "QUIET", ip="198.51.100.3", address="bc1qnew3", ago=timedelta(hours=2))
    request(rt, "HOME", ago=timedelta(hours=1))
    assert status(rt, "QUIET") == "pending"  # the version in force decides
    report = rulesets.shadow(rt, ann, done.version)
    assert report.running and report.judged == 2 and report.disagreements == 1
    assert (report.holds_added, report.holds_removed) == (1, 0)
    (d,) = report.shown
    assert (d.withdrawal, d.live_held, d.shadow_held) == ("QUIET", False, True)
    assert d.live_score == d.shadow_score and d.rules_added == d.rules_removed == []

    four_eyes.deny(rt, sam, done.request_id, "not now", staff.next_code("sam"))
    request(rt, "LATER", ip="198.51.100.5", address="bc1qnew5")
    after = rulesets.shadow(rt, ann, done.version)
    assert not after.running and after.judged == 2
    assert rulesets.list_sets(rt, ann)[0].status == "denied"


@pytest.mark.parametrize(("body", "message"), [
    ("[screening]\nworkers = 8\n", "workers is not a rule parameter"),
    ("[screening]\nhold_treshold = 40\n", "unknown key hold_treshold"),
    ("[screening]\nhold_threshold = -1\n", "hold_threshold: a number from 0 to"),
    ("[screening.weights]\nno_such_rule = 1\n", "weights: rules are"),
    ("[screening]\nhold_threshold = 50\n", "changes nothing"),
    ("hold_threshold = 40\n", "a proposal is a [screening] table, a [logins] table or both"),
    ("[screening\n", "not valid TOML"),
    # Values that would overflow an engine's date arithmetic or a counter, or poison JSON.
    ("[screening]\ndormant_days = 1000000000000\n", "a whole number from 0 to 3,650"),
    ("[screening]\nvelocity_count = 100000000000000000000000\n", "a whole number from 0"),
    ("[screening]\nstructuring_count = 2000000\n", "a whole number from 0 to 1,000,000"),
    ("[screening]\nhold_threshold = nan\n", "a number from 0 to"),
    ("[screening]\nhold_threshold = inf\n", "a number from 0 to"),
    ("[screening.weights]\nvelocity = nan\n", "weights.velocity: a number from 0"),
    ("[screening.weights]\nvelocity = -500\n", "weights.velocity: a number from 0"),
    ("[screening.weights]\nvelocity = true\n", "weights.velocity: a number from 0"),
    ("[screening.weights]\nvelocity = \"20\"\n", "weights.velocity: a number from 0"),
    ("[screening.weights.velocity]\na = 1\n", "weights.velocity: a number from 0"),
    ("[screening.weights]\nvelocity = 1979-05-27\n", "weights.velocity: a number from 0"),
    ("[screening]\nrisky_session_min_severity = []\n", "one of low, medium"),
    ("[screening]\namount_ratio = \"NaN\"\n", "must be above 0"),
    ("[screening]\namount_ratio = 3.0\n", "changes nothing"),  # 3 and 3.0: one value
    # The login detectors' thresholds, bounded as tightly.
    ("[logins]\nbrute_force_failures = 2\n", "brute_force_failures: a whole number from 3 "
                                             "to 20, the default 5 within a factor of four"),
    # Off-switches within any wide range: a score no login reaches, a distance past the
    # antipodes, a history no account has.
    ("[logins]\nrisk_log10_threshold = 100\n", "risk_log10_threshold: a number from 1.5 to 4.5"),
    # ... and one that silences stuffing once a single attempt from the source succeeds.
    ("[logins]\nstuffing_failure_share = 1.0\n", "stuffing_failure_share: a number from 0.5 "
                                                 "to 0.95"),
    ("[logins]\ntravel_min_km = 20000\n", "travel_min_km: a number from 75 to 1200"),
    ("[logins]\nmin_history = 10000\n", "min_history: a whole number from 2 to 10"),
    ("[logins]\ncampaign_min_failures = 10000000\n", "campaign_min_failures: a whole number"),
    ("[logins]\nbrute_force_failures = 5.5\n", "brute_force_failures: a whole number"),
    ("[logins]\nspraying_window = 1e9\n", "spraying_window: a whole number from 360 to "
                                            r"5760 \(minutes\)"),
    ("[logins]\nbrute_force_window = 10.5\n", "brute_force_window: a whole number"),
    ("[logins]\nbrute_force_window = true\n", "brute_force_window: a whole number"),
    ("[logins]\nstuffing_failure_share = nan\n", "stuffing_failure_share: a number from 0"),
    ("[logins]\nbrute_force_windw = 5\n", "[logins] unknown key brute_force_windw"),
    ("[logins]\nbrute_force_failures = 5\n", "changes nothing"),
    ("[logins]\nbrute_force_window = 10.0\n", "changes nothing"),  # minutes, as stored
    ("[logins]\nbrute_force_failures = \"6\"\n", "a whole number"),
])
def test_a_bad_proposal_changes_nothing(staff: Staff, tmp_path: Path, body: str,
                                        message: str) -> None:
    rt, sue = staff.rt, staff.actors["sue"]
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        rulesets.propose(rt, sue, _proposal(tmp_path, body), "x")
    assert rulesets.list_sets(rt, sue) == []


def test_the_commands(staff: Staff, tmp_path: Path, db_url: str, cli_env: dict[str, str],
                      monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the commands' wiring does not depend on the engine")
    from tests.support.cli import run_cli
    from tests.support.officers import commands_use_clock

    commands_use_clock(monkeypatch, staff.clock)
    _cases(staff)
    token, _ = staff.login("sue")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    empty = run_cli(capsys, "rules", "list")
    assert empty.code == 0 and "no rule set yet" in empty.out
    shown = json.loads(run_cli(capsys, "rules", "show", "--json").out)
    assert shown["rule_set"] is None and shown["parameters"]["hold_threshold"] == 50.0
    proposal = _proposal(tmp_path, "[screening]\nhold_threshold = 35\n")
    made = run_cli(capsys, "rules", "propose", str(proposal), "--reason", "QUIET", "--json")
    assert made.code == 0, made.err
    assert json.loads(made.out)["rule_set"] == 1
    tested = run_cli(capsys, "rules", "backtest", "v1", "--since", "2d")
    assert tested.code == 0, tested.err
    assert "holds 2 -> 3: 1 added, 0 removed" in tested.out
    assert "holds added: QUIET" in tested.out
    doc = json.loads(run_cli(capsys, "rules", "backtest", "1", "--shadow", "--json").out)
    assert doc["running"] and doc["judged"] == 0
    listed = json.loads(run_cli(capsys, "rules", "list", "--json").out)
    assert listed["rule_sets"][0]["status"] == "proposed"
    assert listed["rule_sets"][0]["backtest"]["added"] == ["QUIET"]
    _burst(staff.rt, "B", timedelta(hours=2))
    logins = _proposal(tmp_path, "[logins]\nbrute_force_failures = 6\n", "logins.toml")
    assert run_cli(capsys, "rules", "propose", str(logins), "--reason", "typos").code == 0
    tested = run_cli(capsys, "rules", "backtest", "2", "--since", "2d")
    assert tested.code == 0, tested.err
    assert "screening's parameters are those in force" in tested.out
    assert "findings added" not in tested.out and "5 removed" in tested.out
    assert "findings removed: brute_force on B0, brute_force on B1" in tested.out
    assert any(line.startswith("brute_force") and "1>0" in line
               for line in tested.out.splitlines())
    shown = run_cli(capsys, "rules", "show", "2")
    assert "logins.brute_force_failures" in shown.out and "logins.spraying_window" in shown.out
    # Pending, it judges the new logins in shadow: the bursts it would not flag.
    anomalies.analyze(staff.rt, CRON)
    shadow = run_cli(capsys, "rules", "backtest", "2", "--shadow")
    assert shadow.code == 0, shadow.err
    assert "new logins judged" in shadow.out and ": brute_force -" in shadow.out
    assert any(line.split()[0].startswith("B") and "brute_force" in line
               and line.endswith("-> none") for line in shadow.out.splitlines()[2:])
    for args, code, text in (
            (("rules", "backtest", "v9"), 2, "no rule set v9"),
            (("rules", "backtest", "x1"), 2, "not a rule set version"),
            (("rules", "propose", str(tmp_path / "missing.toml"), "--reason", "x"), 2,
             "cannot read"),
    ):
        bad = run_cli(capsys, *args)
        assert bad.code == code and text in bad.err, bad.err
        assert len(bad.err.strip().splitlines()) == 1


def test_screening_follows_the_version_in_force_between_passes(staff: Staff,
                                                               tmp_path: Path) -> None:
    """The watcher's pass (`screen_new`) reads the version in force each time."""
    rt, sue, sam = staff.rt, staff.actors["sue"], staff.actors["sam"]
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[screening]\nhold_threshold = 35\n"),
                            "lower")
    base = screening.load_config(rt.settings)
    request(rt, "BEFORE", ip="198.51.100.3", address="bc1qnew3", ago=timedelta(hours=2))
    assert status(rt, "BEFORE") == "pending"
    rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=1))
    four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))
    from tests.support.helpers import ingest, withdrawal
    from tests.support.screening import iso
    ingest(rt, "withdrawals", withdrawal("AFTER", "A1", at=iso(timedelta(minutes=30)),
                                         amount="0.35", address="bc1qnew6",
                                         available_balance="5", ip="198.51.100.6"))
    report, _after, _more = screening.screen_new(rt, base, 0, 100)
    assert report.rule_set == done.version and status(rt, "AFTER") == "held"


@sync
async def test_the_console_shows_versions_and_decides_a_proposal(staff: Staff,
                                                                 tmp_path: Path) -> None:
    """Dashboard o lists the versions under the rules report; the approvals inbox shows
    a proposal's changes and backtest and approves it like any four-eyes request."""
    from polysec_tui.app import DESTINATIONS, PolysecApp
    from polysec_tui.screens.approvals import ApprovalsScreen
    from polysec_tui.screens.rules import RulesReportScreen
    from tests.withdrawals.test_tui_approvals import rows, text_of, until

    rt, sue, ann = staff.rt, staff.actors["sue"], staff.actors["ann"]
    _cases(staff)
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[screening]\nhold_threshold = 35\n"),
                            "QUIET slipped through")
    rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=1))
    app = PolysecApp(rt, session=staff.login("sam"))
    async with app.run_test(size=(140, 40)) as pilot:
        await idle(pilot)
        await pilot.press("o")
        await idle(pilot)
        screen = app.screen
        assert isinstance(screen, RulesReportScreen)
        table = screen.query_one("#rule-sets", DataTable)
        row = [str(c) for c in table.get_row_at(0)]
        assert row == [f"v{done.version}", "proposed", "sue", "",
                       "hold_threshold 50 -> 35", "holds 2 -> 3 (+1 -0)"]
        status_line = str(screen.query_one("#rules-status").render())
        assert "in force: the configuration file's thresholds" in status_line

        await pilot.press("escape", DESTINATIONS["approvals"].key)
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen)
                    and len(rows(app)) == 1, "the inbox")
        assert rows(app)[0][1:4] == [
            "rule_set", f"rule set v{done.version}: thresholds and weights", "sue"]
        evidence = text_of(app, "#approvals-evidence")
        assert "hold_threshold 50 -> 35" in evidence and "holds 2 -> 3 (+1 -0)" in evidence
        app.screen.query_one("#approvals-code", Input).value = staff.next_code("sam")
        app.screen.query_one("#approvals-approve", Button).press()
        await until(pilot, lambda: "approved and executed" in text_of(app,
                                                                       "#approvals-status"),
                    "the approval")
    assert [v.status for v in rulesets.list_sets(rt, ann)] == ["in force"]


def test_a_failing_shadow_never_reaches_live_screening(staff: Staff, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rt, sue = staff.rt, staff.actors["sue"]
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[screening]\nhold_threshold = 35\n"),
                            "lower")
    judge = screening._judge

    def failing(sessions, ids, cfg, window=None):
        if cfg.rule_set == done.version:
            raise OverflowError("date value out of range")
        return judge(sessions, ids, cfg, window)

    monkeypatch.setattr(screening, "_judge", failing)
    request(rt, "NEW", ip="198.51.100.1", address="bc1qnew1", login_extra={"country": "FR"})
    assert status(rt, "NEW") == "held"  # the live verdict, recorded
    assert rulesets.shadow(rt, sue, done.version).judged == 0


def test_figures_and_approval_follow_what_is_in_force(staff: Staff, tmp_path: Path) -> None:
    """A backtest is refused once its proposal was decided; an approval is refused when
    the configuration file's thresholds changed after the backtest, or when the backtest
    judged nothing; at most three proposals run in shadow."""
    import dataclasses

    rt, sue, sam = staff.rt, staff.actors["sue"], staff.actors["sam"]
    _cases(staff)
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[screening]\nhold_threshold = 35\n"),
                            "lower")
    rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(minutes=1))
    with pytest.raises(RefusedError, match="judged no withdrawal"):
        four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))
    rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=1))
    rt.settings = dataclasses.replace(rt.settings, options={"screening": {"dormant_days": 60}})
    with pytest.raises(RefusedError, match="no backtest against the thresholds in force"):
        four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))
    rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=1))
    four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))
    with pytest.raises(InputError, match="no longer a proposal"):
        rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=1))

    for n in range(3):
        rulesets.propose(rt, sue, _proposal(tmp_path, f"[screening]\ndormant_days = {n + 1}\n"),
                         "try")
    with pytest.raises(RefusedError, match="3 proposals are pending already"):
        rulesets.propose(rt, sue, _proposal(tmp_path, "[screening]\ndormant_days = 9\n"),
                         "one more")


def test_two_approvals_at_once_make_one_version_live(staff: Staff, tmp_path: Path) -> None:
    import threading

    rt, sue = staff.rt, staff.actors["sue"]
    _cases(staff)
    made = [rulesets.propose(rt, sue, _proposal(tmp_path, body), "race")
            for body in ("[screening]\nhold_threshold = 35\n",
                         "[screening]\ndormant_days = 60\n")]
    for m in made:
        rulesets.backtest(rt, sue, m.version, FIXED_NOW - timedelta(days=1))
    codes = {"sam": staff.next_code("sam"), "admin2": staff.next_code("admin2")}
    errors: list[Exception] = []
    barrier = threading.Barrier(2)

    def approve(name: str, request_id: object) -> None:
        barrier.wait()
        try:
            four_eyes.approve(rt, staff.actors[name], request_id,  # type: ignore[arg-type]
                              codes[name])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(name, m.request_id))
               for name, m in zip(codes, made, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = [v.status for v in rulesets.list_sets(rt, sue)]
    assert sorted(states) == ["in force", "proposed"], (states, errors)
    assert len(errors) == 1 and isinstance(errors[0], ConflictError)


def _burst(rt: Runtime, prefix: str, ago: timedelta) -> None:
    """Five failed logins of A1 within four minutes, from one address: a brute force at
    the default threshold of five."""
    from tests.support.helpers import ingest, login
    ingest(rt, "logins", *(login(f"{prefix}{i}", at=iso(ago - timedelta(minutes=i)),
                                 success=False, ip="198.51.100.7") for i in range(5)))


def test_login_thresholds_are_proposed_backtested_and_approved(staff: Staff,
                                                               tmp_path: Path) -> None:
    """A [logins] proposal: its backtest replays the detectors under both thresholds
    (figures by hand: the burst's five findings go, the account's alert was a false
    positive), a second officer approves it, and the analysis and the watcher judge by
    it from then on."""
    rt, sue, sam, ann = staff.rt, staff.actors["sue"], staff.actors["sam"], staff.actors["ann"]
    _burst(rt, "B", timedelta(hours=2))
    with rt.sessions() as s:
        a1 = s.scalars(select(Account.id).where(Account.external_id == "A1")).one()
    with rt.transaction() as s:
        outcomes.record(s, ann.officer_id, rt.clock(), f"alert:account:{a1}", "false_positive",
                        "the client mistyped", ["detector:brute_force"])
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[logins]\nbrute_force_failures = 6\n"),
                            "five typos are not an attack")
    assert done.changes == {"logins.brute_force_failures": [5, 6]}
    with pytest.raises(RefusedError, match="no backtest"):
        four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))
    # Screening's parameters are those in force: nothing runs in shadow.
    with rt.sessions() as s:
        assert screening.in_force(s, screening.load_config(rt.settings), rt.clock())[1] == []

    short = rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=2))
    assert short.logins is not None and short.logins.days == 2
    with pytest.raises(RefusedError, match="login thresholds need 7 days at least"):
        four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))
    # A long --since does not make a week of logins: the days run from the first login.
    ancient = rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=3650))
    assert ancient.logins is not None and 8 < ancient.logins.days < 8.2
    result = rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=8))
    # Screening's parameters are those in force: A1's six withdrawals, whose account's
    # findings change, are judged again with each side's findings (no hold moves: the
    # burst weighs 5 in recent_anomalies).
    assert not result.screening_changed and result.findings_replayed
    assert result.judged == 6 and (result.added_count, result.removed_count) == (0, 0)
    logins = result.logins
    assert logins is not None
    with rt.sessions() as s:
        in_period = s.scalar(select(func.count()).select_from(LoginEvent).where(
            LoginEvent.at >= FIXED_NOW - timedelta(days=8)))
    assert logins.logins == in_period
    assert logins.removed == [f"brute_force on B{i}" for i in range(5)]
    assert (logins.removed_count, logins.added_count) == (5, 0)
    assert logins.findings_live - logins.findings_proposed == 5
    assert (logins.fraud, logins.decided) == (0, 1)
    (brute,) = [d for d in logins.detectors if d.detector == "brute_force"]
    assert (brute.live.holds, brute.live.decided, brute.live.confirmed) == (1, 1, 0)
    assert brute.live.precision == 0.0 and brute.live.recall is None
    assert brute.proposed.holds == 0 and (brute.added, brute.removed) == (0, 5)
    assert logins.silenced == ["brute_force"]
    # A1's withdrawals of the period: screening reads the findings that change.
    assert logins.withdrawals_affected == 6
    evidence = dict(four_eyes.get_request(rt, sam, done.request_id).evidence)
    assert evidence["changes"] == "logins.brute_force_failures 5 -> 6"
    assert "over 8 days" in evidence["login backtest"]
    assert evidence["SILENCED"] == "no finding at all under the proposal: brute_force"
    assert "brute_force 1 -> 0 flagged (precision 0% -> n/a, recall n/a -> n/a)" in \
        evidence["per detector"]
    assert evidence["screening"].startswith("6 withdrawals of the period")
    four_eyes.approve(rt, sam, done.request_id, staff.next_code("sam"))

    # In force: a new burst of five is not a brute force; the run names the version.
    _burst(rt, "C", timedelta(minutes=30))
    report = anomalies.analyze(rt, CRON)
    assert report.rule_set == done.version and report.logins >= 10
    with rt.sessions() as s:
        assert not s.scalar(select(func.count()).select_from(LoginAnomaly)
                            .where(LoginAnomaly.kind == "brute_force"))
    windows = anomalies.WindowState(lateness=timedelta(hours=2))  # the watcher's
    anomalies.analyze_new(rt, windows, 1000)
    assert windows.t.brute_force_failures == 6 and windows.version == done.version
    _view, parameters = rulesets.show(rt, ann, None)
    assert parameters["logins"]["brute_force_failures"] == 6


def test_login_proposals_take_no_shadow_place_and_old_versions_read_safely(
        staff: Staff, tmp_path: Path) -> None:
    """Proposals of login thresholds alone run in no shadow and do not keep a screening
    proposal out of one; a stored value outside today's bounds is brought within them,
    not a stop of the detectors; a version without login thresholds holds the defaults."""
    rt, sue = staff.rt, staff.actors["sue"]
    for n in (6, 7, 8):
        rulesets.propose(rt, sue, _proposal(tmp_path, f"[logins]\nbrute_force_failures = {n}\n"),
                         f"try {n}")
    later = rulesets.propose(rt, sue, _proposal(tmp_path, "[screening]\nhold_threshold = 35\n"),
                             "lower")
    with rt.sessions() as s:
        shadows = screening.in_force(s, screening.load_config(rt.settings), rt.clock())[1]
    assert [c.rule_set for c in shadows] == [later.version]
    from polysec_tui.services.logins import thresholds
    from polysec_tui.services.logins.rules import DEFAULTS
    kept = thresholds.from_parameters({"brute_force_failures": 1, "risk_log10_threshold": 99,
                                       "renamed_long_ago": 3, "saf_failures": "x"})
    assert (kept.brute_force_failures, kept.risk_log10_threshold) == (3, 4.5)
    assert thresholds.from_parameters({"brute_force_failures": 5.6}).brute_force_failures == 6
    assert kept.saf_failures == DEFAULTS.saf_failures
    assert thresholds.from_parameters(None) == DEFAULTS


def test_a_login_backtest_replays_screening_with_each_sides_findings(
        staff: Staff, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five failures and then a success from one address: under the thresholds in
    force (saf_failures 5) the success is a success_after_failures finding, so the
    withdrawal behind it scores ip_not_seen 20 + risky_session 35 = 55 and is held;
    under saf_failures 6 there is no such finding and it scores 20 (the burst's
    brute_force findings are in both). A second withdrawal half an hour later, from
    another new address to a new destination (35), has that finding in its account's
    recent story (recent_anomalies weighs it more than the burst alone): held under the
    thresholds in force only, too. The
    live database's findings are untouched (the replay's are on a connection of its
    own, which no later query sees)."""
    from tests.support.helpers import ingest, login
    rt, sue = staff.rt, staff.actors["sue"]
    ip = "198.51.100.20"
    ingest(rt, "logins", *(login(f"F{i}", at=iso(timedelta(minutes=75 - i)), success=False,
                                 ip=ip, asn=None) for i in range(5)))
    request(rt, "W", ip=ip, ago=timedelta(hours=1))
    request(rt, "OTHER", ip="198.51.100.21", address="bc1qelse", ago=timedelta(minutes=30))
    anomalies.analyze(rt, CRON)
    with rt.sessions() as s:
        stored = s.scalar(select(func.count()).select_from(LoginAnomaly))
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[logins]\nsaf_failures = 6\n"),
                            "one more failure before we call it")
    monkeypatch.setattr(screening, "CHOSEN_BATCH", 3)  # the chosen ids judged in parts
    result = rulesets.backtest(rt, sue, done.version, FIXED_NOW - timedelta(days=8))
    assert result.logins is not None
    assert "success_after_failures on W-login" in result.logins.removed
    assert result.findings_replayed and not result.screening_changed
    assert (result.removed, result.added) == (["W", "OTHER"], [])
    figures = {r.rule: (r.live.holds, r.proposed.holds) for r in result.rules}
    assert figures["risky_session"] == (1, 0)
    # Only A1's withdrawals (its six, W and OTHER) are judged: no other account's
    # findings change.
    assert result.judged == 8
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LoginAnomaly)) == stored
        assert s.scalar(select(func.count()).select_from(LoginAnomaly).where(
            LoginAnomaly.kind == "success_after_failures")) == 1
    # The connection that held the replay's findings went back to no pool.
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LoginAnomaly)) == stored


def test_screening_replayed_with_findings_on_a_row_only_role(staff: Staff,
                                                            db_url: str) -> None:
    """docs/audit.md's least-privileged role: on MariaDB it needs CREATE TEMPORARY
    TABLES for a login backtest's screening replay (one line says so without it); on
    PostgreSQL TEMPORARY is granted to every role by default."""
    from polysec_tui.db.engine import make_engine
    from tests.support.roles import row_only_role
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has no roles")
    since, until = FIXED_NOW - timedelta(days=30), FIXED_NOW
    sets: list[tuple[screening.ScreeningConfig, list[Any]]] = [
        (screening.ScreeningConfig(), [])]
    grants = [()] if db_url.startswith("postgresql") else [(), ("CREATE TEMPORARY TABLES",)]
    for extra in grants:
        with row_only_role(db_url, *extra) as url:
            rt = Runtime(staff.rt.settings, make_engine(url), staff.rt.keyring,
                         clock=staff.clock)
            try:
                if db_url.startswith("postgresql") or extra:
                    assert len(screening.replay_with_findings(rt, sets, since, until)) == 6
                else:
                    with pytest.raises(RefusedError, match=r"^a login backtest replays "
                                       r"screening on a temporary table.*CREATE TEMPORARY"):
                        screening.replay_with_findings(rt, sets, since, until)
            finally:
                rt.engine.dispose()


def test_only_a_missing_privilege_reads_as_one(staff: Staff) -> None:
    """Another failure to create the temporary table (here: it exists already) is that
    failure, not the advice to grant a privilege."""
    from sqlalchemy.exc import DBAPIError
    with staff.rt.engine.connect() as conn:
        try:
            screening._temporary_anomalies(conn)
            with pytest.raises(DBAPIError) as caught:
                screening._temporary_anomalies(conn)
            assert not isinstance(caught.value, RefusedError)
        finally:
            conn.rollback()
            conn.exec_driver_sql(screening._DROP_TEMPORARY[conn.dialect.name])
            conn.commit()


def test_screening_replayed_with_findings_on_an_in_memory_database(db_url: str,
                                                                  tmp_path: Path) -> None:
    """An in-memory SQLite database is its one connection: the replay leaves it whole,
    its own findings visible again after."""
    from polysec_tui.config import Settings
    from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
    from polysec_tui.db import migrate
    from polysec_tui.db.engine import make_engine
    from tests.support.screening import build_history
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's in-memory database only")
    write_new_keyring(tmp_path / "k.json", Keyring.generate(now=FIXED_NOW))
    engine = make_engine("sqlite://")
    migrate.upgrade(engine)
    rt = Runtime(Settings(db_url="sqlite://", keyring_path=tmp_path / "k.json"), engine,
                 load_keyring(tmp_path / "k.json"), clock=lambda: FIXED_NOW)
    try:
        build_history(rt)
        from tests.support.helpers import ingest, login
        ingest(rt, "logins", *(login(f"F{i}", at=iso(timedelta(minutes=30 - i)),
                                     success=False) for i in range(5)))
        anomalies.analyze(rt, CRON)
        with rt.sessions() as s:
            stored = s.scalar(select(func.count()).select_from(LoginAnomaly))
        assert stored
        replayed = screening.replay_with_findings(
            rt, [(screening.ScreeningConfig(), [])], FIXED_NOW - timedelta(days=30), FIXED_NOW)
        assert len(replayed) == 6
        with rt.sessions() as s:
            assert s.scalar(select(func.count()).select_from(LoginAnomaly)) == stored
            assert s.scalar(select(func.count()).select_from(Withdrawal)) == 6
    finally:
        engine.dispose()


def test_login_thresholds_run_in_shadow_on_new_logins(staff: Staff, tmp_path: Path) -> None:
    """A [logins] proposal judges every new login in shadow beside the thresholds in
    force, in the batch analysis and on the watcher's kept windows alike: what it would
    find differently is reported, nothing of it is stored, and the live pass writes what
    it writes without it (the account's history counts each login once)."""
    from polysec_tui.db.models import LoginHistory
    from tests.support.helpers import ingest, login
    rt, sue, sam, ann = staff.rt, staff.actors["sue"], staff.actors["sam"], staff.actors["ann"]
    anomalies.analyze(rt, CRON)
    done = rulesets.propose(rt, sue, _proposal(tmp_path, "[logins]\nbrute_force_failures = 4\n"),
                            "four are enough")

    def failures(prefix: str, ip: str, ago: timedelta) -> None:
        ingest(rt, "logins", *(login(f"{prefix}{i}", at=iso(ago - timedelta(minutes=i)),
                                     success=False, ip=ip) for i in range(4)))

    failures("F", "198.51.100.7", timedelta(hours=3))
    ingest(rt, "logins", login("OK1", at=iso(timedelta(hours=2))))
    report = anomalies.analyze(rt, CRON)
    assert report.logins == 5 and "brute_force" not in report.new_anomalies
    with rt.sessions() as s:
        assert not s.scalar(select(func.count()).select_from(LoginAnomaly)
                            .where(LoginAnomaly.kind == "brute_force"))
        history = s.scalars(select(LoginHistory.logins).join(
            Account, Account.id == LoginHistory.account_id)
            .where(Account.external_id == "A1")).one()
        successes = s.scalar(select(func.count()).select_from(LoginEvent).join(
            Account, Account.id == LoginEvent.account_id)
            .where(Account.external_id == "A1", LoginEvent.success.is_(True)))
    assert history == successes
    shadow = rulesets.shadow(rt, ann, done.version)
    assert shadow.logins_judged == 5 and shadow.findings_removed == {}
    assert list(shadow.findings_added) == ["brute_force"] and shadow.severity_changed == {}
    assert shadow.login_disagreements == shadow.findings_added["brute_force"] >= 1
    assert {f.login for f in shadow.logins_shown} <= {"F0", "F1", "F2", "F3"}
    assert all(f.live_severity is None and f.shadow_severity for f in shadow.logins_shown)
    assert (shadow.judged, shadow.disagreements) == (0, 0)  # no withdrawal came
    evidence = dict(four_eyes.get_request(rt, sam, done.request_id).evidence)
    assert evidence["login shadow"] == (f"5 new logins judged: brute_force "
                                        f"+{shadow.login_disagreements}")

    # The watcher keeps the proposal's windows beside its own: read once, then fed.
    windows = anomalies.WindowState(lateness=timedelta(hours=2))
    failures("G", "198.51.100.8", timedelta(minutes=90))
    anomalies.analyze_new(rt, windows, 1000)
    failures("H", "198.51.100.9", timedelta(minutes=60))
    anomalies.analyze_new(rt, windows, 1000)
    kept = windows.shadows[done.version]
    assert kept.t.brute_force_failures == 4 and kept.rebuilds == 1
    later = rulesets.shadow(rt, ann, done.version)
    assert later.logins_judged == 13
    assert {f.login[0] for f in later.logins_shown} == {"F", "G", "H"}

    # Decided: no shadow any more, and its windows are dropped.
    four_eyes.deny(rt, sam, done.request_id, "not now", staff.next_code("sam"))
    failures("K", "198.51.100.10", timedelta(minutes=30))
    anomalies.analyze_new(rt, windows, 1000)
    assert windows.shadows == {}
    assert rulesets.shadow(rt, ann, done.version).logins_judged == 13


def test_a_failing_login_shadow_never_stops_the_detectors(staff: Staff, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """A proposal whose shadow pass fails is skipped for the pass (on PostgreSQL the
    failed statement aborts the transaction up to the savepoint only): the live
    findings are stored and the checkpoint moves."""
    from sqlalchemy import text as sql
    rt, sue = staff.rt, staff.actors["sue"]
    anomalies.analyze(rt, CRON)
    rulesets.propose(rt, sue, _proposal(tmp_path, "[logins]\nbrute_force_failures = 4\n"),
                     "four are enough")
    _burst(rt, "B", timedelta(hours=1))
    real = anomalies._profile_pass

    def failing(session, lo, hi, t, findings, lists):
        if t.brute_force_failures == 4:  # an error of the database's, mid-transaction
            session.execute(sql("SELECT no_such_column FROM login_events"))
        return real(session, lo, hi, t, findings, lists)

    monkeypatch.setattr(anomalies, "_profile_pass", failing)
    report = anomalies.analyze(rt, CRON)
    assert report.new_anomalies.get("brute_force", 0) >= 1
    assert anomalies.checkpoint(rt)["login_id"] == report.to_login_id


def test_a_replay_finds_what_a_full_analysis_finds(staff: Staff) -> None:
    """The backtest's replay on its scratch copy (SQLite: attached and copied by the
    engine; a server: through SQLAlchemy) finds, under the thresholds in force, exactly
    what `logins analyze --full` stores on the live database."""
    from polysec_tui.services.logins import replay
    from polysec_tui.services.logins.rules import DEFAULTS
    from tests.support.helpers import ingest, login
    rt = staff.rt
    _burst(rt, "B", timedelta(hours=3))
    ingest(rt, "logins", login("FAR", at=iso(timedelta(hours=1)), ip="2001:db8::7",
                               asn=4294967295, country="BR", city="Recife", lat=-8.05,
                               lon=-34.9, device_id="other", user_agent="curl/8"))
    anomalies.analyze(rt, CRON, full=True)
    since = FIXED_NOW - timedelta(days=30)
    with rt.sessions() as s:
        stored = {tuple(r) for r in s.execute(select(LoginAnomaly.kind, LoginEvent.external_id)
                               .join(LoginEvent, LoginEvent.id == LoginAnomaly.login_event_id)
                               .where(LoginEvent.at >= since)).all()}
    assert ("brute_force", "B0") in stored and any(ext == "FAR" for _k, ext in stored)
    replayed = replay.replay(rt, [DEFAULTS], since, rt.clock())
    assert set(replayed.findings[0]) == stored
