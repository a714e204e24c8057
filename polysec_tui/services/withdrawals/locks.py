"""Named row locks that serialise writers of withdrawals' verdicts: an UPDATE of a row of
``analysis_checkpoints`` holds its lock until the transaction ends (on SQLite every
write transaction is serial anyway).

- ``screening``: a screening batch's recording, and a sanctions import (which re-screens
  past destinations), so that neither judges with a list the other is changing.
- ``sanctions``: a sanctions import, and an approval by one officer, so that an approval
  never reads the lists while an import that names its destination is uncommitted.
- ``rule_sets``: a rule set's activation and the recording of a backtest, so that two
  approvals never both find the same version in force, and no figures change under an
  approval.

Taken in that order (screening, then sanctions, then withdrawal rows), never the other
way round."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from polysec_tui.db.models import AnalysisCheckpoint

SCREENING = "screening"
SANCTIONS = "sanctions"
RULE_SETS = "rule_sets"


def take(session: Session, name: str, now: datetime) -> None:
    """Lock row ``name`` until the session's transaction ends. A missing row (migration
    0020 makes them; a database emptied by hand has none) is created without a key
    conflict when two take it at once: the second insert waits and does nothing."""
    bump = (update(AnalysisCheckpoint).where(AnalysisCheckpoint.name == name)
            .values(runs=AnalysisCheckpoint.runs + 1, updated_at=now))
    if session.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
        row = {"name": name, "login_id": 0, "security_event_id": 0, "runs": 0,
               "updated_at": now}
        dialect = session.get_bind().dialect.name
        table = cast(Table, AnalysisCheckpoint.__table__)
        stmt: Any
        if dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=["name"])
        elif dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=["name"])
        else:
            stmt = mysql.insert(table).prefix_with("IGNORE")
        session.execute(stmt, [row])
        session.execute(bump)
