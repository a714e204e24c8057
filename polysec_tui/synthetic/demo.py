"""`polysec demo`: a seeded, deterministic demo exchange fed through the ingest path.

The records come from the generator (`synthetic.generator`, over the world of
`synthetic.reference`) and go through `Ingestor` exactly like the platform's feed, so
the demo also exercises the validation and the batched writes. The same seed, size,
period and anchor give the same logical data (ciphertexts and row UUIDs differ: nonces
and keys are random, as they must be). This module builds the demo database: it marks
it as the demo's, fills it, seeds the demo officers and screens the withdrawals.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from polysec_tui.backup.envelope import Identity, SigningKey
from polysec_tui.config import (
    DEMO_IDENTITY,
    DEMO_SIGNING_KEY,
    Settings,
    default_db_url,
    demo_backup,
)
from polysec_tui.crypto import totp
from polysec_tui.crypto.keyring import Keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import check_connection, make_engine, redact
from polysec_tui.db.models import (
    Account,
    Balance,
    DatabaseInfo,
    DemoScenario,
    DemoScenarioEvent,
    LoginEvent,
    Officer,
    SecurityEvent,
    TotpEnrolment,
    Withdrawal,
)
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.feed.ingest import Ingestor
from polysec_tui.services.logins import anomalies
from polysec_tui.services.monitoring.watcher import WatchConfig, Watcher
from polysec_tui.services.networks import reputation
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime, open_runtime
from polysec_tui.services.withdrawals import screening
from polysec_tui.services.withdrawals.screening import ScreenReport
from polysec_tui.synthetic.generator import DemoGenerator, DemoSpec
from polysec_tui.synthetic.reference import COUNTRIES, HOSTING

# ============================================================================ the database

INFO_KEYS = ("demo", "seed", "accounts", "days", "anchor")


@dataclass
class DemoResult:
    reused: bool
    info: dict[str, str]
    counts: dict[str, int]
    scenarios: list[dict[str, Any]]
    seconds: float


def embedded_demo_path(settings: Settings) -> Path | None:
    """The embedded demo SQLite file, or None when --db (or the config) chose another."""
    if settings.db_url != default_db_url(demo=True):
        return None
    database = make_url(settings.db_url).database
    return Path(database).expanduser() if database else None


def reset_embedded(settings: Settings) -> None:
    path = embedded_demo_path(settings)
    if path is None:
        raise InputError(
            f"--reset only deletes the embedded demo database; it refuses to touch "
            f"{redact(settings.db_url)} given with --db (empty that database yourself)"
        )
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def open_demo_runtime(settings: Settings, *, reset: bool = False) -> Runtime:
    """Keyring (created if missing), schema (upgraded), then the runtime."""
    if reset:
        reset_embedded(settings)
    created = write_new_keyring(settings.keyring_path, Keyring.generate())
    engine = make_engine(settings.db_url)
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        if created:
            with engine.connect() as conn:
                holds_data = bool(conn.scalar(select(func.count()).select_from(Account)))
            if holds_data:
                raise InputError(
                    f"database {redact(engine.url)} holds accounts encrypted under another "
                    f"keyring than the new {settings.keyring_path}; "
                    + ("run `polysec demo --reset`" if embedded_demo_path(settings)
                       else "point --keyring at its keyring")
                )
    finally:
        engine.dispose()
    return open_runtime(settings)


def read_info(rt: Runtime) -> dict[str, str]:
    with rt.sessions() as session:
        return {row.key: row.value for row in session.scalars(select(DatabaseInfo))}


def _set_info(rt: Runtime, values: dict[str, str]) -> None:
    with rt.transaction() as session:
        for key, value in values.items():
            session.merge(DatabaseInfo(key=key, value=value))


def summarise(rt: Runtime) -> tuple[dict[str, int], list[dict[str, Any]]]:
    tables = {
        "accounts": Account, "totp_enrolments": TotpEnrolment, "balances": Balance,
        "logins": LoginEvent, "security_events": SecurityEvent, "withdrawals": Withdrawal,
    }
    with rt.sessions() as session:
        counts = {name: int(session.scalar(select(func.count()).select_from(model)) or 0)
                  for name, model in tables.items()}
        return counts, _scenarios(session)


def _scenarios(session: Session) -> list[dict[str, Any]]:
    sizes = dict(session.execute(
        select(DemoScenarioEvent.scenario_id, func.count()).group_by(
            DemoScenarioEvent.scenario_id)
    ).all())
    return [
        {"id": s.id, "kind": s.kind, "account": s.account_external_id,
         "source_ip": s.source_ip, "started_at": s.started_at,
         "events": int(sizes.get(s.id, 0)), "description": s.description}
        for s in session.scalars(select(DemoScenario).order_by(DemoScenario.started_at))
    ]


def scenarios(rt: Runtime) -> list[dict[str, Any]]:
    """The attacks `polysec demo` injected (what to look for in the console): on the
    demo database only, refused anywhere else."""
    if not rt.is_demo():
        raise RefusedError(f"{rt.database_label} is not the demo database: no scenarios")
    with rt.sessions() as session:
        return _scenarios(session)


def generate(rt: Runtime, spec: DemoSpec,
             progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Feed the generated exchange through ingest, then write the ground truth."""
    gen = DemoGenerator(spec)
    inserted: dict[str, int] = {}
    feeds = (
        ("accounts", gen.account_records),
        ("logins", gen.login_records),
        ("security-events", gen.security_event_records),
        ("withdrawals", gen.withdrawal_records),
        ("prices", gen.price_records),
    )
    for kind, records in feeds:
        began = time.monotonic()
        # Judged against the demo's present, its anchor (which may lie ahead of the clock).
        report = Ingestor(rt, kind, now=spec.anchor).run(records())
        inserted[kind] = report.inserted
        if progress:
            progress(f"{kind}: {report.inserted} ingested ({time.monotonic() - began:.1f} s)")
    with rt.transaction() as session:
        for scenario in gen.scenarios:
            session.add(DemoScenario(
                id=scenario.id, kind=scenario.kind, account_external_id=scenario.account,
                source_ip=scenario.source_ip, started_at=scenario.started_at,
                description=scenario.description,
            ))
        session.flush()
        session.add_all(
            DemoScenarioEvent(scenario_id=scenario.id, event_type=event_type, external_id=ext)
            for scenario in gen.scenarios for event_type, ext in scenario.events
        )
    return inserted


