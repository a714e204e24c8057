"""Bulk ingest on two cores: a second process reads, decodes, validates and converts
the next batch of events while this one inserts the current one.

For a JSON Lines file of events (logins, security events, withdrawals, sessions) of at
least PARALLEL_MIN_BYTES on SQLite or PostgreSQL. The parser process is spawned (not
forked: this process holds a database connection and threads); it receives the open
file's descriptor (the file the officer named and this process opened, not a path read
again), the database URL (to look up account ids, read-only: the accounts an event
names are committed before it arrives) and the window of acceptable times. For each
batch it sends the lines it read, its bad lines in order, its in-batch duplicates, the
external ids and the rows converted for the driver (`ingest.DriverInsert`). This
process writes them in its one transaction as the one-process path does, with the same
counts, messages, order of bad lines and undo of a batch the database refuses.

Cost in complexity: this module, and the two halves of the events path in `ingest`
that both processes share. Placeholder accounts (the RBA CSV), accounts, prices,
standard input and MariaDB (no bulk driver insert) take the one-process path.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import stat
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import IO, Any

from polysec_tui.errors import InputError

# Below this a file is loaded before a second interpreter would have started (about
# 0.5 s of imports), so one process it is.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


@dataclass
class Prepared:
    """One batch as the parser process made it ready."""

    lines: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    duplicates: int = 0
    keys: tuple[str, ...] = ()  # the rows' columns (for the writer), () when no rows
    external_ids: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)  # each row's line
    converted: list[Any] = field(default_factory=list)

    def add_bad(self, line: int, reason: str) -> None:
        self.bad.append((line, reason))

    def take(self) -> Prepared:
        """What was gathered, and start over (`ingest.batches` keeps counting here)."""
        taken = Prepared(self.lines, self.bad, self.duplicates, self.keys,
                         self.external_ids, self.numbers, self.converted)
        self.lines, self.bad, self.duplicates, self.keys = 0, [], 0, ()
        self.external_ids, self.numbers, self.converted = [], [], []
        return taken


def worth_a_process(stream: IO[bytes], kind: str, fmt: str, dialect: str) -> bool:
    from polysec_tui.services.feed.ingest import EVENT_TABLES

    if fmt != "jsonl" or kind not in EVENT_TABLES or dialect not in ("sqlite", "postgresql"):
        return False
    if multiprocessing.current_process().daemon:  # a daemon may not start processes
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):  # not a real file (a test's BytesIO)
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size - stream.tell() >= PARALLEL_MIN_BYTES


def prepared_batches(stream: IO[bytes], *, db_url: str, kind: str, now: datetime,
                     batch_size: int) -> Generator[Prepared, None, None]:
    """The batches of ``stream`` from a parser process, in order. The process ends with
    the iteration, or is stopped when the caller stops early."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=True)
    parser = context.Process(target=_parse, name="polysec-ingest-parser", daemon=True,
                             args=(theirs, db_url, kind, now, batch_size, stream.tell()))
    parser.start()
    theirs.close()
    # A thread receives (and unpickles) the next batch while the caller inserts this one:
    # the driver releases the GIL while the database works.
    arrived: queue.Queue[Prepared | str | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            message: Prepared | str | None
            try:
                message = ours.recv()
            except (EOFError, OSError):
                message = f"stopped (exit code {_exit_code(parser)})"
            except Exception as exc:  # whatever it is, the ingest must not wait forever
                message = f"sent what could not be read ({type(exc).__name__})"
            while not stop.is_set():
                try:
                    arrived.put(message, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(message, Prepared):
                return

    receiver = threading.Thread(target=receive, name="ingest-receiver", daemon=True)
    finished = False
    try:
        send_handle(ours, stream.fileno(), parser.pid)
        receiver.start()
        while (message := arrived.get()) is not None:
            if isinstance(message, str):
                raise InputError(f"the ingest parser process {message}")
            yield message
        finished = True
    finally:
        stop.set()
        parser.join(5 if finished else 0)
        if parser.is_alive():  # the caller stopped early: the parser may wait to send
            parser.kill()
            parser.join()
        if receiver.is_alive():  # its receive ends with the parser's end of the pipe
            receiver.join(5)
        ours.close()


def _exit_code(process: multiprocessing.process.BaseProcess) -> int | None:
    process.join(5)
    return process.exitcode


def _parse(pipe: Connection, db_url: str, kind: str, now: datetime, batch_size: int,
           offset: int) -> None:
    """The parser process: read, validate, look up accounts, convert; one message a
    batch, None at the end, or a one-line error."""
    try:
        _parse_into(pipe, db_url, kind, now, batch_size, offset)
    except (BrokenPipeError, KeyboardInterrupt):
        return  # the ingest stopped first
    except Exception as exc:  # reported to the ingest, which fails with it
        first = (str(exc).splitlines() or [""])[0]
        pipe.send(f"failed: {type(exc).__name__}: {first}"[:300])
    finally:
        pipe.close()


def _parse_into(pipe: Connection, db_url: str, kind: str, now: datetime, batch_size: int,
                offset: int) -> None:
    import gc

    from polysec_tui.db.engine import make_engine, session_factory
    from polysec_tui.services.feed import ingest
    from polysec_tui.services.feed.records import Window

    gc.disable()  # as in the one-process path: the young generations after each batch
    fd = recv_handle(pipe)
    engine = make_engine(db_url)
    table = ingest.EVENT_TABLES[kind]
    accounts: dict[str, Any] = {}
    writers: dict[tuple[str, ...], ingest.DriverInsert | None] = {}
    with os.fdopen(fd, "rb") as stream, session_factory(engine)() as session:
        stream.seek(offset)
        counts = Prepared()
        for batch in ingest.batches(ingest.read_jsonl(stream), ingest.PARSERS[kind],
                                    Window.around(now), counts, batch_size):
            ingest.account_ids(session, accounts, {p["account"] for _, p in batch})
            session.rollback()  # no snapshot held between batches
            unique = ingest.unique_events(kind, batch, accounts, counts, True)
            rows = list(unique.values())
            if rows:
                counts.keys = tuple(k for k in rows[0] if k != "account")
                if counts.keys not in writers:
                    writers[counts.keys] = ingest.driver_insert(engine.dialect, table,
                                                                counts.keys)
                writer = writers[counts.keys]
                if writer is None or any(len(row) != len(rows[0]) for row in rows):
                    raise ValueError("rows the bulk insert cannot take")  # not our parsers
                counts.external_ids = list(unique)
                counts.numbers = [number for number, p in batch if unique.get(
                    p["external_id"]) is p]
                counts.converted = writer.convert(rows)
            pipe.send(counts.take())
            gc.collect(1)
        if counts.lines:  # lines after the last batch, all bad or blank
            pipe.send(counts.take())
    engine.dispose()
    pipe.send(None)
