"""Subcommand modules of the `polysec` CLI, imported only when their command runs."""
