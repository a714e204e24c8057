"""Point-in-time recovery with pgBackRest (`polysec backup pitr`): a private PostgreSQL
cluster of the test's own (initdb on a free loopback port, archive mode on, an
encrypted pgBackRest repository), a base backup, rows written at two moments, and a
restore to a time between them: exactly the rows before that time are there."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine
from polysec_tui.db.models import AuditLogEntry
from polysec_tui.errors import CheckFailed, InputError, RefusedError
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.operations import pitr
from polysec_tui.services.runtime import Runtime, utc_now
from tests.support.ports import free_port

BINDIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
AS_POSTGRES = ("runuser", "-u", "postgres", "--")
ADMIN = Actor(uuid.UUID(int=1), "root", "admin")
CRON = Actor(uuid.UUID(int=2), "cron", "automation")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("pgbackrest") is None or not BINDIRS
    or shutil.which("runuser") is None,
    reason="needs root (to run the cluster as postgres), pgbackrest and PostgreSQL's "
           "server binaries (.ci/run installs pgbackrest)")


@dataclass
class Cluster:
    root: Path
    port: int
    bindir: Path

    def psql(self, sql: str, port: int | None = None, host: Path | None = None) -> str:
        done = subprocess.run([*AS_POSTGRES, str(self.bindir / "psql"), "-h",
                               str(host or self.root),
                               "-p", str(port or self.port), "-U", "postgres", "-Atq",
                               "-c", sql], capture_output=True, text=True, check=True,
                              timeout=60)
        return done.stdout.strip()

    def pgbackrest(self, *args: str) -> None:
        subprocess.run([*AS_POSTGRES, "pgbackrest", f"--config={self.root}/pgbackrest.conf",
                        "--stanza=polysec", *args], check=True, capture_output=True,
                       timeout=300)

    def stop(self, data: Path) -> None:
        subprocess.run([*AS_POSTGRES, str(self.bindir / "pg_ctl"), "-D", str(data), "stop",
                        "-m", "immediate"], capture_output=True, check=False, timeout=60)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="polysec-pitr-", dir="/tmp"))
    root.chmod(0o755)
    shutil.chown(root, "postgres")
    made = Cluster(root, free_port(), Path(BINDIRS[-1]))
    (root / "pgbackrest.conf").write_text(
        f"[global]\nrepo1-path={root}/repo\nrepo1-cipher-type=aes-256-cbc\n"
        f"repo1-cipher-pass={uuid.uuid4().hex}{uuid.uuid4().hex}\nrepo1-retention-full=2\n"
        f"log-path={root}/log\nlock-path={root}/lock\nstart-fast=y\nlog-level-file=off\n"
        f"[polysec]\npg1-path={root}/data\npg1-port={made.port}\npg1-socket-path={root}\n")
    for sub in ("log", "lock"):
        (root / sub).mkdir()
    subprocess.run(["chown", "-R", "postgres", str(root)], check=True)
    (root / "pgbackrest.conf").chmod(0o600)
    subprocess.run([*AS_POSTGRES, str(made.bindir / "initdb"), "-D", str(root / "data"),
                    "-A", "trust", "-U", "postgres"], check=True, capture_output=True,
                   timeout=120)
    with (root / "data" / "postgresql.conf").open("a") as conf:
        conf.write(f"port = {made.port}\nlisten_addresses = '127.0.0.1'\n"
                   f"unix_socket_directories = '{root}'\narchive_mode = on\n"
                   f"archive_command = 'pgbackrest --config={root}/pgbackrest.conf "
                   f"--stanza=polysec archive-push %p'\nwal_level = replica\n")
    subprocess.run([*AS_POSTGRES, str(made.bindir / "pg_ctl"), "-D", str(root / "data"),
                    "-l", str(root / "pg.log"), "-w", "start"], check=True,
                   capture_output=True, timeout=120)
    try:
        made.pgbackrest("stanza-create")
        yield made
    finally:
        for data in ("data", "restored"):
            made.stop(root / data)
        shutil.rmtree(root, ignore_errors=True)


def _runtime(tmp_path: Path, cluster: Cluster) -> Runtime:
    keyring = tmp_path / "keyring.json"
    write_new_keyring(keyring, Keyring.generate(now=utc_now()))
    url = f"sqlite:///{tmp_path / 'polysec.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    settings = Settings(db_url=url, keyring_path=keyring, options={"pitr": {
        "stanza": "polysec", "config": str(cluster.root / "pgbackrest.conf"),
        "run_as": list(AS_POSTGRES), "pg_ctl": str(cluster.bindir / "pg_ctl")}})
    return Runtime(settings, engine, load_keyring(keyring), clock=utc_now)


def test_restore_to_a_time_between_two_writes(cluster: Cluster, tmp_path: Path) -> None:
    rt = _runtime(tmp_path, cluster)
    cluster.pgbackrest("--type=full", "backup")
    state = pitr.status(rt, CRON)
    assert state.cipher == "aes-256-cbc" and [b["type"] for b in state.backups] == ["full"]
    assert state.as_dict()["recoverable_from"] == state.backups[0]["stopped"]
    pitr.check(rt, CRON)
    cluster.psql("create table t (v text)")
    cluster.psql("insert into t values ('before')")
    time.sleep(1.1)
    between = datetime.fromisoformat(cluster.psql("select now()"))
    time.sleep(1.1)
    cluster.psql("insert into t values ('after')")
    cluster.psql("select pg_switch_wal()")
    pitr.check(rt, CRON)  # the segment with both writes is archived
    target = cluster.root / "restored"
    port = free_port()
    with pytest.raises(RefusedError):
        pitr.restore(rt, CRON, between, target, port=port)  # admins only
    with pytest.raises(InputError, match="time zone"):
        pitr.restore(rt, ADMIN, between.replace(tzinfo=None), target, port=port)
    with pytest.raises(InputError, match="not an empty directory"):
        pitr.restore(rt, ADMIN, between, cluster.root / "data", port=port)
    for hostile in ("x;touch /tmp/pwned", "x$(id)", "x'q", "x\ny"):
        with pytest.raises(InputError, match="a path of letters"):
            pitr.restore(rt, ADMIN, between, cluster.root / hostile, port=port)
    done = pitr.restore(rt, ADMIN, between, target, port=port)
    assert done.url == f"postgresql://127.0.0.1:{port}/"
    def copy(sql: str) -> str:  # its socket is in its own directory
        return cluster.psql(sql, port=port, host=target)

    assert copy("select string_agg(v, ',' order by v) from t") == "before"
    assert copy("show archive_mode") == "off"
    assert copy("select pg_is_in_recovery()") == "f"
    with rt.sessions() as s:
        actions = list(s.scalars(select(AuditLogEntry.action).order_by(AuditLogEntry.seq)))
    assert actions == ["backup.pitr.check", "backup.pitr.check", "backup.pitr.restore",
                       "backup.pitr.restored"]
    assert copy("show unix_socket_directories") == str(target)
    rt.engine.dispose()


def test_a_stanza_pgbackrest_does_not_know_fails_the_check(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    rt = _runtime(tmp_path, cluster)
    rt.settings.options["pitr"]["stanza"] = "nosuch"
    with pytest.raises(CheckFailed, match="pgbackrest check failed"):
        pitr.check(rt, CRON)
    with rt.sessions() as s:
        entry = s.scalars(select(AuditLogEntry)).one()
        assert entry.action == "backup.pitr.check" and '"result":"fail"' in entry.details
    rt.engine.dispose()
