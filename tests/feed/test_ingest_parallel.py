"""Bulk ingest with a parser process (`services/feed/parallel.py`): on every engine, the
same reports (counts, bad lines and their order, duplicates) and the same stored rows
as the one-process path, for files of good, fuzzed and borderline lines, in both modes;
the wiring through `ingest_stream`; a parser that dies is an error, not a partial load."""

from __future__ import annotations

import io
import json
import multiprocessing
import random
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select

from polysec_tui.db.engine import make_engine
from polysec_tui.errors import InputError
from polysec_tui.services.feed import ingest as ingest_module
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


def url_of(rt: Runtime) -> str:
    return rt.engine.url.render_as_string(hide_password=False)


class Sent:
    """A pipe's sending end that keeps what is sent (the parser's work run in this
    process, where a test may patch it)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def send(self, message: Any) -> None:
        self.messages.append(message)


def one_run(rt: Runtime, kind: str, data: bytes, *, skip_bad: bool, path: str,
            tmp_path: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]] | None]:
    """Ingest ``data`` in a transaction that is rolled back afterwards: the report and
    the rows the table held at the end (None when strict mode rejected the file).
    ``path``: "one" process, a parser "process", or the parser's work "here"."""
    file = tmp_path / f"{kind}.jsonl"
    file.write_bytes(data)
    session = rt.sessions()
    session.begin()
    try:
        ingestor = Ingestor(rt, kind, skip_bad=skip_bad, batch_size=BATCH)
        with file.open("rb") as stream, sqlite_bulk_cache(session):
            try:
                if path == "process":
                    with closing(parallel.prepared_batches(
                            stream, ingest_module.parse_in_process, url_of(rt), kind,
                            rt.clock(), BATCH)) as prepared:
                        report = ingestor.run_prepared(session, prepared)
                elif path == "here":
                    sent = Sent()
                    ingest_module.parse_in_process(sent, url_of(rt), kind, rt.clock(),
                                                   BATCH, stream)
                    report = ingestor.run_prepared(session, sent.messages)
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
            assert parallel.PARALLEL_MIN_BYTES > 100
            assert parallel.worth_a_process(stream, rt.engine) is False
        pytest.skip("MariaDB takes the one-process path (no bulk driver insert there)")
    for seed in range(2):
        data = data_for(kind, seed)
        for skip_bad in (False, True):
            alone = one_run(rt, kind, data, skip_bad=skip_bad, path="one",
                            tmp_path=tmp_path)
            beside = one_run(rt, kind, data, skip_bad=skip_bad, path="process",
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
    # Not a file (a pipe, a BytesIO), a small file, an in-memory SQLite: one process.
    assert not parallel.worth_a_process(io.BytesIO(b"{}"), rt.engine)
    with path.open("rb") as stream:
        assert parallel.worth_a_process(stream, rt.engine)
        assert not parallel.worth_a_process(stream, make_engine("sqlite://"))
        monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 10**9)
        assert not parallel.worth_a_process(stream, rt.engine)


def logins_file(rt: Runtime, tmp_path: Path, prefix: str) -> Path:
    """3,000 good logins (more than the pipe holds), for the process-handling tests,
    which run on SQLite only."""
    if rt.engine.dialect.name != "sqlite":
        pytest.skip("the process handling does not depend on the engine")
    path = tmp_path / "logins.jsonl"
    path.write_bytes(b"\n".join(json.dumps(GOOD["logins"](f"{prefix}{i}")).encode()
                                for i in range(3000)) + b"\n")
    return path


def test_a_parser_process_that_dies_fails_the_ingest(accounts_in, tmp_path):
    rt = accounts_in
    path = logins_file(rt, tmp_path, "D")

    def killed_after_the_first(stream: Any) -> Any:
        batches = parallel.prepared_batches(stream, ingest_module.parse_in_process,
                                            url_of(rt), "logins", rt.clock(), BATCH)
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
                session, killed_after_the_first(stream))
    finally:
        session.rollback()
        session.close()


def test_stopping_early_stops_the_parser_process(accounts_in, tmp_path):
    """An ingest that fails midway (a database error, Ctrl-C) leaves no parser behind."""
    rt = accounts_in
    path = logins_file(rt, tmp_path, "S")
    stream = path.open("rb")
    batches = parallel.prepared_batches(stream, ingest_module.parse_in_process, url_of(rt),
                                        "logins", rt.clock(), BATCH)
    with stream, pytest.raises(RuntimeError, match="a database error"), closing(batches):
        assert len(next(batches).lines_info) == BATCH
        raise RuntimeError("a database error")  # what ingest_stream's closing meets
    assert not [child for child in multiprocessing.active_children()
                if child.name == "polysec-ingest-parser"]


