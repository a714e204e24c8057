"""Incidents: one case per suspected misuse, gathering accounts, anomalies, withdrawals,
alerts (by their grouping key), 2FA requests and officer actions, with notes, a
severity, an owner and a state (open -> contained -> closed with an outcome). Every
change is audited.

Notes are free text officers (or, through `accounts report`, clients) wrote: untrusted,
shown only as plain text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session

from polysec_tui.db.models import (
    Account,
    AuditLogEntry,
    AuditRun,
    Incident,
    IncidentLink,
    IncidentNote,
    LoginAnomaly,
    Officer,
    TwoFactorResetRequest,
    Withdrawal,
)
from polysec_tui.db.types import record_id
from polysec_tui.errors import ConflictError, InputError, PolysecError
from polysec_tui.services.logins.rules import SOURCE_KINDS
from polysec_tui.services.monitoring import alerts
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.runtime import Runtime
from polysec_tui.text import printable

SEVERITIES = ("low", "medium", "high", "critical")
STATES = ("open", "contained", "closed")
OUTCOMES = ("confirmed_takeover", "false_alarm", "client_error")
LINK_KINDS = ("account", "anomaly", "withdrawal", "twofa_request", "audit_entry", "alert")
MAX_TITLE = 200
MAX_NOTE = 4000


@dataclass(frozen=True)
class IncidentSummary:
    id: int
    title: str
    severity: str
    state: str
    outcome: str | None
    source: str
    owner: str | None
    opened_at: datetime
    updated_at: datetime
    accounts: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "severity": self.severity,
                "state": self.state, "outcome": self.outcome, "source": self.source,
                "owner": self.owner, "opened_at": self.opened_at.isoformat(),
                "updated_at": self.updated_at.isoformat(), "accounts": self.accounts}


@dataclass(frozen=True)
class TimelineItem:
    """One event of an incident's story: a note, a linked thing, or an audited action."""

    at: datetime
    kind: str  # note | a link kind (account, anomaly, withdrawal, alert, ...) | audit_entry
    ref: str
    text: str
    officer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "ref": self.ref,
                "text": self.text, "officer": self.officer}


@dataclass(frozen=True)
class IncidentDetail:
    summary: IncidentSummary
    links: list[tuple[str, str]]
    timeline: list[TimelineItem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(),
                "links": [{"kind": k, "ref": r} for k, r in self.links],
                "timeline": [t.to_dict() for t in self.timeline]}


def _text(value: str, what: str, limit: int) -> str:
    value = value.strip()
    if not value or len(value) > limit:
        raise InputError(f"{what} of 1 to {limit} characters is required")
    return value


