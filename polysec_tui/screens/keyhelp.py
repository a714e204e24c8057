"""The key help overlay (``?`` or F1 on any screen; the same keys, or Esc, close it):
every key of the screen under it, in groups, with what it does.

It lists what `Screen.active_bindings` says is bound there, the hidden keys too (enter,
shift+arrows), so it is always the truth for the screen as it is, with the keymap of
``[keys]`` applied. Groups: the screen's own keys, the keys of the focused table or
field, the destinations (digits), and the keys that work everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Static

# Textual's own widgets bind many keys (cursor moves, editing); the overlay names the
# moves once instead of listing each widget's bindings.
MOVES = ("↑ ↓ PgUp PgDn Home End (in tables also j k g G) move; enter opens or "
         "confirms; tab and shift+tab: the next and previous field; ctrl+c copies selected "
         "text")
TEXTUAL_SCREEN_ACTIONS = frozenset(
    b.action for b in Screen.BINDINGS if isinstance(b, Binding))


@dataclass(frozen=True)
class KeyLine:
    keys: str
    description: str
    tooltip: str


def key_groups(screen: Screen[Any]) -> list[tuple[str, list[KeyLine]]]:
    """The keys bound on ``screen`` now, grouped: (title, lines) in display order."""
    app = screen.app
    title = getattr(screen, "TITLE_TEXT", "") or "This screen"
    groups: dict[str, list[KeyLine]] = {title: [], "Table or field": [], "Go to": [],
                                        "Everywhere": []}
    by_action: dict[tuple[str, str], KeyLine] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.description or binding.system:
            continue
        node = active.node
        if binding.action in TEXTUAL_SCREEN_ACTIONS:
            continue  # tab, shift+tab, ctrl+c: summed up in MOVES
        if node is app:
            group = "Go to" if (binding.id or "").startswith("app.show.") else "Everywhere"
        elif node is screen:
            group = title
        elif type(node).__module__.startswith("polysec_tui.") and (
                binding.id or not isinstance(node, Input)):
            group = "Table or field"  # of a text field of ours, the keys we gave it only
        else:
            continue  # a Textual widget's own keys: summed up in MOVES
        display = app.get_key_display(binding) if key == binding.key else key
        seen = by_action.get((group, binding.action))
        if seen is not None:  # one line per action, its keys together ("? f1")
            index = groups[group].index(seen)
            seen = KeyLine(f"{seen.keys} {display}", seen.description,
                           seen.tooltip or active.tooltip or binding.tooltip or "")
            groups[group][index] = by_action[(group, binding.action)] = seen
            continue
        line = KeyLine(display, binding.description, active.tooltip or binding.tooltip or "")
        by_action[(group, binding.action)] = line
        groups[group].append(line)
    return [(name, lines) for name, lines in groups.items() if lines]


class KeyHelpScreen(ModalScreen[None]):
    """Every key of the screen under it; ``?``, F1 or Esc closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,f1", "close", "Close", id="keyhelp.close",
                tooltip="Close the key help"),
    ]
    DEFAULT_CSS = """
    KeyHelpScreen { align: center middle; }
    KeyHelpScreen #keyhelp-box { width: 96; max-width: 100%; height: auto;
                                 max-height: 100%; border: thick $accent;
                                 background: $surface; padding: 0 1; }
    """

    def __init__(self, groups: list[tuple[str, list[KeyLine]]]) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="keyhelp-box") as box:
            box.border_title = "Keys"
            box.border_subtitle = "? · F1 · esc close"
            yield Static(self._key_table(), id="keyhelp-text")

    def _key_table(self) -> Group:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True, min_width=12)
        table.add_column(no_wrap=True, min_width=16)
        table.add_column(style="dim", overflow="fold")
        for title, lines in self.groups:
            table.add_row(Text(title, style="bold underline"), "", "")
            for line in lines:
                # Descriptions and tooltips are the console's own text; still plain.
                table.add_row(Text(line.keys), Text(line.description), Text(line.tooltip))
            table.add_row("", "", "")
        return Group(table, Text("Moving", style="bold underline"), Text(MOVES))

    def action_close(self) -> None:
        """Close the key help."""
        self.dismiss(None)
