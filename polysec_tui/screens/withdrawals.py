"""The withdrawal review queue and one withdrawal's detail.

Queue: one page (:data:`PAGE`) of `services.withdrawals.list_queue` at a time, so a
database with a million withdrawals opens as fast as one with ten. Held first (with the
default ``open`` status), sorted by risk, age or amount (``s``), the status cycled with
``f``, and a filter line (``/``) that the query applies: the beginning of a withdrawal,
account or address id, or an asset, rule or officer. The age column turns amber at 75 %
of the review SLA (``[screening] review_sla_hours``, 4 h) and red past it; it also carries a word
(``due``/``LATE``) so that NO_COLOR terminals lose nothing. Enter opens the detail.

Detail: the withdrawal, the account summary (masked), every rule hit with its
explanation, active holds, the account's recent logins and withdrawals, the
destination's history across all accounts and the decisions so far. ``c`` claims;
``a``/``x``/``e`` approve, reject and escalate after a note prompt that is also the
confirmation (Enter confirms, Escape cancels). ``t``, ``o`` and ``f`` open the account's
timeline, its anomalies and the 2FA reset screen. Every platform value is shown through
``safe_text``.

Claims move: ``n`` in the queue claims the most urgent unclaimed withdrawal (past its SLA
first, then by risk; two officers never get the same one) and opens it; ``u`` in the
detail releases your claim, ``R`` (senior officers) reassigns it with a reason. Pages
are ``]`` and ``[``.

Many at once: ``space`` marks a row (``shift+down``/``shift+up`` mark and move); ``X``
rejects and ``E`` escalates the marked ones with one note; ``I`` attaches them (or the
highlighted one) to an incident, as ``i`` does for the withdrawal shown in the detail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import ClassVar, NamedTuple

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import DataTable, Input, Select, Static
from textual.worker import Worker, get_current_worker

from polysec_tui.errors import PolysecError
from polysec_tui.screens.incidents import Attached, attach
from polysec_tui.screens.protection import PROTECTION_BINDINGS, ProtectsAccount
from polysec_tui.screens.widgets import (
    ConsoleScreen,
    ConsoleTable,
    ModalInput,
    StatusLine,
    fill_table,
    move_cursor_to,
    safe_text,
)
from polysec_tui.services.withdrawals import review as service
from polysec_tui.services.withdrawals.screening import load_config
from polysec_tui.text import fmt_amount, fmt_minute, fmt_money, printable

PAGE = 50
# A page already fetched (shown, or the next one fetched ahead while the officer reads)
# is shown at once for this long when paged, sorted or filtered back to, and fetched
# again behind it; `r`, a decision and coming back from a detail fetch afresh.
PAGE_KEPT_SECONDS = 30.0
PAGES_KEPT = 8
# How long after a page is drawn the fetches behind it start (the page again when it
# was shown from what was kept, the next one ahead): at once, their threads would
# compete with drawing it for the interpreter (a kept page took twice as long to be on
# screen, a reloaded one a fifth longer).
BEHIND_SECONDS = 0.1
# While shown, the queue's page and a withdrawal's detail are read again this often:
# another console's claims and decisions appear without a key.
QUEUE_REFRESH_SECONDS = 10.0
DETAIL_REFRESH_SECONDS = 5.0
PageKey = tuple[str, str, str, int]  # status, sort, filter, offset
STATUS_CYCLE = ("open", "held", "in_review", "escalated", "pending", "approved", "rejected")
SORT_LABELS = {"risk": "risk (highest first)", "age": "age (oldest first)",
               "amount": "amount (largest first within each asset: no prices to compare "
                         "assets)"}


def sort_label(sort: str, page: service.QueuePage | None) -> str:
    if sort == "amount" and page is not None and page.priced:
        return (f"value in {page.currency} (largest first; amounts without a price after, "
                "within each asset)")
    return SORT_LABELS[sort]


def value_text(item: service.QueueItem) -> Text:
    """The value without its currency: the column's header names it."""
    if item.value is None:
        return Text("no price", style="dim", justify="right")
    return Text(f"{item.value:,.2f}", justify="right")


class Fetched(NamedTuple):
    """A page of the queue as a worker brings it: the reload it belongs to, when it was
    asked for, what it is the page of."""

    generation: int
    asked: float
    key: PageKey
    page: service.QueuePage


