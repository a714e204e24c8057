"""`screens.widgets.fill_table`: a reload that brings the same rows renders nothing again
(that is what makes `r` on the queue and the timeline fast), a reload with other rows
shows them, and either way the table ends as a rebuild would leave it: the cursor on the
first row, scrolled to the top, the first row announced. `move_cursor_to` keeps the
scrollbar's thumb where the table scrolled."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Input

from polysec_tui.screens.keyhelp import KeyLine, key_groups
from polysec_tui.screens.widgets import ConsoleTable, SearchLine, fill_table, move_cursor_to
from tests.support.tui import sync

COLUMNS: list[tuple[str, str, int | None]] = [("n", "N", 4), ("what", "What", None)]


def rows(count: int, word: str = "row", style: str = "") -> list[tuple[Text, Text]]:
    return [(Text(str(i)), Text(f"{word} {i}", style=style)) for i in range(count)]


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[int] = []

    def compose(self) -> ComposeResult:
        yield DataTable(id="t", cursor_type="row")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.highlighted.append(event.cursor_row)


def shown(table: DataTable[Any]) -> list[list[str]]:
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


@sync
async def test_same_rows_render_nothing_again() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table: DataTable[Text] = app.query_one(DataTable)
        fill_table(table, COLUMNS, rows(30))
        await pilot.pause()
        table.move_cursor(row=20)
        await pilot.pause()
        rendered = table._update_count  # DataTable's render caches are keyed by it
        app.highlighted.clear()
        fill_table(table, COLUMNS, rows(30))
        await pilot.pause()
        assert table._update_count == rendered
        assert shown(table) == [[str(i), f"row {i}"] for i in range(30)]
        # As after a rebuild: first row, top of the table, first row announced.
        assert table.cursor_row == 0 and table.scroll_y == 0
        assert app.highlighted == [0]


@sync
async def test_changed_rows_are_shown() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table: DataTable[Text] = app.query_one(DataTable)
        fill_table(table, COLUMNS, rows(5))
        await pilot.pause()
        fill_table(table, COLUMNS, rows(5, "new"))  # same widths: replaced in place
        await pilot.pause()
        assert shown(table) == [[str(i), f"new {i}"] for i in range(5)]
        # A style alone is a change too (Text.__eq__ ignores the base style).
        fill_table(table, COLUMNS, rows(5, "new", style="bold red"))
        await pilot.pause()
        assert all(table.get_row_at(i)[1].style == "bold red" for i in range(5))
        # Other row counts or widths: rebuilt.
        fill_table(table, COLUMNS, rows(3, "longer words"))
        await pilot.pause()
        assert shown(table) == [[str(i), f"longer words {i}"] for i in range(3)]
        assert table.ordered_columns[1].width == len("longer words 0")
        fill_table(table, COLUMNS, [])
        await pilot.pause()
        assert table.row_count == 0


@sync
async def test_the_scrollbar_thumb_follows_a_scroll_made_while_it_was_hidden() -> None:
    """`move_cursor_to`: Textual moves the thumb only on a scroll while the scrollbar is
    shown. When the table scrolled to its cursor before the new rows were laid out, the
    scrollbar appeared afterwards with its thumb at the top (a flaky timeline snapshot
    under load). Here that order is made certain: the scroll lands while it is hidden."""
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table: DataTable[Text] = app.query_one(DataTable)
        fill_table(table, COLUMNS, rows(30))
        move_cursor_to(table, 29)
        await pilot.pause()
        await pilot.pause()
        assert table.scroll_y == table.max_scroll_y > 0
        table.show_vertical_scrollbar = False
        table.vertical_scrollbar.position = 0  # what a scroll while hidden leaves
        table.show_vertical_scrollbar = True
        assert table.vertical_scrollbar.position == table.scroll_y


class ConsoleTableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ConsoleTable(id="t", cursor_type="row", copy_column="id")


ITEMS = ["acc-10 203.0.113.7 brute force", "acc-2 198.51.100.4 new device",
         "acc-33 203.0.113.9 impossible travel", "acc-4 192.0.2.1 brute force"]


@sync
async def test_console_table_filters_sorts_moves_and_copies() -> None:
    """/ keeps the rows with every word typed (any column), Esc restores; s sorts by the
    next column (numbers by value), S reverses; j k g G move; y copies the row's id and
    says so; the edge says which rows are shown; `item` maps a row back to its item."""
    app = ConsoleTableApp()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(ConsoleTable)
        columns: list[tuple[str, str, int | None]] = [
            ("id", "Account", None), ("n", "Events", None), ("what", "What", None)]
        fill_table(table, columns, [
            (Text(item.split()[0]), Text(f"{(i + 1) * 7 % 10 * 150:,}"),
             Text(" ".join(item.split()[1:]))) for i, item in enumerate(ITEMS)])
        table.focus()
        await pilot.pause()
        assert table.border_subtitle == "rows 1-4 of 4"
        await pilot.press("slash", *"brute 203", "enter")
        await pilot.pause()
        assert shown(table) == [["acc-10", "1,050", "203.0.113.7 brute force"]]
        assert table.item(ITEMS) == ITEMS[0]
        assert table.border_subtitle == 'rows 1-1 of 1 · filter "brute 203": 1 of 4'
        assert not app.query(SearchLine) and app.focused is table  # the line is gone
        await pilot.press("slash", *" x", "escape")  # typed, then cancelled
        await pilot.pause()
        assert len(shown(table)) == 1
        assert not app.query(SearchLine) and app.focused is table
        await pilot.press("slash", "ctrl+u", "enter")  # empty: every row again
        await pilot.pause()
        assert len(shown(table)) == 4
        await pilot.press("s")  # by the first column: text
        assert [r[0] for r in shown(table)] == ["acc-10", "acc-2", "acc-33", "acc-4"]
        await pilot.press("s")  # by the second: numbers by value, not as text
        assert [r[1] for r in shown(table)] == ["150", "600", "1,050", "1,200"]
        assert table.border_subtitle == "rows 1-4 of 4 · sorted by Events ↑"
        await pilot.press("S")
        assert [r[1] for r in shown(table)] == ["1,200", "1,050", "600", "150"]
        await pilot.press("G")
        assert table.cursor_row == 3 and table.item(ITEMS) == ITEMS[2]  # 150: acc-33
        await pilot.press("k", "k")
        assert table.cursor_row == 1
        await pilot.press("g", "j")
        assert table.cursor_row == 1
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == "acc-10"
        assert any("copied acc-10" in str(n.message) for n in app._notifications)
        await pilot.press("s", "s")  # past the last column: the order given
        assert [r[0] for r in shown(table)] == [i.split()[0] for i in ITEMS]


@sync
async def test_a_paged_table_leaves_slash_and_s_to_its_screen() -> None:
    class Paged(App[None]):
        def compose(self) -> ComposeResult:
            yield ConsoleTable(id="t", searchable=False, sortable=False)

    app = Paged()
    async with app.run_test() as pilot:
        table = app.query_one(ConsoleTable)
        fill_table(table, COLUMNS, rows(3))
        table.focus()
        await pilot.press("s", "slash")
        await pilot.pause()
        assert shown(table) == [[str(i), f"row {i}"] for i in range(3)]
        assert app.screen is app.screen_stack[0]  # no filter line opened



def _cells() -> list[Text]:
    """Every kind of cell the screens make, and some they might."""
    from polysec_tui.screens.widgets import safe_text

    styled = Text.assemble(("bold ", "bold"), ("red", "red on white"), " plain")
    spans = Text("ip_not_seen, new_country", style="yellow")
    spans.stylize("underline", 3, 8)
    return [
        Text(""), Text("x"), Text("held"), Text("12,621.00", justify="right"),
        Text("85", style="bold red", justify="right"), Text("middle", justify="center"),
        Text("left", justify="left"), Text("trailing   "), Text("   leading"),
        Text("a rather long explanation that does not fit its column at all"),
        Text("cropped text beyond the width", overflow="crop"),
        Text("folded text beyond the width", overflow="fold"),
        Text("ellipsis text beyond the width", overflow="ellipsis", no_wrap=True),
        Text("right and too long for the column", justify="right", overflow="ellipsis"),
        Text("取引所の出金が保留されました", no_wrap=True, overflow="ellipsis"),
        Text("emoji 🚨🚨 and more", style="on blue"), Text("tab\there"),
        Text("first line\nsecond line"), Text("e\u0301 combining"),
        Text("dim", style="dim"), styled, spans,
        safe_text("bc1q[@click=app.quit]x[/] \x1b[31m"), safe_text("A" * 80),
        Text("centred and far too long", justify="center", overflow="crop"),
        Text("right, long, folded at the edge", justify="right", overflow="fold"),
        Text("left, long and ellipsed", justify="left", overflow="ellipsis"),
        Text("   ", justify="right"), Text("  pad  ", justify="center", style="bold"),
        Text("styled by object", style=Style(color="red", bgcolor="blue", italic=True)),
        Text("no wrap at all", no_wrap=False), Text("ignored overflow", overflow="ignore"),
        Text("full justify", justify="full"), Text("end", end=""),
        Text.from_markup("[link=https://example.org]a link[/link]"),
    ]


@sync
async def test_the_direct_cell_rendering_equals_textuals() -> None:
    """ConsoleTable renders one-line Text cells itself (the cost of a page of new rows);
    what it renders must be, segment for segment, what DataTable renders."""
    app = ConsoleTableApp()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(ConsoleTable)
        cells = _cells()
        table.add_column("c", key="c", width=12)
        for cell in cells:
            table.add_row(cell, height=1)
        table.add_row(Text("wrapped in a taller row"), height=2)  # Textual's own way
        await pilot.pause()
        base = table.rich_style
        checked = 0
        for row in range(len(cells) + 1):
            for width in (0, 1, 2, 3, 5, 9, 14, 40):
                for cursor, hover in ((False, False), (True, False), (False, True)):
                    table._cell_render_cache.clear()
                    ours = table._render_cell(row, 0, base, width, cursor, hover)
                    table._cell_render_cache.clear()
                    theirs = DataTable._render_cell(table, row, 0, base, width, cursor, hover)
                    assert ours == theirs, (cells[row] if row < len(cells) else row, width,
                                            cursor, hover)
                    checked += 1
        assert checked == (len(cells) + 1) * 8 * 3
        assert table._plain_cell(len(cells), 0) is None  # the taller row: not ours
        assert table._plain_cell(0, 0) is not None


@sync
async def test_focus_coming_back_and_resizes_render_no_cell_again() -> None:
    """Every filter line and dialog takes the focus from the table and gives it back, and
    resizes the table as it shows and hides: the table looks as before, so its cells come
    from the cache (Textual's own is emptied by both)."""
    app = ConsoleTableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(ConsoleTable)
        fill_table(table, [("n", "N", 4), ("what", "What", 20)], rows(30))
        table.focus()
        await pilot.pause()
        assert len(table._cells) >= 2 * 15  # the visible rows' cells
        table.blur()  # the whole table is tinted otherwise: every cell is new
        await pilot.pause()
        blurred = len(table._cells)
        table.focus()
        table.styles.height = 12
        await pilot.pause()
        assert len(table._cells) == blurred


class MarkingScreen(Screen[None]):
    """A table beside a note field, on a screen with a key of its own that must never
    fire while the filter line has the focus (the alerts dialog marks with shift+down)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("shift+down", "mark", "Mark")]

    def __init__(self) -> None:
        super().__init__()
        self.marks = 0

    def compose(self) -> ComposeResult:
        yield Input(id="note")  # first: tab from the line (mounted last) comes here
        yield ConsoleTable(id="t", cursor_type="row")

    def on_mount(self) -> None:
        fill_table(self.query_one(ConsoleTable), COLUMNS, rows(3))
        self.query_one(ConsoleTable).focus()

    def action_mark(self) -> None:
        self.marks += 1


class MarkingApp(App[None]):
    # As the console's: tab moves on from any field, a filter line too.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "app.focus_next", "Next field", priority=True)]

    def on_mount(self) -> None:
        self.push_screen(MarkingScreen())


def send(app: App[Any], *keys: tuple[str, str]) -> None:
    """Keys as one read of the terminal brings them (a fast typist over ssh), with no
    pause between them for the app to settle."""
    for key, character in keys:
        event = events.Key(key, character)
        event.set_sender(app)
        app._driver.send_message(event)  # type: ignore[union-attr]


@sync
async def test_the_filter_line_takes_every_key_typed_into_it() -> None:
    """Keys sent in the same read as `/` neither open a second line nor reach the
    table's keys (as with the prompt screen before, they are lost: the table had the
    focus when they came); the screen's own keys do not fire while the line has the
    focus; tab or a click leaves it, keeping the filter, and the focus where it went."""
    app = MarkingApp()
    async with app.run_test(size=(80, 20)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MarkingScreen)
        table = screen.query_one(ConsoleTable)
        send(app, ("slash", "/"), ("slash", "/"), ("s", "s"), ("y", "y"))
        for _ in range(5):
            await pilot.pause()
        assert len(screen.query(SearchLine)) == 1
        assert table.sort_column is None and app.clipboard == ""
        await pilot.press("ctrl+u", *"row 1", "shift+down")
        assert screen.marks == 0
        # The key help lists the line's own key, not a text field's editing keys.
        assert dict(key_groups(screen))["Table or field"] == [
            KeyLine("esc", "Cancel", "Back to the filter before")]
        # The terminal losing the focus, the screen's code focusing the table (a load
        # ending): the line stays, with the focus, and the next keys go into it.
        app.post_message(events.AppBlur())
        await pilot.pause()
        app.post_message(events.AppFocus())
        await pilot.pause()
        table.focus()
        await pilot.pause()
        await pilot.press("shift+down", "s")
        assert isinstance(app.focused, SearchLine) and app.focused.value == "row 1s"
        assert screen.marks == 0 and table.sort_column is None
        await pilot.press("backspace")
        await pilot.press("tab")
        await pilot.pause()
        assert not screen.query(SearchLine) and table.row_count == 1
        await pilot.press("slash", "ctrl+u", *"row 2")
        await pilot.click("#note")  # the focus stays where the click put it
        await pilot.pause()
        assert app.focused is screen.query_one("#note", Input)
        assert not screen.query(SearchLine) and table.row_count == 1
