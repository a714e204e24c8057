"""Backup benchmark: polysec create, verify and restore of a database of a stated size,
side by side with `age` and `restic` on the same snapshot.

Per engine (``--engines sqlite postgresql``), on a fresh database made here (SQLite: a
file in the work directory; PostgreSQL: ``polysec_bench_bk_<random>`` on ``--postgres``,
dropped at the end):

1. not timed: migrate, an admin and an automation officer with a token, and a filler
   table ``bench_filler`` of random hexadecimal text (2:1 compressible, like the
   console's mix of text and ciphertext) up to ``--sqlite-mb`` / ``--postgres-mb``;
2. timed, each a child process measured with ``os.wait4`` in a small launcher (wall, CPU
   user+system, peak RSS of that child and the children it waited for, e.g.
   ``pg_dump``; the launcher's ~10 MiB is the floor of the figure):
   - ``polysec backup create`` (snapshot + encrypt, end to end from the live database),
     ``polysec backup verify``, ``polysec backup restore --to`` a new database,
     ``polysec backup drill`` (restore into a scratch database, check it there, drop
     it, sign the record: its restore and check times are printed too);
   - on the same plain snapshot (SQLite online-backup copy, or ``pg_dump -Fc -Z0`` output,
     made once, not timed): the polysec envelope alone (encrypt, decrypt-verify),
     ``age`` (encrypt to an X25519 recipient, decrypt to /dev/null) and ``restic``
     (``backup`` into a fresh local repository, ``check --read-data``, ``restore``).

    .venv/bin/python bench/backup.py                             # SQLite 1 GiB + PostgreSQL 512 MiB
    .venv/bin/python bench/backup.py --engines sqlite --sqlite-mb 200 --json

Results: docs/PERFORMANCE.md ("Backups").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from polysec_tui.backup.envelope import Identity, SigningKey
from polysec_tui.config import Settings
from polysec_tui.crypto.keyring import Keyring, load_keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import make_engine, parse_url
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.runtime import Runtime

POLYSEC = [sys.executable, "-m", "polysec_tui"]
ROW_TEXT = 512  # bytes of hex text per filler row
MIB = 1 << 20

# The envelope children print the wall and CPU seconds of the envelope alone (no
# interpreter start-up or imports): the "in process" rows.
ENVELOPE_ENCRYPT = """
import sys, time
from pathlib import Path
from polysec_tui.backup.envelope import Recipient, SigningKey, write_stream
recipient = Recipient.parse(sys.argv[3])
signing = SigningKey.load(Path(sys.argv[4]))
wall, cpu = time.perf_counter(), time.process_time()
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as out:
    write_stream(src, out, [recipient], {"engine": "bench"}, signing_key=signing)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""
