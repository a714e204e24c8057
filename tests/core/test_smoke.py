from sqlalchemy import select

from polysec_tui.db.models import Account


def test_runtime_connects(runtime):
    with runtime.sessions() as s:
        assert s.scalars(select(Account)).all() == []
