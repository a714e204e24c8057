"""`polysec keys-help`: every key binding of the console, with the keys that trigger it
once `[keys]` in the configuration is applied (docs/officers.md). Textual is imported
inside the command only."""

from __future__ import annotations

import click

from polysec_tui.commands.common import echo, emit_json, settings_of
from polysec_tui.errors import InputError
from polysec_tui.text import visible


@click.command("keys-help")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def keys_help(ctx: click.Context, as_json: bool) -> None:
    """Every console key binding: its id (for [keys]), keys, what it does and where.
    An id in [keys] that the console does not have is refused (exit 2)."""
    from polysec_tui.app import PolysecApp, binding_catalogue, keymap_from_settings, unknown_ids

    keymap = keymap_from_settings(settings_of(ctx))
    catalogue = binding_catalogue(PolysecApp, keymap)
    unknown = unknown_ids(keymap, catalogue)
    if unknown:
        raise InputError(f"config: [keys] names no binding of the console: "
                         f"{', '.join(visible(i) for i in unknown)} (see polysec keys-help)")
    if as_json:
        emit_json([info.as_dict() for info in catalogue])
        return
    id_width = max(len(info.id) for info in catalogue)
    keys_width = max(len(info.keys) for info in catalogue)
    for info in catalogue:
        changed = " (remapped)" if info.keys != info.default else ""
        echo(f"{info.id:<{id_width}}  {info.keys:<{keys_width}}  {info.description}"
             f"{changed}  [{info.where}]")