# ============================================================================ demo officers

# (name, role, password). The passwords are public on purpose: they are printed on the
# demo's login screen. The brief's `demo-<name>-password` would contain the officer's
# name, which the password policy refuses, so they name the role instead.
DEMO_OFFICERS: tuple[tuple[str, str, str], ...] = (
    ("alice", "analyst", "demo-analyst-passphrase"),
    ("sam", "senior", "demo-senior-passphrase"),
    ("ada", "admin", "demo-admin-passphrase"),
)


def create_demo_officers(rt: Runtime) -> bool:
    """alice (analyst), sam (senior) and ada (admin), unless the console has officers
    already (then nothing is created and False returned). ada is bootstrapped as the
    first admin; alice and sam are seeded as if they had joined a month ago, so that
    sam can be the second pair of eyes at once (a newly granted officer waits 24 hours,
    and an officer ada asked for could never approve ada's own requests)."""
    if officers.has_officers(rt):
        return False
    admin_name, _role, admin_password = DEMO_OFFICERS[-1]
    officers.bootstrap_admin(rt, admin_name, admin_password)
    officers.seed_officers(rt, DEMO_OFFICERS[:-1], rt.clock() - timedelta(days=30))
    return True


def screen_demo(rt: Runtime, at: datetime, days: int) -> ScreenReport:
    """Import the demo world's ASN table, analyse the demo's logins and screen its
    withdrawals as ada, so the anomalies screen and the review queue have work in them
    (a ``days``-day demo). The clock is the demo's anchor (its "now"), so the same seed
    gives the same data."""
    ada = demo_actor(rt)
    if ada is None:
        return ScreenReport()
    pinned = Runtime(rt.settings, rt.engine, rt.keyring, clock=lambda: at)
    import_demo_networks(pinned, ada, at - timedelta(days=days + 1))
    # Login analysis first: the anomalies screen has findings, and screening's
    # risky_session rule sees the takeover's anomalous login, as in production.
    anomalies.analyze(pinned, ada, full=True)
    return screening.screen(pinned, ada)