def test_a_row_the_database_refuses_as_in_one_process(accounts_in, tmp_path, monkeypatch):
    """The batch undone and written again row by row, each line as the one-process path
    writes it: a refused row (by the server, or by the driver before sending it) is one
    bad line, a later line with the same id is written, and in strict mode writing stops
    at the first refusal."""
    rt = accounts_in
    if rt.engine.dialect.name not in ("sqlite", "postgresql"):
        pytest.skip("MariaDB takes the one-process path (no bulk driver insert there)")
    parse = ingest_module.PARSERS["logins"]

    def leaky(obj: dict[str, Any], window: Any) -> Any:
        parsed = parse(obj, window)
        if obj.get("_refuse") == 1:
            parsed["asn"] = 2**70  # past BIGINT (the server refuses it)
        elif obj.get("_refuse") == 2:
            parsed["city"] = "Ber\x00lin"  # a NUL (the driver refuses to send it)
        return parsed

    monkeypatch.setitem(ingest_module.PARSERS, "logins", leaky)
    good = GOOD["logins"]
    cases = [
        [good("R1"), {**good("R2"), "_refuse": 1}, good("R2"), good("R3")],
        [good("R1"), {**good("R2"), "_refuse": 1}, {**good("R3"), "_refuse": 2},
         good("R4"), {**good("R5"), "account": "NOBODY"}, good("R1")],
    ]
    for records in cases:
        data = b"\n".join(json.dumps(r).encode() for r in records) + b"\n"
        for skip_bad in (False, True):
            alone = one_run(rt, "logins", data, skip_bad=skip_bad, path="one",
                            tmp_path=tmp_path)
            here = one_run(rt, "logins", data, skip_bad=skip_bad, path="here",
                           tmp_path=tmp_path)
            assert here == alone
            # (strict: the unknown account of the second case stops all writing first)
            refused = any(b["reason"].startswith("refused by the database")
                          for b in alone[0]["bad"])
            assert refused == (skip_bad or records is cases[0])


# Text that COPY's text format escapes or could misread.
AWKWARD = ["\\N", "C:\\Users\\x", "back\\\\slash", "end\\", "tab\\t", "Zürich", "東京",
           "emoji 🛡", "quote \" ' `", "comma,semicolon;pipe|", "  spaced  ", "\\x41"]


def awkward_lines(kind: str) -> bytes:
    """Each awkward text in each string field of a good record, one field a line
    (validation refuses some of them in some fields: those are bad lines)."""
    lines = []
    for i, text in enumerate(AWKWARD):
        good = GOOD[kind](f"W{i}")
        for key, value in good.items():
            if isinstance(value, str) and key not in ("account", "at"):
                lines.append(json.dumps({**good, "id": f"W{i}-{key}", key: text}).encode())
        if kind == "security-events":
            details = {"note": text, "nested": [text, {"k\t": "v\n\\"}], "n": 1.5}
            lines.append(json.dumps({**good, "details": details}).encode())
    return b"\n".join(lines) + b"\n"


def texts_in(rows: list[tuple[Any, ...]]) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict | list | tuple):
            for item in value.values() if isinstance(value, dict) else value:
                walk(item)

    for row in rows:
        walk(tuple(row))
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_copy_text_stores_what_the_generic_insert_stores(accounts_in, kind, tmp_path,
                                                         monkeypatch):
    """PostgreSQL's bulk path copies each batch into the table in COPY's text format
    (a batch with ids stored before: again without them): the stored rows are exactly
    those of SQLAlchemy's own insert, for good, fuzzed, borderline and awkward text
    (backslashes, a literal \\N, tabs in JSON, non-ASCII)."""
    rt = accounts_in
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's bulk path")
    for seed in range(2):
        data = data_for(kind, seed) + awkward_lines(kind)
        copied = one_run(rt, kind, data, skip_bad=True, path="one", tmp_path=tmp_path)
        with monkeypatch.context() as patched:
            patched.setattr(ingest_module, "driver_insert", lambda *args: None)
            generic = one_run(rt, kind, data, skip_bad=True, path="one", tmp_path=tmp_path)
        assert copied == generic
        _report, rows = copied
        assert rows is not None and set(AWKWARD) <= texts_in(rows)  # each one stored


def test_copy_looks_up_stored_ids_only_while_they_come(accounts_in, monkeypatch):
    """A file that resends a stored id in its first batch: that batch is copied again
    without it, the next batches' ids are looked up first (an aborted COPY leaves dead
    rows), and after three batches with none stored they are copied straight again."""
    rt = accounts_in
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's bulk path")
    looked: list[int] = []
    original = ingest_module._Copy._unstored

    def counting(self: Any, conn: Any, rows: Any) -> Any:
        looked.append(len(rows))
        return original(self, conn, rows)

    monkeypatch.setattr(ingest_module._Copy, "_unstored", counting)
    records = [GOOD["logins"]("P0")] + [GOOD["logins"](f"N{i}") for i in range(1, 7 * BATCH)]
    report = Ingestor(rt, "logins", batch_size=BATCH).run(enumerate(records, 1))
    assert (report.inserted, report.duplicates, report.bad_count) == (len(records) - 1, 1, 0)
    assert looked == [BATCH, BATCH, BATCH, BATCH]  # the conflict's, then three clean
