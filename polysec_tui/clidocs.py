"""docs/cli.md, written from the commands' own --help (so the reference cannot drift):
`python -m polysec_tui.clidocs > docs/cli.md`; a test checks the file is current."""

from __future__ import annotations

import click

from polysec_tui.cli import cli


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1])
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                found.extend(_walk(sub, [*path, name]))
    return found


def render() -> str:
    parts = [
        "# Command reference\n",
        "Generated from `--help` by `python -m polysec_tui.clidocs > docs/cli.md`; do not",
        "edit by hand (tests/core/test_clidocs.py fails when it is out of date).\n",
    ]
    for path, command in _walk(cli, ["polysec"]):
        parent = None
        for name in path[:-1]:
            parent = click.Context(click.Group(name), info_name=name, parent=parent)
        # The root's context_settings (-h) apply to every subcommand, as in a real run.
        ctx = click.Context(command, info_name=path[-1], parent=parent,
                            terminal_width=100, max_content_width=100,
                            help_option_names=["-h", "--help"])
        # click caches a command's help option from the first context that asked for it;
        # one made elsewhere without the root's "-h" (a test's, say) would leak in here.
        command._help_option = None
        parts.append(f"## {' '.join(path)}\n")
        parts.append("```")
        parts.append(command.get_help(ctx).rstrip())
        parts.append("```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render())
