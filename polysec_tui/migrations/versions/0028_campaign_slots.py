"""distributed_attack judges an hour starting at every 10 minutes, not clock hours: its
checkpoint (the ``campaigns`` row of ``analysis_checkpoints``) counts 10-minute slots
since the epoch instead of hours. Clock hour h was the next to judge; the sliding hours
that straddle the start of the last one judged (h - 1) were never judged, so the next
to judge is that clock hour itself, once more (findings are unique): none is skipped.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 08:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0028'
down_revision: str | None = '0027'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLOTS_PER_HOUR = 6
CHECKPOINTS = sa.table("analysis_checkpoints", sa.column("name", sa.String),
                       sa.column("login_id", sa.BigInteger))
CAMPAIGNS = CHECKPOINTS.c.name == "campaigns"


def upgrade() -> None:
    op.execute(CHECKPOINTS.update().where(CAMPAIGNS, CHECKPOINTS.c.login_id > 0).values(
        login_id=(CHECKPOINTS.c.login_id - 1) * SLOTS_PER_HOUR - (SLOTS_PER_HOUR - 1)))


def downgrade() -> None:
    # The clock hour of the next sliding hour's start, rounded up: none skipped (the
    # last clock hour may be judged once more; findings are unique).
    bind = op.get_bind()
    for (slot,) in bind.execute(sa.select(CHECKPOINTS.c.login_id).where(
            CAMPAIGNS, CHECKPOINTS.c.login_id > 0)).all():
        bind.execute(CHECKPOINTS.update().where(CAMPAIGNS).values(
            login_id=-(-int(slot) // SLOTS_PER_HOUR)))
