"""Core: crypto, text, migrations, the CLI, data at rest, the lock file and the architecture."""
