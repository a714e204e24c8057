"""An evidence pack for auditors in one command (`polysec evidence`), and its offline check.

A pack is a directory of JSON files about one period (a quarter, a month or a year):
the audit-log slice with the chain's proof, the officers with their roles, grants and
last logins, the access reviews, the backups, restore drills and audit-check runs, the
four-eyes requests and the review's service levels, the rule-set changes. A manifest
lists every file's SHA-256 and is signed with the backup signing key (Ed25519, its own
signature context): `polysec evidence verify DIR` checks, offline and with the public
key alone, that nothing was added, removed or changed, and that the audit slice is an
unbroken piece of a chain; with the keyring's audit key (``--audit-key``) it checks every
entry's own MAC too, which holds even against whoever holds the signing key.

The pack is written into a private temporary directory beside ``out`` and renamed into
place whole: a half-written pack never exists under its name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from polysec_tui import __version__
from polysec_tui.backup.envelope import Signer
from polysec_tui.db.engine import redact
from polysec_tui.db.models import (
    AccessReview,
    ApprovalRequest,
    AuditFinding,
    AuditLogEntry,
    AuditRun,
    BackupDrill,
    BackupRecord,
    Officer,
    OfficerGrant,
    ReviewDecision,
    RuleSet,
    Withdrawal,
)
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.files import fsync_dir
from polysec_tui.services.auditchain import entry_mac
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.operations.backups import BackupConfig
from polysec_tui.services.runtime import Runtime
from polysec_tui.services.withdrawals.screening import load_config

FORMAT = "polysec-evidence-v1"
SIGNATURE_CONTEXT = b"polysec evidence manifest v1\x00"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
AUDIT_SLICE = "audit_log.jsonl"
_PERIOD = re.compile(r"(\d{4})(?:-(Q[1-4]|\d{2}))?")


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """``2026-Q4``, ``2026-11`` or ``2026``: [start, end) in UTC."""
    match = _PERIOD.fullmatch(period.strip())
    if not match:
        raise InputError(f"period {period!r}: give a quarter (2026-Q4), a month (2026-11) "
                         "or a year (2026)")
    year, part = int(match[1]), match[2]
    if part is None:
        first, months = 1, 12
    elif part.startswith("Q"):
        first, months = (int(part[1]) - 1) * 3 + 1, 3
    else:
        first, months = int(part), 1
        if not 1 <= first <= 12:
            raise InputError(f"period {period!r}: no month {first}")
    if not 1970 <= year <= 9998:
        raise InputError(f"period {period!r}: year out of range")
    start = datetime(year, first, 1, tzinfo=UTC)
    end_month = first + months
    end = (datetime(year + 1, 1, 1, tzinfo=UTC) if end_month > 12
           else datetime(year, end_month, 1, tzinfo=UTC))
    return start, end


@dataclass(frozen=True)
class PackReport:
    out: str
    period: str
    start: datetime
    end: datetime
    files: dict[str, str]  # name: sha256
    audit_entries: int
    signer: str

    def as_dict(self) -> dict[str, Any]:
        return {"out": self.out, "period": self.period, "from": self.start.isoformat(),
                "to": self.end.isoformat(), "files": self.files,
                "audit_entries": self.audit_entries, "signer": self.signer}


def build(rt: Runtime, actor: Actor, period: str, out: Path) -> PackReport:
    """Write the pack of ``period`` to ``out`` (which must not exist); audited."""
    require(actor, "auditlog.read")
    start, end = period_bounds(period)
    key = BackupConfig.from_settings(rt.settings).load_signing_key()
    out = out.expanduser()
    if out.exists():
        raise InputError(f"{out} exists: an evidence pack is written to a new directory")
    if not out.parent.is_dir():
        raise InputError(f"no directory {out.parent}")
    now = rt.clock()
    with rt.sessions() as session:
        names = {oid: name for oid, name in session.execute(select(Officer.id, Officer.name))}
        docs: dict[str, Any] = {
            "officers.json": _officers(session, names),
            "access_reviews.json": _reviews(session, names, start, end),
            "backups.json": _backups(session, start, end),
            "drills.json": _drills(session, start, end),
            "audit_checks.json": _audit_checks(session, names, start, end),
            "four_eyes.json": _four_eyes(session, names, start, end),
            "review_sla.json": _review_sla(session, start, end,
                                           load_config(rt.settings).review_sla_hours),
            "rule_sets.json": _rule_sets(session, names, start, end),
        }
        # From the period's first entry to its last, by seq: an entry in between whose
        # time lies outside (a clock set wrong) stays in, so the slice is unbroken.
        first, last = session.execute(
            select(func.min(AuditLogEntry.seq), func.max(AuditLogEntry.seq))
            .where(AuditLogEntry.at >= start, AuditLogEntry.at < end)).one()
        entries = session.scalars(select(AuditLogEntry).where(
            AuditLogEntry.seq >= (first or 0), AuditLogEntry.seq <= (last or -1))
            .order_by(AuditLogEntry.seq)).all()
        lines = [_entry(e) for e in entries]
    verified = rt.audit.verify(rt.engine)
    if not verified.ok:
        raise CheckFailed(f"the audit log does not verify ({verified.message()}): no "
                          "evidence pack of a broken log")
    chain = {"verified_at": now.isoformat(), "whole_chain": verified.to_dict(),
             "slice": {"entries": len(lines),
                       "first_seq": lines[0]["seq"] if lines else None,
                       "last_seq": lines[-1]["seq"] if lines else None,
                       "first_prev_hash": lines[0]["prev_hash"] if lines else None,
                       "last_hash": lines[-1]["hash"] if lines else None}}
    # The head, signed as `polysec auditlog checkpoint` signs it: `polysec auditlog
    # verify --checkpoint DIR/audit_checkpoint.json` checks the live log still holds it.
    checkpoint = rt.audit.checkpoint(rt.engine, now, verify_first=False)
    contents: dict[str, bytes] = {name: _json(doc) for name, doc in docs.items()}
    contents["audit_chain.json"] = _json(chain)
    contents["audit_checkpoint.json"] = (
        json.dumps(checkpoint.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    contents[AUDIT_SLICE] = b"".join(
        json.dumps(line, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        for line in lines)
    files = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(contents.items())}
    manifest = _json({"format": FORMAT, "period": period, "from": start.isoformat(),
                      "to": end.isoformat(), "generated_at": now.isoformat(),
                      "generated_by": actor.name, "database": redact(rt.engine.url),
                      "polysec": __version__, "files": files})
    signature = key.private.sign(SIGNATURE_CONTEXT + hashlib.sha256(manifest).digest())
    contents[MANIFEST] = manifest
    contents[SIGNATURE] = _json({"signer": str(key.signer),
                                 "signature": base64.b64encode(signature).decode()})
    tmp = _write_private(out, contents)
    try:
        # Audited in the transaction that puts the pack in place: a pack that is there
        # was audited, and an audit entry names a pack that was put there.
        with rt.transaction() as session:
            rt.audit.append(session, officer=actor.name, action="evidence.export", at=now,
                            target=f"period:{period}",
                            details={"out": str(out), "entries": len(lines),
                                     "manifest_sha256": hashlib.sha256(manifest).hexdigest()})
            session.flush()
            if out.exists():
                raise InputError(f"{out} appeared meanwhile: nothing written")
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    return PackReport(str(out), period, start, end, files, len(lines), str(key.signer))


def _write_private(out: Path, contents: dict[str, bytes]) -> Path:
    """The pack's files, written and synced in a private directory beside ``out``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # 0700
    try:
        for name, data in contents.items():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1, default=_value) + "\n").encode()


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _entry(e: AuditLogEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at.isoformat(), "officer": e.officer, "action": e.action,
            "target": e.target, "details": e.details, "prev_hash": e.prev_hash,
            "hash": e.hash}


