"""Run `polysec` in-process (fast) or as a real process (true exit codes and streams)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from polysec_tui.cli import main
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime


@dataclass
class Result:
    code: int
    out: str
    err: str


def as_automation(monkeypatch: pytest.MonkeyPatch, rt: Runtime, root: Actor, db_url: str,
                  config: Path | None = None) -> None:
    """In-process commands from here on act as the automation officer ``cron`` (a new
    token made by ``root``) on ``rt``'s database, keyring and ``config``."""
    token, _ = sessions.create_token(rt, root, "cron")
    env = {"POLYSEC_DB_URL": db_url, "POLYSEC_TOKEN": token,
           "POLYSEC_KEYRING": str(rt.settings.keyring_path)}
    if config is not None:
        env["POLYSEC_CONFIG"] = str(config)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_process(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
                timeout: float = 60) -> Result:
    # Only what the test passes: a POLYSEC_* variable of the outer shell (or one a test
    # leaked) must not decide which officer or database a subprocess uses.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("POLYSEC_")}
    full_env = {**inherited, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "polysec_tui", *args], input=stdin, capture_output=True,
        env=full_env, timeout=timeout, check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
