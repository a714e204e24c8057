"""Pieces every console screen shares: safe text, the top bar, figure cards, the base
screen that reports worker errors.

Untrusted text (anything that came from the platform: account ids, user agents, cities,
addresses, labels) reaches the screen only through :func:`safe_text`: control characters
and escape sequences are shown as escapes and the result is a ``rich.text.Text``, which Textual
renders literally. A plain ``str`` in a ``DataTable`` cell or a ``Static`` would be parsed
as markup, and markup can carry ``[@click=app.quit]`` actions.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual._types import SegmentLines
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.geometry import Region, Size
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.strip import Strip
from textual.widgets import Button, DataTable, Footer, Input, Static
from textual.widgets._data_table import ColumnKey, RowKey
from textual.widgets._footer import FooterKey  # not exported; the footer is rebuilt here
from textual.worker import Worker, WorkerState, get_current_worker

from polysec_tui.errors import PolysecError, RefusedError
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Clock, Runtime
from polysec_tui.text import printable


def safe_text(value: object, *, style: str = "", limit: int = 512) -> Text:
    """Untrusted ``value`` as inert text: no markup, no control characters, one line."""
    return Text(printable(value, limit=limit), style=style, no_wrap=True, overflow="ellipsis")


def fill_table(table: DataTable[Text], columns: Sequence[tuple[str, str, int | None]],
               rows: Sequence[Sequence[Text]], *, wrap: bool = False) -> None:
    """Show ``columns`` and ``rows`` in the table (a :class:`ConsoleTable` shows those
    its filter lets through, in its order); a column of width None is sized to its
    content here and now.

    DataTable measures auto-width columns later, on idle. When the table paints before
    that (it happens right after a screen switch), the rows are cached at the headers'
    widths and stay truncated until something else clears the cache. Explicit widths
    avoid the race.

    A reload mostly brings what is already shown, and rebuilding a table makes Textual
    render every visible cell again (most of a reload's time on a full screen). So when
    the columns (keys, labels, widths) and the number of rows are the same as shown, only
    the cells that differ are replaced; when none differs no cell is rendered again.
    What the officer sees afterwards is the same as after a rebuild: the cursor is back
    on the first row and scrolled to the top (the screens then move it), and the first
    row is announced (``RowHighlighted``) so that a detail line under the table follows.
    Otherwise the table is rebuilt.
    """
    if isinstance(table, ConsoleTable):
        table.show(columns, rows)
        return
    _fill(table, columns, rows, wrap=wrap)


def _fill(table: DataTable[Text], columns: Sequence[tuple[str, str, int | None]],
          rows: Sequence[Sequence[Text]], *, wrap: bool = False) -> None:
    """``wrap``: a row is as tall as its longest cell wrapped at its column's width (an
    explanation is read whole, not cut)."""
    spec = [(key, label, width if width is not None
             else max([cell_len(label), *(row[index].cell_len for row in rows)]))
            for index, (key, label, width) in enumerate(columns)]
    if _same_columns(table, spec) and table.row_count == len(rows):
        _update_cells(table, rows)
        return
    table.clear(columns=True)
    for key, label, width in spec:
        table.add_column(label, key=key, width=width)
    for row in rows:
        table.add_row(*row, height=None if wrap else 1)


_NO_STYLE = Style.null()


def _text_line(console: Console, cell: Text, width: int, padding: int, style: Style,
               post: Style, meta: Style) -> list[Segment]:
    """What ``console.render_lines(Styled(Padding(cell, (0, padding)), pre, post),
    options)`` gives for a one-line, non-wrapping row (its first line), where ``pre``
    is ``style`` with the cell's ``meta``. The meta (the cell's coordinates, for the
    mouse) is added last: ``style`` and the text's own styles are the same for many
    cells, so their sums come from Rich's cache."""
    inner = width - 2 * padding
    line = _ascii_line(console, cell, inner)
    if line is None:
        lines = cell.wrap(console, inner, justify=cell.justify or "default",
                          overflow=cell.overflow or "fold",
                          tab_size=(console.tab_size if cell.tab_size is None
                                    else cell.tab_size) or 8, no_wrap=True)
        first = Text("\n").join(lines[:1]).render(console)
        line = Segment.adjust_line_length(list(first), inner, style=_NO_STYLE)
    if padding:
        line = [Segment(" " * padding, _NO_STYLE), *line, Segment(" " * padding, _NO_STYLE)]
    return Segment.adjust_line_length(
        [Segment(text, None if control else cast(Style, segment_style) + meta, control)
         for text, segment_style, control in Segment.apply_style(line, style=style,
                                                                   post_style=post)],
        width)


