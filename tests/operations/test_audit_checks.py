"""`polysec audit run`: each check passes on a healthy database and fails on a planted
fault, on every database where it applies."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select, text, update

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import (
    Account,
    AuditLogEntry,
    AuditRun,
    BackupRecord,
    KeyUsage,
    LoginEvent,
    Officer,
    OfficerSession,
    Withdrawal,
)
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.officers import sessions
from polysec_tui.services.operations import audit_checks
from polysec_tui.services.operations.audit_checks import judge_tls
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.cli import run_cli
from tests.support.helpers import account, ingest, login, withdrawal
from tests.support.officers import MovableClock, Staff, make_staff
from tests.support.roles import row_only_role

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def staff(settings) -> Iterator[Staff]:
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    enrolled = {"totp_secret": SECRET, "totp_enrolled_at": "2025-01-02T00:00:00Z"}
    ingest(rt, "accounts", account("A1", **enrolled), account("A2", **enrolled),
           account("A3", phone=None, **enrolled))
    ingest(rt, "logins", login("L1"), login("L2", acct="A2", ip="2001:db8::1"))
    yield made
    rt.engine.dispose()


def check(staff: Staff, name: str, **kw: Any) -> audit_checks.Finding:
    report = audit_checks.run(staff.rt, staff.actors["sue"], [name], **kw)
    (finding,) = report.findings
    return finding


def add_backup(rt: Runtime, age: timedelta, *, verified: bool, shipped: bool) -> None:
    at = FIXED_NOW - age
    with rt.transaction() as s:
        s.add(BackupRecord(id=uuid.uuid4(), created_at=at, path="/b/x.psbk", engine="sqlite",
                           size_bytes=1, sha256="0" * 64, alembic_revision="0001",
                           field_key_ids={}, verified_at=at if verified else None,
                           shipped_at=at if shipped else None,
                           shipped_to="sftp://b@h/x" if shipped else None,
                           status="verified" if verified else "complete"))


# ------------------------------------------------------------------ encryption_coverage


def test_encryption_coverage_passes_then_fails_on_a_swapped_ciphertext(staff):
    found = check(staff, "encryption_coverage")
    assert found.status == "pass" and found.evidence["values_checked"] >= 13
    with staff.rt.transaction() as s:
        a1, a2 = s.scalars(select(Account).order_by(Account.external_id).limit(2)).all()
        a1.phone_enc = a2.phone_enc  # valid ciphertext, bound to another row
    found = check(staff, "encryption_coverage")
    assert found.status == "fail"
    bad = found.evidence["undecryptable"]["accounts.phone"]
    assert bad["count"] == 1 and bad["rows"] == [str(a1.id)]
    assert "+49" not in json.dumps(found.to_dict())  # evidence never carries plaintext


def test_encryption_coverage_finds_plaintext_in_platform_text(staff):
    ingest(staff.rt, "logins",
           login("L3", user_agent="Mozilla/5.0 (X11) contact: jane.doe@example.com"),
           login("L4", user_agent="Mozilla/5.0 (+https://example.com/bot) Version/17.1"),
           login("L5", device_id="phone +44 20 7946 0958"))
    found = check(staff, "encryption_coverage")
    assert found.status == "fail"
    plain = found.evidence["plaintext_like"]
    with staff.rt.sessions() as s:
        ids = dict(s.execute(select(LoginEvent.external_id, LoginEvent.id)).all())
    assert plain["login_events.user_agent"]["rows"] == [str(ids["L3"])]
    assert plain["login_events.device_id"]["rows"] == [str(ids["L5"])]
    assert "jane.doe@example.com" not in json.dumps(found.to_dict())


def test_encryption_coverage_sample(staff):
    found = check(staff, "encryption_coverage", sample=1)
    assert found.status == "pass" and found.evidence["sampled"]
    # one row per encrypted table: 5 account fields + 1 client secret + 1 officer secret
    assert found.evidence["values_checked"] <= 7


# --------------------------------------------------------------------------- key_hygiene


def test_key_hygiene_passes_on_a_fresh_keyring(staff):
    found = check(staff, "key_hygiene")
    assert found.status == "pass", found.summary
    assert found.evidence["keyring_permissions"] == "owner-only"
    assert sum(found.evidence["values_per_key"].values()) >= 13


def test_key_hygiene_fails_on_an_open_keyring_and_worn_key(staff):
    os.chmod(staff.rt.settings.keyring_path, 0o644)
    with staff.rt.transaction() as s:
        s.execute(update(KeyUsage).values(encryptions=2**32))
    found = check(staff, "key_hygiene")
    assert found.status == "fail"
    assert "chmod 600" in found.summary and "random-nonce limit" in found.summary


def test_key_hygiene_warns_on_an_old_primary(staff):
    staff.clock.advance(days=400)
    found = check(staff, "key_hygiene")
    assert found.status == "warn" and "days old" in found.summary


# --------------------------------------------------------------- blind_index_consistency


def test_blind_index_consistency(staff):
    assert check(staff, "blind_index_consistency").status == "pass"
    with staff.rt.transaction() as s:
        a1 = s.scalar(select(Account).where(Account.external_id == "A1"))
        a1.email_bidx = b"\x00" * 16
    found = check(staff, "blind_index_consistency")
    assert found.status == "fail" and found.evidence["mismatched_rows"] == [str(a1.id)]


# ------------------------------------------------------------------------ officer_hygiene


def test_officer_hygiene(staff):
    assert check(staff, "officer_hygiene").status == "pass"
    with staff.rt.transaction() as s:
        s.execute(update(Officer).where(Officer.name == "ann").values(totp_secret_enc=None))
    sessions.create_token(staff.rt, staff.actors["root"], "cron")
    staff.clock.advance(days=400)  # tokens expired, officers idle
    found = check(staff, "officer_hygiene")
    assert found.status == "fail"
    assert found.evidence["without_totp"] == ["ann"]
    assert "sue" in found.evidence["inactive"]
    assert found.evidence["expired_tokens_not_revoked"] == ["cron"]


def test_officer_hygiene_ignores_revoked_tokens(staff):
    with staff.rt.transaction() as s:
        s.execute(update(OfficerSession).where(OfficerSession.kind == "token")
                  .values(revoked_at=FIXED_NOW))
        s.execute(update(Officer).values(last_login_at=FIXED_NOW + timedelta(days=100)))
    staff.clock.advance(days=100)
    assert check(staff, "officer_hygiene").status == "pass"


# -------------------------------------------------------------------- client_2fa_coverage


def test_client_2fa_coverage(staff):
    assert check(staff, "client_2fa_coverage").status == "pass"
    ingest(staff.rt, "accounts", *[account(f"B{i}") for i in range(2)])
    found = check(staff, "client_2fa_coverage")
    assert found.status == "fail" and found.evidence["coverage"] == 0.6


def test_client_2fa_coverage_fails_on_a_withdrawal_without_2fa(staff):
    ingest(staff.rt, "accounts", *[account(f"B{i}", totp_secret=SECRET,
                                           totp_enrolled_at="2025-01-01T00:00:00Z")
                                   for i in range(30)], account("N1"))
    assert check(staff, "client_2fa_coverage").status == "warn"
    ingest(staff.rt, "withdrawals", withdrawal("W9", acct="N1", at="2026-11-19T10:00:00Z"))
    found = check(staff, "client_2fa_coverage")
    assert found.status == "fail" and found.evidence["withdrawing_without_2fa_30d"] == 1


# ------------------------------------------------------------------------- auditlog_chain


def test_auditlog_chain_fails_on_an_edited_entry(staff):
    assert check(staff, "auditlog_chain").status == "pass"
    with staff.rt.transaction() as s:
        s.execute(update(AuditLogEntry).where(AuditLogEntry.seq == 2)
                  .values(action="officer.nothing"))
    found = check(staff, "auditlog_chain")
    assert found.status == "fail" and found.evidence["first_bad_seq"] == 2


# ----------------------------------------------------------------------- backup_freshness


def test_backup_freshness(staff):
    assert check(staff, "backup_freshness").status == "fail"  # never backed up
    add_backup(staff.rt, timedelta(hours=30), verified=True, shipped=True)
    found = check(staff, "backup_freshness")
    assert found.status == "fail" and found.evidence["last_good_age_hours"] == 30
    add_backup(staff.rt, timedelta(hours=2), verified=False, shipped=False)
    found = check(staff, "backup_freshness")
    assert found.status == "warn" and "verified or shipped" in found.summary
    add_backup(staff.rt, timedelta(hours=1), verified=True, shipped=True)
    assert check(staff, "backup_freshness").status == "pass"


# ----------------------------------------------------------------------------- review_sla


def test_review_sla(staff):
    ingest(staff.rt, "withdrawals", withdrawal("W1", at="2026-11-20T11:00:00Z"),
           withdrawal("W2", at="2026-11-20T02:00:00Z"))
    assert check(staff, "review_sla").status == "pass"  # nothing held
    with staff.rt.transaction() as s:
        s.execute(update(Withdrawal).values(status="held"))
    found = check(staff, "review_sla")
    assert found.status == "fail" and found.evidence["withdrawals"] == ["W2"]
    assert found.evidence["waiting"] == 2


# --------------------------------------------------------------------------- incident_age


def test_incident_age_warns_on_incidents_left_open(staff):
    from polysec_tui.services.clients import incidents

    number = incidents.open_incident(staff.rt, staff.actors["ann"], title="odd logins",
                                     severity="low", accounts=["A1"])
    assert check(staff, "incident_age").status == "pass"
    staff.clock.advance(days=8)
    found = check(staff, "incident_age")
    assert found.status == "warn" and found.evidence["incidents"] == [str(number)]
    incidents.set_state(staff.rt, staff.actors["sue"], number, "closed",
                        outcome="false_alarm")
    assert check(staff, "incident_age").status == "pass"


# --------------------------------------------------------------------- pending_migrations


def test_pending_migrations(staff):
    assert check(staff, "pending_migrations").status == "pass"
    head = migrate.head_revision()
    with staff.rt.transaction() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        found = check(staff, "pending_migrations")
    finally:  # the server databases are shared by the whole run
        with staff.rt.transaction() as s:
            s.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert found.status == "fail" and found.evidence["current"] == "0001"


# ------------------------------------------------------------------- database server only


def test_server_checks_apply_only_to_servers(staff, db_url):
    names = audit_checks.applicable(staff.rt)
    if db_url.startswith("sqlite"):
        assert "db_connection_tls" not in names and "db_role_privileges" not in names
        with pytest.raises(InputError, match="PostgreSQL and MariaDB only"):
            audit_checks.run(staff.rt, staff.actors["sue"], ["db_role_privileges"])
        return
    tls = check(staff, "db_connection_tls")
    assert tls.status == "warn" and "loopback" in tls.summary  # the test servers: no TLS
    # the tests connect as postgres / root: both may drop tables
    privileges = check(staff, "db_role_privileges")
    assert privileges.status == "fail"


def test_tls_judgement():
    assert judge_tls(True, "db.internal", "TLSv1.3").status == "pass"
    assert judge_tls(False, "127.0.0.1", "no TLS").status == "warn"
    assert judge_tls(False, "db.internal", "no TLS").status == "fail"


@pytest.fixture
def restricted_url(db_url) -> Iterator[str]:
    """The same database reached through a role that may read and write rows only."""
    with row_only_role(db_url) as url:
        yield url


def test_db_role_privileges_passes_for_a_row_only_role(staff, db_url, request):
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has no roles")
    url = request.getfixturevalue("restricted_url")
    rt = Runtime(staff.rt.settings, make_engine(url), staff.rt.keyring, clock=staff.clock)
    try:
        report = audit_checks.run(rt, staff.actors["sue"], ["db_role_privileges"])
    finally:
        rt.engine.dispose()
    (found,) = report.findings
    assert found.status == "pass", found.summary


# ----------------------------------------------------------------- runs, history, permissions


def test_a_run_is_stored_audited_and_listed(staff):
    report = audit_checks.run(staff.rt, staff.actors["sue"])
    assert report.result == "fail"  # no backup yet
    history = audit_checks.history(staff.rt, staff.actors["sue"])
    assert history[0].run_id == report.run_id
    assert history[0].counts["fail"] >= 1
    assert sum(history[0].counts.values()) == len(report.findings)
    stored = audit_checks.findings_of(staff.rt, staff.actors["sue"], report.run_id)
    assert [f.check for f in stored] == [f.check for f in report.findings]
    with staff.rt.sessions() as s:
        entry = s.scalar(select(AuditLogEntry).where(AuditLogEntry.action == "audit.run"))
        assert entry is not None and entry.target == f"audit-run:{report.run_id}"
        assert s.get(AuditRun, report.run_id).officer_id == staff.actors["sue"].officer_id


def test_analysts_may_not_run_audits(staff):
    with pytest.raises(RefusedError):
        audit_checks.run(staff.rt, staff.actors["ann"])
    with pytest.raises(InputError, match="unknown check"):
        audit_checks.run(staff.rt, staff.actors["sue"], ["nope"])


def test_the_command_formats_and_exit_codes(staff, cli_env, capsys, monkeypatch, tmp_path):
    token, _ = sessions.create_token(staff.rt, staff.actors["root"], "cron")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    ok = run_cli(capsys, "audit", "run", "--only", "auditlog_chain,pending_migrations",
                 "--format", "json")
    assert ok.code == 0, ok.err
    doc = json.loads(ok.out)
    assert doc["result"] == "pass" and len(doc["findings"]) == 2
    out = tmp_path / "report.xml"
    bad = run_cli(capsys, "audit", "run", "--only", "backup_freshness", "--only",
                  "auditlog_chain", "--format", "junit", "--out", str(out))
    assert bad.code == 1 and "audit failed: backup_freshness" in bad.err
    suite = ET.parse(out).getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    table = run_cli(capsys, "audit", "run", "--only", "backup_freshness")
    assert table.code == 1 and "FAIL  backup_freshness" in table.out and "fix:" in table.out
    listed = run_cli(capsys, "audit", "history", "--json")
    assert listed.code == 0 and len(json.loads(listed.out)) == 3
    shown = run_cli(capsys, "audit", "show", str(doc["run"]), "--json")
    assert {f["check"] for f in json.loads(shown.out)} == {"auditlog_chain",
                                                           "pending_migrations"}
    unknown = run_cli(capsys, "audit", "run", "--only", "nope")
    assert unknown.code == 2 and unknown.err.count("\n") == 1
