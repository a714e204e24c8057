"""Holds on an account's withdrawals (a 2FA reset's security hold, a freeze): the one
answer to "is this hold in force?", for the review queue, screening, the 2FA reset and
the protective actions alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import QueryableAttribute

from polysec_tui.db.models import Hold


def hold_in_force(at: datetime | ColumnElement[Any] | QueryableAttribute[Any] | None, *,
                  kind: str | None = None) -> ColumnElement[bool]:
    """SQL: the hold is in force at ``at`` (a time, or a column such as a withdrawal's
    request time): placed by then, not released before it, not expired. With ``at`` None:
    placed and not released, whatever the time (a freeze has no expiry)."""
    conditions: list[ColumnElement[bool]] = []
    if at is None:
        conditions.append(Hold.released_at.is_(None))
    else:
        conditions += [Hold.created_at <= at,
                       or_(Hold.released_at.is_(None), Hold.released_at > at),
                       or_(Hold.expires_at.is_(None), Hold.expires_at > at)]
    if kind is not None:
        conditions.append(Hold.kind == kind)
    return and_(*conditions)
