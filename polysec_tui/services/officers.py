"""Officers: bootstrap of the first admin, adding, listing, disabling, passwords and the
four-eyes reset of an officer's authenticator."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from polysec_tui.crypto import totp
from polysec_tui.crypto.passwords import check_policy, hash_password
from polysec_tui.db.models import ApprovalRequest, Officer
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services import approvals
from polysec_tui.services.auth import ROLES, Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.sessions import SessionPolicy, check_factors, revoke_all

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class Enrolment:
    """A new authenticator secret, to be shown once to its officer (URI and QR code)."""

    officer: str
    secret: str
    uri: str

    def __repr__(self) -> str:
        return f"Enrolment(officer={self.officer!r}, <secret hidden>)"


@dataclass(frozen=True)
class OfficerView:
    name: str
    role: str
    disabled: bool
    has_totp: bool
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "disabled": self.disabled,
            "has_totp": self.has_totp, "locked_until": self.locked_until,
            "created_at": self.created_at, "last_login_at": self.last_login_at,
        }


def validate_name(name: str) -> str:
    if not 2 <= len(name) <= 64 or not set(name) <= NAME_CHARS:
        raise InputError("officer names are 2-64 characters of a-z, 0-9, '.', '_' and '-'")
    return name


def _new_officer(rt: Runtime, session: Session, name: str, role: str,
                 password: str | None) -> tuple[Officer, Enrolment | None]:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if session.scalars(select(Officer.id).where(Officer.name == name)).first() is not None:
        raise ConflictError(f"an officer named {name!r} exists already")
    officer = Officer(id=uuid.uuid4(), name=name, role=role, created_at=rt.clock(),
                      disabled=False, failed_attempts=0)
    enrolment = None
    if role != "automation":  # automation officers authenticate with tokens only
        if password is None:
            raise InputError("a password is required")
        check_policy(password, name=name)
        officer.password_hash = hash_password(password)
        enrolment = _enrol(rt, officer)
    session.add(officer)
    return officer, enrolment


def _enrol(rt: Runtime, officer: Officer) -> Enrolment:
    secret = totp.new_secret()
    officer.totp_secret_enc = rt.cipher.encrypt(secret, table="officers", column="totp_secret",
                                                row_id=officer.id)
    officer.totp_last_step = None
    return Enrolment(officer.name, secret, totp.provisioning_uri(secret, officer.name))


def has_officers(rt: Runtime) -> bool:
    with rt.sessions() as session:
        return bool(session.scalar(select(func.count()).select_from(Officer)))


def bootstrap_admin(rt: Runtime, name: str, password: str) -> Enrolment:
    """The first admin of an empty console (from `polysec init`)."""
    validate_name(name)
    with rt.transaction() as session:
        if session.scalar(select(func.count()).select_from(Officer)):
            raise ConflictError("officers exist already; an admin adds the others")
        _officer, enrolment = _new_officer(rt, session, name, "admin", password)
        rt.audit.append(session, officer=name, action="officer.bootstrap", at=rt.clock(),
                        target=f"officer:{name}", details={"role": "admin"})
    assert enrolment is not None
    return enrolment


def add_officer(rt: Runtime, actor: Actor, name: str, role: str,
                password: str | None) -> Enrolment | None:
    require(actor, "officers.manage")
    validate_name(name)
    with rt.transaction() as session:
        _officer, enrolment = _new_officer(rt, session, name, role, password)
        rt.audit.append(session, officer=actor.name, action="officer.add", at=rt.clock(),
                        target=f"officer:{name}", details={"role": role})
    return enrolment


def list_officers(rt: Runtime, actor: Actor) -> list[OfficerView]:
    require(actor, "read")
    with rt.sessions() as session:
        return [
            OfficerView(o.name, o.role, o.disabled, o.totp_secret_enc is not None,
                        o.locked_until, o.created_at, o.last_login_at)
            for o in session.scalars(select(Officer).order_by(Officer.name))
        ]


def _get(session: Session, name: str) -> Officer:
    officer = session.scalars(select(Officer).where(Officer.name == name)).first()
    if officer is None:
        raise InputError(f"no officer named {name!r}")
    return officer


def set_disabled(rt: Runtime, actor: Actor, name: str, disabled: bool) -> int:
    """Disable (ending every session and token at once) or enable an officer."""
    require(actor, "officers.manage")
    if disabled and name == actor.name:
        raise RefusedError("an admin cannot disable themselves")
    now = rt.clock()
    with rt.transaction() as session:
        officer = _get(session, name)
        officer.disabled = disabled
        ended = revoke_all(session, officer.id, now) if disabled else 0
        if not disabled:
            officer.locked_until = None
            officer.failed_attempts = 0
        rt.audit.append(session, officer=actor.name,
                        action="officer.disable" if disabled else "officer.enable", at=now,
                        target=f"officer:{name}", details={"sessions_ended": ended})
    return ended


def change_password(rt: Runtime, actor: Actor, current: str, new: str, code: str) -> None:
    """An officer changes their own password: current password and a fresh code."""
    check_policy(new, name=actor.name)
    policy = SessionPolicy.from_settings(rt.settings)
    check_factors(rt, actor.name, current, code, purpose="passwd", policy=policy)
    with rt.transaction() as session:
        officer = _get(session, actor.name)
        officer.password_hash = hash_password(new)
        rt.audit.append(session, officer=actor.name, action="officer.passwd", at=rt.clock(),
                        target=f"officer:{actor.name}")


# -------------------------------------------------------- four-eyes authenticator reset


def request_totp_reset(rt: Runtime, actor: Actor, name: str, reason: str) -> uuid.UUID:
    """An admin asks; a different admin approves with a fresh code (four-eyes)."""
    require(actor, "officers.manage")
    with rt.sessions() as session:
        target = _get(session, name)
        if target.role == "automation":
            raise InputError("automation officers have no authenticator")
    return approvals.open_request(rt, actor, "officer.totp_reset", reason,
                                  {"officer": name})


def _execute_totp_reset(rt: Runtime, session: Session, request: ApprovalRequest,
                        approver: Actor) -> dict[str, Any]:
    officer = _get(session, str(request.payload["officer"]))
    enrolment = _enrol(rt, officer)
    officer.failed_attempts = 0
    officer.locked_until = None
    ended = revoke_all(session, officer.id, rt.clock())
    # The new secret goes back to the approving admin once, for the hand-over; it is
    # never written to the audit log.
    return {"enrolment": enrolment, "sessions_ended": ended}


approvals.register(approvals.ApprovalKind(
    name="officer.totp_reset", min_role="admin", execute=_execute_totp_reset,
    describe=lambda payload: f"reset the authenticator of officer {payload.get('officer')}",
))
