"""The rules report: each screening rule, login detector and alert rule with its hits,
holds and the outcomes officers recorded (`services.outcomes.report`, the same figures as
`polysec rules report`), so the team sees which rules are worth their noise.

Opened from the dashboard (``o``). ``p`` cycles the period (7, 30, 90 days); the rows
are in the report's order (screening, detectors, alerts). Precision is confirmed fraud
over every decided outcome; a rule nobody has decided yet shows none, not 0 %. A rule
with many decisions and a low precision is shown in amber, so it stands out.

Below, the versions of screening's rule set (`polysec rules list`): which is in force,
what each changed, its backtest and who approved it; a proposal is decided in the
approvals inbox like any four-eyes request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    StatusLine,
    fill_table,
    safe_text,
)
from polysec_tui.services import outcomes
from polysec_tui.services.outcomes import RuleFigures
from polysec_tui.services.withdrawals import rulesets
from polysec_tui.services.withdrawals.rulesets import RuleSetView

PERIODS = (7, 30, 90)  # days
NOISY_DECIDED = 10  # decisions before a low precision is worth pointing at
NOISY_PRECISION = 0.1


class RulesReportScreen(ConsoleScreen):
    TITLE_TEXT = "Rules report"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="rules.back", tooltip="Back to the dashboard"),
        Binding("p", "period", "Period", id="rules.period",
                tooltip="The last 7, 30 or 90 days"),
        Binding("r", "reload", "Refresh", id="rules.refresh", tooltip="Load it again"),
    ]
    DEFAULT_CSS = """
    RulesReportScreen #rules-status { height: 1; padding: 0 1; }
    RulesReportScreen #rules-table { height: 1fr; }
    RulesReportScreen #rule-sets { height: auto; max-height: 9; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.days = 30

    def compose_body(self) -> ComposeResult:
        yield StatusLine(Text("loading…"), id="rules-status")
        yield ConsoleTable(id="rules-table", cursor_type="row", zebra_stripes=True)
        yield ConsoleTable(id="rule-sets", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#rules-table", DataTable).focus()
        self.action_reload()

    def action_reload(self) -> None:
        """Load it again."""
        self.load(self.days)

    def action_period(self) -> None:
        """The next period."""
        self.days = PERIODS[(PERIODS.index(self.days) + 1) % len(PERIODS)]
        self.action_reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="rules report")
    def load(self, days: int) -> None:
        self.deliver(lambda: (
            outcomes.report(self.runtime, self.officer, self.clock() - timedelta(days=days)),
            rulesets.list_sets(self.runtime, self.officer)))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        figures: list[RuleFigures]
        sets: list[RuleSetView]
        figures, sets = message.data
        fill_table(self.query_one("#rules-table", DataTable), [
            ("rule", "Rule", None), ("hits", "Hits", None), ("holds", "Holds", None),
            ("confirmed", "Confirmed", None), ("false", "False pos", None),
            ("benign", "Benign", None), ("precision", "Precision", None),
        ], [_row(f) for f in figures])
        fill_table(self.query_one("#rule-sets", DataTable), [
            ("version", "Rule set", None), ("state", "State", None), ("by", "Proposed by", None),
            ("approved", "Approved by", None), ("changes", "Changes", None),
            ("backtest", "Backtest", None),
        ], [_set_row(v) for v in sets])
        live = next((v for v in sets if v.status == "in force"), None)
        in_force = ("the configuration file's thresholds" if live is None
                    else f"rule set v{live.version}")
        decided = sum(f.decided for f in figures)
        self.set_status(f"last {self.days} days (p changes) · precision = confirmed fraud "
                        f"/ decided · {decided:,} outcomes recorded · in force: {in_force}")


def _row(f: RuleFigures) -> tuple[Text, ...]:
    noisy = (f.decided >= NOISY_DECIDED and f.precision is not None
             and f.precision < NOISY_PRECISION)
    precision = "" if f.precision is None else f"{f.precision:.0%}"
    return (safe_text(f.rule, limit=48),
            *(Text(text, justify="right") for text in (
                f"{f.hits:,}", "" if f.holds is None else f"{f.holds:,}",
                f"{f.confirmed:,}", f"{f.false_positives:,}", f"{f.benign:,}")),
            Text(precision + (" noisy" if noisy else ""), justify="right",
                 style="bold yellow" if noisy else ""))


def _set_row(v: RuleSetView) -> tuple[Text, ...]:
    changes = rulesets.describe_changes(v.changes)
    test = v.backtest
    backtest = "none yet" if test is None else (
        f"holds {test['live']['holds']:,} -> {test['proposed']['holds']:,} "
        f"(+{test['added_count']:,} -{test['removed_count']:,})")
    return (Text(f"v{v.version}"),
            Text(v.status, style="bold green" if v.status == "in force" else ""),
            safe_text(v.proposed_by, limit=32), safe_text(v.activated_by or "", limit=32),
            safe_text(changes, limit=80), Text(backtest))