def _get(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise InputError(f"no incident {incident_id}")
    return incident


def _account(session: Session, ref: str) -> Account:
    account = session.scalar(select(Account).where(Account.external_id == ref))
    if account is None:
        raise InputError(f"no account {ref}")
    return account


def _check_link(session: Session, kind: str, ref: str) -> str:
    """The canonical reference of a thing to link; refuses what does not exist."""
    if kind not in LINK_KINDS:
        raise InputError(f"link kind must be one of {', '.join(LINK_KINDS)}")
    found: Any
    if kind == "account":
        found = session.scalar(select(Account.external_id).where(Account.external_id == ref))
    elif kind == "withdrawal":
        found = session.scalar(select(Withdrawal.external_id)
                               .where(Withdrawal.external_id == ref))
    elif kind == "anomaly":
        row_id = record_id(ref)
        found = session.get(LoginAnomaly, row_id) if row_id is not None else None
    elif kind == "alert":
        return _check_alert(session, ref)
    elif kind == "twofa_request":
        try:
            found = session.scalar(select(TwoFactorResetRequest.id).where(
                TwoFactorResetRequest.id == uuid.UUID(ref)))
        except ValueError:
            found = None
    else:
        seq = record_id(ref)
        found = session.scalar(select(AuditLogEntry.seq).where(
            AuditLogEntry.seq == seq)) if seq is not None else None
    if found is None:
        raise InputError(f"no {kind.replace('_', ' ')} {ref}")
    return ref


def _check_alert(session: Session, ref: str) -> str:
    """An alert's grouping key (``account:<uuid>``, ``source:<ip or ASn>``,
    ``audit:<run>``) in its canonical form, once its subject is known to exist."""
    kind, subject = alerts.parse_key(ref)
    found: Any = None
    if kind == "account":
        try:
            subject = str(uuid.UUID(subject))
        except ValueError:
            subject = ""
        found = session.get(Account, uuid.UUID(subject)) if subject else None
    elif kind == "source":
        found = session.scalar(select(LoginAnomaly.id).where(_source_findings(subject))
                               .limit(1))
    else:
        run_id = record_id(subject)
        found = session.get(AuditRun, run_id) if run_id is not None else None
    key = f"{kind}:{subject}"
    if found is None or len(key) > 64:
        raise InputError(f"no alert {printable(ref, limit=80)}")
    return key


def _source_findings(source: str) -> Any:
    """The campaign findings of a source: an IP, or a network ("AS64500")."""
    campaign = LoginAnomaly.kind.in_(SOURCE_KINDS)
    if source.startswith("AS") and source[2:].isdigit():
        asn = int(source[2:])
        if asn >= 2 ** 32:  # no such network (and more than a database integer holds)
            return campaign & false()
        return campaign & (LoginAnomaly.source_asn == asn)
    return campaign & (LoginAnomaly.source_ip == source)


def add_link(rt: Runtime, session: Session, actor: Actor, incident: Incident, kind: str,
             ref: str, now: datetime) -> bool:
    """Link inside the caller's transaction; False when it was linked already."""
    ref = _check_link(session, kind, ref)
    exists = session.scalar(select(IncidentLink.id).where(
        IncidentLink.incident_id == incident.id, IncidentLink.kind == kind,
        IncidentLink.ref == ref))
    if exists is not None:
        return False
    session.add(IncidentLink(incident_id=incident.id, kind=kind, ref=ref,
                             added_by=actor.officer_id, added_at=now))
    incident.updated_at = now
    rt.audit.append(session, officer=actor.name, action="incident.link", at=now,
                    target=f"incident:{incident.id}", details={"kind": kind, "ref": ref})
    return True


def open_in(rt: Runtime, session: Session, actor: Actor, *, title: str, severity: str,
            source: str, accounts: list[str], note: str | None, now: datetime) -> Incident:
    """Open an incident inside the caller's transaction (lockdown and reports use it)."""
    if severity not in SEVERITIES:
        raise InputError(f"severity must be one of {', '.join(SEVERITIES)}")
    incident = Incident(title=_text(title, "a title", MAX_TITLE), severity=severity,
                        state="open", source=source, owner_id=actor.officer_id,
                        opened_by=actor.officer_id, opened_at=now, updated_at=now)
    session.add(incident)
    session.flush()
    rt.audit.append(session, officer=actor.name, action="incident.open", at=now,
                    target=f"incident:{incident.id}",
                    details={"severity": severity, "source": source, "accounts": accounts})
    for ref in accounts:
        add_link(rt, session, actor, incident, "account", ref, now)
    if note:
        _add_note(rt, session, actor, incident, note, now)
    return incident


def _add_note(rt: Runtime, session: Session, actor: Actor, incident: Incident, text: str,
              now: datetime) -> None:
    session.add(IncidentNote(incident_id=incident.id, officer_id=actor.officer_id, at=now,
                             text=_text(text, "a note", MAX_NOTE)))
    incident.updated_at = now
    # The note's text stays in its table; the audit log records that one was added.
    rt.audit.append(session, officer=actor.name, action="incident.note", at=now,
                    target=f"incident:{incident.id}", details={"length": len(text)})


def open_incident(rt: Runtime, actor: Actor, *, title: str, severity: str,
                  accounts: list[str], note: str | None = None) -> int:
    require(actor, "review")
    now = rt.clock()
    with rt.transaction() as session:
        return open_in(rt, session, actor, title=title, severity=severity, source="officer",
                       accounts=accounts, note=note, now=now).id


def note(rt: Runtime, actor: Actor, incident_id: int, text: str) -> None:
    require(actor, "review")
    now = rt.clock()
    with rt.transaction() as session:
        _add_note(rt, session, actor, _get(session, incident_id), text, now)


@dataclass(frozen=True)
class LinkResult:
    kind: str
    ref: str
    added: bool  # False: linked already, or refused (then ``error`` says why)
    error: str | None = None


def link_many(rt: Runtime, actor: Actor, incident_id: int,
              things: list[tuple[str, str]]) -> list[LinkResult]:
    """Attach several things to an incident in one transaction (one officer action).
    What does not exist is refused and listed, the rest is linked; attaching an
    account's alert links the account too, so the incident is found by it."""
    require(actor, "review")
    now = rt.clock()
    with rt.transaction() as session:
        incident = _get(session, incident_id)
        if incident.state == "closed":
            raise ConflictError(f"incident {incident_id} is closed")
        return _link_all(rt, session, actor, incident, things, now)


def open_with_links(rt: Runtime, actor: Actor, *, title: str, severity: str,
                    things: list[tuple[str, str]]) -> tuple[int, list[LinkResult]]:
    """Open an incident with what it gathers, in one transaction: no empty incident is
    left behind when the linking fails."""
    require(actor, "review")
    now = rt.clock()
    with rt.transaction() as session:
        incident = open_in(rt, session, actor, title=title, severity=severity,
                           source="officer", accounts=[], note=None, now=now)
        return incident.id, _link_all(rt, session, actor, incident, things, now)


def _link_all(rt: Runtime, session: Session, actor: Actor, incident: Incident,
              things: list[tuple[str, str]], now: datetime) -> list[LinkResult]:
    results: list[LinkResult] = []
    for kind, ref in things:
        try:  # checked before anything is written, so a refusal leaves no trace
            ref = _check_link(session, kind, ref)
        except PolysecError as refused:
            results.append(LinkResult(kind, ref, False, str(refused)))
            continue
        results.append(LinkResult(kind, ref, add_link(rt, session, actor, incident,
                                                      kind, ref, now)))
        if kind == "alert" and ref.startswith("account:"):
            account = session.get(Account, uuid.UUID(ref.partition(":")[2]))
            assert account is not None  # checked above
            add_link(rt, session, actor, incident, "account", account.external_id, now)
    return results


def set_state(rt: Runtime, actor: Actor, incident_id: int, state: str, *,
              outcome: str | None = None, note_text: str | None = None,
              owner: str | None = None, severity: str | None = None) -> None:
    """Move an incident (contained, closed with an outcome), change owner or severity."""
    require(actor, "review")
    if state not in STATES:
        raise InputError(f"state must be one of {', '.join(STATES)}")
    if state == "closed" and outcome not in OUTCOMES:
        raise InputError(f"closing needs --outcome {'|'.join(OUTCOMES)}")
    if state != "closed" and outcome is not None:
        raise InputError("an outcome is given only when closing")
    if severity is not None and severity not in SEVERITIES:
        raise InputError(f"severity must be one of {', '.join(SEVERITIES)}")
    now = rt.clock()
    with rt.transaction() as session:
        incident = _get(session, incident_id)
        if incident.state == "closed":
            raise ConflictError(f"incident {incident_id} is already closed "
                                f"({incident.outcome})")
        details: dict[str, Any] = {"from": incident.state, "to": state}
        if owner is not None:
            owner_id = session.scalar(select(Officer.id).where(Officer.name == owner))
            if owner_id is None:
                raise InputError(f"no officer {owner}")
            incident.owner_id = owner_id
            details["owner"] = owner
        if severity is not None:
            details["severity"] = severity
            incident.severity = severity
        incident.state = state
        incident.outcome = outcome
        incident.updated_at = now
        if state == "closed":
            incident.closed_at = now
            details["outcome"] = outcome
        rt.audit.append(session, officer=actor.name, action=f"incident.{state}", at=now,
                        target=f"incident:{incident_id}", details=details)
        if note_text:
            _add_note(rt, session, actor, incident, note_text, now)


# --------------------------------------------------------------------------- reading


def _summaries(session: Session, incidents: list[Incident]) -> list[IncidentSummary]:
    ids = [i.id for i in incidents]
    accounts: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for incident_id, ref in session.execute(
            select(IncidentLink.incident_id, IncidentLink.ref)
            .where(IncidentLink.incident_id.in_(ids), IncidentLink.kind == "account")
            .order_by(IncidentLink.id)
        ):
            accounts[incident_id].append(ref)
    owners = dict(session.execute(select(Officer.id, Officer.name).where(
        Officer.id.in_([i.owner_id for i in incidents if i.owner_id]))).all())
    return [IncidentSummary(i.id, i.title, i.severity, i.state, i.outcome, i.source,
                            owners.get(i.owner_id) if i.owner_id else None, i.opened_at,
                            i.updated_at, accounts[i.id]) for i in incidents]


def list_incidents(rt: Runtime, actor: Actor, *, state: str | None = "active",
                   account: str | None = None, limit: int = 200) -> list[IncidentSummary]:
    """``state`` "active" means open or contained; None means every state."""
    require(actor, "read")
    with rt.sessions() as session:
        query = select(Incident).order_by(Incident.opened_at.desc(), Incident.id.desc())
        if state == "active":
            query = query.where(Incident.state.in_(("open", "contained")))
        elif state is not None:
            if state not in STATES:
                raise InputError(f"state must be active or one of {', '.join(STATES)}")
            query = query.where(Incident.state == state)
        if account is not None:
            query = query.where(Incident.id.in_(
                select(IncidentLink.incident_id).where(IncidentLink.kind == "account",
                                                       IncidentLink.ref == account)))
        return _summaries(session, list(session.scalars(query.limit(limit))))


def open_count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(Incident)
                              .where(Incident.state.in_(("open", "contained")))) or 0


