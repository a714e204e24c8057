"""What signing costs the backup envelope: format v2 (commit 8c6b1b1, unsigned) against
v3 (signed, verified), in process, on the same plaintext held in memory (no disk).

    .venv/bin/python bench/backup_signing.py [--mib 512] [--runs 5]

Prints the best of ``--runs`` for each step, alternating v2 and v3 twice. Needs the git
history of the checkout (it loads v2's envelope module from commit 8c6b1b1).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polysec_tui.backup import envelope as v3

V2_COMMIT = "8c6b1b1"


def load_v2() -> Any:
    source = subprocess.run(["git", "show", f"{V2_COMMIT}:polysec_tui/backup/envelope.py"],
                            check=True, capture_output=True,
                            cwd=Path(__file__).resolve().parent.parent).stdout
    path = Path(tempfile.mkdtemp()) / "envelope_v2.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("envelope_v2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["envelope_v2"] = module
    spec.loader.exec_module(module)
    return module


class Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def best(runs: int, step: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    v2 = load_v2()
    data = os.urandom(args.mib << 20)
    identity = v3.Identity.generate()
    old_identity = v2.Identity.from_text(identity.to_text(), "bench")
    key = v3.SigningKey.generate()
    trust = v3.Trust((key.signer,))
    meta = {"engine": "bench"}
    signed, unsigned = io.BytesIO(), io.BytesIO()
    v3.write_stream(io.BytesIO(data), signed, [identity.recipient], meta, signing_key=key)
    v2.write_stream(io.BytesIO(data), unsigned, [old_identity.recipient], meta)
    steps = {
        "v2 encrypt": lambda: v2.write_stream(io.BytesIO(data), Discard(),
                                              [old_identity.recipient], meta),
        "v3 encrypt + sign": lambda: v3.write_stream(io.BytesIO(data), Discard(),
                                                     [identity.recipient], meta,
                                                     signing_key=key),
        "v2 decrypt": lambda: v2.read_envelope(io.BytesIO(unsigned.getvalue()), old_identity,
                                               lambda b: None),
        "v3 decrypt + verify": lambda: v3.read_envelope(io.BytesIO(signed.getvalue()),
                                                        identity, lambda b: None, trust=trust),
    }
    print(f"{args.mib} MiB in memory, best of {args.runs}")
    for _round in range(2):
        for label, step in steps.items():
            seconds = best(args.runs, step)
            print(f"{label:<20} {seconds:6.3f} s {args.mib / seconds:7.0f} MiB/s")


if __name__ == "__main__":
    main()
