"""The client of the 2FA reset tests: account A1 with an authenticator (CLIENT_SECRET),
platform sessions, a withdrawal and a login anomaly; the identity proofs an analyst
records; and a runtime on a movable clock with extra configuration."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pyotp
from sqlalchemy import insert, select

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Account, ClientSession, LoginAnomaly, LoginEvent
from polysec_tui.services.clients.twofa import Proof
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.helpers import account, ingest, login, security_event, withdrawal
from tests.support.officers import MovableClock

CLIENT_SECRET = pyotp.random_base32(32)
PROOF = Proof(id_document="IDV-2026-0042", liveness="LIVE-77", history_questions="passed")


def make_runtime(settings: Any, clock: MovableClock,
                 options: dict[str, Any] | None = None) -> Runtime:
    if options is not None:
        settings = dataclasses.replace(settings, options=options)
    return Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                   clock=clock)


def make_client(rt: Runtime) -> None:
    """Account A1 with an authenticator, three platform sessions (one ended already), a
    pending withdrawal, a recent password change and a login anomaly; A2 enrolled too."""
    ingest(rt, "accounts",
           account("A1", totp_secret=CLIENT_SECRET, totp_enrolled_at="2025-03-01T10:00:00Z"),
           account("A2", totp_secret=pyotp.random_base32(32),
                   totp_enrolled_at="2025-03-02T10:00:00Z"),
           account("A3"))
    ingest(rt, "logins", login("L1", "A1"))
    ingest(rt, "withdrawals", withdrawal("W1", "A1"))
    ingest(rt, "security-events", security_event("S1", "A1"),
           security_event("S2", "A1", kind="2fa_enabled", at="2025-03-01T10:00:00Z"))
    with rt.transaction() as s:
        a1 = s.scalar(select(Account.id).where(Account.external_id == "A1"))
        login_id = s.scalar(select(LoginEvent.id).where(LoginEvent.external_id == "L1"))
        s.execute(insert(ClientSession), [
            {"external_id": f"sess-{n}", "account_id": a1, "created_at": FIXED_NOW
             - timedelta(days=1), "last_seen_at": None, "ip": "203.0.113.7",
             "device_id": "dev-1", "revoked_at": None, "revoked_reason": None}
            for n in (1, 2)
        ] + [{"external_id": "sess-old", "account_id": a1, "created_at": FIXED_NOW
              - timedelta(days=9), "last_seen_at": None, "ip": None, "device_id": None,
              "revoked_at": FIXED_NOW - timedelta(days=8), "revoked_reason": "logout"}])
        s.execute(insert(LoginAnomaly), [{
            "kind": "new_country", "severity": "high", "score": 0.9, "account_id": a1,
            "login_event_id": login_id, "at": FIXED_NOW - timedelta(hours=2),
            "source_ip": "203.0.113.7", "source_asn": 3320,
            "explanation": "first login from DE", "details": {}, "detected_at": FIXED_NOW,
        }])