def _ascii_line(console: Console, cell: Text, inner: int) -> list[Segment] | None:
    """Rich's ``wrap``, ``join`` and ``render`` of ``cell`` at ``inner`` cells, done with
    str operations, for the common cell: printable ASCII (a character is a cell) in one
    style; None for any other."""
    plain = cell.plain
    if cell.spans or not plain or not plain.isascii() or not plain.isprintable():
        return None
    justify = cell.justify or "default"
    if justify in ("right", "center"):
        plain = plain.rstrip()
    if len(plain) > inner:
        plain = (plain[:inner - 1] + "…" if cell.overflow == "ellipsis" else plain[:inner])
    if justify == "right":
        plain = plain.rjust(inner)
    elif justify == "center":
        plain = plain.rjust(len(plain) + (inner - len(plain)) // 2).ljust(inner)
    elif justify == "left":
        plain = plain.ljust(inner)
    if not plain:
        return None  # Rich renders an emptied text its own way
    line = [Segment(plain, console.get_style(cell.style) if cell.style else None)]
    if len(plain) < inner:
        line.append(Segment(" " * (inner - len(plain)), _NO_STYLE))
    return line


def _sort_key(cell: Text) -> tuple[int, float, str]:
    """Numbers by value ("1,204", "42 %", "-3.25"), the rest as text, case-blind."""
    text = cell.plain.strip()
    number = text.replace(",", "").rstrip("%").strip()
    try:
        return (0, float(number), "")
    except ValueError:
        return (1, 0.0, text.casefold())


class ConsoleTable(DataTable[Text]):
    """A table with the console's conventions, the same on every screen: ``/`` filters
    the rows by any column (every word typed must appear in the row), ``s`` sorts by the
    next column and ``S`` reverses, ``j k g G`` move as in vim, ``y`` copies the row's
    id to the clipboard (OSC 52: it works over SSH) and says what it copied, and the
    table's bottom edge says which rows are shown ("rows 1-20 of 154").

    Screens fill it with `fill_table` as any table and find the item of a row with
    :meth:`item` (a filtered or sorted row is not the row of the same index in their
    list). A screen whose rows come a page at a time from the database (the queue)
    turns ``searchable`` and ``sortable`` off and filters and sorts in its query.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Filter", id="table.filter",
                tooltip="Show only the rows that contain what you type (any column)"),
        Binding("s", "sort", "Sort", id="table.sort",
                tooltip="Sort by the next column (again: the one after it)"),
        Binding("S", "reverse", "Reverse", id="table.reverse", show=False,
                tooltip="Reverse the order of the rows"),
        Binding("y", "copy", "Copy id", id="table.copy", show=False,
                tooltip="Copy the highlighted row's id to the clipboard (works over SSH)"),
        Binding("j", "cursor_down", "Down", id="table.down", show=False,
                tooltip="The next row"),
        Binding("k", "cursor_up", "Up", id="table.up", show=False,
                tooltip="The previous row"),
        Binding("g", "scroll_top", "First row", id="table.top", show=False,
                tooltip="The first row"),
        Binding("G", "scroll_bottom", "Last row", id="table.bottom", show=False,
                tooltip="The last row"),
    ]
    DEFAULT_CSS = """
    ConsoleTable { border-bottom: hkey $panel-lighten-2; border-subtitle-align: left;
                   border-subtitle-color: $text-muted; }
    """

    def __init__(self, *, copy_column: str | None = None, searchable: bool = True,
                 sortable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.copy_column = copy_column  # the column holding a row's id (else the first)
        self.searchable = searchable
        self.sortable = sortable
        self.search = ""
        self.sort_column: int | None = None
        self.sort_reverse = False
        self._columns: list[tuple[str, str, int | None]] = []
        self._rows: list[Sequence[Text]] = []
        self._order: list[int] = []  # the source index of each row shown
        # What ``y`` copies per row (in the order given to `fill_table`), when a row's id
        # is not one of its cells (an alert's key); set before `fill_table`.
        self.row_ids: Sequence[str] | None = None
        self._note = ""
        self._cell_state: tuple[Console, int, int, int, bool] | None = None
        self._cells: LRUCache[tuple[Any, ...], tuple[Text, SegmentLines]] = LRUCache(10_000)
        # A paged table (the queue): where its rows sit among all of them.
        self.page_offset = 0
        self.page_total: int | None = None

    def _render_cell(self, row_index: int, column_index: int, base_style: Style,
                     width: int, cursor: bool = False, hover: bool = False) -> SegmentLines:
        """DataTable's cell, rendered without Rich's generic pipeline for the cells every
        table here has: one-line rows of ``Text`` that does not wrap.

        A page of other rows renders every visible cell (440 on the queue at 160x48);
        through ``Styled(Padding(Text))`` and ``console.render_lines`` that took about
        70 us a cell, most of a page's time. The same steps done directly (Rich's own
        ``wrap``, ``join`` and ``render``; crop, pad, the styles around) give the same
        segments (tests/console/test_tui_tables.py compares both on every kind of cell)
        in a fraction of it. Anything else takes Textual's way."""
        state = self._cell_state or self._read_cell_state()
        console, padding, fixed_rows, fixed_columns, show_cursor = state
        found = self._plain_cell(row_index, column_index)
        if found is None or width <= 2 * padding:
            return super()._render_cell(row_index, column_index, base_style, width,
                                        cursor, hover)
        row_key, column_key, cell = found
        component, post = self._get_styles_to_render_cell(
            False, False, row_index < fixed_rows or column_index < fixed_columns,
            hover, cursor, show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css")
        # Keyed by everything the rendering depends on, and kept while the cell is the
        # same object: Textual's own cache is emptied by every style update and resize,
        # that is each time the table gains or loses focus (every filter line and
        # dialog) or a line above it comes or goes, and every visible cell was rendered
        # again then.
        key = (row_key, column_key, row_index, column_index, width, padding, base_style,
               component, post)
        cached = self._cells.get(key)
        if cached is not None and cached[0] is cell:
            return cached[1]
        lines = [_text_line(console, cell, width, padding, base_style + component, post,
                            Style.from_meta({"row": row_index, "column": column_index}))]
        self._cells.set(key, (cell, lines))
        return lines

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """Textual measures every cell of the new rows (about 10 us each, 5 ms for a page
        of the queue) for the widths of auto-width columns and the heights of auto-height
        rows. `fill_table` gives every column its width: unless some column or new row is
        sized by its content after all, only the table's virtual size is left to set."""
        rows = list(new_rows)
        if any(column.auto_width for column in self.columns.values()) or any(
                row.auto_height or row.label is not None
                for row in (self.rows.get(key) for key in rows) if row is not None):
            super()._update_dimensions(rows)
            return
        width = sum(column.get_render_width(self) for column in self.columns.values())
        self.virtual_size = Size(
            width + self._row_label_column_width,
            self._total_row_height + (self.header_height if self.show_header else 0))

    def _read_cell_state(self) -> tuple[Console, int, int, int, bool]:
        """What every cell of a render needs (reactives cost a lookup each)."""
        return (self.app.console, self.cell_padding, self.fixed_rows, self.fixed_columns,
                self.show_cursor)

    def render_lines(self, crop: Region) -> list[Strip]:
        self._cell_state = self._read_cell_state()  # read once for the cells of this render
        try:
            return super().render_lines(crop)
        finally:
            self._cell_state = None

    def _plain_cell(self, row_index: int, column_index: int
                    ) -> tuple[RowKey, ColumnKey, Text] | None:
        """The cell (and its keys) when the direct rendering applies to it, else None."""
        if row_index < 0 or column_index < 0:
            return None  # the header, row labels
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return None
        row = self.rows.get(row_key)
        if row is None or row.height != 1:
            return None
        cell = self._data.get(row_key, {}).get(column_key)
        if (type(cell) is not Text or cell.no_wrap is False
                or cell.overflow == "ignore" or cell.justify == "full" or cell.end != "\n"):
            return None
        return row_key, column_key, cell

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "search":
            return self.searchable
        if action in ("sort", "reverse"):
            return self.sortable
        return True

    # ------------------------------------------------------------------ the rows

    def show(self, columns: Sequence[tuple[str, str, int | None]],
             rows: Sequence[Sequence[Text]]) -> None:
        """Keep ``rows`` and show those the filter lets through, in the table's order."""
        if [c[0] for c in columns] != [c[0] for c in self._columns]:
            self.sort_column, self.sort_reverse = None, False  # other columns now
        self._columns, self._rows = list(columns), list(rows)
        self._apply()

    def _apply(self) -> None:
        terms = self.search.casefold().split()
        order = [i for i, row in enumerate(self._rows)
                 if all(t in " ".join(c.plain for c in row).casefold() for t in terms)]
        if self.sort_column is not None and self.sort_column < len(self._columns):
            column = self.sort_column
            order.sort(key=lambda i: _sort_key(self._rows[i][column]),
                       reverse=self.sort_reverse)
        self._order = order
        _fill(self, self._columns, [self._rows[i] for i in order])
        self._describe()
        self.call_after_refresh(self._describe)  # once laid out: the rows that fit

    def source_row(self, row: int | None = None) -> int | None:
        """The index in the rows given to `fill_table` of ``row`` (the cursor's by
        default), or None when there is no such row."""
        row = self.cursor_row if row is None else row
        return self._order[row] if 0 <= row < len(self._order) else None

    def view_row(self, index: int) -> int | None:
        """Where the row of ``index`` (in the rows given to `fill_table`) is shown now, or
        None when the filter hides it."""
        try:
            return self._order.index(index)
        except ValueError:
            return None

    def item(self, items: Sequence[Any], row: int | None = None) -> Any:
        """The item of ``items`` (in the order given to `fill_table`) that ``row`` (the
        cursor's by default) shows, or None."""
        index = self.source_row(row)
        return items[index] if index is not None and index < len(items) else None

    # ------------------------------------------------------------------ the keys

    async def action_search(self) -> None:
        """Filter the rows by what the officer types (live; Esc restores)."""
        line = SearchLine(self)
        # Awaited, and focused at once: keys typed right after `/` go to the line, never
        # to the table (a second `/` would mount a second line).
        await self.screen.mount(line)
        self.screen.set_focus(line)

    def set_search(self, text: str) -> None:
        if text != self.search:
            self.search = text
            self._apply()

    def action_sort(self) -> None:
        """Sort by the next column; after the last one, back to the order given."""
        if not self._columns:
            return
        following = 0 if self.sort_column is None else self.sort_column + 1
        self.sort_column = following if following < len(self._columns) else None
        self.sort_reverse = False
        self._apply()

    def action_reverse(self) -> None:
        """Reverse the order of the rows."""
        self.sort_reverse = not self.sort_reverse
        if self.sort_column is None:
            self.sort_column = 0
        self._apply()

    def action_copy(self) -> None:
        """Copy the highlighted row's id (its id column, else its first cell)."""
        if not 0 <= self.cursor_row < self.row_count:
            self.app.bell()
            return
        index = self.source_row()
        if self.row_ids is not None and index is not None and index < len(self.row_ids):
            value = self.row_ids[index]
        else:
            keys = [c.key.value for c in self.ordered_columns]
            column = keys.index(self.copy_column) if self.copy_column in keys else 0
            value = self.get_row_at(self.cursor_row)[column].plain.strip()
        if not value:
            self.app.bell()
            return
        self.app.copy_to_clipboard(value)
        self.notify(f"copied {value}", title="clipboard", markup=False, timeout=3)

    # ------------------------------------------------------------------ the edge

    @property
    def note(self) -> str:
        """What the screen says on the table's edge after the rows ("as of 12:00")."""
        return self._note

    @note.setter
    def note(self, text: str) -> None:
        self._note = text
        self._describe()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._describe()

    def on_resize(self) -> None:
        self._describe()

    def on_mount(self) -> None:
        # How many rows fit changes when a scrollbar comes or goes after the rows are in;
        # the edge is described again then, so it always says what is on screen.
        for scrollbar in ("show_horizontal_scrollbar", "show_vertical_scrollbar"):
            self.watch(self, scrollbar, lambda _shown: self._describe(), init=False)

    def _describe(self) -> None:
        shown = len(self._order)
        if shown:
            first = int(self.scroll_y) + 1
            rows_visible = max(1, self.scrollable_content_region.height
                               - (self.header_height if self.show_header else 0))
            last = min(shown, first + rows_visible - 1)
            total = shown if self.page_total is None else self.page_total
            window = (f"rows {self.page_offset + first:,}-{self.page_offset + last:,} of "
                      f"{total:,}")
        else:
            window = "no rows"
        bits = [window]
        if self.search:
            bits.append(f"filter \"{printable(self.search, limit=40)}\": {shown:,} of "
                        f"{len(self._rows):,}")
        if self.sort_column is not None and self.sort_column < len(self._columns):
            bits.append(f"sorted by {self._columns[self.sort_column][1].strip() or 'mark'}"
                        f" {'↓' if self.sort_reverse else '↑'}")
        if self._note:
            bits.append(self._note)
        self.border_subtitle = " · ".join(bits)


class ModalInput(Input):
    """A text field in a screen that is modal for keys, as a field on a screen of its own
    would be: while it has the focus no key reaches its screen's bindings (shift+down
    would mark rows), only its own and the app's priority ones (tab, quit)."""

    @property
    def is_modal(self) -> bool:
        return True


class SearchLine(ModalInput):
    """The filter line of a :class:`ConsoleTable`, at the bottom of its screen: the rows
    follow as the officer types; Enter (or leaving the line for another field) keeps the
    filter, Esc restores the one before; empty shows every row.

    A line in the screen, not a screen over it: Textual draws the whole screen below a
    screen on top again at every key typed (most of each key's time on the timeline).
    But it keeps what that screen guaranteed: it is modal for keys (`ModalInput`); the
    table cannot take the focus from it (a load ending focuses it); and the terminal
    losing the focus closes nothing."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="search.cancel",
                tooltip="Back to the filter before"),
    ]
    DEFAULT_CSS = """
    SearchLine { dock: bottom; width: 100%; margin: 0 0 1 0; border: tall $accent; }
    """

    def __init__(self, table: ConsoleTable) -> None:
        super().__init__(value=table.search, placeholder="filter: words to find in any "
                         "column (enter keeps it, esc restores)", max_length=200,
                         id="search-input")
        self.table = table
        self.before = table.search

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.table.set_search(event.value)

    @on(Input.Submitted)
    def _keep(self, event: Input.Submitted) -> None:
        event.stop()
        self._close()

    def action_cancel(self) -> None:
        """Back to the filter before."""
        self.table.set_search(self.before)
        self._close()

    def on_focus(self) -> None:
        # The filter before is selected when the line opens (typing replaces it), not
        # when the focus comes back to it (the officer is in the middle of typing).
        self.select_on_focus = False

    def on_blur(self) -> None:
        if self.has_class("-closing"):
            return  # closed by enter or esc: the table has the focus back
        if not self.app.app_focus:
            return  # the terminal lost the focus: Textual gives it back to the line
        if self.screen.focused is self.table:
            # The screen's code focused its table (a load ending): the officer is still
            # typing here, and the next letters must not reach the table's keys.
            self.screen.set_focus(self)
            return
        # The focus went to another field (tab, a click): the filter stays, the focus too.
        self._close(refocus=self.screen.focused is None)

    def _close(self, refocus: bool = True) -> None:
        if self.parent is None or self.has_class("-closing"):
            return
        self.add_class("-closing")
        self.remove()
        if refocus and self.table.is_mounted:
            self.table.focus()


def move_cursor_to(table: DataTable[Text], row: int) -> None:
    """Put the cursor on ``row`` (after `fill_table`), scrolling to it.

    DataTable scrolls to the cursor after the next refresh. Textual moves a scrollbar's
    thumb only when the table scrolls while the scrollbar is shown. When the rows just
    added are laid out only after that scroll, the scrollbar appears afterwards with its
    thumb where it was: at the top of a table scrolled to its end. So the thumb is also
    put in place when the scrollbar appears.
    """
    table.watch(table, "show_vertical_scrollbar", _thumb_follower(table), init=False)
    table.move_cursor(row=row)


_thumb_followers: weakref.WeakKeyDictionary[DataTable[Text], Callable[[bool], None]] = (
    weakref.WeakKeyDictionary())


def _thumb_follower(table: DataTable[Text]) -> Callable[[bool], None]:
    """One watcher per table (Textual registers a callback once; this is the same one)."""
    follower = _thumb_followers.get(table)
    if follower is None:
        ref = weakref.ref(table)

        def follower(shown: bool) -> None:
            current = ref()
            if shown and current is not None:
                current.vertical_scrollbar.position = current.scroll_y

        _thumb_followers[table] = follower
    return follower


def _same_columns(table: DataTable[Text], spec: Sequence[tuple[str, str, int]]) -> bool:
    shown = table.ordered_columns
    return len(shown) == len(spec) and all(
        column.key.value == key and column.label.plain == label and column.width == width
        and not column.auto_width
        for column, (key, label, width) in zip(shown, spec, strict=True))


def _cell_key(cell: Text) -> tuple[object, ...]:
    """What a cell looks like (``Text.__eq__`` ignores the base style and justify)."""
    return (cell.plain, cell.style, cell.spans, cell.justify, cell.no_wrap, cell.overflow,
            cell.end)


def _update_cells(table: DataTable[Text], rows: Sequence[Sequence[Text]]) -> None:
    column_keys = [column.key for column in table.ordered_columns]
    for shown, row in zip(table.ordered_rows, rows, strict=True):
        for column_key, old, new in zip(column_keys, table.get_row(shown.key), row,
                                        strict=True):
            if _cell_key(old) != _cell_key(new):
                table.update_cell(shown.key, column_key, new)
    # Where DataTable.clear() and the first add_row() would leave the cursor, the scroll
    # and the hover, without its cache clearing (set_reactive: no watcher, no repaint).
    was = table.cursor_coordinate
    top = Coordinate(0, 0)
    table.set_reactive(DataTable.cursor_coordinate, top)
    table.set_reactive(DataTable.hover_coordinate, top)
    if was != top:
        table.refresh_row(was.row)
        table.refresh_row(0)
    table.scroll_x = table.scroll_y = 0
    table.scroll_target_x = table.scroll_target_y = 0
    if rows and table.show_cursor and table.cursor_type == "row":
        table.post_message(DataTable.RowHighlighted(table, 0, table.ordered_rows[0].key))


def describe_error(error: BaseException) -> str:
    """One line for the officer. A database error is described by the driver's message
    (SQLAlchemy's own text would repeat the SQL and its parameters)."""
    orig = getattr(error, "orig", None)
    message = str(orig if orig is not None else error).strip()
    first = message.splitlines()[0] if message else ""
    name = type(orig if orig is not None else error).__name__
    return printable(f"{name}: {first}" if first else name, limit=300)


class ConfirmScreen(ModalScreen[bool]):
    """Says what is about to happen to how many and which; Enter (or the button)
    confirms, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="confirm.cancel", tooltip="Do nothing"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen #confirm-box { width: 76; max-width: 100%; height: auto; padding: 0 1;
                                 border: thick $warning; background: $surface; }
    ConfirmScreen Horizontal { height: auto; margin: 1 0 0 0; }
    ConfirmScreen Button { margin: 0 1 0 0; }
    """

    def __init__(self, title: str, summary: Text, verb: str) -> None:
        super().__init__()
        self.title_text = title
        self.summary = summary
        self.verb = verb

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "enter confirms · esc cancels"
            yield Static(self.summary)
            with Horizontal():
                yield Button(self.verb, id="confirm-yes", variant="warning")
                yield Button("Cancel", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-yes", Button).focus()

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(False)

    def action_cancel(self) -> None:
        """Do nothing."""
        self.dismiss(False)


class ConsoleError(Message):
    """Something failed in the background; the app shows it (bubbles up to the app)."""

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title = title
        self.text = text


class TopBar(Horizontal):
    """polysec, the database it is connected to and, on the demo database, a badge."""

    DEFAULT_CSS = """
    TopBar { dock: top; height: 1; background: $panel; }
    TopBar #app-name { width: auto; padding: 0 1; text-style: bold; background: $primary;
                       color: $text; }
    TopBar #screen-title { width: auto; padding: 0 1; text-style: bold; }
    TopBar #database { width: 1fr; padding: 0 1 0 0; color: $text-muted; }
    TopBar #demo-badge { width: auto; padding: 0 1; display: none; text-style: bold;
                         background: $warning; color: $text; }
    TopBar.-demo #demo-badge { display: block; }
    """

    def __init__(self, database: str, title: str) -> None:
        super().__init__()
        self._database = database
        self._title = title

    def compose(self) -> ComposeResult:
        yield Static(Text("polysec"), id="app-name")
        yield Static(Text(self._title), id="screen-title")
        yield Static(safe_text(self._database), id="database")
        yield Static(Text("DEMO DATABASE"), id="demo-badge")

    def on_mount(self) -> None:
        # The app learns whether this is the demo database in a worker; follow it.
        self.watch(self.app, "demo", self._show_demo, init=True)

    def _show_demo(self, demo: bool) -> None:
        self.set_class(demo, "-demo")


class FigureCard(Static):
    """A titled box with one figure and a note under it."""

    DEFAULT_CSS = """
    FigureCard { width: 1fr; height: 4; border: round $primary; padding: 0 1; }
    FigureCard.-alert { border: round $error; }
    """

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__(Text("…"), id=id)
        self.border_title = title

    def show(self, value: str, note: str, *, alert: bool = False) -> None:
        self.update(Text.assemble((value, "bold"), "\n", (note, "dim")))
        self.set_class(alert, "-alert")


class ConsoleFooter(Footer):
    """Textual's footer, changed only where what it shows changed.

    Footer recomposes itself (a dozen key widgets, each created and styled) on every
    "bindings updated" signal: each focus change, mode switch and screen stack change,
    often with the same bindings. Opening a screen sent about twenty of them, a third of
    its time, and the focus moving into a filter line and back cost 50 ms. Here the
    signal is ignored when the bindings are those already drawn, and otherwise the keys
    already there are changed in place: only the missing ones are created, and those
    not wanted are hidden for the next time.
    """

    _drawn: tuple[object, ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = tuple((binding, enabled, tooltip)
                          for _node, binding, enabled, tooltip
                          in screen.active_bindings.values())
            if shown == self._drawn:
                return
            self._drawn = shown
            if self._bindings_ready:
                self.call_after_refresh(self._update_keys)
                return
        super().bindings_changed(screen)

    def on_resize(self) -> None:
        if self._bindings_ready:  # what fits depends on the width
            self.call_after_refresh(self._update_keys)

    def compose(self) -> ComposeResult:
        """The keys that fit, in the screen's order (its own keys first, then the
        destinations); when some do not fit, ``? more`` ends the line (the key help
        lists them all). One key per action, as Textual's footer shows them."""
        if not self._bindings_ready:
            return
        for spec in self._wanted():
            yield self._key(spec)

    def _update_keys(self) -> None:
        """The keys wanted now, in the widgets already there (as many as both have),
        then the rest created or hidden; the command palette's key stays last."""
        if not self.is_attached:
            return
        wanted = self._wanted()
        current = list(self.children)
        palettes = [w for w in current if w.has_class("-command-palette")]
        wanted_palette = [spec for spec in wanted if spec.palette]
        if (any(type(widget) is not FooterKey for widget in current)
                or len(palettes) != len(wanted_palette)
                or (palettes and current[-1] is not palettes[0])):
            self.refresh(recompose=True)
            return
        keys = [w for w in current if w not in palettes]
        wanted_keys = [spec for spec in wanted if not spec.palette]
        for widget, spec in zip(keys, wanted_keys, strict=False):
            _restyle(cast(FooterKey, widget), spec)
            widget.display = True
        for widget, spec in zip(palettes, wanted_palette, strict=True):
            _restyle(cast(FooterKey, widget), spec)
        # Keys not wanted now are hidden, not removed: the focus coming back (a filter
        # line closing) wants them again.
        for widget in keys[len(wanted_keys):]:
            widget.display = False
        if len(wanted_keys) > len(keys):
            self.mount_all([self._key(spec) for spec in wanted_keys[len(keys):]],
                           before=palettes[0] if palettes else None)

    @staticmethod
    def _key(spec: _KeySpec) -> FooterKey:
        key = FooterKey(spec.key, spec.display, spec.description, spec.action,
                        disabled=spec.disabled, tooltip=spec.tooltip,
                        classes="-command-palette" if spec.palette else "")
        return key if spec.palette else key.data_bind(compact=Footer.compact)

    def _wanted(self) -> list[_KeySpec]:
        app = self.app
        screen = self.screen
        active = screen.active_bindings

        def rank(node: Any) -> int:  # the screen's own keys, then its table's, then the app's
            return 0 if node is screen else 2 if node is app else 1

        keys: dict[str, tuple[Binding, bool, str]] = {}
        for _node, binding, enabled, tooltip in sorted(active.values(),
                                                       key=lambda a: rank(a.node)):
            if binding.show and binding.action not in keys:
                keys[binding.action] = (binding, enabled, tooltip)
        palette = active.get(app.COMMAND_PALETTE_BINDING)
        room = self.size.width or app.size.width
        if palette is not None and app.ENABLE_COMMAND_PALETTE:
            room -= _key_width(app.get_key_display(palette.binding),
                               palette.binding.description) + 2  # its border and padding
        widths = [_key_width(app.get_key_display(b), b.description) for b, _e, _t in
                  keys.values()]
        shown = list(keys.values())
        if sum(widths) > room:
            room -= _key_width("?", "more")
            count = 0
            while count < len(widths) and sum(widths[:count + 1]) <= room:
                count += 1
            shown = shown[:count]
        wanted = [_KeySpec(binding.key, app.get_key_display(binding), binding.description,
                           binding.action, not enabled, tooltip)
                  for binding, enabled, tooltip in shown]
        if len(shown) < len(keys):
            wanted.append(_KeySpec("question_mark", "?", "more", "app.key_help", False,
                                   "Every key of this screen"))
        if palette is not None and app.ENABLE_COMMAND_PALETTE:
            binding = palette.binding
            wanted.append(_KeySpec(binding.key, app.get_key_display(binding),
                                   binding.description, binding.action, not palette.enabled,
                                   binding.tooltip or binding.description, palette=True))
        return wanted


@dataclass(frozen=True)
class _KeySpec:
    """One key of the footer."""

    key: str
    display: str
    description: str
    action: str
    disabled: bool
    tooltip: str
    palette: bool = False


def _restyle(widget: FooterKey, spec: _KeySpec) -> None:
    """Make a footer key show ``spec``: what `FooterKey.__init__` sets, set again."""
    same = (widget.key, widget.key_display, widget.description, widget.action,
            widget._disabled) == (spec.key, spec.display, spec.description, spec.action,
                                  spec.disabled)
    widget.key, widget.key_display = spec.key, spec.display
    widget.description, widget.action = spec.description, spec.action
    widget._disabled = spec.disabled
    widget.set_class(spec.disabled, "-disabled")
    widget.set_class(spec.palette, "-command-palette")
    widget.tooltip = spec.tooltip or None
    if not same:
        widget.refresh(layout=True)


def _key_width(key: str, description: str) -> int:
    """Cells a footer key takes: the key padded by one on each side, the description
    followed by one."""
    return cell_len(key) + 2 + (cell_len(description) + 1 if description else 0)


class StatusLine(Static):
    """A screen's one-line status: what it shows, or (in the error colour) why it could
    not load. The text is shown inert (`safe_text`)."""

    DEFAULT_CSS = """
    StatusLine.-error { color: $error; text-style: bold; }
    """

    def show(self, text: str | Text, *, error: bool = False) -> None:
        self.update(safe_text(text) if isinstance(text, str) else text)
        self.set_class(error, "-error")


HOME_MODE = "dashboard"  # app.HOME: the screen Esc leads back to from a destination


class ConsoleContext(Protocol):
    """What a console screen takes from the app it runs in (`app.PolysecApp`)."""

    runtime: Runtime
    clock: Clock
    actor: Actor | None

    def open_account_view(self, view: str, account_id: uuid.UUID) -> None:
        """Show one of an account's views ("timeline", "anomalies", "twofa")."""

    def open_withdrawal_view(self, ref: str) -> None:
        """Show one withdrawal's detail."""


class ConsoleScreen(Screen[None]):
    """Base of every screen of the console (a destination, or a view pushed over one).

    The runtime, the clock and the officer come from the console it runs in, bound when
    the screen is composed, so a constructor takes only what the screen shows (an
    account, a withdrawal) and any screen can open another with its id alone. Subclasses
    implement :meth:`compose_body`; the top bar and the footer come from here. A worker
    that fails on this screen is turned into one :class:`ConsoleError` message, which the
    app shows. ``actor`` is the logged-in officer the screen's service calls act for
    (None only on the login screen); the services check its permissions.
    """

    TITLE_TEXT = ""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="console.back",
                tooltip="Back to the screen that opened this one, or to the dashboard"),
    ]
    runtime: Runtime
    clock: Clock
    actor: Actor | None

    def compose(self) -> ComposeResult:
        console = cast(ConsoleContext, self.app)
        self.runtime, self.clock, self.actor = console.runtime, console.clock, console.actor
        yield TopBar(self.runtime.database_label, self.TITLE_TEXT)
        yield from self.compose_body()
        yield ConsoleFooter()

    @property
    def officer(self) -> Actor:
        """The officer the screen acts for; refused (one line) when nobody is logged in."""
        if self.actor is None:
            raise RefusedError("not logged in")
        return self.actor

    class Loaded(Message, bubble=False):
        """What the screen's loading worker brought back (``data``), or the one-line
        ``error`` that stopped it; a screen handles it in ``on_console_screen_loaded``."""

        def __init__(self, data: Any = None, error: str = "") -> None:
            super().__init__()
            self.data = data
            self.error = error

    def deliver(self, fetch: Callable[[], Any]) -> None:
        """In a thread worker: run ``fetch`` and post what it returned, or its refusal,
        as one `Loaded` message (nothing when the worker was cancelled meanwhile)."""
        try:
            message = self.Loaded(fetch())
        except PolysecError as error:
            message = self.Loaded(None, str(error))
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    def set_status(self, text: str | Text, *, error: bool = False) -> None:
        """Show ``text`` in the screen's `StatusLine`."""
        self.query_one(StatusLine).show(text, error=error)

    def open_account(self, view: str, account_id: uuid.UUID) -> None:
        """Show the account's ``view`` ("timeline", "anomalies", "twofa") over this one."""
        cast(ConsoleContext, self.app).open_account_view(view, account_id)

    def reload_while_shown(self, seconds: float, reload: Callable[[], object]) -> None:
        """Call ``reload`` every ``seconds`` while this screen is the one shown and the
        session is not locked (what another console changed appears by itself)."""
        def tick() -> None:
            if self.app.screen is self and not getattr(self.app, "locked", False):
                reload()

        self.set_interval(seconds, tick)

    def open_withdrawal(self, ref: str) -> None:
        """Show the withdrawal's detail over this one."""
        cast(ConsoleContext, self.app).open_withdrawal_view(ref)

    def action_back(self) -> None:
        """Back to the screen that opened this one; from a destination, to the home
        screen (the dashboard), where Esc does nothing."""
        if self.app.screen is not self:
            return
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        elif self._home_elsewhere():
            self.app.switch_mode(HOME_MODE)

    def _home_elsewhere(self) -> bool:
        """A logged-in console away from its home screen (before a login, or on the lock
        or login screen, there is no home to go to)."""
        app = self.app  # unlocked: logged in, so the destinations' modes exist
        return bool(getattr(app, "unlocked", False)) and app.current_mode != HOME_MODE

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Esc is not offered on the home screen, where there is nowhere to go back to."""
        if action == "back" and len(self.app.screen_stack) <= 1:
            return self._home_elsewhere()
        return True

    def compose_body(self) -> ComposeResult:
        yield from ()

    @on(Worker.StateChanged)
    def _report_worker_error(self, event: Worker.StateChanged) -> None:
        error = event.worker.error
        if event.state is WorkerState.ERROR and error is not None:
            what = event.worker.group if event.worker.group != "default" else event.worker.name
            self.post_message(ConsoleError(f"{what} failed", describe_error(error)))
            self.worker_failed(error)

    def worker_failed(self, error: BaseException) -> None:
        """Hook for screens that show a stale-data marker after a failed load."""

    def notified(self, subject: str | None) -> None:
        """Hook: a notification about ``subject`` (``withdrawal:T1``, ``request:<id>``)
        reached this officer while the screen is shown; reload what it concerns."""

