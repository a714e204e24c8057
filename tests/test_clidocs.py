from pathlib import Path

from polysec_tui.clidocs import render


def test_cli_reference_is_current():
    doc = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    assert doc.read_text() == render() + "\n", (
        "docs/cli.md is out of date: python -m polysec_tui.clidocs > docs/cli.md"
    )
