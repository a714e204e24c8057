"""Everything a service needs, built once per command or app: engine, sessions, keyring,
field cipher, blind index, configuration and a clock (injected so tests can pin time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from polysec_tui.config import Settings
from polysec_tui.crypto.blind_index import BlindIndex
from polysec_tui.crypto.fields import FieldCipher
from polysec_tui.crypto.keyring import Keyring, load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import (
    WRITE_OPTION,
    check_connection,
    make_engine,
    redact,
    session_factory,
)
from polysec_tui.db.models import DatabaseInfo, KeyUsage
from polysec_tui.errors import InputError
from polysec_tui.services.auditchain import AuditLog

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    keyring: Keyring
    clock: Clock = utc_now
    sessions: sessionmaker[Session] = field(init=False)
    cipher: FieldCipher = field(init=False)
    blind_index: BlindIndex = field(init=False)
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = session_factory(self.engine)
        self.cipher = FieldCipher(self.keyring)
        self.blind_index = BlindIndex(self.keyring.blind_index_key)
        self.audit = AuditLog(self.keyring.audit_key)

    @property
    def database_label(self) -> str:
        return redact(self.engine.url)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction per action: commit on success, roll back on any error. Field
        key usage is counted in the same transaction as the encryptions it counts."""
        with self.sessions() as session, session.begin():
            session.connection(execution_options={WRITE_OPTION: True})
            self.cipher.take_usage()  # discard counts of an earlier, rolled back action
            yield session
            record_key_usage(session, self.cipher.take_usage())

    def is_demo(self) -> bool:
        with self.sessions() as session:
            value = session.get(DatabaseInfo, "demo")
        return value is not None and value.value == "true"


def record_key_usage(session: Session, usage: dict[int, int]) -> None:
    for key_id, count in usage.items():
        updated = session.execute(
            update(KeyUsage)
            .where(KeyUsage.key_id == key_id)
            .values(encryptions=KeyUsage.encryptions + count)
        )
        if updated.rowcount == 0:  # type: ignore[attr-defined]
            session.add(KeyUsage(key_id=key_id, encryptions=count))


def key_usage(session: Session) -> dict[int, int]:
    return {k: n for k, n in session.execute(select(KeyUsage.key_id, KeyUsage.encryptions))}


def open_runtime(
    settings: Settings, *, clock: Clock = utc_now, require_schema: bool = True
) -> Runtime:
    """Connect, load the keyring and check the schema is current; each failure is one line."""
    engine = make_engine(settings.db_url)
    check_connection(engine)
    keyring = load_keyring(settings.keyring_path)
    if require_schema and not migrate.schema_is_current(engine):
        current = migrate.current_revision(engine)
        head = migrate.head_revision()
        if current is None:
            raise InputError(
                f"database {redact(engine.url)} has no polysec schema; run `polysec init`"
            )
        if current != head:
            raise InputError(
                f"database schema is at revision {current}, this polysec needs {head}; "
                "run `polysec db upgrade`"
            )
    return Runtime(settings, engine, keyring, clock)
