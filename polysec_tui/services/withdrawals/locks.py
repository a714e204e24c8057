"""Named row locks that serialise writers of withdrawals' verdicts: an UPDATE of a row of
``analysis_checkpoints`` holds its lock until the transaction ends (on SQLite every
write transaction is serial anyway).

- ``screening``: a screening batch's recording, and a sanctions import (which re-screens
  past destinations), so that neither judges with a list the other is changing.
- ``sanctions``: a sanctions import, and an approval by one officer, so that an approval
  never reads the lists while an import that names its destination is uncommitted.

Taken in that order (screening, then sanctions, then withdrawal rows), never the other
way round."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from polysec_tui.db.models import AnalysisCheckpoint

SCREENING = "screening"
SANCTIONS = "sanctions"


def take(session: Session, name: str, now: datetime) -> None:
    """Lock row ``name`` (creating it if missing) until the session's transaction ends."""
    done = session.execute(
        update(AnalysisCheckpoint).where(AnalysisCheckpoint.name == name)
        .values(runs=AnalysisCheckpoint.runs + 1, updated_at=now)
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        session.add(AnalysisCheckpoint(name=name, login_id=0, security_event_id=0,
                                       runs=1, updated_at=now))
        session.flush()
