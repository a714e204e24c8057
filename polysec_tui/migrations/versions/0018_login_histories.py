"""One row of login history an account (``login_histories``) instead of one row per
account, feature and value (``login_profiles``): an incremental analysis reads and
writes one row for each account it touches, not a dozen, and finds each account's last
located login there instead of in ``login_events`` (issue 18's backfill budgets). The
stored profiles are converted, not recomputed; the last located login of each account
up to the analysis checkpoint is looked up once.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 15:00:00.000000
"""
import calendar
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here, not imported from the models, so this revision never changes.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BATCH = 1000

profiles = sa.table(
    "login_profiles", sa.column("account_id", sa.Uuid()), sa.column("feature", sa.String()),
    sa.column("value", sa.String()), sa.column("count", sa.BigInteger()),
    sa.column("last_seen_at", UTC_DATETIME))
histories = sa.table(
    "login_histories", sa.column("account_id", sa.Uuid()),
    sa.column("logins", sa.BigInteger()), sa.column("features", JSON),
    sa.column("last_login_at", UTC_DATETIME), sa.column("last_located", JSON))
events = sa.table(
    "login_events", sa.column("id", sa.BigInteger()), sa.column("account_id", sa.Uuid()),
    sa.column("at", UTC_DATETIME), sa.column("success", sa.Boolean()),
    sa.column("asn", sa.BigInteger()), sa.column("latitude", sa.Float()),
    sa.column("longitude", sa.Float()),
    *(sa.column(name, sa.String()) for name in (
        "ip", "country", "city", "browser", "os", "device_type", "device_id")))
checkpoints = sa.table("analysis_checkpoints", sa.column("name"), sa.column("login_id"))
LOCATED = ("id", "at", "ip", "asn", "country", "city", "browser", "os", "device_type",
           "device_id", "latitude", "longitude")


def _seconds(at: datetime) -> int:
    return calendar.timegm(at.utctimetuple())  # stored naive, in UTC


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _accounts(conn: sa.Connection, table: sa.TableClause) -> Iterator[list[Any]]:
    """The table's accounts, a page at a time (every result read whole before the next
    statement: MariaDB's driver cannot interleave a streamed read and writes)."""
    last = None
    while True:
        stmt = sa.select(table.c.account_id).distinct().order_by(table.c.account_id)
        if last is not None:
            stmt = stmt.where(table.c.account_id > last)
        page = list(conn.execute(stmt.limit(BATCH)).scalars())
        if not page:
            return
        yield page
        last = page[-1]


def _last_located(conn: sa.Connection, page: list[Any], upto: int) -> dict[Any, list[Any]]:
    """Each account's last located successful login ``id <= upto`` (by time, then id),
    in the stored form."""
    ranked = sa.select(
        events.c.account_id, *(events.c[name] for name in LOCATED),
        sa.func.row_number().over(partition_by=events.c.account_id,
                                  order_by=(events.c.at.desc(), events.c.id.desc()))
        .label("rank"),
    ).where(events.c.account_id.in_(page), events.c.success.is_(True),
            events.c.id <= upto, events.c.latitude.is_not(None),
            events.c.longitude.is_not(None)).subquery()
    found: dict[Any, list[Any]] = {}
    for row in conn.execute(sa.select(ranked).where(ranked.c.rank == 1)).all():
        values = list(row[1:-1])
        values[1] = values[1].replace(tzinfo=UTC).isoformat()  # stored naive, in UTC
        found[row[0]] = values
    return found


def _histories(conn: sa.Connection) -> Iterator[dict[str, Any]]:
    upto = conn.execute(sa.select(checkpoints.c.login_id)
                        .where(checkpoints.c.name == "logins")).scalar() or 0
    for page in _accounts(conn, profiles):
        found: dict[Any, dict[str, Any]] = {}
        for acc, feature, value, count, seen in conn.execute(
                sa.select(profiles).where(profiles.c.account_id.in_(page))).all():
            history = found.setdefault(acc, {
                "account_id": acc, "logins": 0, "features": {},
                "last_login_at": datetime(1970, 1, 1), "last_located": None})
            if feature == "n":
                history["logins"], history["last_login_at"] = int(count), seen
            else:
                history["features"].setdefault(feature, {})[value] = [int(count),
                                                                      _seconds(seen)]
        located = _last_located(conn, page, upto)
        for acc, history in found.items():
            history["last_located"] = located.get(acc)
        yield from found.values()


def upgrade() -> None:
    op.create_table(
        "login_histories",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("logins", sa.BigInteger(), nullable=False),
        sa.Column("features", JSON, nullable=False),
        sa.Column("last_login_at", UTC_DATETIME, nullable=False),
        sa.Column("last_located", JSON, nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_login_histories_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_login_histories")),
    )
    conn = op.get_bind()
    for batch in _batches(_histories(conn)):
        conn.execute(sa.insert(histories), batch)
    op.drop_table("login_profiles")


def downgrade() -> None:
    op.create_table(
        "login_profiles",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("feature", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_login_profiles_account_id_accounts")),
        sa.PrimaryKeyConstraint("account_id", "feature", "value",
                                name=op.f("pk_login_profiles")),
    )
    conn = op.get_bind()

    def rows() -> Iterator[dict[str, Any]]:
        for page in _accounts(conn, histories):
            for acc, logins, features, last, _located in conn.execute(
                    sa.select(histories).where(histories.c.account_id.in_(page))).all():
                yield {"account_id": acc, "feature": "n", "value": "*", "count": logins,
                       "last_seen_at": last}
                for feature, values in features.items():
                    for value, (count, seen) in values.items():
                        yield {"account_id": acc, "feature": feature, "value": value,
                               "count": count,
                               "last_seen_at": datetime.fromtimestamp(seen, UTC)
                               .replace(tzinfo=None)}

    insert: Any = sa.insert(profiles)
    if conn.dialect.name in ("mysql", "mariadb"):
        # Values that differ only in case or trailing spaces are one key under MariaDB's
        # collation (they are distinct in the JSON): add them up.
        insert = mysql.insert(profiles)
        insert = insert.on_duplicate_key_update(
            count=profiles.c.count + insert.inserted.count,
            last_seen_at=sa.func.greatest(profiles.c.last_seen_at,
                                          insert.inserted.last_seen_at))
    for batch in _batches(rows()):
        conn.execute(insert, batch)
    op.drop_table("login_histories")
