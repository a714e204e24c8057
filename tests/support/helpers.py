"""Small builders of ingest records shared by the tests."""

from __future__ import annotations

import io
import json
from typing import Any

from polysec_tui.services.feed.ingest import Ingestor, IngestReport, ingest_stream
from polysec_tui.services.runtime import Runtime


def account(ext: str = "A1", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": ext,
        "created_at": "2025-01-01T00:00:00Z",
        "email": f"{ext.lower()}.doe@example.com",
        "full_name": f"Jane {ext} Doe",
        "phone": "+49 170 1234512",
        "date_of_birth": "1985-04-12",
        "address": "Hauptstrasse 5, 10115 Berlin",
        "country": "DE",
    }
    rec.update(extra)
    return rec


def login(ext: str, acct: str = "A1", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": ext, "account": acct, "at": "2026-11-20T10:00:00Z", "success": True,
        "ip": "203.0.113.7", "asn": 3320, "country": "DE", "city": "Berlin",
        "lat": 52.52, "lon": 13.405, "user_agent": "Mozilla/5.0", "device_id": "dev-1",
    }
    rec.update(extra)
    return rec


def withdrawal(ext: str, acct: str = "A1", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": ext, "account": acct, "at": "2026-11-20T11:00:00Z", "asset": "BTC",
        "amount": "0.25", "address": "bc1qexampleaddress", "ip": "203.0.113.7",
    }
    rec.update(extra)
    return rec


def security_event(ext: str, acct: str = "A1", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": ext, "account": acct, "at": "2026-11-20T09:00:00Z",
                           "kind": "password_change"}
    rec.update(extra)
    return rec


def jsonl(*records: dict[str, Any] | str) -> bytes:
    return b"".join(
        (r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in records
    )


def ingest(rt: Runtime, kind: str, *records: dict[str, Any] | str,
           skip_bad: bool = False) -> IngestReport:
    return ingest_stream(rt, kind, io.BytesIO(jsonl(*records)), skip_bad=skip_bad)


def ingest_records(rt: Runtime, kind: str, records: list[dict[str, Any]]) -> IngestReport:
    return Ingestor(rt, kind).run(enumerate(records, 1))
