"""The evidence pack (`polysec evidence`): the period's audit slice with the chain's
proof, officers, reviews, backups, drills, four-eyes and rule-set history, a manifest
signed with the backup signing key, written whole; `evidence verify` catches a changed,
added or missing file, an untrusted signer and a broken slice, offline. All three
databases. And `polysec retention report`."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from polysec_tui.backup.envelope import Signer, SigningKey
from polysec_tui.db.models import AuditLogEntry
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.services.officers import reviews
from polysec_tui.services.operations import backups, evidence, retention
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.officers import Staff


def _signers(rt: Runtime) -> tuple[Signer, ...]:
    return backups.BackupConfig.from_settings(rt.settings).signers


def _pack(staff: Staff, tmp_path: Path) -> Path:
    rt = staff.rt
    backups.create_backup(rt, staff.actors["cron"])
    reviews.review(rt, staff.actors["root"], "ann", "confirmed", "still on the queue")
    with rt.transaction() as session:  # next year's: not in 2026-Q4
        rt.audit.append(session, officer="root", action="account.view",
                        at=FIXED_NOW + timedelta(days=60), target="account:x")
    out = tmp_path / "pack-2026-Q4"
    evidence.build(rt, staff.actors["root"], "2026-Q4", out)
    return out


def test_a_pack_holds_the_periods_evidence_and_verifies(staff: Staff, tmp_path: Path) -> None:
    out = _pack(staff, tmp_path)
    rt = staff.rt
    assert out.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in out.iterdir()) == [
        "access_reviews.json", "audit_chain.json", "audit_checkpoint.json",
        "audit_checks.json", "audit_log.jsonl",
        "backups.json", "drills.json", "four_eyes.json", "manifest.json", "manifest.sig",
        "officers.json", "review_sla.json", "rule_sets.json"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in out.iterdir())
    lines = [json.loads(line) for line in (out / "audit_log.jsonl").read_text().splitlines()]
    assert lines and all("2026-10-01" <= e["at"] < "2027-01-01" for e in lines)
    assert "account.view" not in {e["action"] for e in lines}  # next year's entry, the last
    chain = json.loads((out / "audit_chain.json").read_text())
    assert chain["whole_chain"]["ok"]
    from polysec_tui.services.officers import auditlog

    checkpoint = auditlog.load_checkpoint(rt, out / "audit_checkpoint.json")
    assert auditlog.verify(rt, checkpoint).ok
    officers = {o["name"]: o for o in json.loads((out / "officers.json").read_text())}
    assert officers["ann"]["role"] == "analyst" and officers["ann"]["grants"][0]["kind"] == "create"
    assert json.loads((out / "access_reviews.json").read_text())[0]["reviewer"] == "root"
    assert len(json.loads((out / "backups.json").read_text())) == 1
    report = evidence.verify(out, _signers(rt))
    assert report.ok and report.problems == [] and report.audit_entries == len(lines)
    with rt.sessions() as s:
        exported = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "evidence.export")).one()
        manifest = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
        assert exported.target == "period:2026-Q4" and manifest in exported.details
    with pytest.raises(InputError, match="exists"):
        evidence.build(rt, staff.actors["root"], "2026-Q4", out)


def test_verify_catches_every_change(staff: Staff, tmp_path: Path) -> None:
    out = _pack(staff, tmp_path)
    signers = _signers(staff.rt)
    slice_file = out / "audit_log.jsonl"
    original = slice_file.read_bytes()
    slice_file.write_bytes(original.replace(b'"officer":"root"', b'"officer":"rooT"', 1))
    assert evidence.verify(out, signers).problems == [
        "audit_log.jsonl: changed (its SHA-256 is not the manifest's)"]
    slice_file.write_bytes(original)
    (out / "extra.json").write_text("{}")
    assert evidence.verify(out, signers).problems == ["extra.json: not in the manifest"]
    (out / "extra.json").unlink()
    (out / "drills.json").unlink()
    assert evidence.verify(out, signers).problems == ["drills.json: missing"]
    stranger = SigningKey.generate().signer
    with pytest.raises(InputError, match="no trusted signers"):
        evidence.verify(out, ())
    assert "not a trusted signer" in evidence.verify(out, (stranger,)).problems[0]


def _re_sign(staff: Staff, out: Path) -> None:
    """What the signing key's holder can do: recompute the digests and sign again."""
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("audit_log.jsonl", "audit_chain.json"):
        manifest["files"][name] = hashlib.sha256((out / name).read_bytes()).hexdigest()
    _re_sign_raw(staff, out, manifest)


def test_a_slice_with_an_entry_cut_out_and_re_signed(staff: Staff, tmp_path: Path) -> None:
    """The signing key's holder cuts an entry and re-signs: a clumsy cut breaks the
    slice's linkage; a careful one (the next entry re-linked, the seqs renumbered, the
    proof adjusted) passes the public-key check, and only the audit key's MAC of each
    entry (`verify --audit-key`) shows it."""
    out = _pack(staff, tmp_path)
    original = (out / "audit_log.jsonl").read_bytes().splitlines(keepends=True)
    chain = json.loads((out / "audit_chain.json").read_text())
    chain["slice"]["entries"] -= 1
    (out / "audit_chain.json").write_text(json.dumps(chain))
    (out / "audit_log.jsonl").write_bytes(b"".join(original[:1] + original[2:]))
    _re_sign(staff, out)
    report = evidence.verify(out, _signers(staff.rt))
    assert not report.ok and "does not follow entry" in report.problems[0]
    entries = [json.loads(line) for line in original]
    del entries[1]
    for i, entry in enumerate(entries[1:], 1):
        entry["prev_hash"] = entries[i - 1]["hash"] if i == 1 else entry["prev_hash"]
        entry["seq"] = entries[0]["seq"] + i
    chain["slice"]["last_seq"] = entries[-1]["seq"]
    (out / "audit_chain.json").write_text(json.dumps(chain))
    (out / "audit_log.jsonl").write_bytes(b"".join(
        json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        for e in entries))
    _re_sign(staff, out)
    assert evidence.verify(out, _signers(staff.rt)).ok  # the public key cannot tell
    keyed = evidence.verify(out, _signers(staff.rt), audit_key=staff.rt.keyring.audit_key)
    assert not keyed.ok and "is not the one the audit key signed" in keyed.problems[0]
    fresh = _pack_again(staff, tmp_path)
    assert evidence.verify(fresh, _signers(staff.rt), audit_key=staff.rt.keyring.audit_key).ok