def import_demo_networks(rt: Runtime, actor: Actor, compiled: datetime) -> None:
    """The demo world's ASN table, as a deployment imports one (`polysec iplists import`):
    its data centres and VPN providers as hosting, its ISPs as residential and its mobile
    carriers as mobile; compiled before the demo's first day."""
    rows = {h.network.asn: ("hosting", h.network.org) for h in HOSTING}
    for country in COUNTRIES:
        rows.update({isp.asn: ("residential", isp.org) for isp in country.isps})
        rows[country.mobile.asn] = ("mobile", country.mobile.org)
    table = "asn,category,name\n" + "".join(
        f"{asn},{category},{name.replace(',', ' ')}\n"
        for asn, (category, name) in sorted(rows.items()))
    fmt, parsed, sha256 = reputation.read_file(io.BytesIO(table.encode()), "asn")
    parsed.published_at = compiled
    reputation.import_list(rt, actor, fmt, parsed, sha256, name="demo-asn-types")


def demo_actor(rt: Runtime) -> Actor | None:
    """ada, the demo's admin, as whom the demo's own analysis and watcher run (None if
    the database has no such admin: then nothing runs in her name)."""
    admin_name = DEMO_OFFICERS[-1][0]
    with rt.sessions() as session:
        officer = session.scalars(select(Officer).where(Officer.name == admin_name)).first()
    if officer is None or officer.role != "admin" or officer.disabled:
        return None
    return Actor(officer.id, officer.name, officer.role)


@contextmanager
def demo_watcher(settings: Settings) -> Iterator[Watcher | None]:
    """A watcher (`polysec watch`) for the demo database while the console is open, in a
    thread of this process, as ada: `polysec simulate --demo` in a second terminal then
    shows its attacks on the dashboard, in the queue and as alerts within seconds. It
    runs only on the finished demo database; it logs nothing (the console owns the
    terminal: the dashboard shows the watcher, its lag and its last error)."""
    rt = open_runtime(settings)
    actor = demo_actor(rt) if rt.is_demo() else None
    if actor is None:
        rt.engine.dispose()
        yield None
        return
    stop = threading.Event()
    watcher = Watcher(rt, actor, config=WatchConfig.from_settings(settings),
                      log=_no_log, stop=stop)

    def run() -> None:
        # An exception must not print a traceback over the console; the lease row
        # keeps the last database error, and the dashboard shows the watcher stopped.
        with suppress(Exception):
            watcher.run()

    thread = threading.Thread(target=run, name="polysec-demo-watch", daemon=True)
    thread.start()
    try:
        yield watcher
    finally:
        stop.set()
        thread.join(timeout=15)
        rt.engine.dispose()


def _no_log(_event: str, **_fields: Any) -> None:
    pass


