"""Bulk ingest with a parser process (`services/feed/parallel.py`): on every engine, the
same reports (counts, bad lines and their order, duplicates) and the same stored rows
as the one-process path, for files of good, fuzzed and borderline lines, in both modes;
the wiring through `ingest_stream`; a parser that dies is an error, not a partial load."""

from __future__ import annotations

import io
import json
import multiprocessing
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select

from polysec_tui.errors import InputError
from polysec_tui.services.feed import parallel
from polysec_tui.services.feed.ingest import (
    EVENT_TABLES,
    Ingestor,
    IngestRejected,
    IngestReport,
    ingest_stream,
    read_jsonl,
    sqlite_bulk_cache,
)
from polysec_tui.services.runtime import Runtime
from tests.feed.test_ingest_fuzz import GOOD, mutate
from tests.support.helpers import account, ingest

KINDS = ["logins", "security-events", "withdrawals", "sessions"]
BATCH = 7  # many batches in a small file


def data_for(kind: str, seed: int) -> bytes:
    """Good lines, fuzzed lines, an unknown account, in-file duplicates (within a
    batch and across batches), blank lines and ids stored before (``P`` ids)."""
    rng = random.Random(f"{kind}/{seed}")
    lines: list[bytes] = []
    for i in range(120):
        choice = rng.random()
        if choice < 0.5:
            lines.append(json.dumps(GOOD[kind](f"G{i}")).encode())
        elif choice < 0.75:
            lines.append(mutate(rng, GOOD[kind](f"M{i}")))
        elif choice < 0.8:
            lines.append(json.dumps({**GOOD[kind](f"U{i}"), "account": "NOBODY"}).encode())
        elif choice < 0.9 and i > 3:
            lines.append(json.dumps(GOOD[kind](f"G{rng.randrange(i)}")).encode())
        elif choice < 0.95:
            lines.append(json.dumps(GOOD[kind](f"P{rng.randrange(5)}")).encode())
        else:
            lines.append(b"   ")
    return b"\n".join(lines) + b"\n"


def stored(rt: Runtime, session: Any, table: Table) -> list[tuple[Any, ...]]:
    columns = [c for c in table.c if c.name not in ("id", "ingested_at")]
    return sorted(session.execute(select(*columns)).all(), key=repr)


def one_run(rt: Runtime, kind: str, data: bytes, *, skip_bad: bool, parallel_path: bool,
            tmp_path: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]] | None]:
    """Ingest ``data`` in a transaction that is rolled back afterwards: the report and
    the rows the table held at the end (None when strict mode rejected the file)."""
    path = tmp_path / f"{kind}.jsonl"
    path.write_bytes(data)
    session = rt.sessions()
    session.begin()
    try:
        ingestor = Ingestor(rt, kind, skip_bad=skip_bad, batch_size=BATCH)
        with path.open("rb") as stream, sqlite_bulk_cache(session):
            try:
                if parallel_path:
                    report = ingestor.run_prepared(session, parallel.prepared_batches(
                        stream, db_url=rt.settings.db_url, kind=kind, now=rt.clock(),
                        batch_size=BATCH))
                else:
                    report = ingestor.run_in(session, read_jsonl(stream))
            except IngestRejected as exc:
                return exc.report.as_dict(), None
        return report.as_dict(), stored(rt, session, EVENT_TABLES[kind])
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def accounts_in(runtime: Runtime) -> Runtime:
    ingest(runtime, "accounts", account("A1"))
    for kind in KINDS:  # ids stored before the runs: duplicates
        data = b"\n".join(json.dumps(GOOD[kind](f"P{i}")).encode() for i in range(5))
        ingest_stream(runtime, kind, io.BytesIO(data))
    return runtime


