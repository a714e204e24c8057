"""Ids as officers type them: a whole UUID, or its first 8 or more characters, as the
console shows them ("4cb6c42e"). A prefix that names more than one thing is refused
with the candidates, so the officer types more of it; one that names nothing is refused
as an unknown id."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute

from polysec_tui.db.models import ApprovalRequest, OfficerSession
from polysec_tui.errors import InputError
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import printable

MIN_PREFIX = 8
SHOWN_CANDIDATES = 5
_UUID_CHARS = frozenset("0123456789abcdef-")


def resolve(rt: Runtime, column: InstrumentedAttribute[Any], text: str, what: str,
            *where: Any) -> uuid.UUID:
    """The one id of ``column`` (rows matching ``where``) that ``text`` is or starts."""
    raw = text.strip().lower()
    try:
        return uuid.UUID(raw)
    except ValueError:
        pass
    if len(raw) < MIN_PREFIX or not set(raw) <= _UUID_CHARS:
        raise InputError(f"{printable(text, limit=80)!r} is not a {what} id (a UUID, or "
                         f"its first {MIN_PREFIX} or more characters)")
    with rt.sessions() as session:
        # The ids are compared as text here: UUID columns are stored differently on
        # each engine, and these tables hold hundreds of rows, not millions.
        found = sorted(str(i) for i in session.scalars(select(column).where(*where))
                       if str(i).startswith(raw))
    if not found:
        raise InputError(f"no {what} {raw}")
    if len(found) > 1:
        listed = ", ".join(found[:SHOWN_CANDIDATES])
        more = " …" if len(found) > SHOWN_CANDIDATES else ""
        raise InputError(f"{raw} matches {len(found)} {what}s ({listed}{more}); type more "
                         "of the id")
    return uuid.UUID(found[0])


def request_id(rt: Runtime, text: str) -> uuid.UUID:
    """A four-eyes request (every kind: withdrawals, 2FA resets, unfreezes, grants)."""
    return resolve(rt, ApprovalRequest.id, text, "request")


def token_id(rt: Runtime, text: str) -> uuid.UUID:
    """An automation token."""
    return resolve(rt, OfficerSession.id, text, "automation token",
                   OfficerSession.kind == "token")
