"""Officers (services/officers): identity, sessions, grants and the audit log, CLI and console."""