def demo_login_hints(rt: Runtime) -> list[tuple[str, str, str, str]]:
    """(name, role, password, current code) of each demo officer, for the login screen.

    The rule: hints exist only when BOTH hold: ``rt.settings.demo`` is True (set only by
    `polysec demo`, through ``Settings.for_demo()``; `polysec tui` never sets it) AND the
    database marks itself as the finished demo (``database_info.demo == "true"``, which
    `polysec demo` writes only into a database it filled itself). Otherwise this raises
    RefusedError, so a real console never prints a password or a code, even if someone
    names an officer alice.
    """
    if not rt.settings.demo:
        raise RefusedError("login hints are shown by `polysec demo` only")
    if not rt.is_demo():
        raise RefusedError(f"{rt.database_label} is not the demo database: no login hints")
    now = rt.clock()
    hints: list[tuple[str, str, str, str]] = []
    with rt.sessions() as session:
        for name, role, password in DEMO_OFFICERS:
            officer = session.scalars(select(Officer).where(Officer.name == name)).first()
            if officer is None or officer.disabled or officer.role != role:
                continue
            secret = sessions.officer_secret(rt, officer)
            if secret is not None:
                hints.append((name, role, password, totp.code_at(secret, now)))
    return hints


DEMO_KEY_NOTE = ("# DEMO ONLY: made by `polysec demo` for its own database, beside the\n"
                 "# demo keyring. Never use it for a real exchange's backups.\n")


def ensure_demo_backup_keys(keyring: Path) -> None:
    """The demo's backup recipient and signing key, made once beside the demo keyring
    (`config.demo_backup` puts them in the demo's [backup] table): a new user can try
    create, verify and restore without making keys first."""
    identity = keyring.with_name(DEMO_IDENTITY)
    if not identity.exists():
        Identity.generate().write_new(identity, note=DEMO_KEY_NOTE)
    signing = keyring.with_name(DEMO_SIGNING_KEY)
    if not signing.exists():
        SigningKey.generate().write_new(signing, note=DEMO_KEY_NOTE)


def build_demo(settings: Settings, spec: DemoSpec, *, reset: bool = False,
               progress: Callable[[str], None] | None = None) -> DemoResult:
    """Open (or create) the demo database and fill it, unless it already holds the demo."""
    began = time.monotonic()
    rt = open_demo_runtime(settings, reset=reset)
    if "backup" not in settings.options or settings.options["backup"] == demo_backup(
            settings.keyring_path):
        ensure_demo_backup_keys(settings.keyring_path)
    try:
        info = read_info(rt)
        state = info.get("demo")
        if state == "true":
            counts, scenarios = summarise(rt)
            return DemoResult(True, info, counts, scenarios, time.monotonic() - began)
        if state is not None:
            raise InputError(
                f"an earlier `polysec demo` into {rt.database_label} did not finish; "
                + ("run `polysec demo --reset`" if embedded_demo_path(settings)
                   else "empty that database and run it again")
            )
        counts, _ = summarise(rt)
        if counts["accounts"]:
            raise InputError(
                f"database {rt.database_label} already holds {counts['accounts']} accounts "
                "that are not demo data; `polysec demo` only fills an empty database"
            )
        # Marked first, so that an interrupted run is recognised and never mistaken for
        # real data or for a finished demo.
        _set_info(rt, {"demo": "generating"})
        generate(rt, spec, progress)
        if create_demo_officers(rt) and progress:
            progress("officers: alice (analyst), sam (senior), ada (admin)")
        if demo_actor(rt) is None:
            # The database had officers: the demo's own are not added, and its analysis
            # and screening run as ada, whom it lacks. Say so, and what to run instead.
            if progress:
                progress("this database already had officers: alice, sam and ada were not "
                         "added, and the login analysis and screening (which the demo runs "
                         "as ada) did not run; run `polysec logins analyze --full` and "
                         "`polysec withdrawals screen` as one of your officers")
        else:
            screened = screen_demo(rt, spec.anchor, spec.days)
            if progress:
                progress(f"withdrawals: {screened.screened} screened, {screened.held} held "
                         "for review")
        info = {"demo": "true", "seed": str(spec.seed), "accounts": str(spec.accounts),
                "days": str(spec.days), "anchor": spec.anchor.isoformat()}
        _set_info(rt, info)
        counts, scenarios = summarise(rt)
        return DemoResult(False, info, counts, scenarios, time.monotonic() - began)
    finally:
        rt.engine.dispose()
