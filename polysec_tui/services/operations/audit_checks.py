"""`polysec audit run`: checks that turn the exchange's promises into evidence.

Each check returns one :class:`Finding` (pass, warn or fail) with evidence made of counts,
key ids and row ids, never plaintext, and a remediation line. A run is stored
(``audit_runs`` + ``audit_findings``) so the console can show the trend, and recorded in
the officer audit log. Thresholds come from the ``[audit]`` section of the configuration
(defaults in :data:`DEFAULTS`, documented in docs/audit.md).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, String, Text, func, select, text

from polysec_tui.crypto.blind_index import normalise_email
from polysec_tui.crypto.fields import NONCE_LIMIT, USAGE_WARN
from polysec_tui.crypto.keyring import check_private
from polysec_tui.db import migrate
from polysec_tui.db.models import (
    ENCRYPTED_COLUMNS,
    Account,
    AuditFinding,
    AuditRun,
    BackupRecord,
    Base,
    Incident,
    KeyUsage,
    Officer,
    OfficerSession,
    TotpEnrolment,
    Withdrawal,
    WithdrawalScreening,
)
from polysec_tui.db.types import uuid_raw
from polysec_tui.errors import CheckFailed, InputError, RefusedError
from polysec_tui.services.officers.auth import Actor, require
from polysec_tui.services.operations.keys import values_per_key
from polysec_tui.services.runtime import Runtime

STATUSES = ("pass", "warn", "fail")
BATCH = 2_000

DEFAULTS: dict[str, Any] = {
    "key_max_age_days": 365,  # rotate field keys yearly
    "officer_inactive_days": 90,
    "client_2fa_min_coverage": 0.95,  # below: fail; below 100 %: warn
    "backup_max_age_hours": 26,  # a daily backup plus slack
    "review_sla_hours": 4,  # held withdrawals wait no longer than this
    "incident_max_open_days": 7,  # an incident open longer is stuck, not worked on
}

# Tables the platform writes: where plaintext PII must never appear.
PLATFORM_TABLES = ("accounts", "totp_enrolments", "balances", "security_events",
                   "login_events", "withdrawals")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# International format with at least 8 digits; the '+' keeps IPs and versions out.
PHONE_RE = re.compile(r"\+\d[\d ()./-]{6,18}\d")
MAX_IDS = 10  # row ids listed in one finding's evidence


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    summary: str
    remediation: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckContext:
    rt: Runtime
    now: datetime
    sample: int | None
    limits: dict[str, Any]

    def limit(self, name: str) -> Any:
        return self.limits.get(name, DEFAULTS[name])

    @property
    def dialect(self) -> str:
        return self.rt.engine.dialect.name


Check = Callable[[CheckContext], Finding]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    title: str
    run: Check
    dialects: tuple[str, ...] = ("sqlite", "postgresql", "mysql", "mariadb")


@dataclass(frozen=True)
class AuditRunReport:
    run_id: int
    started_at: datetime
    finished_at: datetime
    result: str
    findings: list[Finding]

    @property
    def failed(self) -> bool:
        return self.result == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat(), "result": self.result,
                "findings": [f.to_dict() for f in self.findings]}


def _ok(name: str, summary: str, **evidence: Any) -> Finding:
    return Finding(name, "pass", summary, "none needed", evidence)


def _worst(statuses: list[str]) -> str:
    return max(statuses, key=STATUSES.index, default="pass")


def _ids(values: Sequence[Any]) -> list[str]:
    return [str(v) for v in values[:MAX_IDS]]


# ------------------------------------------------------------------ encryption_coverage


def _keyset(conn: Connection, table: Any, columns: list[Any], sample: int | None,
            dialect: str) -> Iterator[Any]:
    """Rows of ``table`` (a random sample of ``sample`` rows), the key first as its 16
    bytes (``db.types.uuid_raw``: no UUID object per row). All rows are streamed from
    one scan in the table's own order, BATCH at a time: read in key order, a random
    UUID key sends each row to another page (PostgreSQL at 1,000,000 accounts read
    30 % slower that way)."""
    raw, as_bytes = uuid_raw(table.c.id, dialect)
    query = select(raw, *columns)
    if sample is not None:
        rand = func.rand() if dialect in ("mysql", "mariadb") else func.random()
        query = query.order_by(rand).limit(sample)
    result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
    for key, *values in result:
        yield as_bytes(key), *values


def _text_columns(table: Any) -> list[Any]:
    return [c for c in table.c if isinstance(c.type, String | Text)]


def _plaintext_scan(conn: Connection) -> dict[str, list[str]]:
    """Text columns of the platform tables holding something that looks like an email or
    a phone number. SQL narrows to candidates ('@' or '+'); a regex decides."""
    hits: dict[str, list[str]] = {}
    for name in PLATFORM_TABLES:
        table = Base.metadata.tables[name]
        key = list(table.primary_key.columns)
        for column in _text_columns(table):
            candidates = conn.execute(
                select(column, *key).where(column.like("%@%") | column.like("%+%"))
            )
            for value, *row_key in candidates:
                if EMAIL_RE.search(value) or PHONE_RE.search(value):
                    row_id = "/".join(str(part) for part in row_key)
                    hits.setdefault(f"{name}.{column.name}", []).append(row_id)
    return hits


def encryption_coverage(ctx: CheckContext) -> Finding:
    name = "encryption_coverage"
    cipher = ctx.rt.cipher
    checked = 0
    bad: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    with ctx.rt.engine.connect() as conn:
        for table_name, columns in ENCRYPTED_COLUMNS.items():
            table = Base.metadata.tables[table_name]
            cols = [table.c[f"{c}_enc"] for c in columns]
            openers = [(c, cipher.opener(table_name, c)) for c in columns]
            for row_key, *blobs in _keyset(conn, table, cols, ctx.sample, ctx.dialect):
                for (column, open_value), blob in zip(openers, blobs, strict=True):
                    if blob is None:
                        continue
                    checked += 1
                    try:
                        open_value(row_key, blob)
                    except CheckFailed as exc:
                        place = f"{table_name}.{column}"
                        bad.setdefault(place, []).append(str(uuid.UUID(bytes=row_key)))
                        reasons.setdefault(place, str(exc).split(": ", 1)[-1])
        plaintext = _plaintext_scan(conn)
    evidence: dict[str, Any] = {"values_checked": checked,
                                "sampled": ctx.sample is not None}
    if not bad and not plaintext:
        scope = f"a sample of {ctx.sample} rows per table" if ctx.sample else "all rows"
        return _ok(name, f"{checked} encrypted values decrypt with their row binding "
                         f"({scope}); no plaintext-looking values", **evidence)
    evidence["undecryptable"] = {p: {"count": len(ids), "rows": _ids(ids),
                                     "reason": reasons[p]} for p, ids in bad.items()}
    evidence["plaintext_like"] = {p: {"count": len(ids), "rows": _ids(ids)}
                                  for p, ids in plaintext.items()}
    parts = [f"{len(ids)} undecryptable in {p}" for p, ids in bad.items()]
    parts += [f"{len(ids)} plaintext-looking in {p}" for p, ids in plaintext.items()]
    return Finding(name, "fail", "; ".join(parts),
                   "find how the values were written (a platform bug or tampering), "
                   "restore them from a verified backup, and re-ingest through polysec",
                   evidence)


# --------------------------------------------------------------------------- key_hygiene


def key_hygiene(ctx: CheckContext) -> Finding:
    name = "key_hygiene"
    keyring = ctx.rt.keyring
    problems: list[tuple[str, str]] = []  # (status, text)
    with ctx.rt.engine.connect() as conn:
        rows_per_key = values_per_key(conn)
        usage = {int(k): int(n) for k, n in conn.execute(
            select(KeyUsage.key_id, KeyUsage.encryptions))}
    max_age = timedelta(days=int(ctx.limit("key_max_age_days")))
    primary = keyring.primary
    age_days = (ctx.now - primary.created_at).days
    if ctx.now - primary.created_at > max_age:
        problems.append(("warn", f"primary key {primary.id} is {age_days} days old "
                                 f"(rotate after {max_age.days})"))
    lagging = {k: n for k, n in rows_per_key.items() if k != keyring.primary_id}
    for key_id, count in sorted(lagging.items()):
        key = keyring.field_keys.get(key_id)
        if key is None:
            problems.append(("fail", f"{count} values under key {key_id}, absent from "
                                     "the keyring"))
        elif key.status == "retired":
            problems.append(("fail", f"{count} values under retired key {key_id}"))
        else:
            problems.append(("warn", f"{count} values still under old key {key_id}"))
    for key_id, used in sorted(usage.items()):
        if used >= NONCE_LIMIT:
            problems.append(("fail", f"key {key_id} used for {used} encryptions, past the "
                                     "random-nonce limit 2^32"))
        elif used >= USAGE_WARN:
            problems.append(("warn", f"key {key_id} used for {used} encryptions, past "
                                     "2^30 (limit 2^32)"))
    permissions = "from the environment"
    if keyring.source != "memory" and not keyring.source.startswith("$"):
        try:
            check_private(ctx.rt.settings.keyring_path)
            permissions = "owner-only"
        except RefusedError as exc:
            permissions = "too open"
            problems.append(("fail", str(exc)))
    evidence = {"primary_key": primary.id, "primary_age_days": age_days,
                "values_per_key": {str(k): v for k, v in sorted(rows_per_key.items())},
                "encryptions_per_key": {str(k): v for k, v in sorted(usage.items())},
                "keyring_permissions": permissions}
    if not problems:
        return _ok(name, f"primary key {primary.id} ({age_days} days old) holds every "
                         "value; usage below the nonce limit; keyring owner-only",
                   **evidence)
    return Finding(name, _worst([s for s, _ in problems]), "; ".join(t for _, t in problems),
                   "`polysec keys add`, `keys promote`, then `keys rotate` until no value "
                   "is under an old key; chmod 600 the keyring file", evidence)


# --------------------------------------------------------------- blind_index_consistency


def blind_index_consistency(ctx: CheckContext) -> Finding:
    name = "blind_index_consistency"
    table = Account.__table__
    mismatched: list[str] = []
    undecryptable = 0
    checked = 0
    with ctx.rt.engine.connect() as conn:
        open_email = ctx.rt.cipher.opener("accounts", "email")
        index = ctx.rt.blind_index.email
        for row_key, email_enc, bidx in _keyset(conn, table, [table.c.email_enc,
                                                              table.c.email_bidx],
                                                ctx.sample, ctx.dialect):
            checked += 1
            try:
                email = open_email(row_key, email_enc)
            except CheckFailed:
                undecryptable += 1  # encryption_coverage reports these
                continue
            if index(normalise_email(email)) != bytes(bidx):
                mismatched.append(str(uuid.UUID(bytes=row_key)))
        duplicates = conn.execute(
            select(func.count()).select_from(
                select(table.c.email_bidx).group_by(table.c.email_bidx)
                .having(func.count() > 1).subquery())
        ).scalar_one()
    evidence = {"accounts_checked": checked, "mismatched": len(mismatched),
                "mismatched_rows": _ids(mismatched), "duplicate_index_values": duplicates,
                "undecryptable_skipped": undecryptable}
    if mismatched:
        return Finding(name, "fail", f"{len(mismatched)} accounts whose email blind index "
                                     "does not match their email",
                       "recompute the blind index of those accounts (re-ingest them); "
                       "lookups by email miss them until then", evidence)
    if duplicates:
        return Finding(name, "warn", f"{duplicates} email blind-index values shared by "
                                     "more than one account",
                       "check the accounts for duplicate registrations", evidence)
    return _ok(name, f"{checked} accounts: every blind index matches its email", **evidence)


# ------------------------------------------------------------------------ officer_hygiene


def officer_hygiene(ctx: CheckContext) -> Finding:
    name = "officer_hygiene"
    inactive_after = timedelta(days=int(ctx.limit("officer_inactive_days")))
    with ctx.rt.sessions() as session:
        officers = session.scalars(select(Officer).where(Officer.disabled.is_(False))).all()
        stale_tokens = session.execute(
            select(OfficerSession.id, Officer.name)
            .join(Officer, Officer.id == OfficerSession.officer_id)
            .where(OfficerSession.kind == "token", OfficerSession.revoked_at.is_(None),
                   OfficerSession.expires_at <= ctx.now)
        ).all()
    no_totp = sorted(o.name for o in officers
                     if o.role != "automation" and o.totp_secret_enc is None)
    inactive = sorted(o.name for o in officers if o.role != "automation"
                      and ctx.now - (o.last_login_at or o.created_at) > inactive_after)
    evidence = {"active_officers": len(officers), "without_totp": no_totp,
                "inactive": inactive,
                "expired_tokens_not_revoked": sorted({n for _, n in stale_tokens})}
    parts = []
    if no_totp:
        parts.append(f"{len(no_totp)} officers without TOTP")
    if inactive:
        parts.append(f"{len(inactive)} officers inactive for more than "
                     f"{inactive_after.days} days")
    if stale_tokens:
        parts.append(f"{len(stale_tokens)} expired automation tokens not revoked")
    if not parts:
        return _ok(name, f"{len(officers)} active officers: all with TOTP, all active "
                         f"within {inactive_after.days} days; no stale tokens", **evidence)
    return Finding(name, "fail", "; ".join(parts),
                   "`polysec officer totp-reset` or `officer disable` for those officers; "
                   "`polysec officer token revoke` for stale tokens", evidence)


# -------------------------------------------------------------------- client_2fa_coverage


def client_2fa_coverage(ctx: CheckContext) -> Finding:
    name = "client_2fa_coverage"
    minimum = float(ctx.limit("client_2fa_min_coverage"))
    with ctx.rt.sessions() as session:
        total = session.scalar(select(func.count()).select_from(Account)) or 0
        enrolled = session.scalar(select(func.count()).select_from(TotpEnrolment)) or 0
        recent_without = session.scalar(
            select(func.count(func.distinct(Withdrawal.account_id)))
            .outerjoin(TotpEnrolment, TotpEnrolment.account_id == Withdrawal.account_id)
            .where(TotpEnrolment.id.is_(None),
                   Withdrawal.requested_at >= ctx.now - timedelta(days=30))
        ) or 0
    coverage = enrolled / total if total else 1.0
    evidence = {"accounts": total, "enrolled": enrolled, "coverage": round(coverage, 4),
                "minimum": minimum, "withdrawing_without_2fa_30d": recent_without}
    summary = (f"{enrolled} of {total} accounts ({coverage:.1%}) have TOTP; "
               f"{recent_without} withdrew in 30 days without it")
    remediation = ("require 2FA enrolment before withdrawals; contact the accounts "
                   "without it")
    if coverage < minimum or recent_without:
        return Finding(name, "fail", summary, remediation, evidence)
    if enrolled < total:
        return Finding(name, "warn", summary, remediation, evidence)
    return _ok(name, summary, **evidence)


# ------------------------------------------------------------------------- auditlog_chain


def auditlog_chain(ctx: CheckContext) -> Finding:
    report = ctx.rt.audit.verify(ctx.rt.engine)
    evidence = {"entries_checked": report.entries_checked, "head_seq": report.head_seq,
                "first_bad_seq": report.first_bad_seq}
    if report.ok:
        return _ok("auditlog_chain", report.message(), **evidence)
    return Finding("auditlog_chain", "fail", report.message(),
                   "treat as an incident: compare with the last exported checkpoint "
                   "(`polysec auditlog verify --checkpoint`) and the backups", evidence)


# ----------------------------------------------------------------------- backup_freshness


def backup_freshness(ctx: CheckContext) -> Finding:
    name = "backup_freshness"
    max_age = timedelta(hours=int(ctx.limit("backup_max_age_hours")))
    good = ("complete", "verified")
    with ctx.rt.sessions() as session:
        def latest(*conditions: Any) -> datetime | None:
            return session.scalar(select(func.max(BackupRecord.created_at))
                                  .where(BackupRecord.status.in_(good), *conditions))
        last_good = latest()
        last_verified = latest(BackupRecord.verified_at.is_not(None))
        last_shipped = latest(BackupRecord.shipped_at.is_not(None))

    def age(at: datetime | None) -> float | None:
        return None if at is None else round((ctx.now - at).total_seconds() / 3600, 1)

    evidence = {"last_good_age_hours": age(last_good),
                "last_verified_age_hours": age(last_verified),
                "last_shipped_age_hours": age(last_shipped),
                "max_age_hours": max_age.total_seconds() / 3600}
    remediation = ("check the backup timer (`polysec backup schedule --print systemd`), "
                   "then `polysec backup create`, `backup verify`, `backup ship`")

    def fresh(at: datetime | None) -> bool:
        return at is not None and ctx.now - at <= max_age

    if not fresh(last_good):
        return Finding(name, "fail", "no good backup within "
                       f"{evidence['max_age_hours']:g} h (last: "
                       f"{_age_text(evidence['last_good_age_hours'])})", remediation, evidence)
    missing = [what for what, at in (("verified", last_verified), ("shipped", last_shipped))
               if not fresh(at)]
    if missing:
        return Finding(name, "warn", f"last backup is fresh but no {' or '.join(missing)} "
                       f"backup within {evidence['max_age_hours']:g} h", remediation,
                       evidence)
    return _ok(name, "a backup verified and shipped within "
                     f"{evidence['max_age_hours']:g} h", **evidence)


def _age_text(hours: float | None) -> str:
    return "never" if hours is None else f"{hours:g} h ago"


# ----------------------------------------------------------------------------- review_sla


def review_sla(ctx: CheckContext) -> Finding:
    name = "review_sla"
    sla = timedelta(hours=float(ctx.limit("review_sla_hours")))
    since = func.coalesce(WithdrawalScreening.screened_at, Withdrawal.requested_at)
    with ctx.rt.sessions() as session:
        overdue = session.execute(
            select(Withdrawal.external_id)
            .outerjoin(WithdrawalScreening,
                       WithdrawalScreening.withdrawal_id == Withdrawal.id)
            .where(Withdrawal.status.in_(("held", "in_review")), since < ctx.now - sla)
            .order_by(since)
        ).scalars().all()
        waiting = session.scalar(select(func.count()).select_from(Withdrawal)
                                 .where(Withdrawal.status.in_(("held", "in_review")))) or 0
    evidence = {"waiting": waiting, "past_sla": len(overdue), "withdrawals": _ids(overdue),
                "sla_hours": sla.total_seconds() / 3600}
    if overdue:
        return Finding(name, "fail", f"{len(overdue)} of {waiting} held withdrawals wait "
                       f"longer than {evidence['sla_hours']:g} h",
                       "review the oldest held withdrawals first "
                       "(`polysec withdrawals list --status held`)", evidence)
    return _ok(name, f"{waiting} held withdrawals, none past "
                     f"{evidence['sla_hours']:g} h", **evidence)


# --------------------------------------------------------------------------- incident_age


def incident_age(ctx: CheckContext) -> Finding:
    name = "incident_age"
    max_open = timedelta(days=float(ctx.limit("incident_max_open_days")))
    with ctx.rt.sessions() as session:
        stale = session.execute(
            select(Incident.id).where(Incident.state.in_(("open", "contained")),
                                      Incident.opened_at < ctx.now - max_open)
            .order_by(Incident.opened_at)
        ).scalars().all()
        active = session.scalar(select(func.count()).select_from(Incident)
                                .where(Incident.state.in_(("open", "contained")))) or 0
    days = max_open.total_seconds() / 86400
    evidence = {"active": active, "open_too_long": len(stale), "incidents": _ids(stale),
                "max_open_days": days}
    if stale:
        return Finding(name, "warn", f"{len(stale)} of {active} active incidents open "
                       f"longer than {days:g} days",
                       "work them or close them with an outcome "
                       "(`polysec incidents list`, `incidents close`)", evidence)
    return _ok(name, f"{active} active incidents, none open longer than {days:g} days",
               **evidence)


# --------------------------------------------------------------------- pending_migrations


def pending_migrations(ctx: CheckContext) -> Finding:
    current = migrate.current_revision(ctx.rt.engine)
    head = migrate.head_revision()
    evidence = {"current": current, "head": head}
    if current == head:
        return _ok("pending_migrations", f"schema at {head}, the latest", **evidence)
    return Finding("pending_migrations", "fail",
                   f"schema at {current}, this polysec expects {head}",
                   "take a backup, then `polysec db upgrade`", evidence)


# ------------------------------------------------------------------- database server only


def _is_loopback(host: str | None) -> bool:
    return host in (None, "", "localhost", "127.0.0.1", "::1") or (
        host is not None and host.startswith("/"))


def judge_tls(encrypted: bool, host: str | None, detail: str) -> Finding:
    evidence = {"host": host or "(local socket)", "tls": encrypted, "detail": detail}
    if encrypted:
        return _ok("db_connection_tls", f"connection encrypted ({detail})", **evidence)
    remediation = ("enable TLS on the server and connect with sslmode=verify-full "
                   "(PostgreSQL) or ssl_ca/ssl_verify_cert (MariaDB)")
    if _is_loopback(host):
        return Finding("db_connection_tls", "warn", "connection not encrypted (loopback "
                       "only, so not on the network)", remediation, evidence)
    return Finding("db_connection_tls", "fail", f"connection to {host} not encrypted",
                   remediation, evidence)


def db_connection_tls(ctx: CheckContext) -> Finding:
    host = ctx.rt.engine.url.host
    with ctx.rt.engine.connect() as conn:
        if ctx.dialect == "postgresql":
            row = conn.execute(text(
                "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )).one_or_none()
            encrypted = bool(row and row[0])
            detail = f"{row[1]} {row[2]}" if encrypted and row else "no TLS"
        else:
            row = conn.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one_or_none()
            cipher = str(row[1]) if row else ""
            encrypted = bool(cipher)
            detail = cipher or "no TLS"
    return judge_tls(encrypted, host, detail)


def db_role_privileges(ctx: CheckContext) -> Finding:
    name = "db_role_privileges"
    problems: list[str] = []
    with ctx.rt.engine.connect() as conn:
        if ctx.dialect == "postgresql":
            role, superuser = conn.execute(text(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
            )).one()
            owned = conn.execute(text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                "AND tableowner = current_user")).scalar_one()
            if superuser:
                problems.append(f"role {role} is a superuser")
            if owned:
                problems.append(f"role {role} owns {owned} tables (an owner can drop them)")
        else:
            role = conn.execute(text("SELECT CURRENT_USER()")).scalar_one()
            grants = [str(r[0]) for r in conn.execute(text("SHOW GRANTS"))]
            database = conn.execute(text("SELECT DATABASE()")).scalar_one()
            for grant in grants:
                privileges = grant.split(" ON ", 1)[0].upper()
                scope = grant.split(" ON ", 1)[1].split(" TO ", 1)[0] if " ON " in grant else ""
                applies = scope.startswith("*.*") or f"`{database}`" in scope
                if not applies:
                    continue
                if "ALL PRIVILEGES" in privileges:
                    problems.append(f"{role} has ALL PRIVILEGES on {scope}")
                elif re.search(r"\b(DROP|SUPER)\b", privileges):
                    problems.append(f"{role} may DROP or has SUPER on {scope}")
    evidence = {"role": str(role), "problems": problems}
    if problems:
        return Finding(name, "fail", "; ".join(problems),
                       "run the console as a role with SELECT, INSERT, UPDATE, DELETE on "
                       "its tables (and CREATE TEMPORARY TABLES on MariaDB) only; keep "
                       "schema changes (`polysec db upgrade`) for a "
                       "separate owner role (docs/audit.md)", evidence)
    return _ok(name, f"role {role} is not a superuser and cannot drop tables", **evidence)


# ------------------------------------------------------------------------------ registry

SERVER_DIALECTS = ("postgresql", "mysql", "mariadb")

CHECKS: dict[str, CheckSpec] = {spec.name: spec for spec in (
    CheckSpec("encryption_coverage", "PII encrypted and bound to its row",
              encryption_coverage),
    CheckSpec("key_hygiene", "Field key age, rotation lag, usage, keyring file",
              key_hygiene),
    CheckSpec("blind_index_consistency", "Email blind index matches the email",
              blind_index_consistency),
    CheckSpec("officer_hygiene", "Officers: TOTP, activity, automation tokens",
              officer_hygiene),
    CheckSpec("client_2fa_coverage", "Clients with TOTP", client_2fa_coverage),
    CheckSpec("auditlog_chain", "Officer audit log hash chain", auditlog_chain),
    CheckSpec("backup_freshness", "Last good, verified and shipped backup",
              backup_freshness),
    CheckSpec("review_sla", "Held withdrawals within the review SLA", review_sla),
    CheckSpec("incident_age", "Incidents not left open too long", incident_age),
    CheckSpec("pending_migrations", "Schema at the latest revision", pending_migrations),
    CheckSpec("db_connection_tls", "Database connection encrypted", db_connection_tls,
              SERVER_DIALECTS),
    CheckSpec("db_role_privileges", "Console's database role least-privileged",
              db_role_privileges, SERVER_DIALECTS),
)}


def applicable(rt: Runtime) -> list[str]:
    dialect = rt.engine.dialect.name
    return [name for name, spec in CHECKS.items() if dialect in spec.dialects]


def select_checks(rt: Runtime, only: tuple[str, ...] | list[str]) -> list[str]:
    if not only:
        return applicable(rt)
    unknown = [n for n in only if n not in CHECKS]
    if unknown:
        raise InputError(f"unknown check {unknown[0]!r}; known: {', '.join(CHECKS)}")
    dialect = rt.engine.dialect.name
    for name in only:
        if dialect not in CHECKS[name].dialects:
            raise InputError(f"check {name} applies to PostgreSQL and MariaDB only")
    return list(dict.fromkeys(only))


Progress = Callable[[str, int, int], None]


def run(rt: Runtime, actor: Actor, only: tuple[str, ...] | list[str] = (), *,
        sample: int | None = None, progress: Progress | None = None) -> AuditRunReport:
    """Run the chosen checks (all that apply by default), store and audit the run."""
    require(actor, "audit.run")
    if sample is not None and sample < 1:
        raise InputError("--sample must be at least 1")
    names = select_checks(rt, only)
    started = rt.clock()
    limits = {**DEFAULTS, **rt.settings.section("audit")}
    ctx = CheckContext(rt, started, sample, limits)
    findings: list[Finding] = []
    for done, name in enumerate(names):
        if progress:
            progress(name, done, len(names))
        try:
            findings.append(CHECKS[name].run(ctx))
        except (CheckFailed, InputError, RefusedError) as exc:
            findings.append(Finding(name, "fail", f"check could not complete: {exc}",
                                    "fix the cause and run the check again"))
    if progress:
        progress("", len(names), len(names))
    return store_run(rt, actor, findings, started, {"checks": names, "sample": sample})


def store_run(rt: Runtime, actor: Actor, findings: list[Finding], started: datetime,
              details: dict[str, Any]) -> AuditRunReport:
    """Store a run with its findings and record it in the officer audit log."""
    finished = rt.clock()
    result = _worst([f.status for f in findings])
    with rt.transaction() as session:
        record = AuditRun(started_at=started, finished_at=finished, officer_id=actor.officer_id,
                          result=result)
        session.add(record)
        session.flush()
        session.add_all(AuditFinding(run_id=record.id, check_name=f.check, status=f.status,
                                     summary=f.summary, evidence=f.evidence,
                                     remediation=f.remediation) for f in findings)
        rt.audit.append(session, officer=actor.name, action="audit.run", at=finished,
                        target=f"audit-run:{record.id}",
                        details={"result": result, **details,
                                 "failed": [f.check for f in findings if f.status == "fail"]})
        run_id = record.id
    return AuditRunReport(run_id, started, finished, result, findings)


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    started_at: datetime
    officer: str | None
    result: str | None
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "started_at": self.started_at.isoformat(),
                "officer": self.officer, "result": self.result, "counts": self.counts}


def history(rt: Runtime, actor: Actor, limit: int = 20) -> list[RunSummary]:
    """The latest runs, newest first, with pass/warn/fail counts (the trend)."""
    require(actor, "audit.run")
    with rt.sessions() as session:
        runs = session.execute(
            select(AuditRun, Officer.name)
            .outerjoin(Officer, Officer.id == AuditRun.officer_id)
            .order_by(AuditRun.id.desc()).limit(limit)
        ).all()
        ids = [r.id for r, _ in runs]
        counts: dict[int, dict[str, int]] = {i: dict.fromkeys(STATUSES, 0) for i in ids}
        if ids:
            for run_id, status, n in session.execute(
                select(AuditFinding.run_id, AuditFinding.status, func.count())
                .where(AuditFinding.run_id.in_(ids))
                .group_by(AuditFinding.run_id, AuditFinding.status)
            ):
                counts[run_id][status] = int(n)
    return [RunSummary(r.id, r.started_at, officer, r.result, counts[r.id])
            for r, officer in runs]


def findings_of(rt: Runtime, actor: Actor, run_id: int) -> list[Finding]:
    require(actor, "audit.run")
    with rt.sessions() as session:
        rows = session.scalars(select(AuditFinding).where(AuditFinding.run_id == run_id)
                               .order_by(AuditFinding.id)).all()
    return [Finding(r.check_name, r.status, r.summary, r.remediation, dict(r.evidence))
            for r in rows]

