"""Field-key lifecycle: add, promote, rotate (resumable, nothing lost or encrypted twice),
retire (refused while anything needs the key); admin only, fresh code, audited."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from polysec_tui.crypto.fields import FieldCipher, key_id_of
from polysec_tui.crypto.keyring import KEYRING_DATA_ENV, load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import Account, AuditLogEntry, BackupRecord, Officer
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.clients import accounts
from polysec_tui.services.operations import keys
from polysec_tui.services.runtime import Runtime
from tests.support import FIXED_NOW
from tests.support.cli import run_cli
from tests.support.helpers import account, ingest
from tests.support.officers import MovableClock, Staff, commands_use_clock, make_staff


@pytest.fixture
def staff(settings) -> Iterator[Staff]:
    clock = MovableClock(FIXED_NOW)
    rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path),
                 clock=clock)
    made = make_staff(rt, clock)
    ingest(rt, "accounts", *[account(f"A{i}") for i in range(7)])
    yield made
    rt.engine.dispose()


def reopen(staff: Staff) -> Runtime:
    """A new process's view: the keyring as it is on disk now."""
    rt = staff.rt
    return Runtime(rt.settings, rt.engine, load_keyring(rt.settings.keyring_path),
                   clock=staff.clock)


def key_ids_in_use(rt: Runtime) -> set[int | None]:
    with rt.sessions() as s:
        blobs = [*s.scalars(select(Account.email_enc)),
                 *(b for b in s.scalars(select(Officer.totp_secret_enc)) if b)]
    return {key_id_of(b) for b in blobs}


def plaintexts(rt: Runtime) -> dict[str, str]:
    with rt.sessions() as s:
        rows = s.scalars(select(Account)).all()
    return {a.external_id: accounts.decrypt_pii(rt, a).email for a in rows}


def test_add_promote_rotate_retire(staff):
    before = plaintexts(staff.rt)
    new = keys.add(staff.rt, staff.actors["root"], staff.next_code("root"))
    assert new.id == 2
    keys.promote(staff.rt, staff.actors["root"], 2, staff.next_code("root"))
    rt = reopen(staff)
    assert rt.keyring.primary_id == 2 and key_ids_in_use(rt) == {1}
    ingest(rt, "accounts", account("B1"))  # new values under the new primary
    with rt.engine.connect() as conn:
        counts = keys.values_per_key(conn)
    assert counts == {1: 7 * 5 + 5, 2: 5}  # 7 accounts x 5 fields + 5 officers' secrets
    report = keys.rotate(rt, staff.actors["root"], staff.next_code("root"), batch=3)
    assert report.remaining == 0 and report.reencrypted == counts[1]
    assert key_ids_in_use(rt) == {2}
    after = plaintexts(rt)
    assert {k: after[k] for k in before} == before
    keys.retire(rt, staff.actors["root"], 1, staff.next_code("root"))
    ring = load_keyring(rt.settings.keyring_path)
    assert ring.field_keys[1].status == "retired" and ring.primary_id == 2
    with rt.sessions() as s:
        actions = s.scalars(select(AuditLogEntry.action)
                            .where(AuditLogEntry.action.like("keys.%"))
                            .order_by(AuditLogEntry.seq)).all()
    assert actions[:2] == ["keys.add", "keys.promote"] and actions[-1] == "keys.retire"
    assert "keys.rotate" in actions