def _pack_again(staff: Staff, tmp_path: Path) -> Path:
    out = tmp_path / "second"
    evidence.build(staff.rt, staff.actors["root"], "2026-Q4", out)
    return out


def test_a_malformed_or_unsigned_manifest_is_a_clean_failure(staff: Staff,
                                                             tmp_path: Path) -> None:
    out = _pack(staff, tmp_path)
    signers = _signers(staff.rt)
    for body in (b"[]", b'"x"', b'{"files":"x"}', b'{"files":{"../x":"0"}}'):
        (out / "manifest.json").write_bytes(body)
        report = evidence.verify(out, signers)
        assert not report.ok and "signature does not match" in report.problems[0]
    (out / "manifest.json").write_bytes(b'{"files":{"/etc/passwd":"0"}}')
    _re_sign_raw(staff, out, {"format": evidence.FORMAT, "files": {"/etc/passwd": "0"}})
    assert evidence.verify(out, signers).problems == [
        "manifest.json: not a polysec-evidence-v1 manifest"]
    _re_sign_raw(staff, out, {"format": evidence.FORMAT, "files": {}})
    assert "audit_chain.json: not in the manifest" in evidence.verify(out, signers).problems


def _re_sign_raw(staff: Staff, out: Path, manifest: dict[str, object]) -> None:
    body = json.dumps(manifest).encode()
    (out / "manifest.json").write_bytes(body)
    key = backups.BackupConfig.from_settings(staff.rt.settings).load_signing_key()
    signature = key.private.sign(evidence.SIGNATURE_CONTEXT + hashlib.sha256(body).digest())
    (out / "manifest.sig").write_text(json.dumps(
        {"signer": str(key.signer), "signature": base64.b64encode(signature).decode()}))


def test_periods_and_refusals(staff: Staff, tmp_path: Path) -> None:
    assert evidence.period_bounds("2026-Q4")[0].isoformat() == "2026-10-01T00:00:00+00:00"
    assert evidence.period_bounds("2026-Q4")[1].isoformat() == "2027-01-01T00:00:00+00:00"
    assert evidence.period_bounds("2026-02")[1].isoformat() == "2026-03-01T00:00:00+00:00"
    assert evidence.period_bounds("2026")[1].isoformat() == "2027-01-01T00:00:00+00:00"
    for bad in ("2026-Q5", "2026-13", "Q4", "2026-4"):
        with pytest.raises(InputError, match="period"):
            evidence.period_bounds(bad)
    with pytest.raises(CheckFailed):
        evidence.verify(tmp_path, _signers(staff.rt))  # no manifest
    unsigned = dataclasses.replace(staff.rt.settings, options={})
    rt = Runtime(unsigned, staff.rt.engine, staff.rt.keyring, clock=staff.rt.clock)
    with pytest.raises(InputError, match="signing key"):
        evidence.build(rt, staff.actors["root"], "2026-Q4", tmp_path / "p")


def test_retention_report_counts_what_is_past_it(staff: Staff) -> None:
    rt = staff.rt
    with rt.transaction() as session:
        rt.audit.append(session, officer="root", action="account.view",
                        at=FIXED_NOW - timedelta(days=6 * 365), target="account:old")
    years, cutoff, found = retention.report(rt, staff.actors["root"])
    assert years == 5 and cutoff < FIXED_NOW - timedelta(days=5 * 365)
    past = {p.kind: p for p in found}
    assert past["audit log entries"].past_retention == 1
    assert past["logins"].past_retention == 0 and past["logins"].oldest is None
    bad = dataclasses.replace(rt.settings, options={"retention": {"years": 0}})
    with pytest.raises(InputError, match="years"):
        retention.years_of(bad)


def test_the_commands(staff: Staff, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.backups import backup_toml
    from tests.support.cli import as_automation, run_cli

    config = tmp_path / "polysec.toml"
    config.write_text(backup_toml(staff.rt.settings.options))
    as_automation(monkeypatch, staff.rt, staff.actors["root"], staff.rt.settings.db_url, config)
    out = tmp_path / "q4"
    made = run_cli(capsys, "evidence", "--period", "2026-Q4", "--out", str(out), "--json")
    assert made.code == 0, made.err
    assert json.loads(made.out)["period"] == "2026-Q4"
    checked = run_cli(capsys, "evidence", "verify", str(out))
    assert checked.code == 0 and checked.out.startswith("evidence pack ok: period 2026-Q4")
    (out / "officers.json").write_text("[]")
    failed = run_cli(capsys, "evidence", "verify", str(out), "--json")
    assert failed.code == 1 and json.loads(failed.out)["problems"] == [
        "officers.json: changed (its SHA-256 is not the manifest's)"]
    missing = run_cli(capsys, "evidence", "--period", "2026-Q4")
    assert missing.code == 2 and "--out" in missing.err
    shown = run_cli(capsys, "retention", "report", "--json")
    assert shown.code == 0 and json.loads(shown.out)["years"] == 5
