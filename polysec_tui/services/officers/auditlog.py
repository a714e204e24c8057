"""The officer audit log as officers and commands use it: verify and checkpoint the
chain of a console's database, read its newest entries. The chain itself (appending,
verification, checkpoints) is `services.auditchain`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polysec_tui.services.auditchain import (
    VERIFY_BATCH,
    AuditEntryView,
    Checkpoint,
    VerifyReport,
    read_checkpoint,
    tail,
)
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime


def verify(rt: Runtime, checkpoint: Checkpoint | None = None, *,
           batch_size: int = VERIFY_BATCH) -> VerifyReport:
    """Verify the whole log of ``rt``'s database in one read snapshot."""
    return rt.audit.verify(rt.engine, checkpoint, batch_size=batch_size)


def checkpoint(rt: Runtime, *, verify_first: bool = True) -> Checkpoint:
    """A signed head of ``rt``'s log (verified first unless told otherwise)."""
    return rt.audit.checkpoint(rt.engine, rt.clock(), verify_first=verify_first)


def load_checkpoint(rt: Runtime, path: Path | str) -> Checkpoint:
    return read_checkpoint(path, rt.keyring.audit_key)


# ------------------------------------------------------ officer-facing (the console)


def recent(rt: Runtime, actor: Actor, n: int = 200, *, officer: str | None = None,
           action: str | None = None) -> list[AuditEntryView]:
    """The newest ``n`` entries, newest first, for an officer allowed to read the log."""
    require(actor, "auditlog.read")
    with rt.sessions() as session:
        return tail(session, n, officer=officer or None, action=action or None)


def verify_for(rt: Runtime, actor: Actor) -> VerifyReport:
    """`verify` on behalf of an officer allowed to read the log."""
    require(actor, "auditlog.read")
    return verify(rt)


def details_summary(details: Mapping[str, Any], limit: int = 120) -> str:
    """``key=value`` pairs of an entry's details on one line (still untrusted text)."""
    text = ", ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value, sort_keys=True)}"
        for key, value in sorted(details.items())
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"
