"""Ports for the servers tests start (rsyslog, sshd, PostgreSQL clusters).

A port the kernel hands out for ``bind(0)`` is free only until the probe closes it: the
other xdist worker's next server, or the kernel's next client connection, may take it
before ours binds it, and a test then talks to a stranger that answers (a CI run once
saw one worker's RELP batch acknowledged by the other worker's rsyslog). So each worker
draws from a range of its own below the kernel's ephemeral range (32768-60999), where
neither can happen; within a worker, tests run one at a time."""

from __future__ import annotations

import os
import random
import socket

RANGE_START, RANGE_SIZE = 20_000, 1_500


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, from this worker's own range."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    start = RANGE_START + RANGE_SIZE * int(worker.removeprefix("gw") or 0)
    for port in random.sample(range(start, start + RANGE_SIZE), RANGE_SIZE):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + RANGE_SIZE - 1}")