ENVELOPE_DECRYPT = """
import sys, time
from pathlib import Path
from polysec_tui.backup.envelope import Identity, SigningKey, Trust, open_file
identity = Identity.load(Path(sys.argv[2]))
trust = Trust((SigningKey.load(Path(sys.argv[3])).signer,))
wall, cpu = time.perf_counter(), time.process_time()
open_file(Path(sys.argv[1]), identity, lambda data: None, trust=trust)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


# A small launcher: a child's peak RSS as the kernel reports it starts at the RSS of the
# process it was forked from (exec records the old image's high-water mark), so the
# measured command is started from this ~10 MiB interpreter, not from the benchmark.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_pid, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{ru.ru_maxrss} {ru.ru_utime + ru.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Step:
    engine: str
    tool: str
    step: str
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    mib_per_s: float
    input_mib: float
    output_mib: float | None


def run(cmd: list[str], *, env: dict[str, str] | None = None, stdin: Path | None = None,
        stdout: Path | None = None) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of one child, from os.wait4."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out, \
            tempfile.NamedTemporaryFile("r") as usage:
        sink = stdout.open("wb") if stdout else out
        source = stdin.open("rb") if stdin else subprocess.DEVNULL
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-I", "-c", LAUNCHER, usage.name, *cmd],
                                env=env, stdin=source, stdout=sink, stderr=err)
        proc.wait()
        status = proc.returncode
        elapsed = time.perf_counter() - started
        if stdout:
            sink.close()
        if stdin:
            source.close()  # type: ignore[union-attr]
        err.seek(0)
        out.seek(0)
        if status != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} failed ({status}): "
                               f"{err.read().decode()[-2000:]}")
        maxrss_kib, cpu = usage.read().split()
        return elapsed, float(cpu), int(maxrss_kib) / 1024, out.read().decode()


class Database:
    def __init__(self, engine: str, workdir: Path, server: str | None) -> None:
        self.engine = engine
        self.name = f"polysec_bench_bk_{uuid.uuid4().hex[:8]}"
        self.server = server
        if engine == "sqlite":
            self.url = f"sqlite:///{workdir / (self.name + '.db')}"
        else:
            assert server is not None
            self.url = parse_url(server).set(database=self.name).render_as_string(
                hide_password=False)
            admin = make_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {self.name}"))
            admin.dispose()

    def drop(self, name: str | None = None) -> None:
        if self.engine == "sqlite":
            return
        assert self.server is not None
        admin = make_engine(self.server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name or self.name} WITH (FORCE)"))
        admin.dispose()

    def fill(self, megabytes: int) -> int:
        """Add filler rows until the database holds about ``megabytes``; return its size."""
        engine = make_engine(self.url)
        rows = megabytes * MIB // (ROW_TEXT + 40)
        batch = 100_000
        with engine.begin() as conn:
            if self.engine == "sqlite":
                conn.execute(text("CREATE TABLE bench_filler (id INTEGER PRIMARY KEY, "
                                  "payload TEXT NOT NULL)"))
                insert = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                          f"WHERE i < :count) INSERT INTO bench_filler (payload) "
                          f"SELECT hex(randomblob({ROW_TEXT // 2})) FROM n")
            else:
                conn.execute(text("CREATE TABLE bench_filler (id BIGSERIAL PRIMARY KEY, "
                                  "payload TEXT NOT NULL)"))
                parts = " || ".join(["md5(random()::text)"] * (ROW_TEXT // 32))
                insert = (f"INSERT INTO bench_filler (payload) SELECT {parts} "
                          "FROM generate_series(1, :count)")
        done = 0
        while done < rows:
            count = min(batch, rows - done)
            with engine.begin() as conn:
                conn.execute(text(insert), {"count": count})
            done += count
        with engine.connect() as conn:
            if self.engine == "sqlite":
                size = Path(str(engine.url.database)).stat().st_size
            else:
                conn.execute(text("COMMIT"))
                size = int(conn.execute(text("SELECT pg_database_size(current_database())"))
                           .scalar_one())
        engine.dispose()
        return size

    def plain_snapshot(self, out: Path) -> None:
        """The same consistent snapshot polysec encrypts, as a plain file."""
        if self.engine == "sqlite":
            src = sqlite3.connect(str(parse_url(self.url).database))
            dst = sqlite3.connect(str(out))
            src.backup(dst)
            dst.close()
            src.close()
            return
        url = parse_url(self.url)
        env = dict(os.environ, PGPASSWORD=url.password or "")
        subprocess.run(["pg_dump", "-Fc", "-Z0", "-h", url.host or "127.0.0.1",
                        "-p", str(url.port or 5432), "-U", url.username or "postgres",
                        "-f", str(out), self.name], env=env, check=True)


def setup(db: Database, workdir: Path) -> dict[str, str]:
    keyring = workdir / f"{db.name}-keyring.json"
    write_new_keyring(keyring, Keyring.generate())
    engine = make_engine(db.url)
    migrate.upgrade(engine)
    rt = Runtime(Settings(db.url, keyring), engine, load_keyring(keyring))
    enrolment = officers.bootstrap_admin(rt, "bench-admin", "Throughput-measuring-passphrase-7")
    from polysec_tui.crypto import totp

    admin_token, admin = sessions.login(rt, "bench-admin", "Throughput-measuring-passphrase-7",
                                   totp.code_at(enrolment.secret, rt.clock()))
    officers.seed_officers(rt, [("bench-cron", "automation", None)], rt.clock())
    token, _ = sessions.create_token(rt, admin, "bench-cron")
    engine.dispose()
    identity = Identity.generate()
    key = workdir / f"{db.name}.key"
    identity.write_new(key)
    signing = SigningKey.generate()
    signing_key = workdir / f"{db.name}.signing.key"
    signing.write_new(signing_key)
    config = workdir / f"{db.name}.toml"
    config.write_text(f'[backup]\ndir = "{workdir / "backups"}"\n'
                      f'recipients = ["{identity.recipient}"]\nidentity = "{key}"\n'
                      f'signing_key = "{signing_key}"\nsigners = ["{signing.signer}"]\n')
    return dict(os.environ, POLYSEC_DB_URL=db.url, POLYSEC_KEYRING=str(keyring),
                POLYSEC_TOKEN=token, POLYSEC_CONFIG=str(config),
                BENCH_KEY=str(key), BENCH_RECIPIENT=str(identity.recipient),
                BENCH_SIGNING_KEY=str(signing_key), BENCH_ADMIN_TOKEN=admin_token)


def measure(engine: str, megabytes: int, workdir: Path, server: str | None,
            tools: dict[str, str | None]) -> tuple[int, int, list[Step]]:
    db = Database(engine, workdir, server)
    steps: list[Step] = []
    restored: Database | None = None

    def record(tool: str, step: str, result: tuple[float, float, float, str],
               input_bytes: int, output: Path | None = None) -> None:
        wall, cpu, rss, _out = result
        size_out = output.stat().st_size / MIB if output and output.is_file() else None
        steps.append(Step(engine, tool, step, round(wall, 2), round(cpu, 2), round(rss, 1),
                          round(input_bytes / MIB / wall, 1) if input_bytes else 0.0,
                          round(input_bytes / MIB, 1),
                          round(size_out, 1) if size_out is not None else None))
        print(f"  {tool:<8} {step:<10} {wall:7.2f} s  {steps[-1].mib_per_s:8.1f} MiB/s "
              f"cpu {cpu:6.2f} s  peak {rss:7.1f} MiB", flush=True)

    try:
        env = setup(db, workdir)
        print(f"{engine}: filling to {megabytes} MiB…", flush=True)
        db_size = db.fill(megabytes)
        key = env["BENCH_KEY"]

        record("polysec", "baseline", run([*POLYSEC, "backup", "list", "--json"], env=env), 0)
        created = run([*POLYSEC, "backup", "create", "--json"], env=env)
        doc = json.loads(created[3])
        payload = int(doc["payload_bytes"])
        backup = Path(doc["path"])
        record("polysec", "create", created, payload, backup)
        record("polysec", "verify", run([*POLYSEC, "backup", "verify", str(backup),
                                         "--identity", key], env=env), payload)
        if engine == "sqlite":
            target = f"sqlite:///{workdir / 'restored.db'}"
        else:
            restored = Database.__new__(Database)
            restored.engine, restored.server = engine, server
            restored.name = f"{db.name}_r"
            assert server is not None
            target = parse_url(server).set(database=restored.name).render_as_string(
                hide_password=False)
        admin_env = dict(env, POLYSEC_TOKEN=env["BENCH_ADMIN_TOKEN"])  # restore: admins only
        record("polysec", "restore", run([*POLYSEC, "backup", "restore", str(backup),
                                          "--identity", key, "--to", target], env=admin_env),
               payload)
        if engine == "sqlite":
            (workdir / "restored.db").unlink()
        else:
            assert restored is not None
            restored.drop()
            restored = None
        # The restore drill: the backup restored into a scratch database, checked there
        # (manifest, data audit checks, the audit-log chain), dropped, the record signed.
        drilled = run([*POLYSEC, "backup", "drill", str(backup), "--identity", key, "--json"],
                      env=env)
        record("polysec", "drill", drilled, payload)
        drill = json.loads(drilled[3])
        print(f"  drill: restore {drill['restore_seconds']} s, checks "
              f"{drill['checks_seconds']} s, result {drill['result']}", flush=True)
        backup.unlink()

        snap = workdir / f"{db.name}.snapshot"
        db.plain_snapshot(snap)
        size = snap.stat().st_size
        enc = workdir / "envelope.psbk"
        for step, cmd, output in (
                ("encrypt", [ENVELOPE_ENCRYPT, str(snap), str(enc), env["BENCH_RECIPIENT"],
                             env["BENCH_SIGNING_KEY"]], enc),
                ("decrypt", [ENVELOPE_DECRYPT, str(enc), key, env["BENCH_SIGNING_KEY"]],
                 None)):
            result = run([sys.executable, "-c", *cmd])
            record("envelope", step, result, size, output)
            inner_wall, inner_cpu = (float(x) for x in result[3].split())
            record("envelope", f"{step}, in process", (inner_wall, inner_cpu, result[2], ""),
                   size, output)
        enc.unlink()

        if tools["age"] and tools["age-keygen"]:
            age_key = workdir / "age.key"
            age_key.unlink(missing_ok=True)
            subprocess.run([tools["age-keygen"], "-o", str(age_key)], check=True,
                           capture_output=True)
            recipient = subprocess.run([tools["age-keygen"], "-y", str(age_key)], check=True,
                                       capture_output=True, text=True).stdout.strip()
            out = workdir / "snapshot.age"
            record("age", "encrypt", run([tools["age"], "-r", recipient, "-o", str(out),
                                          str(snap)]), size, out)
            record("age", "decrypt", run([tools["age"], "-d", "-i", str(age_key), "-o",
                                          "/dev/null", str(out)]), size)
            out.unlink()

        if tools["restic"]:
            repo = workdir / "restic-repo"
            shutil.rmtree(repo, ignore_errors=True)
            renv = dict(os.environ, RESTIC_REPOSITORY=str(repo),
                        RESTIC_PASSWORD="bench-restic-password", RESTIC_CACHE_DIR=str(
                            workdir / "restic-cache"))
            subprocess.run([tools["restic"], "init"], env=renv, check=True,
                           capture_output=True)
            record("restic", "backup", run([tools["restic"], "backup", str(snap)], env=renv),
                   size)
            repo_mib = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
            steps[-1].output_mib = round(repo_mib / MIB, 1)
            record("restic", "check", run([tools["restic"], "check", "--read-data"],
                                          env=renv), size)
            target_dir = workdir / "restic-restore"
            record("restic", "restore", run([tools["restic"], "restore", "latest",
                                             "--target", str(target_dir)], env=renv), size)
            shutil.rmtree(target_dir, ignore_errors=True)
            shutil.rmtree(repo, ignore_errors=True)
        snap.unlink()
        return db_size, payload, steps
    finally:
        if restored is not None:
            restored.drop()
        db.drop()


def markdown(rows: list[Step], sizes: dict[str, tuple[int, int]]) -> str:
    lines = []
    for engine, (db_size, payload) in sizes.items():
        lines.append(f"\n{engine}: database {db_size / MIB:.0f} MiB, snapshot "
                     f"{payload / MIB:.0f} MiB\n")
        lines.append("| tool | step | s | MiB/s | CPU s | peak RSS MiB | output MiB |")
        lines.append("|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            if r.engine == engine:
                out = "" if r.output_mib is None else f"{r.output_mib:.0f}"
                lines.append(f"| {r.tool} | {r.step} | {r.seconds:.2f} | {r.mib_per_s:.0f} | "
                             f"{r.cpu_seconds:.2f} | {r.peak_rss_mib:.0f} | {out} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--sqlite-mb", type=int, default=1024)
    parser.add_argument("--postgres-mb", type=int, default=512)
    parser.add_argument("--postgres", default=os.environ.get(
        "POLYSEC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    tools = {name: shutil.which(name) for name in ("age", "age-keygen", "restic")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        print(f"not installed (skipped): {', '.join(missing)}; apt-get install restic age",
              file=sys.stderr)
    versions = {}
    for name in ("age", "restic"):
        program = tools[name]
        if program:
            probe = subprocess.run([program, "version" if name == "restic" else
                                    "--version"], capture_output=True, text=True, check=False)
            versions[name] = probe.stdout.strip().splitlines()[0] if probe.stdout else "?"
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, tools {versions}",
          flush=True)
    rows: list[Step] = []
    sizes: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="polysec-bench-backup-",
                                     dir=args.workdir) as tmp:
        for engine in args.engines:
            megabytes = args.sqlite_mb if engine == "sqlite" else args.postgres_mb
            db_size, payload, steps = measure(engine, megabytes, Path(tmp),
                                              args.postgres if engine != "sqlite" else None,
                                              tools)
            sizes[engine] = (db_size, payload)
            rows.extend(steps)
    print(markdown(rows, sizes))
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "tools": versions,
                          "sizes": sizes, "steps": [dataclasses.asdict(r) for r in rows]},
                         indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
