"""Officer authentication: login with password + TOTP, session tokens, idle lock and
absolute expiry, step-up codes for sensitive actions, automation tokens.

Every attempt, good or bad, is audited. A failure never says which factor was wrong.
Failures are counted in a transaction of their own, so that the caller's rollback cannot
erase them; after ``max_failures`` the officer is locked for ``lockout``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from polysec_tui.config import Settings
from polysec_tui.crypto import totp
from polysec_tui.crypto.passwords import verify_password
from polysec_tui.db.models import Officer, OfficerSession
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime

SESSION_PREFIX = "polysec_s_"
TOKEN_PREFIX = "polysec_t_"  # noqa: S105 - a prefix that lets scanners spot leaks
AUTH_FAILED = "authentication failed"
# A valid code of a time step already used: say so (it tells nothing of the password),
# so an officer who typed the code twice waits for the next one instead of guessing.
CODE_REUSED = ("authentication failed: this authenticator code was already used; wait "
               "for the next one (each code works once)")


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=15)
    absolute: timedelta = timedelta(hours=12)
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    token_lifetime: timedelta = timedelta(days=90)

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        """The `[sessions]` table of the TOML configuration."""
        section = settings.section("sessions")
        known = {"idle_minutes", "absolute_hours", "max_failures", "lockout_minutes",
                 "token_days"}
        unknown = set(section) - known
        if unknown:
            raise InputError(f"config: unknown [sessions] key(s): {', '.join(sorted(unknown))}")
        for key, value in section.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"config: [sessions] {key} must be a positive integer")
        return cls(
            idle=timedelta(minutes=section.get("idle_minutes", 15)),
            absolute=timedelta(hours=section.get("absolute_hours", 12)),
            max_failures=section.get("max_failures", 5),
            lockout=timedelta(minutes=section.get("lockout_minutes", 15)),
            token_lifetime=timedelta(days=section.get("token_days", 90)),
        )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def officer_secret(rt: Runtime, officer: Officer) -> str | None:
    if officer.totp_secret_enc is None:
        return None
    return rt.cipher.decrypt(officer.totp_secret_enc, table="officers", column="totp_secret",
                             row_id=officer.id)


def check_factors(rt: Runtime, name: str, password: str | None, code: str, *,
                  purpose: str, policy: SessionPolicy) -> Actor:
    """Verify the officer's password (unless None: step-up) and a fresh TOTP code, in a
    transaction of its own. Success consumes the code's time step; failure counts."""
    now = rt.clock()
    outcome = "failed"
    reused = False
    actor: Actor | None = None
    with rt.transaction() as session:
        officer = session.scalars(
            select(Officer).where(Officer.name == name).with_for_update()
        ).first()
        if officer is None:
            verify_password(password or "", None)  # same cost as a real check
        elif officer.locked_until is not None and officer.locked_until > now:
            outcome = "locked"
        elif officer.disabled or officer.role == "automation":
            outcome = "refused"
        else:
            secret = officer_secret(rt, officer)
            step = totp.matching_step(secret, code, now) if secret else None
            password_ok = password is None or verify_password(password, officer.password_hash)
            fresh = step is not None and (officer.totp_last_step is None
                                          or step > officer.totp_last_step)
            if password_ok and fresh:
                outcome = "ok"
                officer.totp_last_step = step
                officer.failed_attempts = 0
                if purpose == "login":
                    officer.last_login_at = now
                actor = Actor(officer.id, officer.name, officer.role)
            else:
                reused = step is not None and not fresh
                if password_ok and reused:
                    outcome = "replayed"
                officer.failed_attempts += 1
                if officer.failed_attempts >= policy.max_failures:
                    officer.locked_until = now + policy.lockout
                    officer.failed_attempts = 0
                    outcome = "locked"
                    reused = False
        rt.audit.append(session, officer=name[:64], action=f"auth.{purpose}", at=now,
                        target=f"officer:{name[:48]}", details={"result": outcome})
    if actor is None:
        raise RefusedError(CODE_REUSED if reused else AUTH_FAILED)
    return actor


def login(rt: Runtime, name: str, password: str, code: str,
          policy: SessionPolicy | None = None) -> tuple[str, Actor]:
    """Password + code; returns a new session token (shown once) and the actor."""
    policy = policy or SessionPolicy.from_settings(rt.settings)
    actor = check_factors(rt, name, password, code, purpose="login", policy=policy)
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    now = rt.clock()
    session_id = uuid.uuid4()
    with rt.transaction() as session:
        session.add(OfficerSession(
            id=session_id, officer_id=actor.officer_id, kind="interactive",
            token_hash=token_hash(token), created_at=now, last_seen_at=now,
            expires_at=now + policy.absolute,
        ))
        rt.audit.append(session, officer=actor.name, action="session.start", at=now,
                        target=f"session:{session_id}")
    return token, Actor(actor.officer_id, actor.name, actor.role, session_id)


