"""`polysec rules report | list | show | propose | backtest`: how each rule does, and
screening's thresholds and weights changed like code (services/withdrawals/rulesets)."""

from __future__ import annotations

from pathlib import Path

import click

from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of
from polysec_tui.errors import InputError
from polysec_tui.services import outcomes as service
from polysec_tui.services.logins.anomalies import parse_since
from polysec_tui.services.withdrawals import rulesets
from polysec_tui.text import printable


@click.group()
def rules() -> None:
    """How well the screening rules and login detectors do, from the outcomes officers
    record when they decide a withdrawal or acknowledge an alert; and screening's
    thresholds and weights, versioned: proposed, backtested, approved by a second
    officer (docs/screening.md)."""


@rules.command()
@click.option("--since", default="30d", show_default=True,
              help="The period: 30d, 24h, 2w, or an ISO 8601 time with a zone.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def report(ctx: click.Context, since: str, as_json: bool) -> None:
    """Hits, holds, confirmed fraud, false positives, benign and precision per rule."""
    rt = runtime_of(ctx)
    start = parse_since(since, rt.clock())
    figures = service.report(rt, actor_of(ctx, "read"), start)
    if as_json:
        emit_json({"since": start, "rules": [f.as_dict() for f in figures]})
        return
    echo(f"since {start:%Y-%m-%d %H:%M} UTC; precision = confirmed / decided")
    width = max(len(f.rule) for f in figures)
    echo(f"{'rule':<{width}}  {'hits':>7}  {'holds':>6}  {'confirmed':>9}  {'false pos':>9}"
         f"  {'benign':>6}  {'precision':>9}")
    for f in figures:
        holds = "" if f.holds is None else f"{f.holds:,}"
        precision = "" if f.precision is None else f"{f.precision:.0%}"
        echo(f"{f.rule:<{width}}  {f.hits:>7,}  {holds:>6}  {f.confirmed:>9,}  "
             f"{f.false_positives:>9,}  {f.benign:>6,}  {precision:>9}")


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    raw = text.strip().lower().removeprefix("v")
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise InputError(f"{printable(text[:20])!r} is not a rule set version (3 or v3)")
    return int(raw)


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Every version of the rule set, newest first, with its state: in force,
    superseded, proposed (it runs in shadow), denied or expired."""
    rt = runtime_of(ctx)
    views = rulesets.list_sets(rt, actor_of(ctx, "read"))
    if as_json:
        emit_json({"rule_sets": [v.as_dict() for v in views]})
        return
    if not views:
        echo("no rule set yet: screening judges by the configuration file's [screening] "
             "table; `polysec rules propose FILE` starts one")
        return
    for v in views:
        tested = ("not backtested" if v.backtested_at is None
                  else f"backtested {v.backtested_at:%Y-%m-%d %H:%M} by {v.backtested_by}")
        echo(f"v{v.version}  {v.status:<10}  by {v.proposed_by} "
             f"{v.proposed_at:%Y-%m-%d %H:%M}; {tested}"
             + (f"; approved by {v.activated_by} {v.activated_at:%Y-%m-%d %H:%M}"
                if v.activated_at else ""))
        echo(f"    {printable(v.reason)[:200]}")
        echo(f"    {rulesets.describe_changes(v.changes)}")


@rules.command()
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def show(ctx: click.Context, version: str | None, as_json: bool) -> None:
    """The thresholds and weights of VERSION (default: the rule set in force, or the
    configuration file's while none was approved), the login detectors' under
    logins."""
    rt = runtime_of(ctx)
    view, parameters = rulesets.show(rt, actor_of(ctx, "read"), _version(version))
    if as_json:
        emit_json({"rule_set": None if view is None else view.as_dict(),
                   "parameters": parameters})
        return
    if view is None:
        echo("in force: the configuration file's [screening] table and the login "
             "detectors' defaults (no rule set approved)")
    else:
        echo(f"v{view.version} ({view.status}), based on "
             f"{'the configuration file' if view.based_on is None else f'v{view.based_on}'}")
    lines = [(key, value) for key, value in parameters.items() if key != "logins"]
    lines += [(f"logins.{key}", value)
              for key, value in (parameters.get("logins") or {}).items()]
    width = max(len(k) for k, _v in lines)
    for key, value in lines:
        echo(f"  {key:<{width}}  {rulesets.plain(value)}")


@rules.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", required=True, help="Why: what the change is meant to fix.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def propose(ctx: click.Context, file: Path, reason: str, as_json: bool) -> None:
    """Propose a new version: the rule set in force with FILE's [screening] table
    (thresholds and weights only; the same keys as the configuration file's) and/or
    [logins] table (the login detectors' thresholds, windows in minutes) applied.
    Opens a four-eyes request; the proposal runs in shadow on new withdrawals and new
    logins until decided; none can be approved before `polysec rules backtest` ran on it
    (senior or admin; audited)."""
    rt = runtime_of(ctx)
    done = rulesets.propose(rt, actor_of(ctx, "rules.propose"), file, reason)
    if as_json:
        emit_json({"rule_set": done.version, "based_on": done.based_on,
                   "request": str(done.request_id), "changes": done.changes})
        return
    echo(f"proposed rule set v{done.version}: {rulesets.describe_changes(done.changes)}")
    echo(f"next: `polysec rules backtest {done.version}`, then a second officer runs "
         f"`polysec approvals approve {done.request_id}`")


@rules.command()
@click.argument("version")
@click.option("--since", default="30d", show_default=True,
              help="The period replayed: 30d, 24h, 2w, or an ISO 8601 time with a zone.")
@click.option("--shadow", is_flag=True,
              help="Instead of replaying history, report where the proposal, running in "
                   "shadow since it was proposed, disagreed with the rule set in force on "
                   "new withdrawals and new logins.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def backtest(ctx: click.Context, version: str, since: str, shadow: bool,
             as_json: bool) -> None:
    """Replay rule set VERSION beside the one in force over the withdrawals of the
    period: holds added and removed, and per rule precision and recall against the
    outcomes officers recorded; where its login thresholds differ, the login detectors
    too (findings added and removed, per detector against the alerts' outcomes). The
    figures are kept on the proposal: its approval needs them (senior or admin;
    audited)."""
    rt = runtime_of(ctx)
    number = _version(version)
    assert number is not None
    if shadow:
        _shadow_report(rulesets.shadow(rt, actor_of(ctx, "read"), number), as_json)
        return
    actor = actor_of(ctx, "rules.propose")
    result = rulesets.backtest(rt, actor, number, parse_since(since, rt.clock()))
    if as_json:
        emit_json(result.as_dict())
        return
    live = "the configuration file" if result.live_version is None \
        else f"v{result.live_version}"
    share = rulesets.share
    if not result.screening_changed and not result.judged:
        echo(f"v{result.version} against {live} (in force): screening's parameters are "
             "those in force, no withdrawal is judged otherwise")
    else:
        scope = ("" if result.screening_changed else
                 " on accounts whose login findings change (screening's parameters are "
                 "those in force)")
        sides = ", each side with its own login findings" if result.findings_replayed else ""
        echo(f"v{result.version} against {live} (in force), {result.judged:,} withdrawals"
             f"{scope}{sides} since {result.since:%Y-%m-%d %H:%M} UTC; {result.fraud:,} "
             f"confirmed fraud, {result.decided:,} with an outcome")
        echo(f"holds {result.live.holds:,} -> {result.proposed.holds:,}: "
             f"{result.added_count:,} added, {result.removed_count:,} removed")
        echo(f"precision {share(result.live.precision)} -> "
             f"{share(result.proposed.precision)}; recall {share(result.live.recall)} -> "
             f"{share(result.proposed.recall)}")
        _figures_table("rule", [(r.rule, r.live, r.proposed) for r in result.rules])
        _named("holds", result.added, result.added_count, result.removed,
               result.removed_count)
    logins = result.logins
    if logins is not None:
        echo(f"login detectors: {logins.logins:,} logins over {logins.days:g} days since "
             f"{result.since:%Y-%m-%d %H:%M} UTC replayed in {logins.seconds:.1f} s; "
             f"{logins.fraud:,} alerts confirmed fraud, {logins.decided:,} with an outcome")
        if logins.silenced:
            echo(f"SILENCED: no finding at all under the proposal: "
                 f"{', '.join(logins.silenced)}")
        if logins.withdrawals_affected:
            echo(f"screening: {logins.withdrawals_affected:,} withdrawals of the period are "
                 "on accounts whose login findings change (risky_session, "
                 "recent_anomalies and a login's vouching read them): judged again above")
        echo(f"findings {logins.findings_live:,} -> {logins.findings_proposed:,}: "
             f"{logins.added_count:,} added, {logins.removed_count:,} removed")
        _figures_table("detector", [(d.detector, d.live, d.proposed)
                                    for d in logins.detectors])
        _named("findings", logins.added, logins.added_count, logins.removed,
               logins.removed_count)


def _figures_table(head: str, rows: list[tuple[str, rulesets.HoldFigures,
                                                rulesets.HoldFigures]]) -> None:
    """Per rule or detector: what it fired on (withdrawals, or alert subjects), its
    precision and recall, in force > proposed."""
    share = rulesets.share
    width = max([len(name) for name, _l, _p in rows] + [len(head)])
    echo(f"{head:<{width}}  {'hits':>13}  {'precision':>13}  {'recall':>13}")
    for name, live, proposed in rows:
        echo(f"{name:<{width}}  {live.holds:>6,}>{proposed.holds:<6,}  "
             f"{share(live.precision):>6}>{share(proposed.precision):<6}  "
             f"{share(live.recall):>6}>{share(proposed.recall):<6}")


def _named(what: str, added: list[str], added_count: int, removed: list[str],
           removed_count: int) -> None:
    for label, names, count in (("added", added, added_count),
                                ("removed", removed, removed_count)):
        if names:
            more = f" (and {count - len(names):,} more)" if count > len(names) else ""
            echo(f"{what} {label}: {', '.join(names)}{more}")


def _shadow_report(report: rulesets.ShadowReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    state = "running" if report.running else "stopped (its request was decided or expired)"
    echo(f"v{report.version} in shadow, {state}: {report.judged:,} new withdrawals judged, "
         f"{report.disagreements:,} disagreements ({report.holds_added:,} it would hold, "
         f"{report.holds_removed:,} it would not)")
    for d in report.shown:
        rules = ", ".join([*(f"+{r}" for r in d.rules_added),
                           *(f"-{r}" for r in d.rules_removed)])
        echo(f"  {d.withdrawal}  {d.judged_at:%Y-%m-%d %H:%M}  score {d.live_score:g} -> "
             f"{d.shadow_score:g}  held {'yes' if d.live_held else 'no'} -> "
             f"{'yes' if d.shadow_held else 'no'}  {rules}")
    if not report.logins_judged:
        return
    echo(f"its login thresholds: {report.logins_judged:,} new logins judged, "
         f"{report.login_disagreements:,} disagreements: "
         + rulesets.describe_findings(report.findings_added, report.findings_removed,
                                      report.severity_changed))
    for f in report.logins_shown:
        echo(f"  {f.login}  {f.account}  {f.at:%Y-%m-%d %H:%M}  {f.detector}  "
             f"{f.live_severity or 'none'} -> {f.shadow_severity or 'none'}")