def _officers(session: Session, names: dict[Any, str]) -> list[dict[str, Any]]:
    grants: dict[Any, list[dict[str, Any]]] = {}
    for g in session.scalars(select(OfficerGrant).order_by(OfficerGrant.at)):
        grants.setdefault(g.officer_id, []).append({
            "kind": g.kind, "role": g.role, "at": g.at,
            "requested_by": names.get(g.requested_by) if g.requested_by else None,
            "approved_by": names.get(g.approved_by) if g.approved_by else None})
    return [{"name": o.name, "role": o.role, "disabled": o.disabled,
             "created_at": o.created_at, "last_login_at": o.last_login_at,
             "grants": grants.get(o.id, [])}
            for o in session.scalars(select(Officer).order_by(Officer.name))]


def _reviews(session: Session, names: dict[Any, str], start: datetime,
             end: datetime) -> list[dict[str, Any]]:
    return [{"officer": names.get(r.officer_id), "reviewer": names.get(r.reviewer_id),
             "decision": r.decision, "role": r.role, "reason": r.reason, "at": r.at}
            for r in session.scalars(select(AccessReview).where(
                AccessReview.at >= start, AccessReview.at < end).order_by(AccessReview.at))]


def _backups(session: Session, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [{"id": str(b.id), "created_at": b.created_at, "engine": b.engine,
             "size_bytes": b.size_bytes, "sha256": b.sha256, "status": b.status,
             "verified_at": b.verified_at, "shipped_at": b.shipped_at}
            for b in session.scalars(select(BackupRecord).where(
                BackupRecord.created_at >= start, BackupRecord.created_at < end)
                .order_by(BackupRecord.created_at))]


def _drills(session: Session, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Each drill with its signed record, checkable against the signer's public key."""
    return [{"id": str(d.id), "started_at": d.started_at, "result": d.result,
             "restore_seconds": d.restore_seconds, "record": d.record,
             "signature": d.signature, "signer": d.signer}
            for d in session.scalars(select(BackupDrill).where(
                BackupDrill.started_at >= start, BackupDrill.started_at < end)
                .order_by(BackupDrill.started_at))]


def _audit_checks(session: Session, names: dict[Any, str], start: datetime,
                  end: datetime) -> list[dict[str, Any]]:
    runs = session.scalars(select(AuditRun).where(
        AuditRun.started_at >= start, AuditRun.started_at < end)
        .order_by(AuditRun.started_at)).all()
    findings: dict[int, list[dict[str, str]]] = {}
    if runs:
        for f in session.scalars(select(AuditFinding).where(
                AuditFinding.run_id.in_([r.id for r in runs]))):
            findings.setdefault(f.run_id, []).append(
                {"check": f.check_name, "status": f.status, "summary": f.summary})
    return [{"id": r.id, "started_at": r.started_at, "finished_at": r.finished_at,
             "officer": names.get(r.officer_id) if r.officer_id else None,
             "result": r.result, "findings": findings.get(r.id, [])} for r in runs]


def _four_eyes(session: Session, names: dict[Any, str], start: datetime,
               end: datetime) -> dict[str, Any]:
    requests = session.scalars(select(ApprovalRequest).where(
        ApprovalRequest.created_at >= start, ApprovalRequest.created_at < end)
        .order_by(ApprovalRequest.created_at)).all()
    by: dict[str, dict[str, int]] = {}
    waits = []
    for r in requests:
        by.setdefault(r.kind, {}).setdefault(r.status, 0)
        by[r.kind][r.status] += 1
        if r.decided_at is not None:
            waits.append((r.decided_at - r.created_at).total_seconds() / 60)
    return {
        "requests": len(requests), "by_kind_and_status": by,
        # A requester closes their own request only by withdrawing it (the withdrawal
        # was decided otherwise), never by approving or denying it.
        "self_approved": sum(1 for r in requests
                             if r.decided_by == r.requester_id and r.status == "executed"),
        "minutes_to_decision": _spread(waits),
        "list": [{"id": str(r.id), "kind": r.kind, "requester": names.get(r.requester_id),
                  "created_at": r.created_at, "status": r.status,
                  "decided_by": names.get(r.decided_by) if r.decided_by else None,
                  "decided_at": r.decided_at} for r in requests],
    }


def _review_sla(session: Session, start: datetime, end: datetime,
                sla_hours: float) -> dict[str, Any]:
    """Held withdrawals decided in the period: how long from the request to the final
    approve or reject, and the share within the review SLA."""
    decided = aliased(ReviewDecision)
    last: dict[int, float] = {}  # one figure per withdrawal: its final decision's
    for wid, requested, at in session.execute(
            select(Withdrawal.id, Withdrawal.requested_at, decided.decided_at)
            .join(decided, decided.withdrawal_id == Withdrawal.id)
            .where(decided.decision.in_(("approve", "reject")),
                   decided.decided_at >= start, decided.decided_at < end)
            .order_by(decided.decided_at)):
        last[wid] = (at - requested).total_seconds() / 3600
    hours = list(last.values())
    within = sum(1 for h in hours if h <= sla_hours)
    return {"sla_hours": sla_hours, "decisions": len(hours),
            "within_sla": within,
            "within_sla_share": round(within / len(hours), 4) if hours else None,
            "hours_to_decision": _spread(hours)}


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 2),
            "p90": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 2),
            "max": round(ordered[-1], 2)}


