"""The officer audit log: append, verify (every kind of tampering), checkpoints, queries
and the `polysec auditlog` commands, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, delete, insert, select, update

from polysec_tui.db.models import AuditHead, AuditLogEntry
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.services import auditchain
from polysec_tui.services.auditchain import (
    GENESIS,
    HEAD_ID,
    Checkpoint,
    canonical_details,
    entry_mac,
    read_checkpoint,
    write_checkpoint,
)
from polysec_tui.services.officers import auditlog
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime

T0 = datetime(2026, 11, 20, 9, 30, 0, 123456, tzinfo=UTC)
LOG = cast(Table, AuditLogEntry.__table__)
N = 12


def append(rt: Runtime, i: int, **overrides: Any) -> int:
    fields: dict[str, Any] = {
        "officer": f"officer{i % 3}",
        "action": ("withdrawal.approve", "account.freeze", "twofa.reset")[i % 3],
        "at": T0 + timedelta(seconds=i, microseconds=i * 7),
        "target": None if i % 4 == 0 else f"wd-{i}",
        "details": {"i": i, "reason": "review ünïcode", "nested": {"n": [i, i + 1]}},
    }
    fields.update(overrides)
    with rt.transaction() as s:
        return rt.audit.append(s, **fields)


def fill(rt: Runtime, n: int = N) -> None:
    for i in range(1, n + 1):
        assert append(rt, i) == i


def rows(rt: Runtime) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(LOG).order_by(LOG.c.seq))]


def broken_at(rt: Runtime, checkpoint: Checkpoint | None = None) -> tuple[int | None, str]:
    report = auditlog.verify(rt, checkpoint)
    if report.ok:
        return None, ""
    assert report.reason
    return report.first_bad_seq, report.reason


def set_entry(rt: Runtime, seq: int, **values: Any) -> None:
    with rt.engine.begin() as conn:
        conn.execute(update(LOG).where(LOG.c.seq == seq).values(**values))


def rewrite(rt: Runtime, entries: list[dict[str, Any]]) -> None:
    """Replace the whole table (an attacker with write access to the database)."""
    with rt.engine.begin() as conn:
        conn.execute(delete(LOG))
        if entries:
            conn.execute(insert(LOG), entries)


# ------------------------------------------------------------------------- good chain


def test_good_chain_verifies(runtime: Runtime) -> None:
    report = auditlog.verify(runtime)
    assert report.ok and report.entries_checked == 0 and report.head_seq == 0
    assert report.head_hash == GENESIS
    fill(runtime)
    report = auditlog.verify(runtime, batch_size=5)  # several pages
    assert report.ok, report.reason
    assert (report.entries_checked, report.head_seq) == (N, N)
    stored = rows(runtime)
    assert [r["seq"] for r in stored] == list(range(1, N + 1))
    assert stored[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in pairwise(stored))
    assert report.head_hash == stored[-1]["hash"]
    # The MAC definition: recompute the first entry from its parts.
    first = stored[0]
    assert first["hash"] == entry_mac(runtime.keyring.audit_key, GENESIS, 1,
                                      T0 + timedelta(seconds=1, microseconds=7),
                                      first["officer"], first["action"], first["target"],
                                      first["details"])


def test_verify_inside_callers_session(runtime: Runtime) -> None:
    fill(runtime, 3)
    with runtime.sessions() as session:
        report = runtime.audit.verify(session)
    assert report.ok and report.entries_checked == 3


def test_zero_microseconds_and_other_timezones(runtime: Runtime) -> None:
    plus2 = datetime(2026, 1, 1, 14, 0, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    append(runtime, 1, at=datetime(2026, 1, 1, tzinfo=UTC))
    append(runtime, 2, at=plus2)
    assert auditlog.verify(runtime).ok
    with runtime.sessions() as s:
        entry = auditchain.show(s, 2)
    assert entry is not None and entry.at == datetime(2026, 1, 1, 14, tzinfo=UTC)


# ------------------------------------------------------------------------- tampering


@pytest.mark.parametrize(("column", "value"), [
    ("details", '{"i":5,"reason":"nothing to see"}'),
    ("action", "account.unfreeze"),
    ("officer", "mallory"),
    ("at", datetime(2026, 11, 20, 9, 30, 6, tzinfo=UTC)),
    ("target", "wd-999"),
    ("target", ""),  # NULL -> "" would MAC alike without the check
    ("prev_hash", "1" * 64),
    ("hash", "2" * 64),
])
def test_edited_field_is_the_first_bad_seq(runtime: Runtime, column: str, value: Any) -> None:
    fill(runtime)
    seq = 8 if column == "target" and value == "" else 5  # entry 8 has a NULL target
    set_entry(runtime, seq, **{column: value})
    bad, reason = broken_at(runtime)
    assert bad == seq, reason
    assert str(seq) in reason


def test_edit_on_a_later_page(runtime: Runtime) -> None:
    fill(runtime)
    set_entry(runtime, 11, officer="mallory")
    report = auditlog.verify(runtime, batch_size=4)
    assert (report.ok, report.first_bad_seq, report.entries_checked) == (False, 11, 10)


def test_deleted_middle_entry(runtime: Runtime) -> None:
    fill(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(delete(LOG).where(LOG.c.seq == 6))
    bad, reason = broken_at(runtime)
    assert bad == 7
    assert "entry 6 missing" in reason


def test_deleted_first_entry(runtime: Runtime) -> None:
    fill(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(delete(LOG).where(LOG.c.seq == 1))
    bad, reason = broken_at(runtime)
    assert bad == 2
    assert "entry 1 missing" in reason


def test_deleted_entry_with_later_entries_renumbered(runtime: Runtime) -> None:
    fill(runtime)
    entries = [r for r in rows(runtime) if r["seq"] != 6]
    for r in entries:
        if r["seq"] > 6:
            r["seq"] -= 1
    rewrite(runtime, entries)
    bad, reason = broken_at(runtime)
    assert bad == 6
    assert "deleted" in reason


def test_inserted_entry_with_renumbering(runtime: Runtime) -> None:
    fill(runtime)
    entries = rows(runtime)
    for r in entries:
        if r["seq"] >= 4:
            r["seq"] += 1
    forged = dict(entries[2], seq=4, action="account.unfreeze", prev_hash=entries[2]["hash"],
                  hash="f" * 64)
    rewrite(runtime, [*entries, forged])
    bad, reason = broken_at(runtime)
    assert bad == 4
    assert "inserted" in reason


def test_copied_entry_inserted(runtime: Runtime) -> None:
    """A genuine entry replayed at another place (renumbered) is caught where it lands."""
    fill(runtime)
    entries = rows(runtime)
    for r in entries:
        if r["seq"] >= 4:
            r["seq"] += 1
    rewrite(runtime, [*entries, dict(entries[8], seq=4)])
    bad, reason = broken_at(runtime)
    assert bad == 4
    assert "entry 4 holds entry 9" in reason


CONTENT = ("at", "officer", "action", "target", "details")


def test_swapped_content(runtime: Runtime) -> None:
    fill(runtime)
    entries = {r["seq"]: r for r in rows(runtime)}
    a, b = entries[3], entries[7]
    set_entry(runtime, 3, **{c: b[c] for c in CONTENT})
    set_entry(runtime, 7, **{c: a[c] for c in CONTENT})
    bad, reason = broken_at(runtime)
    assert bad == 3
    assert "content of entry 7" in reason and "reordered" in reason


def test_swapped_whole_entries(runtime: Runtime) -> None:
    fill(runtime)
    entries = {r["seq"]: r for r in rows(runtime)}
    for seq, other in ((3, 7), (7, 3)):
        set_entry(runtime, seq, **{c: v for c, v in entries[other].items() if c != "seq"})
    bad, reason = broken_at(runtime)
    assert bad == 3
    assert "entry 3 holds entry 7" in reason


def test_truncated_tail_caught_by_head(runtime: Runtime) -> None:
    fill(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(delete(LOG).where(LOG.c.seq > N - 3))
    bad, reason = broken_at(runtime)
    assert bad == N - 2
    assert "truncated" in reason


def test_truncated_tail_with_head_rolled_back_needs_a_checkpoint(
        runtime: Runtime, tmp_path: Path) -> None:
    fill(runtime)
    cp_path = tmp_path / "elsewhere" / "audit.checkpoint"
    cp_path.parent.mkdir()
    write_checkpoint(cp_path, auditlog.checkpoint(runtime))
    entries = rows(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(delete(LOG).where(LOG.c.seq > N - 3))
        conn.execute(update(AuditHead).where(AuditHead.id == HEAD_ID)
                     .values(seq=N - 3, hash=entries[N - 4]["hash"]))
    assert auditlog.verify(runtime).ok  # undetectable from inside the database
    cp = auditlog.load_checkpoint(runtime, cp_path)
    bad, reason = broken_at(runtime, cp)
    assert bad == N - 2
    assert f"log truncated before seq {N}" in reason


def test_whole_log_emptied_caught_by_checkpoint(runtime: Runtime) -> None:
    fill(runtime, 3)
    cp = auditlog.checkpoint(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(delete(LOG))
        conn.execute(update(AuditHead).where(AuditHead.id == HEAD_ID)
                     .values(seq=0, hash=GENESIS))
    assert auditlog.verify(runtime).ok
    bad, reason = broken_at(runtime, cp)
    assert bad == 1 and "truncated before seq 3" in reason


def test_checkpoint_then_more_entries_still_verifies(runtime: Runtime) -> None:
    fill(runtime, 5)
    cp = auditlog.checkpoint(runtime)
    assert (cp.seq, cp.hash) == (5, rows(runtime)[-1]["hash"])
    for i in range(6, 9):
        append(runtime, i)
    report = auditlog.verify(runtime, cp)
    assert report.ok and report.entries_checked == 8


def test_entry_differs_from_checkpoint(runtime: Runtime) -> None:
    fill(runtime, 5)
    other = Checkpoint.sign(runtime.keyring.audit_key, seq=3, hash="a" * 64, at=T0)
    bad, reason = broken_at(runtime, other)
    assert bad == 3 and "entry 3 differs from checkpoint" in reason


def test_head_ahead_or_behind(runtime: Runtime) -> None:
    fill(runtime, 5)
    entries = rows(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(update(AuditHead).where(AuditHead.id == HEAD_ID)
                     .values(seq=3, hash=entries[2]["hash"]))
    bad, reason = broken_at(runtime)
    assert bad == 4 and "audit head" in reason


def test_broken_log_cannot_be_checkpointed(runtime: Runtime) -> None:
    fill(runtime, 4)
    set_entry(runtime, 2, officer="mallory")
    with pytest.raises(CheckFailed, match="broken at seq 2"):
        auditlog.checkpoint(runtime)


# ------------------------------------------------------------------ append behaviour


def test_rolled_back_append_leaves_nothing(runtime: Runtime) -> None:
    fill(runtime, 2)
    with runtime.engine.connect() as conn:
        head_before = conn.execute(select(AuditHead.seq, AuditHead.hash)).one()
    with pytest.raises(RuntimeError, match="action failed"), runtime.transaction() as s:
        runtime.audit.append(s, officer="sue", action="account.freeze", at=T0)
        raise RuntimeError("action failed")
    with runtime.engine.connect() as conn:
        assert conn.execute(select(AuditHead.seq, AuditHead.hash)).one() == head_before
    assert len(rows(runtime)) == 2
    assert append(runtime, 3) == 3
    assert auditlog.verify(runtime).ok


@pytest.mark.parametrize("details", [
    {"password": "x"}, {"Code": "123456"}, {"totp": 1}, {"outer": {"secret": "s"}},
    {"list": [{"token": "t"}]},
])
def test_forbidden_detail_keys_refused(runtime: Runtime, details: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must not carry"), runtime.transaction() as s:
        runtime.audit.append(s, officer="sue", action="x", at=T0, details=details)
    assert rows(runtime) == []


def test_separator_refused_and_empty_target_stored_null(runtime: Runtime) -> None:
    for field in ("officer", "action", "target"):
        with pytest.raises(ValueError, match="unit separator"), runtime.transaction() as s:
            args: dict[str, Any] = {"officer": "sue", "action": "x", "target": "t"}
            args[field] = "a\x1fb"
            runtime.audit.append(s, at=T0, **args)
    with pytest.raises(ValueError, match="timezone"), runtime.transaction() as s:
        runtime.audit.append(s, officer="sue", action="x", at=T0.replace(tzinfo=None))
    append(runtime, 1, target="")
    assert rows(runtime)[0]["target"] is None
    assert auditlog.verify(runtime).ok


def test_canonical_details() -> None:
    assert canonical_details({"b": 1, "a": "é\x1f"}) == '{"a":"é\\u001f","b":1}'


def test_concurrent_appenders(runtime: Runtime) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(name: str) -> None:
        try:
            start.wait()
            for i in range(200):
                with runtime.transaction() as s:
                    runtime.audit.append(s, officer=name, action="bench.append",
                                         at=T0 + timedelta(microseconds=i),
                                         details={"i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    stored = rows(runtime)
    assert [r["seq"] for r in stored] == list(range(1, 401))
    assert {r["officer"] for r in stored} == {"t1", "t2"}
    report = auditlog.verify(runtime)
    assert report.ok and report.entries_checked == 400 and report.head_seq == 400


# ----------------------------------------------------------------------- checkpoints


def test_checkpoint_file_round_trip_and_mode(runtime: Runtime, tmp_path: Path) -> None:
    fill(runtime, 3)
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "cp.json"
    cp = auditlog.checkpoint(runtime)
    write_checkpoint(path, cp)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["cp.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert set(doc) == {"format", "seq", "hash", "at", "mac"}
    assert read_checkpoint(path, runtime.keyring.audit_key) == cp
    with pytest.raises(InputError, match="never overwritten"):
        write_checkpoint(path, cp)  # an older checkpoint is evidence: never replaced
    assert [p.name for p in path.parent.iterdir()] == ["cp.json"]
    assert read_checkpoint(path, runtime.keyring.audit_key) == cp


@pytest.mark.parametrize("edit", [
    {"seq": 2}, {"seq": 99}, {"hash": "0" * 64}, {"at": "2020-01-01T00:00:00.000000Z"},
    {"mac": "0" * 64}, {"seq": "3"}, {"format": "other"}, {"extra": 1},
])
def test_forged_checkpoint_refused(runtime: Runtime, tmp_path: Path,
                                   edit: dict[str, Any]) -> None:
    fill(runtime, 3)
    path = tmp_path / "cp.json"
    write_checkpoint(path, auditlog.checkpoint(runtime))
    doc = json.loads(path.read_text())
    doc.update(edit)
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckFailed, match="malformed or forged") as info:
        read_checkpoint(path, runtime.keyring.audit_key)
    assert info.value.exit_code == 1


def test_checkpoint_under_another_key_refused(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    write_checkpoint(path, Checkpoint.sign(os.urandom(32), seq=0, hash=GENESIS, at=T0))
    with pytest.raises(CheckFailed):
        read_checkpoint(path, runtime.keyring.audit_key)
    path.write_text("not json")
    with pytest.raises(CheckFailed):
        read_checkpoint(path, runtime.keyring.audit_key)


# --------------------------------------------------------------------------- queries


def test_tail_and_show(runtime: Runtime) -> None:
    fill(runtime)
    with runtime.sessions() as s:
        newest = auditchain.tail(s, 3)
        assert [e.seq for e in newest] == [N, N - 1, N - 2]
        by_officer = auditchain.tail(s, 100, officer="officer1")
        assert [e.seq for e in by_officer] == [10, 7, 4, 1]
        by_action = auditchain.tail(s, 2, action="account.freeze")
        assert [e.seq for e in by_action] == [10, 7]
        assert [e.seq for e in auditchain.tail(s, 5, target="wd-5")] == [5]
        since = auditchain.tail(s, 100, since=T0 + timedelta(seconds=10))
        assert [e.seq for e in since] == [12, 11, 10]
        entry = auditchain.show(s, 5)
        assert entry is not None
        assert entry.details == {"i": 5, "reason": "review ünïcode", "nested": {"n": [5, 6]}}
        assert entry.at == T0 + timedelta(seconds=5, microseconds=35)
        assert entry.to_dict()["at"] == "2026-11-20T09:30:05.123491Z"
        assert auditchain.show(s, 999) is None


# -------------------------------------------------------------------------- commands


@pytest.fixture
def cli_actor(monkeypatch: pytest.MonkeyPatch) -> Actor:
    """Authentication is `commands.common.actor_of`'s business (tested with officers);
    here it returns a senior officer."""
    from polysec_tui.commands import auditlog as command

    actor = Actor(uuid.uuid4(), "sue", "senior")
    monkeypatch.setattr(command, "actor_of", lambda ctx, permission: actor)
    return actor


def run(*args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from polysec_tui.commands.auditlog import auditlog as group
    from polysec_tui.config import resolve_settings

    settings = resolve_settings(os.environ["POLYSEC_DB_URL"], os.environ["POLYSEC_KEYRING"],
                                None)
    result = CliRunner().invoke(group, list(args), obj=settings, catch_exceptions=True)
    code = result.exit_code
    err = result.stderr if result.stderr_bytes is not None else ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        code = getattr(result.exception, "exit_code", 70)
        err += f"{type(result.exception).__name__}: {result.exception}"
    return code, result.stdout, err


def test_commands(runtime: Runtime, cli_env: dict[str, str], cli_actor: Actor,
                  tmp_path: Path) -> None:
    fill(runtime, 4)
    code, out, _ = run("verify")
    assert code == 0 and "ok" in out
    code, out, err = run("verify", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["entries_checked"] == 5
    cp_path = tmp_path / "cp.json"
    code, out, _ = run("checkpoint", str(cp_path))
    assert code == 0 and "seq 6" in out  # verify's own entry is in the chain
    code, out, _ = run("tail", "-n", "3", "--json")
    entries = json.loads(out)
    assert [e["action"] for e in entries] == ["auditlog.checkpoint", "auditlog.verify",
                                              "auditlog.verify"]
    assert entries[0]["officer"] == "sue"
    code, out, _ = run("show", "2", "--json")
    assert json.loads(out)["seq"] == 2
    code, out, err = run("show", "999")
    assert code == 2
    code, out, _ = run("verify", "--checkpoint", str(cp_path))
    assert code == 0
    set_entry(runtime, 3, details='{"i":3}')
    code, out, err = run("verify")
    assert code == 1
    assert "audit log broken at seq 3" in err
    code, out, _ = run("verify", "--json")
    assert code == 1 and json.loads(out)["first_bad_seq"] == 3


def test_tail_text_is_plain(runtime: Runtime, cli_env: dict[str, str],
                            cli_actor: Actor) -> None:
    append(runtime, 1, target="[bold red]x\x1b[2J", details={"note": "[link=evil]y"})
    code, out, err = run("tail")
    assert code == 0, err
    assert "[bold red]x\\x1b[2J" in out and "\x1b" not in out
    assert "[link=evil]y" in out


# ------------------------------------- a broken log is a failed check, never a crash


def test_a_deleted_head_is_a_verification_failure(runtime: Runtime, cli_env: dict[str, str],
                                                   cli_actor: Actor) -> None:
    fill(runtime, 3)
    with runtime.engine.begin() as conn:
        conn.execute(delete(AuditHead))
    code, out, err = run("verify", "--json")
    assert code == 1, err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["first_bad_seq"] == 1
    assert "head row is missing" in doc["reason"]
    # Nothing can be recorded on a log without its head: actions fail closed, exit 1.
    with pytest.raises(CheckFailed, match="head row is missing"):
        append(runtime, 9)


def test_a_row_inserted_beyond_the_head_is_named(runtime: Runtime, cli_env: dict[str, str],
                                                 cli_actor: Actor) -> None:
    fill(runtime, 3)
    forged = rows(runtime)[-1] | {"seq": 4, "details": '{"i":4}'}
    with runtime.engine.begin() as conn:
        conn.execute(insert(LOG).values(**forged))
    code, out, err = run("verify")
    assert code == 1 and "audit log broken at seq 4" in err, (out, err)
    with pytest.raises(CheckFailed, match="entry 4 exists beyond its head"):
        append(runtime, 9)
    assert broken_at(runtime)[0] == 4  # the failed append left nothing behind


MALFORMED = [
    {"hash": "not-a-hash"},
    {"hash": ""},
    {"prev_hash": ""},
    {"details": "not json at all"},
    {"officer": ""},
    {"action": "a\x1fb"},
    {"at": datetime(1, 1, 1, tzinfo=UTC)},
    {"at": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
]


@pytest.mark.parametrize("values", MALFORMED, ids=lambda v: next(iter(v)) + "=" + repr(
    next(iter(v.values())))[:12])
def test_a_malformed_row_is_named(runtime: Runtime, cli_env: dict[str, str], cli_actor: Actor,
                                  values: dict[str, Any]) -> None:
    fill(runtime, 4)
    set_entry(runtime, 3, **values)
    code, out, err = run("verify", "--json")
    assert code == 1, err
    assert json.loads(out)["first_bad_seq"] == 3


def test_sqlite_rows_of_the_wrong_type_are_named(runtime: Runtime, cli_env: dict[str, str],
                                                 cli_actor: Actor) -> None:
    """SQLite stores any value in any column: text in the seq, a number as the time."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite accepts a value of another type in a typed column")
    fill(runtime, 4)
    genuine = rows(runtime)[2]
    for column, value in (("at", "12"), ("at", 12), ("hash", 7), ("details", b"\xff\x00"),
                          ("officer", 3.5), ("seq", "three")):
        with runtime.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE audit_log SET {column} = ? WHERE seq = 3", (value,))
        code, out, err = run("verify", "--json")
        assert code == 1, (column, value, err)
        doc = json.loads(out)
        assert doc["first_bad_seq"] == 3 or "entry 3 " in doc["reason"], (column, value, doc)
        with runtime.engine.begin() as conn:  # the genuine row back, for the next value
            conn.exec_driver_sql("DELETE FROM audit_log WHERE seq IN (3, 'three')")
            conn.execute(insert(LOG).values(**genuine))
        assert broken_at(runtime)[0] is None


def test_oversized_sequence_numbers_are_usage_errors(runtime: Runtime, cli_env: dict[str, str],
                                                     cli_actor: Actor) -> None:
    code, _out, err = run("show", "99999999999999999999999999")
    assert code == 2 and "not in the range" in err, err


def test_a_checkpoint_never_overwrites_a_file(runtime: Runtime, cli_env: dict[str, str],
                                              cli_actor: Actor, tmp_path: Path) -> None:
    fill(runtime, 2)
    older = tmp_path / "cp.json"
    older.write_text("the checkpoint of last month\n")
    code, _out, err = run("checkpoint", str(older))
    assert code == 2 and "never overwritten" in err
    assert older.read_text() == "the checkpoint of last month\n"
