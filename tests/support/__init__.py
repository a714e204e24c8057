"""What the tests share. Test modules import from here and never from each other.

The modules here: `helpers` (ingest record builders), `cli` (running `polysec`),
`officers` (officers with known secrets, a clock to move), `screening`, `feed`, `twofa`,
`backups`, `sshd` and `sftp` (a real OpenSSH server), `dashboard` (the sample data) and
`tui` (driving the console with Pilot, snapshots). The ones that define fixtures are
plugins, listed in `pytest_plugins` of tests/conftest.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
DATA = ROOT / "tests" / "data"  # files the tests read (a backup written by polysec v1)
# The pinned clock wherever a service reads time, so windows and snapshots are fixed.
FIXED_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
