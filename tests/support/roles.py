"""A database role that may read and write rows only (docs/audit.md's least-privileged
role), on the test server's database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from polysec_tui.db.engine import make_engine


@contextmanager
def row_only_role(db_url: str, *extra_grants: str) -> Iterator[str]:
    """The URL of the same database through a new role with SELECT, INSERT, UPDATE and
    DELETE on its tables (and ``extra_grants``, MariaDB privileges on the database),
    dropped afterwards. PostgreSQL and MariaDB only."""
    admin = make_engine(db_url)
    name = f"polysec_app_{uuid.uuid4().hex[:8]}"
    url = admin.url
    try:
        with admin.begin() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(text(f"CREATE ROLE {name} LOGIN"))
                conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {name}"))
                conn.execute(text("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN "
                                  f"SCHEMA public TO {name}"))
                conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}"))
            else:
                privileges = ", ".join(("SELECT", "INSERT", "UPDATE", "DELETE", *extra_grants))
                for host in ("%", "localhost"):
                    conn.execute(text(f"CREATE USER '{name}'@'{host}'"))
                    conn.execute(text(f"GRANT {privileges} ON `{url.database}`.* "
                                      f"TO '{name}'@'{host}'"))
        yield url.set(username=name, password=None).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name}"))
                conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name}"))
                conn.execute(text(f"REVOKE ALL ON SCHEMA public FROM {name}"))
                conn.execute(text(f"DROP ROLE {name}"))
            else:
                conn.execute(text(f"DROP USER IF EXISTS '{name}'@'%'"))
                conn.execute(text(f"DROP USER IF EXISTS '{name}'@'localhost'"))
        admin.dispose()