def _rule_sets(session: Session, names: dict[Any, str], start: datetime,
               end: datetime) -> list[dict[str, Any]]:
    sets = session.scalars(select(RuleSet).order_by(RuleSet.id)).all()
    return [{"version": r.id, "based_on": r.based_on, "changes": r.changes,
             "reason": r.reason, "proposed_by": names.get(r.proposed_by),
             "proposed_at": r.proposed_at, "backtest": r.backtest,
             "activated_at": r.activated_at,
             "activated_by": names.get(r.activated_by) if r.activated_by else None}
            for r in sets
            if start <= r.proposed_at < end
            or (r.activated_at is not None and start <= r.activated_at < end)]


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    problems: list[str]
    period: str | None
    files: int
    audit_entries: int
    signer: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


REQUIRED = ("audit_chain.json", AUDIT_SLICE)
_NAME = re.compile(r"[a-z_]{1,40}\.jsonl?")


def verify(directory: Path, signers: tuple[Signer, ...], *,
           audit_key: bytes | None = None) -> VerifyReport:
    """Check a pack offline: the manifest signed by one of ``signers``; every file it
    lists present with its digest, and no other file; the audit slice an unbroken run
    (each entry's previous hash the one before it, the sequence without gaps) matching
    the proof in audit_chain.json. That much needs only the public key, and holds
    against anyone but the signing key's holder. With ``audit_key`` (the keyring's),
    every entry's own MAC is checked too, which no one without that key can forge."""
    if not signers:
        raise InputError("no trusted signers: set [backup] signers or give --signer")
    problems: list[str] = []
    try:
        manifest_bytes = (directory / MANIFEST).read_bytes()
        signed = json.loads((directory / SIGNATURE).read_bytes())
        manifest = json.loads(manifest_bytes)
    except (OSError, ValueError) as exc:
        raise CheckFailed(f"{directory}: no readable {MANIFEST} and {SIGNATURE}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    signer = _trusted(signed, signers, hashlib.sha256(manifest_bytes).digest(), problems)
    if signer is None:  # nothing in an unsigned manifest is worth reading further
        return VerifyReport(False, problems, None, 0, 0, None)
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(listed, dict) or manifest.get("format") != FORMAT
            or not all(isinstance(n, str) and _NAME.fullmatch(n) and isinstance(d, str)
                       for n, d in listed.items())):
        problems.append(f"{MANIFEST}: not a {FORMAT} manifest")
        return VerifyReport(False, problems, None, 0, 0, str(signer))
    for name in REQUIRED:
        if name not in listed:
            problems.append(f"{name}: not in the manifest")
    present = {p.name for p in directory.iterdir()} - {MANIFEST, SIGNATURE}
    for extra in sorted(present - set(listed)):
        problems.append(f"{extra}: not in the manifest")
    for name, digest in sorted(listed.items()):
        path = directory / name
        if not path.is_file() or path.is_symlink():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: changed (its SHA-256 is not the manifest's)")
    entries = 0
    if not problems:
        try:
            entries = _check_slice(directory, problems, audit_key)
        except (ValueError, KeyError, TypeError, AttributeError):
            problems.append(f"{AUDIT_SLICE} or audit_chain.json: unreadable")
    return VerifyReport(not problems, problems, str(manifest.get("period")), len(listed),
                        entries, str(signer))


def _trusted(signed: Any, signers: tuple[Signer, ...], digest: bytes,
             problems: list[str]) -> Signer | None:
    try:
        named = Signer.parse(str(signed.get("signer", "")))
        signature = base64.b64decode(str(signed.get("signature", "")), validate=True)
    except (InputError, ValueError, AttributeError):
        problems.append(f"{SIGNATURE}: unreadable")
        return None
    trusted = next((s for s in signers if s.public == named.public), None)
    if trusted is None:
        problems.append(f"signed by {named}, which is not a trusted signer")
        return None
    try:
        Ed25519PublicKey.from_public_bytes(trusted.public).verify(
            signature, SIGNATURE_CONTEXT + digest)
    except (InvalidSignature, ValueError):
        problems.append(f"{MANIFEST}: the signature does not match")
        return None
    return trusted


def _check_slice(directory: Path, problems: list[str], audit_key: bytes | None) -> int:
    chain = json.loads((directory / "audit_chain.json").read_bytes())
    part = chain["slice"]
    previous_seq = previous_hash = None
    first_seq = None
    count = 0
    for number, line in enumerate((directory / AUDIT_SLICE).read_bytes().splitlines(), 1):
        entry = json.loads(line)
        if previous_seq is None:
            first_seq = entry["seq"]
            if entry["prev_hash"] != part["first_prev_hash"] or first_seq != part["first_seq"]:
                problems.append(f"{AUDIT_SLICE}:1: does not start where the proof says")
        elif entry["seq"] != previous_seq + 1 or entry["prev_hash"] != previous_hash:
            problems.append(f"{AUDIT_SLICE}:{number}: entry {entry['seq']} does not follow "
                            f"entry {previous_seq}")
            return count
        if audit_key is not None and entry_mac(
                audit_key, entry["prev_hash"], entry["seq"], datetime.fromisoformat(entry["at"]),
                entry["officer"], entry["action"], entry["target"], entry["details"]
                ) != entry["hash"]:
            problems.append(f"{AUDIT_SLICE}:{number}: entry {entry['seq']} is not the one "
                            "the audit key signed")
            return count
        previous_seq, previous_hash = entry["seq"], entry["hash"]
        count += 1
    if (count != part["entries"] or (count and (previous_hash != part["last_hash"]
                                                or previous_seq != part["last_seq"]))):
        problems.append(f"{AUDIT_SLICE}: {count} entries, the proof says {part['entries']}")
    return count
