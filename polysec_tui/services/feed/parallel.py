"""Bulk ingest on two cores: a second process reads, decodes, validates and converts
the next batch of events while this one inserts the current one.

For a regular file (a path, or standard input redirected from one) of JSON Lines
events (logins, security events, withdrawals, sessions) of at least PARALLEL_MIN_BYTES,
on SQLite (a file) or PostgreSQL. The parser process is spawned (not forked: this
process holds a database connection and threads); it receives the open file's
descriptor (the file this process opened, not a path read again), the database URL (to
look up account ids, read-only: the accounts an event names are committed before it
arrives) and the window of acceptable times, and runs `ingest.parse_in_process`. For
each batch it sends the lines it read, its bad lines in order, each good line's number,
id and (unknown account) reason, and the rows of the known accounts converted for the
driver (`ingest.DriverInsert`). The ingest decides the rest as the one-process path
does (duplicates, what is written, the undo of a batch the database refuses and its
retry line by line), so counts, messages and their order are the same.

This module is the process plumbing only (it imports nothing of `ingest`). Cost in
complexity: it, `ingest.parse_in_process` and the halves of the events path both
processes share. Placeholder accounts (the RBA CSV), accounts, prices, pipes and
MariaDB (no bulk driver insert) take the one-process path.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import stat
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from typing import IO, Any

from sqlalchemy import Engine

from polysec_tui.errors import InputError

# The parser's work: (pipe, database URL, kind, now, batch size, the file) -> None,
# sending a Prepared a batch (`ingest.parse_in_process`).
Work = Callable[[Any, str, str, datetime, int, IO[bytes]], None]

# Below this a file is loaded before a second interpreter would have started (about
# 0.5 s of imports), so one process it is.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


@dataclass
class Prepared:
    """One batch as the parser process made it ready: the lines it read, its bad lines
    in order, and for each good line its number, id and (unknown account) reason; the
    rows of the lines with a known account converted for the driver."""

    lines: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    lines_info: list[tuple[int, str, str | None]] = field(default_factory=list)
    row_of: list[int] = field(default_factory=list)  # each line's row in converted, or -1
    rows: int = 0
    keys: tuple[str, ...] = ()  # the rows' columns (for the writer)
    converted: list[Any] = field(default_factory=list)

    def add_bad(self, line: int, reason: str) -> None:
        self.bad.append((line, reason))

    def add_line(self, number: int, external_id: str, unknown: str | None) -> None:
        self.lines_info.append((number, external_id, unknown))
        self.row_of.append(-1 if unknown is not None else self.rows)
        self.rows += unknown is None

    def take(self) -> Prepared:
        """What was gathered, and start over (`ingest.batches` keeps counting here)."""
        taken = Prepared(self.lines, self.bad, self.lines_info, self.row_of, self.rows,
                         self.keys, self.converted)
        self.lines, self.bad, self.lines_info, self.row_of = 0, [], [], []
        self.rows, self.keys, self.converted = 0, (), []
        return taken


def worth_a_process(stream: IO[bytes], engine: Engine) -> bool:
    """Whether a parser process would pay: a regular file of PARALLEL_MIN_BYTES or more
    still to read, a database a second process can open (SQLite: a file, not memory),
    with the bulk driver insert (SQLite, PostgreSQL), and not inside a daemon process."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        if url.database in (None, "", ":memory:") or "memory" in str(url.query.get("mode")):
            return False
    elif engine.dialect.name != "postgresql":
        return False
    if multiprocessing.current_process().daemon:  # a daemon may not start processes
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):  # not a real file (a test's BytesIO)
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size - stream.tell() >= PARALLEL_MIN_BYTES


def prepared_batches(stream: IO[bytes], work: Work, db_url: str, kind: str, now: datetime,
                     batch_size: int) -> Generator[Prepared, None, None]:
    """The batches of ``stream`` that ``work`` sends from a parser process, in order.
    The process ends with the iteration, or is stopped when the generator is closed
    (the caller closes it on every way out: `contextlib.closing`)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=True)
    parser = context.Process(target=_parse, name="polysec-ingest-parser", daemon=True,
                             args=(theirs, work, db_url, kind, now, batch_size,
                                   stream.tell()))
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


def _parse(pipe: Connection, work: Work, db_url: str, kind: str, now: datetime,
           batch_size: int, offset: int) -> None:
    """The parser process: ``work`` sends one message a batch; then None, or a one-line
    error."""
    import gc

    gc.disable()  # as in the one-process path: the young generations after each batch
    try:
        with os.fdopen(recv_handle(pipe), "rb") as stream:
            stream.seek(offset)
            work(pipe, db_url, kind, now, batch_size, stream)
        pipe.send(None)
    except (BrokenPipeError, KeyboardInterrupt):
        return  # the ingest stopped first
    except Exception as exc:  # reported to the ingest, which fails with it
        first = (str(exc).splitlines() or [""])[0]
        pipe.send(f"failed: {type(exc).__name__}: {first}"[:300])
    finally:
        pipe.close()