def age_text(requested_at: datetime, now: datetime, sla: timedelta) -> Text:
    """``3h12m`` coloured by the SLA: amber from 75 %, red (and LATE) past it."""
    age = max(now - requested_at, timedelta(0))
    minutes = int(age.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    label = f"{days}d{rest // 60:02d}h" if days else f"{rest // 60}h{rest % 60:02d}m"
    if sla.total_seconds() <= 0:
        return Text(label)
    if age >= sla:
        return Text(f"{label} LATE", style="bold red")
    if age >= sla * 0.75:
        return Text(f"{label} due", style="yellow")
    return Text(label)


def risk_text(score: float | None) -> Text:
    if score is None:
        return Text("-", style="dim")
    style = "bold red" if score >= 100 else "yellow" if score >= 50 else ""
    return Text(f"{score:.0f}", style=style)


class QueueFilter(ModalInput):
    """The queue's filter line, modal for keys as a table's is: so Esc, which closes it,
    is its own key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "screen.back", "Close", id="queue.filter-close",
                tooltip="Close the filter line (the filter stays as it was)"),
    ]


class WithdrawalQueueScreen(ConsoleScreen):
    TITLE_TEXT = "Withdrawals"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="queue.open", show=False,
                tooltip="Open the highlighted withdrawal"),
        Binding("s", "sort", "Sort", id="queue.sort", tooltip="Sort by risk, age or amount"),
        Binding("f", "status", "Status", id="queue.status",
                tooltip="Cycle the status shown: open (held first), held, in review..."),
        Binding("slash", "filter", "Filter", id="queue.filter",
                tooltip="Filter by withdrawal, account, address, asset, rule or officer"),
        Binding("n", "claim_next", "Claim next", id="queue.claim-next",
                tooltip="Claim the most urgent unclaimed withdrawal (SLA, then risk) and open it"),
        Binding("right_square_bracket", "page(1)", "Next page", id="queue.next",
                tooltip="The next page"),
        Binding("left_square_bracket", "page(-1)", "Prev page", id="queue.prev",
                tooltip="The previous page"),
        Binding("r", "reload", "Reload", id="queue.reload", tooltip="Load the page again"),
        Binding("space", "mark", "Mark", id="queue.mark",
                tooltip="Mark or unmark the highlighted withdrawal (for X and E)"),
        Binding("X", "bulk('reject')", "Reject marked", id="queue.reject-marked",
                tooltip="Reject every marked withdrawal with one note (after a confirmation)"),
        Binding("E", "bulk('escalate')", "Escalate marked", id="queue.escalate-marked",
                tooltip="Escalate every marked withdrawal with one note"),
        Binding("I", "attach", "Attach marked", id="queue.attach",
                tooltip="Attach the marked withdrawals (or the highlighted one) to an incident"),
        Binding("shift+down", "mark(1, False)", "Mark down", id="queue.mark-down", show=False,
                tooltip="Mark the highlighted withdrawal and move down"),
        Binding("shift+up", "mark(-1, False)", "Mark up", id="queue.mark-up", show=False,
                tooltip="Mark the highlighted withdrawal and move up"),
    ]
    DEFAULT_CSS = """
    WithdrawalQueueScreen #queue-filter { display: none; }
    WithdrawalQueueScreen #queue-filter.-shown { display: block; }
    WithdrawalQueueScreen #queue-status { height: 1; padding: 0 1; }
    WithdrawalQueueScreen #queue-status.-error { color: $error; text-style: bold; }
    WithdrawalQueueScreen #queue-table { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.queue_status = "open"
        self.sort = "risk"
        self.search = ""  # the filter line: `review.list_queue(search=...)`
        self.page_offset = 0
        self.page: service.QueuePage | None = None
        # Pages by key: when they were asked for, and the page.
        self.kept: dict[PageKey, tuple[float, service.QueuePage]] = {}
        self._generation = 0  # a reload's: what was fetched before it is not kept
        self._behind: Timer | None = None
        self.marked: list[str] = []  # external ids, in the order marked
        self._closing_filter = False

    @cached_property
    def sla(self) -> timedelta:
        """How long a held withdrawal may wait for an officer ([screening] config)."""
        return timedelta(hours=load_config(self.runtime.settings).review_sla_hours)

    def compose_body(self) -> ComposeResult:
        yield QueueFilter(placeholder="filter: a withdrawal, account or address (its "
                          "beginning), an asset, a rule or an officer; empty clears; enter",
                          id="queue-filter", max_length=service.MAX_SEARCH)
        yield StatusLine(Text("loading…"), id="queue-status")
        # A page at a time from the database: the query filters and sorts (/ and s).
        yield ConsoleTable(id="queue-table", cursor_type="row", zebra_stripes=True,
                           copy_column="id", searchable=False, sortable=False)

    def on_mount(self) -> None:
        self.query_one("#queue-table", DataTable).focus()
        self.reload()
        self.reload_while_shown(QUEUE_REFRESH_SECONDS, self.fetch)

    def on_screen_resume(self) -> None:
        if self.page is not None:  # back from a detail: decisions change the queue
            self.reload()

    def action_reload(self) -> None:
        """Load the page again."""
        self.reload()

    def reload(self) -> None:
        """Fetch the page afresh: nothing kept is shown, nor kept from a fetch already
        under way (the queue may have changed: a decision, a claim)."""
        self.kept.clear()
        self._generation += 1
        self.workers.cancel_group(self, "withdrawal queue ahead")
        self.fetch()

    def fetch(self) -> None:
        """Fetch the page of `key` (a fetch for another page still under way is dropped)."""
        self._cancel_behind()
        self.load(self._generation, self.key)

    @property
    def key(self) -> PageKey:
        """What the page shown should be: status, sort, filter and offset."""
        return (self.queue_status, self.sort, self.search, self.page_offset)

    def show_page(self) -> None:
        """The page of `key`: a kept one at once (then fetched again behind it, so that
        what changed meanwhile follows within one query), else fetched."""
        kept = self._kept(self.key)
        if kept is None:
            self.fetch()
            return
        self._show(kept)
        self._fetch_behind_later(again=True)

    def _cancel_behind(self) -> None:
        if self._behind is not None:
            self._behind.stop()
            self._behind = None

    def _fetch_behind_later(self, *, again: bool) -> None:
        """In `BEHIND_SECONDS`: the page shown fetched ``again`` (it was kept) and the
        next one fetched ahead."""
        self._cancel_behind()
        self._behind = self.set_timer(BEHIND_SECONDS, lambda: self._fetch_behind(again))

    def _fetch_behind(self, again: bool) -> None:
        self._behind = None
        if again:
            self.load(self._generation, self.key)
        status, sort, search, offset = self.key
        ahead = (status, sort, search, offset + PAGE)
        if self.page is not None and ahead[3] < self.page.total and self._kept(ahead) is None:
            self.fetch_ahead(self._generation, ahead)

    def _kept(self, key: PageKey) -> service.QueuePage | None:
        kept = self.kept.get(key)
        if kept is None or time.monotonic() - kept[0] >= PAGE_KEPT_SECONDS:
            return None
        return kept[1]

    def _fetched(self, generation: int, key: PageKey) -> Fetched:
        """In a worker: the page of ``key``, and when it was asked for."""
        status, sort, search, offset = key
        asked = time.monotonic()
        return Fetched(generation, asked, key, service.list_queue(
            self.runtime, self.officer, status=status, sort=sort, offset=offset, limit=PAGE,
            search=search or None))

    @work(thread=True, exclusive=True, exit_on_error=False, group="withdrawal queue")
    def load(self, generation: int, key: PageKey) -> None:
        self.deliver(lambda: self._fetched(generation, key))

    @work(thread=True, exclusive=True, exit_on_error=False, group="withdrawal queue ahead")
    def fetch_ahead(self, generation: int, key: PageKey) -> None:
        """The next page, while the officer reads this one (kept, not shown)."""
        try:
            fetched = self._fetched(generation, key)
        except Exception:  # asked for, it is fetched again, and that fetch says why
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self.Loaded(fetched))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        if message.data is None:
            self._close_filter()
            self.set_status(message.error, error=True)
            return
        fetched: Fetched = message.data
        if fetched.generation != self._generation:
            return  # fetched before a reload: the queue may have changed since
        self.kept.pop(fetched.key, None)
        self.kept[fetched.key] = (fetched.asked, fetched.page)
        while len(self.kept) > PAGES_KEPT:
            del self.kept[next(iter(self.kept))]
        if fetched.key != self.key:
            return  # fetched ahead, or for where the officer no longer is
        self._show(fetched.page)
        self._fetch_behind_later(again=False)

    def _show(self, page: service.QueuePage) -> None:
        self._close_filter()
        on = self._item()  # the cursor stays on its withdrawal if the page still has it
        self.page = page
        now = self.clock()
        table = self.query_one("#queue-table", ConsoleTable)
        cursor = table.cursor_row
        ids = [i.external_id for i in page.items]
        if on is not None and on.external_id in ids:
            cursor = ids.index(on.external_id)
        rows = [
            (Text("✓" if i.external_id in self.marked else " "),
             # The SLA clock runs only for what waits for an officer (held, escalated,
             # claimed): a pending withdrawal below the threshold is nobody's work.
             age_text(i.requested_at, now,
                      self.sla if i.status in service.WAITING else timedelta(0)),
             Text(i.status), risk_text(i.risk_score),
             Text(fmt_amount(i.amount), justify="right"), safe_text(i.asset),
             *((value_text(i),) if page.priced else ()),
             safe_text(i.external_id, limit=40), safe_text(i.account, limit=40),
             safe_text(i.claimed_by or ""), safe_text(", ".join(i.rules)))
            for i in page.items
        ]
        table.page_offset, table.page_total = page.offset, page.total
        table.row_ids = [i.external_id for i in page.items]  # y: the whole id, never cut
        fill_table(table, [("mark", " ", 1), ("age", "Age", None), ("status", "Status", 10),
                           ("risk", "Risk", 4),
                           ("amount", "Amount", None), ("asset", "Asset", 5),
                           *((("value", f"Value {page.currency}", None),) if page.priced
                             else ()),
                           ("id", "Withdrawal", None), ("account", "Account", None),
                           ("claimed", "Claimed by", 10), ("rules", "Rules", None)], rows)
        if rows:
            move_cursor_to(table, min(cursor, len(rows) - 1))
        first = page.offset + 1 if page.items else 0
        filters = [f"filter \"{printable(self.search, limit=40)}\""] if self.search else []
        self.set_status(
            f"{self.queue_status}: {first}-{page.offset + len(page.items)} of {page.total}"
            f"{'+' if page.capped else ''}; "
            f"sorted by {sort_label(self.sort, page)}"
            + (f"; {', '.join(filters)}" if filters else "")
            + f"; SLA {self.sla.total_seconds() / 3600:g} h"
            + (f"; {len(self.marked)} marked (X reject, E escalate, I attach)"
               if self.marked else ""))

    def _item(self) -> service.QueueItem | None:
        if self.page is None or not self.page.items:
            return None
        row = self.query_one("#queue-table", DataTable).cursor_row
        return self.page.items[row] if 0 <= row < len(self.page.items) else None

    @on(DataTable.RowSelected, "#queue-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        """Open the highlighted withdrawal."""
        item = self._item()
        if item is None:
            return
        self.app.push_screen(WithdrawalDetailScreen(item.external_id))

    def action_mark(self, step: int = 1, toggle: bool = True) -> None:
        """Mark or unmark the highlighted withdrawal (shift+arrows only mark), then move
        ``step`` rows."""
        item = self._item()
        if item is None:
            self.app.bell()
            return
        if item.external_id in self.marked:
            if toggle:
                self.marked.remove(item.external_id)
        else:
            self.marked.append(item.external_id)
        table = self.query_one("#queue-table", DataTable)
        row = table.cursor_row
        assert self.page is not None
        self._show(self.page)
        move_cursor_to(table, max(0, min(row + step, len(self.page.items) - 1)))

    def action_attach(self) -> None:
        """Attach the marked withdrawals (or the highlighted one) to an incident."""
        item = self._item()
        chosen = list(self.marked) or ([item.external_id] if item is not None else [])

        def attached(result: Attached) -> None:
            self.marked = [r.ref for r in result.failed if r.ref in self.marked]
            self.reload()

        attach(self, [("withdrawal", ref) for ref in chosen], "withdrawal", attached)

    def action_bulk(self, verb: str) -> None:
        """Reject or escalate every marked withdrawal with one note."""
        chosen = list(self.marked)
        if not chosen:
            self.set_status("mark withdrawals with space first", error=True)
            return
        listed = ", ".join(chosen[:8]) + (f" and {len(chosen) - 8} more" if len(chosen) > 8
                                          else "")
        summary = Text.assemble(f"{DECISIONS[verb].title} {len(chosen)} withdrawal(s): ",
                                safe_text(listed, limit=300), "?")
        decision = DECISIONS[verb]

        def done(answer: tuple[str, str | None] | None) -> None:
            if answer:
                self.set_status(f"{verb}: {len(chosen)} withdrawal(s)…")
                self.decide_many(verb, chosen, answer[0], answer[1])

        self.app.push_screen(NotePrompt(f"{decision.title} (marked)", summary,
                                        decision.outcome), done)

    @work(thread=True, exclusive=True, exit_on_error=False, group="bulk decision")
    def decide_many(self, verb: str, refs: list[str], note: str, outcome: str | None) -> None:
        failed: list[tuple[str, str]] = []
        for ref in refs:
            try:
                if verb == "reject":
                    service.reject(self.runtime, self.officer, ref, note,
                                   outcome=outcome or "confirmed_fraud")
                else:
                    service.escalate(self.runtime, self.officer, ref, note)
            except PolysecError as error:
                failed.append((ref, str(error)))
        self.app.call_from_thread(self._decided_many, verb, refs, failed)

    def _decided_many(self, verb: str, refs: list[str], failed: list[tuple[str, str]]) -> None:
        done = len(refs) - len(failed)
        self.marked = [ref for ref, _error in failed]  # what failed stays marked
        for ref, error in failed:
            self.notify(error, title=f"Not done: {ref}", severity="error", markup=False,
                        timeout=15)
        self.notify(f"{verb}: {done} of {len(refs)} done"
                    + (f", {len(failed)} failed (still marked)" if failed else ""),
                    markup=False, severity="warning" if failed else "information")
        self.reload()

    def action_claim_next(self) -> None:
        """Claim the most urgent unclaimed withdrawal and open it."""
        self.set_status("claiming the most urgent withdrawal…")
        self.claim_next()

    @work(thread=True, exclusive=True, exit_on_error=False, group="claim next")
    def claim_next(self) -> None:
        try:
            outcome = service.claim_next(self.runtime, self.officer)
        except PolysecError as error:
            self.app.call_from_thread(self.set_status, str(error), error=True)
            return
        self.app.call_from_thread(self._claimed_next, outcome)

    def _claimed_next(self, outcome: service.Outcome | None) -> None:
        if outcome is None:
            self.set_status("nothing to claim: no held withdrawal waits for an officer")
            self.reload()
            return
        self.app.push_screen(WithdrawalDetailScreen(outcome.external_id))

    def action_sort(self) -> None:
        """Sort by risk, age or amount."""
        sorts = list(SORT_LABELS)
        self.sort = sorts[(sorts.index(self.sort) + 1) % len(sorts)]
        self.page_offset = 0
        self.show_page()

    def action_status(self) -> None:
        """Cycle the status shown."""
        at = STATUS_CYCLE.index(self.queue_status)
        self.queue_status = STATUS_CYCLE[(at + 1) % len(STATUS_CYCLE)]
        self.page_offset = 0
        self.show_page()

    def action_page(self, step: int) -> None:
        """Another page."""
        if self.page is None:
            return
        offset = self.page_offset + step * PAGE
        if offset < 0 or offset >= max(self.page.total, 1):
            return
        self.page_offset = offset
        self.show_page()

    def action_filter(self) -> None:
        """Show the filter line."""
        self._closing_filter = False
        box = self.query_one("#queue-filter", Input)
        box.value = self.search
        box.add_class("-shown")
        box.focus()

    def action_back(self) -> None:
        """Esc closes the filter line first; then it leaves the queue."""
        box = self.query_one("#queue-filter", Input)
        if box.has_class("-shown"):
            self._closing_filter = False
            box.remove_class("-shown")
            self.query_one("#queue-table", DataTable).focus()
            return
        super().action_back()

    @on(Input.Submitted, "#queue-filter")
    def _filter(self, event: Input.Submitted) -> None:
        event.stop()
        self.search = event.value.strip()
        self.page_offset = 0
        # The line closes and the table takes the focus when the filtered page is there:
        # together they are one repaint; before, the old page was first repainted with
        # the focus back (the whole table, 50 ms on a full screen).
        self._closing_filter = True
        self.show_page()

    def worker_failed(self, error: BaseException) -> None:
        self._close_filter()  # the filtered page will not come
        super().worker_failed(error)

    def _close_filter(self) -> None:
        if self._closing_filter:
            self._closing_filter = False
            self.query_one("#queue-filter", Input).remove_class("-shown")
            self.query_one("#queue-table", DataTable).focus()



# ---------------------------------------------------------------------- detail


@dataclass(frozen=True)
class Decision:
    verb: str  # approve | reject | escalate
    title: str
    outcome: str | None = None  # the outcome a final decision records by default


DECISIONS = {
    "approve": Decision("approve", "Approve", "false_positive"),
    "reject": Decision("reject", "Reject", "confirmed_fraud"),
    "escalate": Decision("escalate", "Escalate to a senior officer"),
}
OUTCOME_LABELS = {"confirmed_fraud": "confirmed fraud", "false_positive": "false positive",
                  "benign": "benign (real but harmless: say why in the note)"}


class NotePrompt(ModalScreen[tuple[str, str | None] | None]):
    """The note for a decision and, for a final one, its outcome (a choice under the
    note, preset to the verb's usual one); Enter in the note confirms, Escape cancels.
    Returns (note, outcome)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="note.cancel", tooltip="Decide nothing"),
    ]
    DEFAULT_CSS = """
    NotePrompt { align: center middle; }
    NotePrompt #note-box { width: 72; max-width: 100%; height: auto; padding: 0 1;
                           border: thick $warning; background: $surface; }
    NotePrompt #note-error { color: $error; }
    """

    def __init__(self, title: str, summary: Text, outcome: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.summary = summary
        self.outcome = outcome

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "enter confirms · esc cancels"
            yield Static(self.summary)
            yield Input(placeholder="note (required; kept in the review record and audit log)",
                        id="note-input", max_length=service.MAX_NOTE)
            if self.outcome is not None:
                yield Static(Text("Outcome (tab to change; feeds the rules report):"))
                yield Select([(label, value) for value, label in OUTCOME_LABELS.items()],
                             value=self.outcome, allow_blank=False, id="note-outcome")
            yield Static(Text(""), id="note-error")

    def on_mount(self) -> None:
        self.query_one("#note-input", Input).focus()

    @on(Input.Submitted, "#note-input")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        note = event.value.strip()
        if not note:
            self.query_one("#note-error", Static).update(Text("a note is required"))
            return
        outcome = None
        if self.outcome is not None:
            outcome = str(self.query_one("#note-outcome", Select).value)
        self.dismiss((note, outcome))

    def action_cancel(self) -> None:
        """Close without deciding."""
        self.dismiss(None)


class ReassignPrompt(ModalScreen[tuple[str, str] | None]):
    """Who takes a claim over, and why; Enter in the reason confirms, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="reassign.cancel", tooltip="Change nothing"),
    ]
    DEFAULT_CSS = """
    ReassignPrompt { align: center middle; }
    ReassignPrompt #reassign-box { width: 72; max-width: 100%; height: auto; padding: 0 1;
                                   border: thick $warning; background: $surface; }
    ReassignPrompt #reassign-error { color: $error; }
    """

    def __init__(self, summary: Text) -> None:
        super().__init__()
        self.summary = summary

    def compose(self) -> ComposeResult:
        with Vertical(id="reassign-box") as box:
            box.border_title = "Reassign the claim"
            box.border_subtitle = "enter confirms · esc cancels"
            yield Static(self.summary)
            yield Input(placeholder="officer (name)", id="reassign-to", max_length=64)
            yield Input(placeholder="reason (required; both officers are told)",
                        id="reassign-reason", max_length=service.MAX_NOTE)
            yield Static(Text(""), id="reassign-error")

    def on_mount(self) -> None:
        self.query_one("#reassign-to", Input).focus()

    @on(Input.Submitted, "#reassign-to")
    def _next_field(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#reassign-reason", Input).focus()

    @on(Input.Submitted, "#reassign-reason")
    def _submit(self, event: Input.Submitted) -> None:
        event.stop()
        to = self.query_one("#reassign-to", Input).value.strip()
        reason = event.value.strip()
        if not to or not reason:
            self.query_one("#reassign-error", Static).update(
                Text("an officer and a reason are required"))
            return
        self.dismiss((to, reason))

    def action_cancel(self) -> None:
        """Close without reassigning."""
        self.dismiss(None)


class WithdrawalDetailScreen(ProtectsAccount, ConsoleScreen):
    TITLE_TEXT = "Withdrawal"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="detail.back", tooltip="Back to the queue"),
        Binding("c", "claim", "Claim", id="detail.claim", tooltip="Take it into review"),
        Binding("a", "decide('approve')", "Approve", id="detail.approve",
                tooltip="Approve (above the limit: asks a second officer)"),
        Binding("x", "decide('reject')", "Reject", id="detail.reject", tooltip="Reject"),
        Binding("e", "decide('escalate')", "Escalate", id="detail.escalate",
                tooltip="Hand it to the senior officers"),
        Binding("u", "release", "Release", id="detail.release",
                tooltip="Give your claim back: the withdrawal returns to the queue"),
        Binding("R", "reassign", "Reassign", id="detail.reassign",
                tooltip="Senior officers: move the claim to another officer, with a reason"),
        Binding("t", "timeline", "Timeline", id="detail.timeline",
                tooltip="The account's timeline"),
        Binding("o", "anomalies", "Anomalies", id="detail.anomalies",
                tooltip="The account's login anomalies"),
        Binding("f", "twofa", "2FA reset", id="detail.twofa",
                tooltip="Request a reset of the client's 2FA"),
        Binding("i", "attach", "Attach", id="detail.attach",
                tooltip="Attach this withdrawal to an incident (or a new one)"),
        *PROTECTION_BINDINGS,
    ]
    DEFAULT_CSS = """
    WithdrawalDetailScreen #detail-status { height: 1; padding: 0 1; }
    WithdrawalDetailScreen #detail-status.-error { color: $error; text-style: bold; }
    WithdrawalDetailScreen #detail-body { height: 1fr; }
    WithdrawalDetailScreen .section { text-style: bold; padding: 1 1 0 1; }
    WithdrawalDetailScreen #detail-head { padding: 0 1; }
    WithdrawalDetailScreen DataTable { height: auto; max-height: 12; }
    """

    class Decided(Message, bubble=False):
        def __init__(self, text: str, error: bool) -> None:
            super().__init__()
            self.text = text
            self.error = error

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref
        self.detail: service.Detail | None = None
        self.outcome: tuple[str, bool] | None = None
        self._leave_when_decided = False
        # A decision recorded, the view of it not loaded yet: a decision taken now would
        # be taken on the view before it (and refused as stale).
        self._reloading_after_decision = False

    def compose_body(self) -> ComposeResult:
        yield StatusLine(Text("loading…"), id="detail-status")
        with VerticalScroll(id="detail-body"):
            yield Static(Text(""), id="detail-head")
            yield Static(Text("Rule hits"), classes="section")
            yield DataTable(id="detail-flags", cursor_type="row", show_cursor=False)
            yield Static(Text("Account (masked)"), classes="section")
            yield Static(Text(""), id="detail-account")
            yield Static(Text("Recent logins of the account"), classes="section")
            yield DataTable(id="detail-logins", show_cursor=False)
            yield Static(Text("Recent withdrawals of the account"), classes="section")
            yield DataTable(id="detail-withdrawals", show_cursor=False)
            yield Static(Text("Destination history (all accounts)"), classes="section",
                         id="detail-address-title")
            yield DataTable(id="detail-address", show_cursor=False)
            yield Static(Text("Decisions"), classes="section")
            yield Static(Text(""), id="detail-decisions")

    def on_mount(self) -> None:
        self.reload()
        # What another console changes (a claim, an escalation and its note) appears
        # by itself; a decision taken from an older view is refused anyway (`Seen`).
        self.reload_while_shown(DETAIL_REFRESH_SECONDS, self.reload)

    def reload(self) -> None:
        self.load(self.ref)

    @work(thread=True, exclusive=True, exit_on_error=False, group="withdrawal detail")
    def load(self, ref: str) -> None:
        self.deliver(lambda: service.show(self.runtime, self.officer, ref))

    def on_console_screen_loaded(self, message: ConsoleScreen.Loaded) -> None:
        self._reloading_after_decision = False
        if message.data is None:
            self.set_status(message.error, error=True)
            return
        if message.data == self.detail:
            self.outcome = None  # a refused decision: its status line says so already
            return  # nothing changed (the periodic reload): the view stays as it is
        before = self.detail
        self.detail = d = message.data
        i = d.item
        head = Text.assemble(
            ("Withdrawal ", "bold"), safe_text(i.external_id, limit=64), "  ", i.status,
            "  risk ", risk_text(i.risk_score), "\n",
            f"{fmt_amount(i.amount)} ", safe_text(i.asset), _worth(d), " to ",
            safe_text(i.address),
            *((" (", safe_text(d.address_label), ")") if d.address_label else ()), "\n",
            f"requested {i.requested_at:%Y-%m-%d %H:%M:%S} UTC from ", safe_text(d.ip),
            " via login ", safe_text(d.login_external_id or "?", limit=64),
            f"; available {fmt_amount(d.available_balance)}" if d.available_balance else "",
        )
        if i.claimed_by:
            head.append_text(Text.assemble("\nclaimed by ", safe_text(i.claimed_by)))
        if d.approval_id:
            head.append(f"\nfour-eyes request {d.approval_id}")
        if d.approval_limit is not None and i.amount > d.approval_limit:
            head.append(f"\nabove the {fmt_amount(d.approval_limit)} {i.asset} approval limit: "
                        "approval needs a second, senior officer", style="yellow")
        for h in d.active_holds:
            until = f"{h.expires_at:%Y-%m-%d %H:%M} UTC" if h.expires_at else "released"
            head.append_text(Text.assemble(
                ("\nHOLD ", "bold red"), f"#{h.id} {h.kind} until {until}: ",
                safe_text(h.reason)))
        if d.blocklisted is not None:
            head.append_text(Text.assemble(("\nBLOCKLISTED ", "bold red"),
                                           safe_text(d.blocklisted)))
        self.query_one("#detail-head", Static).update(head)
        flags = self.query_one("#detail-flags", DataTable)
        rule_width = max([4, *(len(f.rule) for f in d.flags)])
        # The explanation takes the rest of the width and wraps: it is read whole.
        why_width = max(30, flags.size.width - rule_width - 5 - 2 * 3 - 2)
        fill_table(flags, [("rule", "Rule", rule_width), ("score", "Score", 5),
                           ("why", "Explanation", why_width)],
                   [(Text(f.rule, style="bold"), Text(f"{f.score:.0f}", justify="right"),
                     Text(printable(f.explanation, limit=1000), overflow="fold"))
                    for f in d.flags]
                   or [(Text("none"), Text(""), Text("no rule fired"))], wrap=True)
        s = d.account_summary
        balances = ", ".join(f"{fmt_amount(v)} {k}" for k, v in sorted(s.balances.items()))
        self.query_one("#detail-account", Static).update(Text.assemble(
            "account ", safe_text(s.external_id, limit=64), "  ", s.status, "  country ",
            safe_text(s.country or "-"), f"  created {s.created_at:%Y-%m-%d}  2FA ",
            "enrolled" if s.has_2fa else "NOT enrolled", "\nemail ",
            safe_text(s.masked.get("email") or "-"), "  phone ",
            safe_text(s.masked.get("phone") or "-"), "  name ",
            safe_text(s.masked.get("full_name") or "-"), "\nbalances ",
            safe_text(balances or "-")))
        fill_table(self.query_one("#detail-logins", DataTable),
                   [("at", "Time", None), ("ok", "Result", None), ("ip", "IP", None),
                    ("where", "Where", None), ("asn", "ASN", None), ("device", "Device", None)],
                   [(Text(f"{x.at:%Y-%m-%d %H:%M}"), Text("ok" if x.success else "FAILED"),
                     safe_text(x.ip), safe_text(f"{x.country or '-'} {x.city or ''}".strip()),
                     safe_text(x.asn if x.asn is not None else "-"),
                     safe_text(x.device_id or "-", limit=16)) for x in d.recent_logins])
        fill_table(self.query_one("#detail-withdrawals", DataTable),
                   _withdrawal_columns(), [_withdrawal_row(x) for x in d.recent_withdrawals])
        self.query_one("#detail-address-title", Static).update(Text(
            f"Destination history: used by {d.address_accounts} account(s)"))
        fill_table(self.query_one("#detail-address", DataTable),
                   _withdrawal_columns(account=True),
                   [_withdrawal_row(x, account=True) for x in d.address_history])
        decisions = Text()
        for n, dec in enumerate(d.decisions):
            decisions.append_text(Text.assemble(
                "\n" if n else "", f"{dec.at:%Y-%m-%d %H:%M} ", safe_text(dec.officer),
                f" {dec.decision}", *((": ", safe_text(dec.note)) if dec.note else ())))
        self.query_one("#detail-decisions", Static).update(decisions or Text("none yet"))
        if self.outcome is not None:  # the last decision's result stays in view
            text, error = self.outcome
            self.outcome = None
            self.set_status(text, error=error)
        elif before is not None and before.seen != d.seen:
            last = d.decisions[-1] if d.decisions else None
            self.set_status(Text.assemble(
                "changed meanwhile: ",
                *((safe_text(last.officer), f" {last.decision}; ") if last else ()),
                f"now {i.status} (see Decisions)"), error=True)
        else:
            self.set_status("c claim · a approve · x reject · e escalate · u release · "
                            "R reassign · t timeline · o anomalies · f 2FA reset · "
                            "i attach · L lock down · F freeze · U unfreeze · ? every key")

    # ----------------------------------------------------------------- decisions

    def _may_decide(self) -> bool:
        """One decision at a time, from a loaded view: another while one is recorded
        would cancel the first (its outcome never shown) and act on a withdrawal about
        to change."""
        if self.detail is None:
            return False
        if self._deciding() or self._reloading_after_decision:
            self.set_status("a decision is being recorded: wait for its outcome",
                            error=True)
            self.app.bell()
            return False
        return True

    def action_claim(self) -> None:
        """Take it into review."""
        if self._may_decide():
            assert self.detail is not None
            self.decide("claim", None, seen=self.detail.seen)

    def action_release(self) -> None:
        """Give your claim back."""
        if self._may_decide():
            assert self.detail is not None
            self.decide("release", None, seen=self.detail.seen)

    def action_reassign(self) -> None:
        """Move the claim to another officer (senior officers), with a reason."""
        if not self._may_decide():
            return
        assert self.detail is not None
        seen = self.detail.seen
        i = self.detail.item
        summary = Text.assemble("Reassign withdrawal ", safe_text(i.external_id, limit=64),
                                ", claimed by ", safe_text(i.claimed_by or "nobody"),
                                ": the officer who takes it over, and why")

        def done(answer: tuple[str, str] | None) -> None:
            if answer and self._may_decide():
                self.decide("reassign", answer[1], answer[0], seen=seen)

        self.app.push_screen(ReassignPrompt(summary), done)

    def action_decide(self, verb: str) -> None:
        """Approve, reject or escalate after a note (the confirmation), as of the view
        the officer saw when pressing the key."""
        if not self._may_decide():
            return
        assert self.detail is not None
        seen = self.detail.seen
        i = self.detail.item
        summary = Text.assemble(
            f"{DECISIONS[verb].title} withdrawal ", safe_text(i.external_id, limit=64),
            f": {fmt_amount(i.amount)} ", safe_text(i.asset), " to ",
            safe_text(i.address), f" (risk {i.risk_score or 0:.0f})?")

        def done(answer: tuple[str, str | None] | None) -> None:
            if answer and self._may_decide():
                note, outcome = answer
                self.decide(verb, note, outcome=outcome, seen=seen)

        decision = DECISIONS[verb]
        self.app.push_screen(NotePrompt(decision.title, summary, decision.outcome), done)

    @work(thread=True, exclusive=True, exit_on_error=False, group="withdrawal decision")
    def decide(self, verb: str, note: str | None, to: str = "",
               outcome: str | None = None, *, seen: service.Seen) -> None:
        assert self.actor is not None
        rt, actor, ref = self.runtime, self.actor, self.ref
        try:
            if verb == "claim":
                result = service.claim(rt, actor, ref, seen=seen)
            elif verb == "release":
                result = service.release(rt, actor, ref, seen=seen)
            elif verb == "reassign":
                moved = service.reassign(rt, actor, ref, to, note or "", seen=seen)
                result = service.Outcome(moved.external_id,
                                         f"{moved.status}, reassigned to {to}")
            elif verb == "escalate":
                result = service.escalate(rt, actor, ref, note or "", seen=seen)
            else:  # approve or reject, with the outcome chosen in the prompt
                final = service.approve if verb == "approve" else service.reject
                result = final(rt, actor, ref, note or "", seen=seen,
                               outcome=outcome or DECISIONS[verb].outcome or "")
            message = self.Decided(result.summary(), False)
        except PolysecError as error:
            message = self.Decided(str(error), True)
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def action_back(self) -> None:
        """Back to the queue; while a decision is still being recorded, once it is: so
        the officer sees its outcome, and the queue is read after it."""
        if self._deciding():
            self._leave_when_decided = True
            self.set_status("recording the decision: back to the queue once it is done")
            return
        super().action_back()

    def _deciding(self) -> bool:
        return any(w.node is self and w.group == "withdrawal decision" and not w.is_finished
                   for w in self.app.workers)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if (self._leave_when_decided and event.worker.group == "withdrawal decision"
                and event.worker.is_finished):
            self._leave_when_decided = False
            self.action_back()

    def on_withdrawal_detail_screen_decided(self, message: WithdrawalDetailScreen.Decided
                                            ) -> None:
        self.notify(message.text, markup=False,
                    severity="error" if message.error else "information")
        self.outcome = (message.text, message.error)
        self.set_status(message.text, error=message.error)
        self._reloading_after_decision = True
        self.reload()

    def notified(self, subject: str | None) -> None:
        """A claim moved or a four-eyes request of this withdrawal was decided."""
        d = self.detail
        if d is not None and subject in (f"withdrawal:{d.item.external_id}",
                                         f"request:{d.approval_id}"):
            self.reload()

    # --------------------------------------------------------------- navigation

    def action_timeline(self) -> None:
        """The account's timeline."""
        if self.detail is None:
            return
        self.open_account("timeline", self.detail.account_id)

    def action_anomalies(self) -> None:
        """The account's login anomalies."""
        if self.detail is None:
            return
        self.open_account("anomalies", self.detail.account_id)

    def action_twofa(self) -> None:
        """Request a reset of the client's 2FA."""
        if self.detail is None:
            return
        self.open_account("twofa", self.detail.account_id)

    def action_attach(self) -> None:
        """Attach this withdrawal to an incident."""
        attach(self, [("withdrawal", self.ref)], "withdrawal")

    def protected_account(self) -> str | None:
        return self.detail.account_summary.external_id if self.detail else None

    def reload_protected(self) -> None:
        self.load(self.ref)



def _worth(d: service.Detail) -> Text:
    """`` (~12,621.00 USD at 1.00 USD, priced 2026-12-04 11:00)`` or nothing."""
    i, p = d.item, d.price
    if i.value is None or p is None:
        return Text("")
    return Text(f" (~{fmt_money(i.value, p.currency)} at {fmt_amount(p.price)} {p.currency}, "
                f"priced {fmt_minute(p.at)})", style="dim")


def _withdrawal_columns(*, account: bool = False) -> list[tuple[str, str, int | None]]:
    columns: list[tuple[str, str, int | None]] = [("at", "Time", None)]
    if account:
        columns.append(("account", "Account", None))
    return [*columns, ("amount", "Amount", None), ("asset", "Asset", None),
            ("status", "Status", None), ("address", "Address", None)]


def _withdrawal_row(x: service.WithdrawalView, *, account: bool = False) -> list[Text]:
    row = [Text(f"{x.requested_at:%Y-%m-%d %H:%M}")]
    if account:
        row.append(safe_text(x.account, limit=40))
    return [*row, Text(fmt_amount(x.amount), justify="right"), safe_text(x.asset),
            Text(x.status), safe_text(x.address, limit=64)]
