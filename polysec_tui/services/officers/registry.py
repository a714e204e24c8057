"""Officers: the first admin, adding, roles, disabling, passwords, and the privilege
grants that need a second pair of eyes.

A privilege grant is what could let one officer act as two: creating an officer with a
role that can approve, raising a role, re-enabling a disabled officer, a new
authenticator or password. Each needs the asking admin's fresh code and the approval of a
different senior or admin (`approvals`), who must be independent of the asker
(`approvals.independence`). Whoever asks for a new officer or new credentials receives
them for the hand-over (the authenticator is shown to the asker, once); the approver only
lets them take effect, so neither officer alone ends up holding another's credentials
with the power to use them for their own requests. The one exception is the set-up: the
admin of `polysec init` adds the second admin directly, once (docs/officers.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from polysec_tui.crypto import totp
from polysec_tui.crypto.passwords import check_policy, hash_password
from polysec_tui.db.models import ApprovalRequest, Officer, OfficerGrant
from polysec_tui.errors import ConflictError, InputError, RefusedError
from polysec_tui.services.officers import approvals
from polysec_tui.services.officers.auth import PERMISSIONS, ROLES, SENIOR_UP, Actor, require
from polysec_tui.services.officers.sessions import SessionPolicy, check_factors, revoke_all, step_up
from polysec_tui.services.runtime import Runtime

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
class Granted:
    """What asking for a grant gave back: the request that a second officer must
    approve (None when it took effect at once) and, for a new officer or authenticator,
    the enrolment to hand over."""

    request_id: uuid.UUID | None
    enrolment: Enrolment | None = None


@dataclass(frozen=True)
class OfficerView:
    name: str
    role: str
    disabled: bool
    has_totp: bool
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None
    granted_by: tuple[str, ...] = ()  # who asked for this officer's privilege grants

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "disabled": self.disabled,
            "has_totp": self.has_totp, "locked_until": self.locked_until,
            "created_at": self.created_at, "last_login_at": self.last_login_at,
            "granted_by": list(self.granted_by),
        }


def validate_name(name: str) -> str:
    if not 2 <= len(name) <= 64 or not set(name) <= NAME_CHARS:
        raise InputError("officer names are 2-64 characters of a-z, 0-9, '.', '_' and '-'")
    return name


def permissions(role: str) -> frozenset[str]:
    return frozenset(p for p, roles in PERMISSIONS.items() if role in roles)


def is_grant(old: str | None, new: str) -> bool:
    """A role change is a grant when the new role may do anything the old one may not."""
    return bool(permissions(new) - (permissions(old) if old else frozenset()))


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")


def _enrol(rt: Runtime, officer: Officer, secret: str | None = None) -> Enrolment:
    secret = secret or totp.new_secret()
    officer.totp_secret_enc = rt.cipher.encrypt(secret, table="officers", column="totp_secret",
                                                row_id=officer.id)
    officer.totp_last_step = None
    return Enrolment(officer.name, secret, totp.provisioning_uri(secret, officer.name))


def _new_enrolment(name: str) -> Enrolment:
    secret = totp.new_secret()
    return Enrolment(name, secret, totp.provisioning_uri(secret, name))


def _insert(rt: Runtime, session: Session, name: str, role: str, password_hash: str | None,
            secret: str | None) -> Officer:
    if session.scalars(select(Officer.id).where(Officer.name == name)).first() is not None:
        raise ConflictError(f"an officer named {name!r} exists already")
    officer = Officer(id=uuid.uuid4(), name=name, role=role, created_at=rt.clock(),
                      disabled=False, failed_attempts=0, password_hash=password_hash)
    if secret is not None:
        _enrol(rt, officer, secret)
    session.add(officer)
    try:
        session.flush()
    except IntegrityError:  # another console added the same name a moment ago
        raise ConflictError(f"an officer named {name!r} exists already") from None
    return officer


def _grant(session: Session, officer: Officer, kind: str, at: datetime, *,
           requested_by: uuid.UUID | None, approved_by: uuid.UUID | None = None,
           request_id: uuid.UUID | None = None) -> None:
    session.add(OfficerGrant(id=uuid.uuid4(), officer_id=officer.id, kind=kind,
                             role=officer.role, requested_by=requested_by,
                             approved_by=approved_by, request_id=request_id, at=at))


def _password_hash(role: str, name: str, password: str | None) -> str | None:
    if role == "automation":  # automation officers authenticate with tokens only
        return None
    if password is None:
        raise InputError("a password is required")
    check_policy(password, name=name)
    return hash_password(password)


def has_officers(rt: Runtime) -> bool:
    with rt.sessions() as session:
        return bool(session.scalar(select(func.count()).select_from(Officer)))


def bootstrap_admin(rt: Runtime, name: str, password: str) -> Enrolment:
    """The first admin of an empty console (from `polysec init`)."""
    validate_name(name)
    password_hash = _password_hash("admin", name, password)
    enrolment = _new_enrolment(name)
    with rt.transaction() as session:
        if session.scalar(select(func.count()).select_from(Officer)):
            raise ConflictError("officers exist already; an admin adds the others")
        officer = _insert(rt, session, name, "admin", password_hash, enrolment.secret)
        _grant(session, officer, "init", rt.clock(), requested_by=None)
        rt.audit.append(session, officer=name, action="officer.bootstrap", at=rt.clock(),
                        target=f"officer:{name}", details={"role": "admin"})
    return enrolment


def seed_officers(rt: Runtime, staff: Iterable[tuple[str, str, str | None]],
                  at: datetime) -> dict[str, Enrolment]:
    """Officers written straight into a database that polysec fills itself (the demo's,
    a test's), as if created at ``at`` by nobody in particular: no four-eyes. Reached
    only through `polysec demo`, which fills an empty database and marks it as the
    demo's; no officer command calls it."""
    made: dict[str, Enrolment] = {}
    with rt.transaction() as session:
        for name, role, password in staff:
            validate_name(name)
            _check_role(role)
            enrolment = None if role == "automation" else _new_enrolment(name)
            officer = _insert(rt, session, name, role, _password_hash(role, name, password),
                              enrolment.secret if enrolment else None)
            officer.created_at = at
            _grant(session, officer, "create", at, requested_by=None)
            rt.audit.append(session, officer="polysec", action="officer.seed", at=rt.clock(),
                            target=f"officer:{name}", details={"role": role})
            if enrolment:
                made[name] = enrolment
    return made


def _setup_second_admin(session: Session, actor: Actor, role: str) -> bool:
    """The bootstrap: the admin of `polysec init` adds the second admin directly, once,
    while no other officer has ever held a role that can approve."""
    if role != "admin":
        return False
    # The asker's own row, locked by primary key, makes two parallel set-ups take turns:
    # the second one counts the first one's admin and becomes a request. (Locking the
    # init grant through its non-unique index took a gap lock on MariaDB, and the two
    # set-ups' inserts deadlocked on it.)
    session.scalar(select(Officer.id).where(Officer.id == actor.officer_id).with_for_update())
    init = session.scalar(select(OfficerGrant.id).where(OfficerGrant.officer_id == actor.officer_id,
                                                        OfficerGrant.kind == "init"))
    others = session.scalar(select(func.count()).select_from(OfficerGrant).where(
        OfficerGrant.officer_id != actor.officer_id, OfficerGrant.role.in_(SENIOR_UP)))
    return init is not None and not others


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InputError("a reason is required (it goes to the approver and the audit log)")
    return text


def add_officer(rt: Runtime, actor: Actor, name: str, role: str, password: str | None,
                code: str, reason: str) -> Granted:
    """Add officer ``name``. A role that can approve (senior, admin) is a grant: it
    takes effect when a second officer approves, except for the set-up's second admin.
    The asker hands the enrolment (and the initial password) over to the new officer."""
    require(actor, "officers.manage")
    validate_name(name)
    _check_role(role)
    text = _reason(reason)
    password_hash = _password_hash(role, name, password)
    with rt.sessions() as session:
        if session.scalars(select(Officer.id).where(Officer.name == name)).first() is not None:
            raise ConflictError(f"an officer named {name!r} exists already")
    step_up(rt, actor, code)
    enrolment = None if role == "automation" else _new_enrolment(name)
    secret = enrolment.secret if enrolment else None
    now = rt.clock()
    with rt.transaction() as session:
        setup = _setup_second_admin(session, actor, role)
        if role in SENIOR_UP and not setup:
            request_id = approvals.open_request(
                rt, actor, CREATE, text, {"officer": name, "role": role},
                session=session, sealed={"password_hash": password_hash, "totp_secret": secret})
            return Granted(request_id, enrolment)
        officer = _insert(rt, session, name, role, password_hash, secret)
        _grant(session, officer, "setup" if setup else "create", now,
               requested_by=actor.officer_id, approved_by=actor.officer_id if setup else None)
        rt.audit.append(session, officer=actor.name, action="officer.add", at=now,
                        target=f"officer:{name}",
                        details={"role": role, "reason": text, "setup": setup})
    return Granted(None, enrolment)


def list_officers(rt: Runtime, actor: Actor) -> list[OfficerView]:
    require(actor, "read")
    with rt.sessions() as session:
        names = {oid: name for oid, name in session.execute(select(Officer.id, Officer.name))}
        askers: dict[uuid.UUID, set[str]] = {}
        for officer_id, asker in session.execute(
                select(OfficerGrant.officer_id, OfficerGrant.requested_by)
                .where(OfficerGrant.requested_by.is_not(None))):
            if asker is not None:
                askers.setdefault(officer_id, set()).add(names.get(asker, "?"))
        return [
            OfficerView(o.name, o.role, o.disabled, o.totp_secret_enc is not None,
                        o.locked_until, o.created_at, o.last_login_at,
                        tuple(sorted(askers.get(o.id, ()))))
            for o in session.scalars(select(Officer).order_by(Officer.name))
        ]


def _get(session: Session, name: str) -> Officer:
    officer = session.scalars(select(Officer).where(Officer.name == name)).first()
    if officer is None:
        raise InputError(f"no officer named {name!r}")
    return officer


def set_role(rt: Runtime, actor: Actor, name: str, role: str, code: str,
             reason: str) -> Granted:
    """Change ``name``'s role: a raise is a grant (four-eyes), a lowering takes effect at
    once and ends the officer's sessions (a console open under the old role stops)."""
    require(actor, "officers.manage")
    _check_role(role)
    text = _reason(reason)
    if name == actor.name:
        raise RefusedError("an admin cannot change their own role")
    with rt.sessions() as session:
        old = _get(session, name).role
    if old == role:
        raise InputError(f"officer {name} has role {role} already")
    if "automation" in (old, role):
        raise InputError("people and automation officers authenticate differently: add a "
                         "new officer instead of changing the role")
    step_up(rt, actor, code)
    now = rt.clock()
    with rt.transaction() as session:
        officer = _get(session, name)
        if officer.role != old:
            raise ConflictError(f"officer {name}'s role changed to {officer.role} meanwhile")
        if is_grant(old, role):
            return Granted(approvals.open_request(
                rt, actor, PROMOTE, text, {"officer": name, "from_role": old, "role": role},
                session=session))
        officer.role = role
        ended = revoke_all(session, officer.id, now)
        rt.audit.append(session, officer=actor.name, action="officer.role", at=now,
                        target=f"officer:{name}",
                        details={"from": old, "to": role, "reason": text,
                                 "sessions_ended": ended})
    return Granted(None)


def set_disabled(rt: Runtime, actor: Actor, name: str, disabled: bool) -> int:
    """Disable an officer, ending every session and token at once. Protective, so it
    takes effect at once; enabling again is a grant (`request_enable`)."""
    require(actor, "officers.manage")
    if not disabled:
        raise RefusedError("re-enabling an officer is a privilege grant: request it with "
                           "`polysec officer enable` (a second officer approves)")
    if name == actor.name:
        raise RefusedError("an admin cannot disable themselves")
    now = rt.clock()
    with rt.transaction() as session:
        officer = _get(session, name)
        officer.disabled = True
        ended = revoke_all(session, officer.id, now)
        rt.audit.append(session, officer=actor.name, action="officer.disable", at=now,
                        target=f"officer:{name}", details={"sessions_ended": ended})
    return ended


def request_enable(rt: Runtime, actor: Actor, name: str, code: str, reason: str) -> Granted:
    """Re-enable a disabled officer (four-eyes); for an officer who is only locked out
    after failed logins, clear the lockout at once."""
    require(actor, "officers.manage")
    text = _reason(reason)
    with rt.sessions() as session:
        officer = _get(session, name)
        disabled, locked, role = officer.disabled, officer.locked_until is not None, officer.role
    if not disabled and not locked:
        raise InputError(f"officer {name} is neither disabled nor locked out")
    step_up(rt, actor, code)
    now = rt.clock()
    with rt.transaction() as session:
        officer = _get(session, name)
        if officer.disabled:
            return Granted(approvals.open_request(
                rt, actor, ENABLE, text, {"officer": name, "role": role}, session=session))
        officer.locked_until = None
        officer.failed_attempts = 0
        rt.audit.append(session, officer=actor.name, action="officer.unlock", at=now,
                        target=f"officer:{name}", details={"reason": text})
    return Granted(None)


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


# ------------------------------------------------------- four-eyes credential resets


def _person(session: Session, name: str) -> Officer:
    target = _get(session, name)
    if target.role == "automation":
        raise InputError("automation officers have no password or authenticator; "
                         "they use tokens (`polysec officer token create`)")
    return target


def request_totp_reset(rt: Runtime, actor: Actor, name: str, reason: str,
                       code: str) -> Granted:
    """A new authenticator for ``name``: shown now to the asking admin for the hand-over,
    in force once a second officer approves (the old one stops, sessions end)."""
    require(actor, "officers.manage")
    text = _reason(reason)
    with rt.sessions() as session:
        role = _person(session, name).role
    step_up(rt, actor, code)
    enrolment = _new_enrolment(name)
    request_id = approvals.open_request(rt, actor, TOTP_RESET, text,
                                        {"officer": name, "role": role},
                                        sealed={"totp_secret": enrolment.secret})
    return Granted(request_id, enrolment)


def request_password_reset(rt: Runtime, actor: Actor, name: str, reason: str, code: str,
                           password: str) -> Granted:
    """A new password for ``name``, chosen now by the asking admin for the hand-over, in
    force once a second officer approves (sessions end; the officer then changes it with
    `polysec officer passwd`)."""
    require(actor, "officers.manage")
    text = _reason(reason)
    check_policy(password, name=name)
    with rt.sessions() as session:
        role = _person(session, name).role
    step_up(rt, actor, code)
    request_id = approvals.open_request(rt, actor, PASSWORD_RESET, text,
                                        {"officer": name, "role": role},
                                        sealed={"password_hash": hash_password(password)})
    return Granted(request_id)


# --------------------------------------------------------------------------- executors

CREATE_KIND = "officer.create"
PROMOTE_KIND = "officer.promote"
ENABLE_KIND = "officer.enable"
TOTP_RESET_KIND = "officer.totp_reset"
PASSWORD_RESET_KIND = "officer.password_reset"  # noqa: S105 - a kind, not a password


def _granted(rt: Runtime, session: Session, officer: Officer, kind: str,
             request: ApprovalRequest, approver: Actor, **details: Any) -> dict[str, Any]:
    now = rt.clock()
    _grant(session, officer, kind, now, requested_by=request.requester_id,
           approved_by=approver.officer_id, request_id=request.id)
    rt.audit.append(session, officer=approver.name, action=f"officer.{kind}", at=now,
                    target=f"officer:{officer.name}",
                    details={"request": str(request.id), "role": officer.role, **details})
    return {"officer": officer.name, "role": officer.role, **details}


def _sealed(rt: Runtime, request: ApprovalRequest, key: str) -> Any:
    value = approvals.unseal(rt, request).get(key)
    if value is None:  # a request opened before 0010 carried no secret: nothing to apply
        raise ConflictError(f"request {request.id} carries no new credential (it was asked "
                            "for before this version): deny it and ask again")
    return value


def _execute_create(rt: Runtime, session: Session, request: ApprovalRequest,
                    approver: Actor) -> dict[str, Any]:
    sealed = approvals.unseal(rt, request)
    officer = _insert(rt, session, str(request.payload["officer"]), str(request.payload["role"]),
                      sealed.get("password_hash"), sealed.get("totp_secret"))
    return _granted(rt, session, officer, "create", request, approver)


def _execute_promote(rt: Runtime, session: Session, request: ApprovalRequest,
                     approver: Actor) -> dict[str, Any]:
    officer = _get(session, str(request.payload["officer"]))
    if officer.role != request.payload["from_role"]:
        raise ConflictError(f"officer {officer.name} has role {officer.role} now, not "
                            f"{request.payload['from_role']}: ask again")
    officer.role = str(request.payload["role"])
    return _granted(rt, session, officer, "promote", request, approver,
                    from_role=str(request.payload["from_role"]))


def _execute_enable(rt: Runtime, session: Session, request: ApprovalRequest,
                    approver: Actor) -> dict[str, Any]:
    officer = _get(session, str(request.payload["officer"]))
    officer.disabled = False
    officer.locked_until = None
    officer.failed_attempts = 0
    return _granted(rt, session, officer, "enable", request, approver)


def _execute_totp_reset(rt: Runtime, session: Session, request: ApprovalRequest,
                        approver: Actor) -> dict[str, Any]:
    officer = _person(session, str(request.payload["officer"]))
    _enrol(rt, officer, str(_sealed(rt, request, "totp_secret")))
    officer.failed_attempts = 0
    officer.locked_until = None
    ended = revoke_all(session, officer.id, rt.clock())
    return _granted(rt, session, officer, "totp_reset", request, approver, sessions_ended=ended)


def _execute_password_reset(rt: Runtime, session: Session, request: ApprovalRequest,
                            approver: Actor) -> dict[str, Any]:
    officer = _person(session, str(request.payload["officer"]))
    officer.password_hash = str(_sealed(rt, request, "password_hash"))
    officer.failed_attempts = 0
    officer.locked_until = None
    ended = revoke_all(session, officer.id, rt.clock())
    return _granted(rt, session, officer, "password_reset", request, approver,
                    sessions_ended=ended)


def _approver_role(session: Session, payload: dict[str, Any]) -> str:
    """Granting the admin role, or anything to an officer who is an admin now, needs an
    admin; an officer the database no longer knows, too (fail closed)."""
    current = session.scalar(select(Officer.role).where(Officer.name == payload.get("officer")))
    if payload.get("role") == "admin" or current == "admin":
        return "admin"
    if current is None and payload.get("from_role") is not None:
        return "admin"  # a promotion of an officer that is gone: nothing to approve
    return "senior"


def _not_to_oneself(payload: dict[str, Any], approver: Actor) -> str | None:
    if payload.get("officer") == approver.name:
        return "an officer cannot approve a grant to themselves"
    return None


def _describer(template: str) -> Callable[[dict[str, Any]], str]:
    def describe(payload: dict[str, Any]) -> str:
        return template.format_map(_Missing(payload))
    return describe


class _Missing(dict[str, Any]):
    """format_map over a payload, with '?' for a key it lacks."""

    def __missing__(self, key: str) -> str:
        return "?"


def _grant_kind(name: str, execute: approvals.Executor, what: str) -> approvals.ApprovalKind:
    return approvals.ApprovalKind(
        name=name, min_role=_approver_role, execute=execute, refuse=_not_to_oneself,
        describe=_describer(what), requester_permission="officers.manage")


CREATE = _grant_kind(CREATE_KIND, _execute_create, "add officer {officer} with role {role}")
PROMOTE = _grant_kind(PROMOTE_KIND, _execute_promote,
                      "raise officer {officer} from {from_role} to {role}")
ENABLE = _grant_kind(ENABLE_KIND, _execute_enable, "re-enable officer {officer}")
TOTP_RESET = _grant_kind(TOTP_RESET_KIND, _execute_totp_reset,
                         "reset the authenticator of officer {officer}")
PASSWORD_RESET = _grant_kind(PASSWORD_RESET_KIND, _execute_password_reset,
                             "reset the password of officer {officer}")
# The privilege grants, for `services.four_eyes`.
KINDS = (CREATE, PROMOTE, ENABLE, TOTP_RESET, PASSWORD_RESET)
