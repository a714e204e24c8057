"""The `polysec` command line: start-up cost, configuration, and bad input handled as one
line with a documented exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from polysec_tui.cli import SUBCOMMANDS
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import LoginEvent
from tests.support.cli import run_cli, run_process
from tests.support.helpers import account, jsonl, login

HEAVY = ("textual", "sqlalchemy", "paramiko")


def _modules_loaded_by(argv: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from polysec_tui.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split()[-1:][0].split()) if False else set(out.splitlines()[-1].split())


def test_help_imports_neither_textual_sqlalchemy_nor_paramiko():
    loaded = _modules_loaded_by(["--help"])
    assert "click" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


@pytest.mark.parametrize("argv", [["db", "current", "--help"],
                                  *([name, "--help"] for name in sorted(SUBCOMMANDS))],
                         ids=" ".join)
def test_subcommands_do_not_import_textual_or_paramiko(argv):
    """Every subcommand's module, loaded as `polysec NAME` loads it, leaves Textual and
    paramiko to the functions that need them (`tui` and `demo` open the console, `backup
    ship` and `audit hosts` connect). import-linter cannot tell such a lazy import from a
    module-level one, so this stays a run-time test; that nothing below the UI imports
    Textual at all is its contract ([tool.importlinter] in pyproject.toml)."""
    loaded = _modules_loaded_by(argv)
    assert not loaded & {"textual", "paramiko"}, loaded & {"textual", "paramiko"}


def test_help_lists_every_subcommand(capsys):
    result = run_cli(capsys, "--help")
    assert result.code == 0
    for name in ("init", "db", "ingest", "demo", "tui", "status"):
        assert f"  {name} " in result.out


def test_init_twice_is_harmless_and_keeps_the_keyring(capsys, tmp_path):
    keyring = tmp_path / "k" / "keyring.json"
    args = ["--db", f"sqlite:///{tmp_path / 'p.db'}", "--keyring", str(keyring), "init",
            "--no-admin"]
    first = run_cli(capsys, *args)
    assert first.code == 0, first.err
    assert "created (mode 0600)" in first.out and "upgraded from empty" in first.out
    assert keyring.stat().st_mode & 0o777 == 0o600
    before = keyring.read_bytes()
    second = run_cli(capsys, *args)
    assert second.code == 0
    assert "exists, kept" in second.out and "already current" in second.out
    assert keyring.read_bytes() == before


def test_init_refuses_a_new_keyring_for_a_database_with_encrypted_data(capsys, cli_env,
                                                                      tmp_path):
    feed = tmp_path / "accounts.jsonl"
    feed.write_bytes(jsonl(account("A1")))
    assert run_cli(capsys, "ingest", "accounts", str(feed)).code == 0
    result = run_cli(capsys, "--keyring", str(tmp_path / "other.json"), "init", "--no-admin")
    assert result.code == 3
    assert "already holds encrypted accounts" in result.err
    assert not (tmp_path / "other.json").exists()


def test_config_file_supplies_the_database(capsys, tmp_path, keyring_path):
    db = tmp_path / "from-config.db"
    config = tmp_path / "polysec.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    result = run_cli(capsys, "--config", str(config), "--keyring", str(keyring_path), "init",
                     "--no-admin")
    assert result.code == 0, result.err
    assert db.exists()


def test_bad_config_file(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[database\n")
    result = run_cli(capsys, "--config", str(config), "db", "current")
    assert result.code == 2
    assert "is not valid TOML" in result.err


def test_db_upgrade_current_downgrade(capsys, cli_env):
    current = run_cli(capsys, "db", "current", "--json")
    assert current.code == 0
    doc = json.loads(current.out)
    assert doc["current"] == doc["head"] == migrate.head_revision() and doc["up_to_date"]
    assert "password" not in doc["database"]
    down = run_cli(capsys, "db", "downgrade", "base", "--yes")
    assert down.code == 0, down.err
    assert json.loads(run_cli(capsys, "db", "current", "--json").out)["current"] is None
    assert run_cli(capsys, "db", "upgrade").code == 0
    assert json.loads(run_cli(capsys, "db", "current", "--json").out)["up_to_date"]
    bad = run_cli(capsys, "db", "downgrade", "nonsense", "--yes")
    assert bad.code == 2 and "unknown revision 'nonsense'" in bad.err


def _assert_one_line_error(result, code: int, fragment: str) -> None:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("polysec: error: ") and fragment in lines[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql://postgres@127.0.0.1:1/nope", "cannot connect to database"),
        ("mariadb://root:s3cret@127.0.0.1:1/nope", "cannot connect to database"),
        ("oracle://x@y/z", "unsupported database 'oracle'"),
        ("::not a url::", "is not a valid URL"),
    ],
)
def test_unreachable_or_invalid_database(url, fragment, tmp_path, keyring_path):
    result = run_process("--db", url, "--keyring", str(keyring_path), "db", "current")
    _assert_one_line_error(result, 2, fragment)
    assert "s3cret" not in result.err


def test_missing_keyring(capsys, cli_env, tmp_path):
    result = run_cli(capsys, "--keyring", str(tmp_path / "absent.json"), "ingest", "logins", "-")
    _assert_one_line_error(result, 2, "does not exist; create it with `polysec init`")


def test_world_readable_keyring_is_refused(cli_env, keyring_path):
    keyring_path.chmod(0o644)
    result = run_process("ingest", "logins", "-", env=cli_env, stdin=b"")
    _assert_one_line_error(result, 3, "accessible to group or others (mode 0644)")


def test_database_without_schema(capsys, tmp_path, keyring_path):
    result = run_cli(capsys, "--db", f"sqlite:///{tmp_path / 'empty.db'}",
                     "--keyring", str(keyring_path), "ingest", "logins", "-")
    _assert_one_line_error(result, 2, "has no polysec schema; run `polysec init`")


def _login_count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(LoginEvent)) or 0
    finally:
        engine.dispose()


def test_bad_lines_through_the_real_command(cli_env, tmp_path):
    feed = tmp_path / "accounts.jsonl"
    feed.write_bytes(jsonl(account("A1")))
    assert run_process("ingest", "accounts", str(feed), env=cli_env).code == 0

    corrupt = jsonl(login("L1"), '{"id": "L2", "account": "A1",', login("L3"))
    result = run_process("ingest", "logins", "-", env=cli_env, stdin=corrupt)
    assert result.code == 2
    reason = "not valid JSON (Expecting property name enclosed in double quotes at character 31)"
    assert result.err.splitlines() == [
        f"line 2: {reason}",
        f"polysec: error: 1 bad line(s) in logins input, nothing written (first: line 2: {reason})",
    ]
    assert _login_count(cli_env["POLYSEC_DB_URL"]) == 0

    unknown = jsonl(login("L1"), login("L2", account="ghost"))
    result = run_process("ingest", "logins", "-", env=cli_env, stdin=unknown)
    assert result.code == 2 and "line 2: unknown account 'ghost'" in result.err
    assert _login_count(cli_env["POLYSEC_DB_URL"]) == 0

    huge = jsonl(login("L1"), login("L2", city="x" * 10_000_000))
    result = run_process("ingest", "logins", "-", env=cli_env, stdin=huge)
    assert result.code == 2 and "line 2: line longer than 65536 bytes" in result.err
    assert len(result.err) < 1000
    assert _login_count(cli_env["POLYSEC_DB_URL"]) == 0

    result = run_process("ingest", "logins", "-", "--skip-bad", "--json", env=cli_env,
                         stdin=unknown)
    assert result.code == 0
    assert json.loads(result.out)["inserted"] == 1
    assert _login_count(cli_env["POLYSEC_DB_URL"]) == 1


def test_unreadable_input_file(capsys, cli_env, tmp_path):
    result = run_cli(capsys, "ingest", "logins", str(tmp_path / "missing.jsonl"))
    _assert_one_line_error(result, 2, "cannot read")


def test_init_bootstraps_the_first_admin_once(tmp_path):
    env = {"POLYSEC_DB_URL": f"sqlite:///{tmp_path / 'p.db'}",
           "POLYSEC_KEYRING": str(tmp_path / "keyring.json"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    first = run_process("init", "--admin", "chief", env=env, stdin=b"a-long-admin-passphrase\n")
    assert first.code == 0, first.err
    assert "otpauth://totp/POLYCOIN%20polysec:chief?secret=" in first.out
    assert "admin chief created" in first.out
    second = run_process("init", "--admin", "chief", env=env, stdin=b"")
    assert second.code == 0 and "otpauth://" not in second.out  # shown exactly once
    weak = run_process("init", env={**env, "POLYSEC_DB_URL": f"sqlite:///{tmp_path / 'q.db'}"},
                       stdin=b"password123\n")
    assert weak.code == 2 and "password too short" in weak.err
