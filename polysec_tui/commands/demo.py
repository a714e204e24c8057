"""`polysec demo`: fill the embedded demo database (seeded, deterministic) and open the
console on it. The generator lives in services/demo.py; this module only parses and prints."""

from __future__ import annotations

import click

from polysec_tui.commands.common import echo, settings_of
from polysec_tui.synthetic.demo import DemoResult, build_demo
from polysec_tui.synthetic.generator import DemoSpec, default_anchor, parse_anchor


@click.command()
@click.option("--no-tui", is_flag=True, help="Fill the database, print the summary, stop.")
@click.option("--accounts", type=click.IntRange(50, 1_000_000), default=2000, show_default=True,
              help="Number of client accounts.")
@click.option("--days", type=click.IntRange(5, 365), default=30, show_default=True,
              help="Days of activity before the anchor.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Seed of the generator: the same seed gives the same data.")
@click.option("--anchor", metavar="ISO8601",
              help="The 'now' the data ends at, with a zone (default: this hour, UTC).")
@click.option("--reset", is_flag=True,
              help="Delete and regenerate the embedded demo database (never an explicit --db).")
@click.pass_context
def demo(ctx: click.Context, no_tui: bool, accounts: int, days: int, seed: int,
         anchor: str | None, reset: bool) -> None:
    """Fill the demo database with a realistic exchange and open the console.

    Uses its own database and keyring (demo.db, demo-keyring.json in the application
    directory) unless --db/--keyring are given. Clients, logins, security events and
    withdrawals go through the same ingest path as the platform's feed; known attacks
    (brute force, credential stuffing, password spraying, impossible travel, account
    takeover) are injected in the last days, with their ground truth in demo_scenarios.
    An existing demo database is reused; --reset regenerates it. While the console is
    open, a watcher judges new events as they arrive (try `polysec simulate --demo` in a
    second terminal), and where OpenSSH's server is installed a private SFTP server on
    127.0.0.1 receives the backups the console ships (demo-offsite/).
    """
    settings = settings_of(ctx).for_demo()
    spec = DemoSpec(accounts=accounts, days=days, seed=seed,
                    anchor=parse_anchor(anchor) if anchor else default_anchor())
    result = build_demo(settings, spec, reset=reset, progress=echo)
    _summary(result)
    settings = settings_of(ctx).for_demo()  # with the demo's backup keys, now made
    if not no_tui:
        from polysec_tui.commands.tui import open_console
        from polysec_tui.synthetic.demo import demo_watcher
        from polysec_tui.synthetic.demo_sftp import demo_sftp

        with demo_watcher(settings), demo_sftp(settings) as offsite:
            if offsite.url:
                echo(f"  backups ship to the demo's own SFTP server: {offsite.url}")
            elif offsite.unavailable:
                echo(f"  backups cannot be shipped in this demo: {offsite.unavailable}")
            open_console(offsite.settings)


def _summary(result: DemoResult) -> None:
    info = result.info
    verb = "reused (pass --reset to regenerate)" if result.reused else "generated"
    echo(
        f"demo database {verb}: seed {info.get('seed', '?')}, {info.get('accounts', '?')} "
        f"accounts, {info.get('days', '?')} days up to {info.get('anchor', '?')}"
    )
    echo("  " + ", ".join(f"{name.replace('_', ' ')} {n}"
                                for name, n in result.counts.items()))
    kinds: dict[str, int] = {}
    for scenario in result.scenarios:
        kinds[scenario["kind"]] = kinds.get(scenario["kind"], 0) + 1
    echo(f"  {len(result.scenarios)} attack scenarios injected: "
         + ", ".join(f"{kind} x{n}" for kind, n in kinds.items()))
    for scenario in result.scenarios:
        echo(f"    #{scenario['id']} {scenario['kind']}: {scenario['description']}",
             nl=True)
    if not result.reused:
        echo(f"  done in {result.seconds:.1f} s")
