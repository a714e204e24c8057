"""`polysec tui`: open the console. Textual is imported here, inside the function, so that
`polysec --help` and every other subcommand start without it."""

from __future__ import annotations

import click

from polysec_tui.commands.common import settings_of
from polysec_tui.config import Settings


def open_console(settings: Settings) -> None:
    """Connect (schema must be current), then run the Textual console until it quits."""
    from polysec_tui.services.runtime import open_runtime

    runtime = open_runtime(settings)
    try:
        from polysec_tui.app import run_app

        run_app(runtime)
    finally:
        runtime.engine.dispose()


@click.command()
@click.pass_context
def tui(ctx: click.Context) -> None:
    """Open the console: dashboard, navigation keys, command palette (ctrl+p).

    Works at 80x24 over SSH without a mouse; honours NO_COLOR.
    """
    open_console(settings_of(ctx))
