"""Encrypted backups: the file format (`envelope`), consistent snapshots of SQLite,
PostgreSQL and MariaDB (`snapshot`) and restores (`restore`). No textual import here; the
use cases with permissions and audit live in `polysec_tui.services.operations.backups`."""
