"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    LargeBinary,
    Numeric,
    String,
    TypeDecorator,
    func,
    type_coerce,
)
from sqlalchemy.dialects import mysql, postgresql

from polysec_tui.text import canonical_decimal

# Fractional seconds survive on MariaDB only with an explicit precision.
_DATETIME = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, naive UTC in the database (portable everywhere)."""

    impl = _DATETIME
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, one fused function instead of process_bind_param followed by the
        dialect's dict-based DATETIME formatter (bulk ingest binds millions of times).
        Used only when it produces exactly what the two-step chain produces."""
        chained = super().bind_processor(dialect)
        if dialect.name != "sqlite" or chained is None:
            return chained

        def fused(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

        probes = (
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            datetime(999, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
        )
        if all(fused(p) == chained(p) for p in probes):
            return fused
        return chained

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(parsed, datetime)
        return parsed.replace(tzinfo=UTC)


class Amount(TypeDecorator[Decimal]):
    """Exact decimal amounts: NUMERIC(38, 18) on PostgreSQL and MariaDB.

    SQLite's NUMERIC keeps only 15 significant digits, so there the canonical decimal
    string is stored instead; SQL arithmetic on SQLite casts it (see `db.sql.amount_real`).
    """

    impl = Numeric(38, 18)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return format(value, "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return canonical_decimal(Decimal(value))


# The largest value of a BIGINT key on every engine.
MAX_ID = 2**63 - 1


def record_id(text: str) -> int | None:
    """``text`` as a row id if it is one: 1 to 19 ASCII digits within BIGINT (a longer
    number, or one in other scripts' digits, is no id: the database would reject it)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


# A destination address, compared exactly: MariaDB's default collation would fold case
# and accents (so one address would block or match another), so there it is binary.
Address = String(128).with_variant(
    mysql.VARCHAR(128, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")

class _AsIs:
    """Bytes bound as they are: every driver here (sqlite3, psycopg, PyMySQL) takes
    ``bytes`` for a binary parameter, and the DB-API ``Binary`` wrapper SQLAlchemy
    puts around each value (sqlite3's memoryview, PyMySQL's copy) cost rotation and
    ingest about a microsecond a value."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class _Bytes(_AsIs, LargeBinary):
    pass


class _Blob(_AsIs, mysql.BLOB):
    pass


class _VarBinary(_AsIs, mysql.VARBINARY):
    pass


# Ciphertexts (F1) and short binary digests.
Ciphertext = _Bytes().with_variant(_Blob(), "mysql", "mariadb")
BlindIndexBytes = _Bytes(16).with_variant(_VarBinary(16), "mysql", "mariadb")
Json = JSON().with_variant(postgresql.JSONB(), "postgresql")


def uuid_raw(column: Any, dialect: str) -> tuple[Any, Callable[[Any], bytes]]:
    """A UUID column as the bulk paths read it (millions of rows): the driver's value
    and the function that makes its 16 bytes, instead of a ``uuid.UUID`` a row.
    PostgreSQL gives the 16 bytes (``uuid_send``); SQLite the 32 hex digits it stores,
    MariaDB its UUID type's text (with dashes)."""
    if dialect == "postgresql":
        return type_coerce(func.uuid_send(column), LargeBinary), bytes
    if dialect == "sqlite":
        return type_coerce(column, String), bytes.fromhex
    return type_coerce(column, String), _dashed_hex


def _dashed_hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("-", ""))