@pytest.mark.parametrize("kind", KINDS)
def test_the_parser_process_gives_what_one_process_gives(accounts_in, kind, tmp_path):
    rt = accounts_in
    if rt.engine.dialect.name not in ("sqlite", "postgresql"):
        path = tmp_path / "big.jsonl"
        path.write_bytes(b"x" * 100)
        with path.open("rb") as stream:
            assert not parallel.worth_a_process(stream, kind, "jsonl", rt.engine.dialect.name)
        pytest.skip("MariaDB takes the one-process path (no bulk driver insert there)")
    for seed in range(2):
        data = data_for(kind, seed)
        for skip_bad in (False, True):
            alone = one_run(rt, kind, data, skip_bad=skip_bad, parallel_path=False,
                            tmp_path=tmp_path)
            beside = one_run(rt, kind, data, skip_bad=skip_bad, parallel_path=True,
                             tmp_path=tmp_path)
            assert beside == alone
            report, rows = alone
            assert report["bad_count"] and report["duplicates"]
            assert (rows is None) == (not skip_bad)


def test_ingest_stream_takes_the_parser_process_for_a_big_file(accounts_in, tmp_path,
                                                               monkeypatch):
    rt = accounts_in
    if rt.engine.dialect.name not in ("sqlite", "postgresql"):
        pytest.skip("MariaDB takes the one-process path (no bulk driver insert there)")
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 1)
    started: list[int] = []
    real = parallel.prepared_batches

    def counting(*args: Any, **kwargs: Any) -> Any:
        started.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "prepared_batches", counting)
    path = tmp_path / "logins.jsonl"
    path.write_bytes(b"\n".join(json.dumps(GOOD["logins"](f"W{i}")).encode()
                                for i in range(50)) + b"\n")
    with path.open("rb") as stream:
        report: IngestReport = ingest_stream(rt, "logins", stream)
    assert started and report.inserted == 50 and report.written
    with path.open("rb") as stream:  # again: every line a duplicate
        again = ingest_stream(rt, "logins", stream)
    assert again.duplicates == 50 and again.inserted == 0
    # Standard input (not a regular file) and small files take one process.
    assert not parallel.worth_a_process(io.BytesIO(b"{}"), "logins", "jsonl", "sqlite")
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 10**9)
    with path.open("rb") as stream:
        assert not parallel.worth_a_process(stream, "logins", "jsonl", "sqlite")


def test_a_parser_process_that_dies_fails_the_ingest(accounts_in, tmp_path):
    rt = accounts_in
    if rt.engine.dialect.name != "sqlite":
        pytest.skip("the process handling does not depend on the engine")
    path = tmp_path / "logins.jsonl"
    path.write_bytes(b"\n".join(json.dumps(GOOD["logins"](f"D{i}")).encode()
                                for i in range(3000)) + b"\n")

    def killed_after_the_first(stream: Any, **kwargs: Any) -> Any:
        batches = parallel.prepared_batches(stream, **kwargs)
        first = next(batches)
        yield first
        for child in multiprocessing.active_children():
            if child.name == "polysec-ingest-parser":
                child.kill()  # SIGKILL
        yield from batches

    session = rt.sessions()
    session.begin()
    try:
        with path.open("rb") as stream, pytest.raises(InputError, match="parser process"):
            Ingestor(rt, "logins", batch_size=BATCH).run_prepared(
                session, killed_after_the_first(stream, db_url=rt.settings.db_url,
                                                kind="logins", now=rt.clock(),
                                                batch_size=BATCH))
    finally:
        session.rollback()
        session.close()


def test_stopping_early_stops_the_parser_process(accounts_in, tmp_path):
    """An ingest that fails midway (a database error, Ctrl-C) leaves no parser behind."""
    rt = accounts_in
    if rt.engine.dialect.name != "sqlite":
        pytest.skip("the process handling does not depend on the engine")
    path = tmp_path / "logins.jsonl"
    path.write_bytes(b"\n".join(json.dumps(GOOD["logins"](f"S{i}")).encode()
                                for i in range(3000)) + b"\n")
    with path.open("rb") as stream:
        batches = parallel.prepared_batches(stream, db_url=rt.settings.db_url,
                                            kind="logins", now=rt.clock(), batch_size=BATCH)
        assert len(next(batches).numbers) == BATCH
        batches.close()
    assert not [child for child in multiprocessing.active_children()
                if child.name == "polysec-ingest-parser"]
