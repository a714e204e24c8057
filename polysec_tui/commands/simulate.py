"""`polysec simulate`: stream live platform activity (with attacks) through ingest.

Authorisation mirrors `polysec ingest`: this is the platform's feed, not an officer
action, so it needs no officer session, only write access to the database and the
keyring (run it as the service account that owns them; see docs/bastion.md)."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click

from polysec_tui.commands.common import echo, emit_json, settings_of
from polysec_tui.errors import InputError


@contextmanager
def _graceful_stop() -> Iterator[list[bool]]:
    """Ctrl-C (or SIGTERM) asks the loop to stop after the tick it is writing, so
    every counted event is committed; a second Ctrl-C interrupts at once."""
    flag = [False]
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: FrameType | None) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{option} must be a number, not {text!r}") from None


@click.command()
@click.option("--rate", default="5", show_default=True, metavar="EVENTS_PER_SECOND",
              help="Records written per second (logins, sessions, security events, "
                   "withdrawals, new accounts), 0 < rate <= 10000.")
@click.option("--duration", metavar="SECONDS",
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--events", "max_events", metavar="N",
              help="Stop after N records (with --seed: exactly the same records every run).")
@click.option("--attack-every", default="60", show_default=True, metavar="SECONDS",
              help="An attack every SECONDS of traffic at the chosen rate (0: none), in "
                   "turn brute force, credential stuffing, account takeover.")
@click.option("--seed", metavar="INT",
              help="Seed of the generator: the same seed gives the same records "
                   "(default: a random seed, printed in the summary).")
@click.option("--population", default="300", show_default=True, metavar="N",
              help="Simulated clients (50-100000); some more sign up while it runs.")
@click.option("--report-every", default="10", show_default=True, metavar="SECONDS",
              help="A one-line progress summary on stderr this often.")
@click.option("--demo", "use_demo", is_flag=True,
              help="Write into the embedded demo database (the one `polysec demo` opens).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
def simulate(ctx: click.Context, rate: str, duration: str | None, max_events: str | None,
             attack_every: str, seed: str | None, population: str, report_every: str,
             use_demo: bool, as_json: bool) -> None:
    """Stream realistic platform activity into the database, live, with attacks.

    Every record goes through the same validation and writes as `polysec ingest`, one
    small transaction per tick, so a console open on the same database (`polysec tui`,
    `polysec demo`) sees it arrive. Attacks are recorded as ground truth in
    demo_scenarios. Stops after --duration, --events or Ctrl-C, with everything written
    so far committed. Needs no officer session (like ingest): run it as the account that
    owns the database and the keyring.
    """
    from polysec_tui.services.runtime import open_runtime
    from polysec_tui.synthetic.simulate import SimSpec, Simulator

    def whole(text: str, option: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise InputError(f"{option} must be a whole number, not {text!r}") from None

    every = _number(attack_every, "--attack-every")
    spec = SimSpec(
        rate=_number(rate, "--rate"),
        duration=_number(duration, "--duration") if duration is not None else None,
        seed=whole(seed, "--seed") if seed is not None else random.SystemRandom().randrange(2**31),
        attack_every=None if every == 0 else every,
        population=whole(population, "--population"),
        max_events=whole(max_events, "--events") if max_events is not None else None,
        report_every=_number(report_every, "--report-every"),
    )
    settings = settings_of(ctx)
    if use_demo:
        from polysec_tui.synthetic.demo import embedded_demo_path

        settings = settings.for_demo()
        path = embedded_demo_path(settings)
        if path is not None and not path.exists():
            raise InputError("no demo database yet: run `polysec demo --no-tui` first")
    rt = open_runtime(settings)
    try:
        simulator = Simulator(rt, spec)
        echo(f"simulate: {rt.database_label}, seed {spec.seed}, {spec.rate:g} events/s"
             + (f", an attack every {spec.attack_every:g} s" if spec.attack_every
                      else ", no attacks")
             + ("" if spec.duration or spec.max_events else "; Ctrl-C to stop"),
             err=True)
        with _graceful_stop() as stop:
            report = simulator.run(should_stop=lambda: stop[0],
                                   progress=lambda line: echo(line, err=True))
    finally:
        rt.engine.dispose()
    if as_json:
        emit_json(report.as_dict())
    else:
        echo(report.line())
        for attack in report.attacks:
            echo(f"  attack #{attack['id']} {attack['kind']} from {attack['source_ip']}"
                 f" at {attack['started_at']}")
