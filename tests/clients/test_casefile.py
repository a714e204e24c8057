"""A case file for the regulator (`polysec incidents export`): the incident's timeline,
decisions and accounts, masked unless a senior officer reveals fields with a reason,
inert HTML whatever the platform sent, and its digest in the audit log. Every database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import AuditLogEntry
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.clients import casefile, incidents
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.cli import run_cli
from tests.support.helpers import account, ingest, withdrawal
from tests.support.officers import MovableClock, Staff, commands_use_clock, make_staff

HOSTILE = "<script>alert(1)</script>\x1b[31m \u202eevil"


@pytest.fixture
def staff(settings) -> Iterator[Staff]:
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    ingest(rt, "accounts", account("A1", full_name=f"Zoë {HOSTILE}"))
    ingest(rt, "withdrawals", withdrawal("W1", at="2026-11-20T09:00:00Z"))
    yield made
    rt.engine.dispose()


def _incident(staff: Staff) -> int:
    number = incidents.open_incident(staff.rt, staff.actors["ann"], title=f"takeover {HOSTILE}",
                                     severity="high", accounts=["A1"], note=f"Zoë {HOSTILE}")
    incidents.link_many(staff.rt, staff.actors["ann"], number, [("withdrawal", "W1")])
    return number


def test_a_masked_case_file_and_its_digest_in_the_audit_log(staff: Staff) -> None:
    number = _incident(staff)
    made = casefile.export(staff.rt, staff.actors["ann"], number, "json")
    doc = json.loads(made.data)
    assert doc["format"] == "polysec-case-file-v1" and doc["incident"]["id"] == number
    (client,) = doc["accounts"]
    assert client["account"] == "A1" and client["email"] == "a***@e***.com"
    assert "a1.doe@example.com" not in made.data.decode()
    assert "Hauptstrasse" not in made.data.decode()
    assert {t["kind"] for t in doc["timeline"]} >= {"note", "withdrawal", "audit_entry"}
    assert doc["audit_evidence"] and all(len(e["hash"]) == 64 for e in doc["audit_evidence"])
    assert doc["personal_data"] == {"revealed": [], "note": "masked"}
    assert made.sha256 == hashlib.sha256(made.data).hexdigest()
    with staff.rt.sessions() as s:
        entry = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "incident.export")).one()
        assert entry.officer == "ann" and entry.target == f"incident:{number}"
        assert made.sha256 in entry.details and '"format":"json"' in entry.details


def test_html_is_inert_and_ascii(staff: Staff) -> None:
    page = casefile.export(staff.rt, staff.actors["ann"], _incident(staff), "html").data
    text = page.decode("ascii")  # nothing outside ASCII
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "\x1b" not in text and "\u202e" not in text and "\\x1b" in text
    assert "Zo&#235;" in text
    assert "Content-Security-Policy" in text


def test_revealing_needs_a_senior_and_a_reason_and_is_audited(staff: Staff) -> None:
    number = _incident(staff)
    with pytest.raises(RefusedError):
        casefile.export(staff.rt, staff.actors["ann"], number, "json", reveal=("email",),
                        reason="regulator request 2026-114")
    with pytest.raises(InputError, match="reason"):
        casefile.export(staff.rt, staff.actors["sue"], number, "json", reveal=("email",))
    with pytest.raises(InputError, match="unknown field"):
        casefile.export(staff.rt, staff.actors["sue"], number, "json", reveal=("iban",),
                        reason="regulator request 2026-114")
    made = casefile.export(staff.rt, staff.actors["sue"], number, "json",
                           reveal=("email", "full_name"), reason="regulator request 2026-114")
    (client,) = json.loads(made.data)["accounts"]
    assert client["email"] == "a1.doe@example.com" and client["phone"] != "+49 170 1234512"
    with staff.rt.sessions() as s:
        entry = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "incident.export")).one()
        assert entry.officer == "sue"
        assert '"revealed":["email","full_name"]' in entry.details
        assert "regulator request 2026-114" in entry.details
        reveals = s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "pii.reveal")).all()  # by account, as any reveal
        assert sorted((e.target, e.officer) for e in reveals) == [
            ("account:A1", "sue"), ("account:A1", "sue")]


def test_the_command_writes_a_new_private_file(staff: Staff, cli_env, capsys, monkeypatch,
                                               tmp_path: Path) -> None:
    token, _ = staff.login("ann")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    commands_use_clock(monkeypatch, staff.clock)
    number = _incident(staff)
    out = tmp_path / "case.json"
    made = run_cli(capsys, "incidents", "export", str(number), "--format", "json",
                   "--out", str(out))
    assert made.code == 0, made.err
    assert out.stat().st_mode & 0o777 == 0o600
    assert hashlib.sha256(out.read_bytes()).hexdigest() in made.out
    again = run_cli(capsys, "incidents", "export", str(number), "--out", str(out))
    assert again.code == 2
    with staff.rt.sessions() as s:  # the refused export wrote nothing and is not audited
        assert len(s.scalars(select(AuditLogEntry).where(
            AuditLogEntry.action == "incident.export")).all()) == 1