def show(rt: Runtime, actor: Actor, incident_id: int) -> IncidentDetail:
    """The incident with everything linked to it as one timeline, oldest first."""
    require(actor, "read")
    with rt.sessions() as session:
        incident = _get(session, incident_id)
        (summary,) = _summaries(session, [incident])
        links = list(session.execute(
            select(IncidentLink.kind, IncidentLink.ref, IncidentLink.added_at)
            .where(IncidentLink.incident_id == incident_id).order_by(IncidentLink.id)))
        names = dict(session.execute(select(Officer.id, Officer.name)).all())
        items = [TimelineItem(n.at, "note", str(n.id), n.text, names.get(n.officer_id))
                 for n in session.scalars(select(IncidentNote).where(
                     IncidentNote.incident_id == incident_id))]
        items += _linked_events(session, [(k, r) for k, r, _ in links])
        items += [TimelineItem(e.at, "audit_entry", str(e.seq), e.action, e.officer)
                  for e in session.scalars(select(AuditLogEntry).where(
                      AuditLogEntry.target == f"incident:{incident_id}"))]
    items.sort(key=lambda t: (t.at, t.kind, t.ref))
    return IncidentDetail(summary, [(k, r) for k, r, _ in links], items)


def _linked_events(session: Session, links: list[tuple[str, str]]) -> list[TimelineItem]:
    """The linked things as events: withdrawals and anomalies at their own time; for an
    account, its withdrawals and anomalies too (the story of the case)."""
    out: list[TimelineItem] = []
    accounts = [r for k, r in links if k == "account"]
    account_ids = list(session.scalars(select(Account.id)
                                       .where(Account.external_id.in_(accounts))))
    wd_refs = [r for k, r in links if k == "withdrawal"]
    wds = session.scalars(select(Withdrawal).where(
        Withdrawal.external_id.in_(wd_refs) | Withdrawal.account_id.in_(account_ids))
        .order_by(Withdrawal.requested_at).limit(500))
    for wd in wds:
        out.append(TimelineItem(wd.requested_at, "withdrawal", wd.external_id,
                                f"{wd.amount} {wd.asset} to {wd.address} ({wd.status})"))
    anomaly_ids = [i for k, r in links if k == "anomaly" and (i := record_id(r)) is not None]
    # A campaign's alert brings its source's findings (an account's brings the account).
    sources = [r.partition(":")[2] for k, r in links if k == "alert" and r.startswith("source:")]
    anomalies = session.scalars(select(LoginAnomaly).where(or_(
        LoginAnomaly.id.in_(anomaly_ids), LoginAnomaly.account_id.in_(account_ids),
        *(_source_findings(source) for source in sources)))
        .order_by(LoginAnomaly.at).limit(500))
    for anomaly in anomalies:
        out.append(TimelineItem(anomaly.at, "anomaly", str(anomaly.id),
                                f"{anomaly.kind} ({anomaly.severity}): {anomaly.explanation}"))
    for kind, ref in links:
        if kind == "alert" and ref.startswith("audit:"):
            run = session.get(AuditRun, int(ref.partition(":")[2]))
            if run is not None:
                out.append(TimelineItem(run.started_at, kind, ref,
                                        f"audit run {run.id}: {run.result}"))
        if kind == "twofa_request":
            request = session.get(TwoFactorResetRequest, uuid.UUID(ref))
            if request is not None:
                out.append(TimelineItem(request.created_at, kind, ref,
                                        "2FA reset requested"))
    return out
