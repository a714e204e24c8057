"""What one officer should learn in their own console: the outcome of a four-eyes request
they made, a claim reassigned away from them, a claim that expired.

A notification is written in the transaction of the action it reports (`send`), so it
exists exactly when the action happened. The console asks for its officer's undelivered
ones every few seconds (`take`: one indexed read, and one update when there are some)
and shows each once, as a toast. The text is plain text; the console shows it inert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from polysec_tui.db.models import Notification
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import printable

MAX_TEXT = 500
# A console that was closed for a day does not bury its officer under a day of toasts.
MAX_TAKEN = 20


@dataclass(frozen=True)
class NotificationView:
    id: int
    at: datetime
    kind: str
    text: str
    subject: str | None


def send(session: Session, officer_id: uuid.UUID, at: datetime, kind: str, text: str,
         subject: str | None = None) -> None:
    """Leave ``text`` for ``officer_id``, in the caller's transaction."""
    session.add(Notification(officer_id=officer_id, at=at, kind=kind,
                             text=printable(text, limit=MAX_TEXT), subject=subject))


def take(rt: Runtime, actor: Actor) -> list[NotificationView]:
    """This officer's undelivered notifications, oldest first, now marked delivered (the
    newest `MAX_TAKEN`; older undelivered ones are marked too)."""
    n = Notification
    mine = (n.officer_id == actor.officer_id, n.delivered_at.is_(None))
    with rt.sessions() as session:  # the idle case: one read, no write
        if session.scalar(select(n.id).where(*mine).limit(1)) is None:
            return []
    try:
        with rt.transaction() as session:
            rows = list(session.scalars(select(n).where(*mine).order_by(n.id.desc())))
            done = session.execute(
                update(n).where(n.id.in_([r.id for r in rows]), n.delivered_at.is_(None))
                .values(delivered_at=rt.clock()).execution_options(synchronize_session=False))
            if done.rowcount != len(rows):  # type: ignore[attr-defined]
                raise _TakenElsewhere
            return [NotificationView(r.id, r.at, r.kind, r.text, r.subject)
                    for r in reversed(rows[:MAX_TAKEN])]
    except _TakenElsewhere:
        # Another console of the same officer took some meanwhile: it shows those; the
        # rest come with the next call.
        return []


class _TakenElsewhere(Exception):
    """Roll the marking back: someone else marked some of the rows first."""