def authenticate(rt: Runtime, token: str, policy: SessionPolicy | None = None) -> Actor:
    """The officer behind a session or automation token, refreshing its idle timer."""
    policy = policy or SessionPolicy.from_settings(rt.settings)
    now = rt.clock()
    with rt.transaction() as session:
        row = session.execute(
            select(OfficerSession, Officer)
            .join(Officer, Officer.id == OfficerSession.officer_id)
            .where(OfficerSession.token_hash == token_hash(token))
        ).first()
        if row is None:
            raise RefusedError("not logged in to this database; run `polysec login`")
        record, officer = row
        problem = _session_problem(record, officer, now, policy)
        if problem:
            raise RefusedError(problem)
        record.last_seen_at = now
    return Actor(officer.id, officer.name, officer.role, record.id)


def _session_problem(record: OfficerSession, officer: Officer, now: datetime,
                     policy: SessionPolicy) -> str | None:
    if record.revoked_at is not None:
        return "session ended; run `polysec login`"
    if officer.disabled:
        return f"officer {officer.name} is disabled"
    if now >= record.expires_at:
        return "session expired; run `polysec login`"
    if record.kind == "interactive" and now - record.last_seen_at > policy.idle:
        minutes = int(policy.idle.total_seconds() // 60)
        return f"session locked after {minutes} minutes idle; run `polysec login`"
    return None


def session_state(rt: Runtime, actor: Actor, policy: SessionPolicy | None = None) -> str | None:
    """Why the actor's session can no longer act (None if it can). For the TUI's timer."""
    policy = policy or SessionPolicy.from_settings(rt.settings)
    with rt.sessions() as session:
        row = session.execute(
            select(OfficerSession, Officer)
            .join(Officer, Officer.id == OfficerSession.officer_id)
            .where(OfficerSession.id == actor.session_id)
        ).first()
        if row is None:
            return "session ended"
        record, officer = row
        return _session_problem(record, officer, rt.clock(), policy)


def unlock(rt: Runtime, actor: Actor, password: str, code: str,
           policy: SessionPolicy | None = None) -> None:
    """The TUI's lock screen: password + code of the same officer resume the session."""
    policy = policy or SessionPolicy.from_settings(rt.settings)
    check_factors(rt, actor.name, password, code, purpose="unlock", policy=policy)
    now = rt.clock()
    with rt.transaction() as session:
        record = session.get(OfficerSession, actor.session_id)
        if record is None or record.revoked_at is not None or now >= record.expires_at:
            raise RefusedError("session ended; log in again")
        record.last_seen_at = now


def step_up(rt: Runtime, actor: Actor, code: str, policy: SessionPolicy | None = None) -> None:
    """A fresh code for a sensitive action, even inside a live session."""
    if not code:
        raise RefusedError("this action needs a fresh authenticator code (--code)")
    policy = policy or SessionPolicy.from_settings(rt.settings)
    check_factors(rt, actor.name, None, code, purpose="step_up", policy=policy)


def logout(rt: Runtime, token: str) -> bool:
    now = rt.clock()
    with rt.transaction() as session:
        record = session.scalars(
            select(OfficerSession).where(OfficerSession.token_hash == token_hash(token))
        ).first()
        if record is None or record.revoked_at is not None:
            return False
        record.revoked_at = now
        officer = session.get(Officer, record.officer_id)
        rt.audit.append(session, officer=officer.name if officer else "?",
                        action="session.end", at=now, target=f"session:{record.id}")
    return True


def revoke_all(session: Session, officer_id: uuid.UUID, now: datetime) -> int:
    """End every live session and token of an officer (inside the caller's transaction)."""
    result = session.execute(
        update(OfficerSession)
        .where(OfficerSession.officer_id == officer_id, OfficerSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def create_token(rt: Runtime, actor: Actor, officer_name: str,
                 lifetime: timedelta | None = None) -> tuple[str, uuid.UUID]:
    """An automation token (shown once; only its SHA-256 is stored)."""
    require(actor, "officers.manage")
    policy = SessionPolicy.from_settings(rt.settings)
    now = rt.clock()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = uuid.uuid4()
    with rt.transaction() as session:
        officer = session.scalars(select(Officer).where(Officer.name == officer_name)).first()
        if officer is None:
            raise InputError(f"no officer named {officer_name!r}")
        if officer.role != "automation":
            raise InputError("tokens are for automation officers; people log in")
        expires = now + (lifetime or policy.token_lifetime)
        session.add(OfficerSession(
            id=token_id, officer_id=officer.id, kind="token", token_hash=token_hash(token),
            created_at=now, last_seen_at=now, expires_at=expires,
        ))
        rt.audit.append(session, officer=actor.name, action="token.create", at=now,
                        target=f"officer:{officer.name}",
                        details={"token_id": str(token_id), "expires_at": expires.isoformat()})
    return token, token_id


def revoke_token(rt: Runtime, actor: Actor, token_id: uuid.UUID) -> None:
    require(actor, "officers.manage")
    now = rt.clock()
    with rt.transaction() as session:
        record = session.get(OfficerSession, token_id)
        if record is None or record.kind != "token":
            raise InputError(f"no automation token {token_id}")
        if record.revoked_at is None:
            record.revoked_at = now
        rt.audit.append(session, officer=actor.name, action="token.revoke", at=now,
                        target=f"token:{token_id}")
