from polysec_tui.clidocs import render
from tests.support import ROOT


def test_cli_reference_is_current():
    doc = ROOT / "docs" / "cli.md"
    assert doc.read_text() == render() + "\n", (
        "docs/cli.md is out of date: python -m polysec_tui.clidocs > docs/cli.md"
    )


def test_the_reference_does_not_depend_on_earlier_help_lookups():
    """click caches a command's help option from the first context that asks; a context
    made without the root's "-h" (as tests do) must not change the reference."""
    import click

    from polysec_tui.cli import cli

    root = click.Context(cli, info_name="polysec")
    for name in cli.list_commands(root):
        sub = cli.get_command(root, name)
        assert sub is not None
        sub.get_help_option(click.Context(sub, info_name=name))
    doc = ROOT / "docs" / "cli.md"
    assert doc.read_text() == render() + "\n"
