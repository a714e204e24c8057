"""Change notifications for the live dashboard: PostgreSQL LISTEN/NOTIFY.

On PostgreSQL, migration 0006 installs statement-level triggers on the tables the
dashboard shows (login events, security events, withdrawals, login anomalies, the audit
log head, audit runs, backups, four-eyes requests, incidents). Each INSERT/UPDATE/DELETE
*statement* calls ``pg_notify('polysec_dashboard', <table>)``; PostgreSQL delivers it at
commit and folds identical notifications of one transaction into one, so an ingest batch
of 5,000 rows costs one notification, and a rolled-back write none.

:class:`ChangeListener` holds one dedicated connection (taken out of the pool, autocommit,
``LISTEN polysec_dashboard``) and :meth:`ChangeListener.wait` blocks until a notification
arrives or the timeout passes. The dashboard runs it in a background thread and, on a
notification, asks its cheap change token at once; its polling timer stays, slowed down,
as the fallback (a dropped connection stops the listener, never the dashboard).

SQLite has no notifications, and MariaDB's are not usable from a client, so
:func:`listener_for` returns None there and the dashboard polls the change token.

This module never imports textual.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import Engine

CHANNEL = "polysec_dashboard"
# Tables whose writes change what the dashboard shows (the triggers of migration 0006).
WATCHED_TABLES = ("login_events", "security_events", "withdrawals", "login_anomalies",
                  "audit_head", "audit_runs", "backups", "approval_requests", "incidents")


class ChangeListener:
    """One LISTEN connection; not thread-safe: one thread calls :meth:`wait`."""

    def __init__(self, engine: Engine) -> None:
        raw = engine.raw_connection()
        conn: Any = raw.driver_connection
        if conn is None:
            raise RuntimeError("no driver connection to listen on")
        raw.detach()  # a LISTENing connection never goes back to the pool
        self._conn = conn
        self._conn.rollback()
        self._conn.autocommit = True
        self._conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> bool:
        """True when at least one change was notified within ``timeout`` seconds (all
        notifications already queued are consumed, so a burst wakes the caller once)."""
        changed = False
        for _note in self._conn.notifies(timeout=timeout, stop_after=1):
            changed = True
        if changed:  # drain what arrived with it
            for _note in self._conn.notifies(timeout=0.0):
                pass
        return changed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def listener_for(engine: Engine) -> ChangeListener | None:
    """A listener on PostgreSQL; None on the engines without usable notifications."""
    if engine.dialect.name != "postgresql":
        return None
    return ChangeListener(engine)