def test_rotation_resumes_after_a_kill_and_never_encrypts_twice(staff, monkeypatch):
    keys.add(staff.rt, staff.actors["root"], staff.next_code("root"))
    keys.promote(staff.rt, staff.actors["root"], 2, staff.next_code("root"))
    rt = reopen(staff)
    before = plaintexts(rt)
    # A run dies in its second batch: that batch rolls back as a whole.
    calls = {"n": 0}
    real_encrypt = FieldCipher.encrypt

    def dying(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4 * 5 + 3:  # the first batch: 4 accounts x 5 fields
            raise KeyboardInterrupt
        return real_encrypt(self, *args, **kwargs)

    monkeypatch.setattr(FieldCipher, "encrypt", dying)
    with pytest.raises(KeyboardInterrupt):
        keys.rotate(rt, staff.actors["root"], staff.next_code("root"), batch=4)
    monkeypatch.setattr(FieldCipher, "encrypt", real_encrypt)
    with rt.engine.connect() as conn:
        assert keys.values_per_key(conn)[2] == 4 * 5
    # Every stale value of a row goes in its batch: the 3 accounts left, 5 values each.
    second = keys.rotate(rt, staff.actors["root"], staff.next_code("root"), batch=4,
                         max_batches=1)
    assert second.reencrypted == 3 * 5 and second.remaining == 5  # the officers' secrets
    last = keys.rotate(rt, staff.actors["root"], staff.next_code("root"), batch=4)
    assert last.remaining == 0 and key_ids_in_use(rt) == {2}
    assert plaintexts(rt) == before  # nothing lost, nothing double-encrypted


ROTATE_IN_A_PROCESS = """
import sys
from pathlib import Path
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.db.engine import make_engine
from polysec_tui.services.operations import keys
from polysec_tui.services.runtime import Runtime
settings = Settings(db_url=sys.argv[1], keyring_path=Path(sys.argv[2]))
rt = Runtime(settings, make_engine(settings.db_url), load_keyring(settings.keyring_path))
keys.reencrypt(rt, rt.keyring, "root", batch=3, progress=lambda n: print(n, flush=True))
"""


def test_rotation_survives_kill_9_at_random_points(staff):
    """A rotation process killed (SIGKILL) at random moments, again and again: every
    value still decrypts to what it was, and a last run finishes the rest."""
    ingest(staff.rt, "accounts", *[account(f"K{i}") for i in range(60)])
    keys.add(staff.rt, staff.actors["root"], staff.next_code("root"))
    keys.promote(staff.rt, staff.actors["root"], 2, staff.next_code("root"))
    rt = reopen(staff)
    before = plaintexts(rt)
    settings = rt.settings
    chance = random.Random()
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", ROTATE_IN_A_PROCESS, settings.db_url,
             str(settings.keyring_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _batch in range(chance.randint(1, 3)):
            if not proc.stdout.readline():
                break
        time.sleep(chance.uniform(0, 0.02))  # somewhere inside the next batch
        proc.send_signal(signal.SIGKILL)
        kills += proc.wait(30) == -signal.SIGKILL
        assert plaintexts(reopen(staff)) == before
    assert kills  # at least one run died before its end
    last = keys.rotate(reopen(staff), staff.actors["root"], staff.next_code("root"))
    assert last.remaining == 0 and key_ids_in_use(rt) == {2}
    assert plaintexts(rt) == before


def test_retire_refused_while_needed(staff):
    root = staff.actors["root"]
    with pytest.raises(RefusedError, match="primary"):
        keys.retire(staff.rt, root, 1, staff.next_code("root"))
    keys.add(staff.rt, root, staff.next_code("root"))
    keys.promote(staff.rt, root, 2, staff.next_code("root"))
    rt = reopen(staff)
    with pytest.raises(RefusedError, match="still protects"):
        keys.retire(rt, root, 1, staff.next_code("root"))
    keys.rotate(rt, root, staff.next_code("root"))
    with rt.transaction() as s:
        s.add(BackupRecord(id=uuid.uuid4(), created_at=FIXED_NOW, path="/b/x.psbk",
                           engine="sqlite", size_bytes=1, sha256="0" * 64,
                           alembic_revision="0001", field_key_ids={"ids": [1]},
                           status="verified"))
    with pytest.raises(RefusedError, match="retained backups"):
        keys.retire(rt, root, 1, staff.next_code("root"))


def test_only_admins_with_a_fresh_code(staff, monkeypatch):
    with pytest.raises(RefusedError):
        keys.add(staff.rt, staff.actors["sue"], staff.next_code("sue"))
    with pytest.raises(RefusedError):
        keys.add(staff.rt, staff.actors["root"], "000000")
    code = staff.next_code("root")
    keys.add(staff.rt, staff.actors["root"], code)
    with pytest.raises(RefusedError):  # the same code again: replay
        keys.promote(staff.rt, staff.actors["root"], 2, code)
    assert load_keyring(staff.rt.settings.keyring_path).primary_id == 1
    ring = staff.rt.settings.keyring_path.read_text()
    monkeypatch.setenv(KEYRING_DATA_ENV, ring)
    rt = reopen(staff)
    with pytest.raises(InputError, match="POLYSEC_KEYRING_DATA"):
        keys.add(rt, staff.actors["root"], staff.next_code("root"))


def test_the_keyring_file_stays_owner_only(staff):
    keys.add(staff.rt, staff.actors["root"], staff.next_code("root"))
    path = staff.rt.settings.keyring_path
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["primary"] == 1


def test_status_and_the_commands(staff, cli_env, capsys, monkeypatch):
    token, _ = staff.login("root")
    monkeypatch.setenv("POLYSEC_TOKEN", token)
    commands_use_clock(monkeypatch, staff.clock)
    result = run_cli(capsys, "keys", "status", "--json")
    assert result.code == 0, result.err
    (only,) = json.loads(result.out)
    assert only["primary"] and only["values"] >= 7 * 5
    assert run_cli(capsys, "keys", "add", "--code", staff.next_code("root")).code == 0
    assert run_cli(capsys, "keys", "promote", "2", "--code", staff.next_code("root")).code == 0
    rotated = run_cli(capsys, "keys", "rotate", "--json", "--code", staff.next_code("root"))
    assert rotated.code == 0, rotated.err
    assert json.loads(rotated.out)["remaining"] == 0
    missing = run_cli(capsys, "keys", "promote", "9", "--code", staff.next_code("root"))
    assert missing.code == 2 and "no field key 9" in missing.err
