"""The officer workflow through the real `polysec` command, as a script would run it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from tests.support.cli import run_process
from tests.support.helpers import account, jsonl


@pytest.fixture
def env(tmp_path, db_url):
    env = {"POLYSEC_DB_URL": db_url, "POLYSEC_KEYRING": str(tmp_path / "keyring.json"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    # The fixture database is migrated already; init adds the keyring and the admin.
    result = run_process("init", "--admin", "chief", env=env,
                         stdin=b"a-long-admin-passphrase\n")
    assert result.code == 0, result.err
    secret = re.search(r"secret=([A-Z2-7]+)", result.out)
    assert secret
    env["_SECRET"] = secret.group(1)
    return env


def code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30 * steps_ahead))


def test_login_act_verify_logout(env, tmp_path):
    secret = env.pop("_SECRET")
    bad = run_process("login", "--name", "chief", "--code", code(secret), env=env,
                      stdin=b"not-the-passphrase\n")
    assert bad.code == 3 and bad.err.strip() == "polysec: error: authentication failed"
    ok = run_process("login", "--name", "chief", "--code", code(secret), env=env,
                     stdin=b"a-long-admin-passphrase\n")
    assert ok.code == 0, ok.err
    token_files = list((tmp_path / "xdg" / "polysec" / "sessions").iterdir())
    assert len(token_files) == 1 and token_files[0].stat().st_mode & 0o777 == 0o600
    assert json.loads(run_process("whoami", "--json", env=env).out)["role"] == "admin"

    feed = tmp_path / "accounts.jsonl"
    feed.write_bytes(jsonl(account("A1", email="jane.doe@gmail.com")))
    assert run_process("ingest", "accounts", str(feed), env=env).code == 0
    shown = json.loads(run_process("accounts", "show", "jane.doe@gmail.com", "--json",
                                   env=env).out)
    assert shown["email"] == "j***@g***.com" and "jane" not in json.dumps(shown)
    no_reason = run_process("accounts", "show", "A1", "--reveal", "email", env=env)
    assert no_reason.code == 2 and "reason" in no_reason.err
    revealed = run_process("accounts", "show", "A1", "--reveal", "email", "--reason",
                           "client verified on the phone", env=env)
    assert revealed.out.strip() == "email: jane.doe@gmail.com"

    added = run_process("officer", "add", "ann", "--role", "analyst", "--reason", "new hire",
                        "--code", code(secret, 1), env=env,
                        stdin=b"analyst-Passphrase-number-7\n")
    assert added.code == 0 and "otpauth://" in added.out
    listed = json.loads(run_process("officer", "list", "--json", env=env).out)
    assert {o["name"]: o["role"] for o in listed} == {"chief": "admin", "ann": "analyst"}
    review = json.loads(run_process("officer", "review", "--json", env=env).out)
    assert {i["name"]: (i["due"], i["granted_by"]) for i in review} == {
        "chief": (True, []), "ann": (True, ["chief"])}
    own = run_process("officer", "review", "ann", "--confirm", "--reason", "ok", env=env)
    assert own.code == 3 and "chief granted ann's access" in own.err
    undecided = run_process("officer", "review", "ann", env=env)
    assert undecided.code == 2 and "--confirm or --revoke" in undecided.err

    verified = run_process("auditlog", "verify", "--json", env=env)
    assert verified.code == 0, verified.err
    actions = [e["action"] for e in json.loads(
        run_process("auditlog", "tail", "-n", "50", "--json", env=env).out)]
    assert {"auth.login", "session.start", "pii.reveal", "officer.add"} <= set(actions)

    assert run_process("logout", env=env).out.strip() == "logged out"
    after = run_process("whoami", env=env)
    assert after.code == 3 and "not logged in" in after.err


def test_analyst_and_automation_are_refused(env):
    secret = env.pop("_SECRET")
    assert run_process("login", "--name", "chief", "--code", code(secret), env=env,
                       stdin=b"a-long-admin-passphrase\n").code == 0
    assert run_process("officer", "add", "cron", "--role", "automation", "--reason", "backups",
                       "--code", code(secret, 1), env=env).code == 0
    created = run_process("officer", "token", "create", "cron", env=env)
    token = created.out.strip()
    assert token.startswith("polysec_t_") and token not in created.err
    robot = {**env, "POLYSEC_TOKEN": token}
    refused = run_process("officer", "list", env=robot)
    assert refused.code == 3 and "cron (automation) may not read" in refused.err
    assert json.loads(run_process("whoami", "--json", env=robot).out)["role"] == "automation"
    assert run_process("auditlog", "verify", env=robot).code == 0


def test_a_tampered_ciphertext_is_one_line_naming_the_place(env, tmp_path):
    from sqlalchemy import select, update

    from polysec_tui.db.engine import make_engine
    from polysec_tui.db.models import Account

    secret = env.pop("_SECRET")
    assert run_process("login", "--name", "chief", "--code", code(secret), env=env,
                       stdin=b"a-long-admin-passphrase\n").code == 0
    feed = tmp_path / "accounts.jsonl"
    feed.write_bytes(jsonl(account("A1"), account("A2")))
    assert run_process("ingest", "accounts", str(feed), env=env).code == 0
    engine = make_engine(env["POLYSEC_DB_URL"])
    with engine.begin() as conn:
        a1_email = conn.scalar(select(Account.email_enc).where(Account.external_id == "A1"))
        a2_id = conn.scalar(select(Account.id).where(Account.external_id == "A2"))
        conn.execute(update(Account).where(Account.id == a2_id).values(email_enc=a1_email))
    engine.dispose()
    result = run_process("accounts", "show", "A2", env=env)
    assert result.code == 1
    assert result.err.strip() == (
        f"polysec: error: cannot decrypt accounts.email of row {a2_id}: authentication "
        "failed under key 1 (altered bytes, a ciphertext from another row or column, or a "
        "different keyring)"
    )
