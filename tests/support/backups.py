"""Backups for tests: a [backup] configuration with a trusted signing key, the database's
contents to compare, a new database to restore into, and a forger of backup files."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from polysec_tui.backup.envelope import EnvelopeWriter, Identity, SigningKey, Trust, open_file
from polysec_tui.db.engine import parse_url
from polysec_tui.db.models import Base
from polysec_tui.services.operations import backups
from polysec_tui.services.runtime import Runtime


def backup_options(tmp_path: Path, identity: Identity, **extra: Any) -> dict[str, Any]:
    """A [backup] table for tests: a directory, the identity's recipient, and this
    host's signing key (written 0600 under tmp_path), which is also the trusted signer."""
    key_path = tmp_path / "signing.key"
    if key_path.exists():
        signing = SigningKey.load(key_path)
    else:
        signing = SigningKey.generate()
        signing.write_new(key_path)
    return {"backup": {"dir": str(tmp_path / "backups"),
                       "recipients": [str(identity.recipient)],
                       "signing_key": str(key_path), "signers": [str(signing.signer)],
                       **extra}}


def backup_toml(options: dict[str, Any]) -> str:
    """The same [backup] table as TOML, for commands run in a subprocess (a JSON string
    or list of strings is a TOML one)."""
    lines = ["[backup]", *(f"{key} = {json.dumps(value)}"
                           for key, value in options["backup"].items())]
    return "\n".join(lines) + "\n"


def trust_of(rt: Runtime) -> Trust:
    return backups.BackupConfig.from_settings(rt.settings).trust()


def contents(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    out = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns)
            out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
    return out


def new_database_url(live: str, tmp_path: Path) -> str:
    url = parse_url(live)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path / 'restored.db'}"
    return url.set(database=f"polysec_rt_{uuid.uuid4().hex[:10]}").render_as_string(
        hide_password=False)


def forge(source: Path, identity: Identity, trust: Trust, out: Path, *,
          signing_key: SigningKey | None, version: int = 3, backup_id: bytes | None = None,
          edit: Callable[[bytes], bytes] | None = None) -> Path:
    """A new file with the payload and manifest of ``source``: what a holder of the
    recipient public key can write (any signing key but the host's)."""
    payload = bytearray()
    opened = open_file(source, identity, payload.extend, trust=trust)
    data = bytes(payload) if edit is None else edit(bytes(payload))
    with out.open("wb") as fh:
        writer = EnvelopeWriter(fh, [identity.recipient], opened.header.meta,
                                signing_key=signing_key, version=version,
                                backup_id=backup_id)
        writer.write(data)
        writer.finish(opened.manifest)
    return out
