"""The `polysec` click group. Subcommands load lazily so that `polysec --help` imports
neither textual, sqlalchemy nor paramiko (a test holds us to it)."""

from __future__ import annotations

import importlib
import io
import os
import sys
from typing import Any

import click

from polysec_tui import __version__
from polysec_tui.config import CONFIG_ENV, DB_ENV, KEYRING_ENV, env_flag, resolve_settings
from polysec_tui.errors import EXIT_USAGE, PolysecError
from polysec_tui.text import printable, visible_lines

# name -> (module:attribute, one-line help shown by `polysec --help` without importing)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("polysec_tui.commands.setup:init", "Create the keyring and the schema."),
    "db": ("polysec_tui.commands.setup:db", "Schema migrations: upgrade, current, downgrade."),
    "ingest": ("polysec_tui.commands.ingest:ingest", "Load platform events (JSON Lines)."),
    "simulate": ("polysec_tui.commands.simulate:simulate", "Stream live platform activity (with attacks) through ingest."),  # noqa: E501
    "status": ("polysec_tui.commands.status:status", "Dashboard figures of the database."),
    "watch": ("polysec_tui.commands.watch:watch", "The detector service: judge new events within seconds."),  # noqa: E501
    "evidence": ("polysec_tui.commands.evidence:evidence", "An evidence pack for auditors, and its offline check."),  # noqa: E501
    "retention": ("polysec_tui.commands.evidence:retention", "Records kept past the retention period."),  # noqa: E501
    "export": ("polysec_tui.commands.export:export", "The SIEM export: status, dead letters, retry."),  # noqa: E501
    "alerts": ("polysec_tui.commands.alerts:alerts", "Alerts (incidents of activity): list, acknowledge."),  # noqa: E501
    "work": ("polysec_tui.commands.work:work", "Your own work: claims, decisions waiting for you, your requests."),  # noqa: E501
    "rules": ("polysec_tui.commands.rules:rules", "How well each rule does: hits, holds, outcomes."),  # noqa: E501
    "demo": ("polysec_tui.commands.demo:demo", "Fill the demo database and open the console."),
    "tui": ("polysec_tui.commands.tui:tui", "Open the console (Textual TUI)."),
    "keys-help": ("polysec_tui.commands.keyshelp:keys_help", "Every console key binding; remap them with [keys]."),  # noqa: E501
    "login": ("polysec_tui.commands.officer:login", "Log in (password + authenticator code)."),
    "logout": ("polysec_tui.commands.officer:logout", "End your session."),
    "whoami": ("polysec_tui.commands.officer:whoami", "The officer of the current session."),
    "officer": ("polysec_tui.commands.officer:officer", "Officers: add, list, disable, tokens."),
    "approvals": ("polysec_tui.commands.approvals:approvals", "Four-eyes requests and decisions."),
    "accounts": ("polysec_tui.commands.accounts:accounts", "Client accounts (PII masked)."),
    "auditlog": ("polysec_tui.commands.auditlog:auditlog", "The officer audit log: verify, tail."),
    "logins": ("polysec_tui.commands.logins:logins", "Login anomalies and account timelines."),
    "twofa": ("polysec_tui.commands.twofa:twofa", "Client 2FA: status and four-eyes reset."),
    "withdrawals": ("polysec_tui.commands.withdrawals:withdrawals", "Withdrawal screening and the review queue."),  # noqa: E501
    "blocklist": ("polysec_tui.commands.blocklist:blocklist", "Blocklisted destination addresses."),
    "sanctions": ("polysec_tui.commands.sanctions:sanctions", "Sanctions lists: import, lists, check."),  # noqa: E501
    "iplists": ("polysec_tui.commands.iplists:iplists", "IP reputation lists: import, list, check, remove."),  # noqa: E501
    "audit": ("polysec_tui.commands.audit:audit", "Audit checks of the encrypted database."),
    "keys": ("polysec_tui.commands.keys:keys", "Field keys: status, add, promote, rotate, retire."),
    "incidents": ("polysec_tui.commands.incidents:incidents", "Incidents: open, list, show, note, link, close."),  # noqa: E501
    "backup": ("polysec_tui.commands.backup:backup", "Encrypted backups: keygen, create, verify, restore, list, prune, ship, schedule."),  # noqa: E501
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_url", envvar=DB_ENV, metavar="URL",
              help=f"Database URL: sqlite:///path, postgresql://..., mariadb://... [env: {DB_ENV}]")
@click.option("--keyring", envvar=KEYRING_ENV, metavar="PATH",
              help=f"Field keyring file (owner-only). [env: {KEYRING_ENV}]")
@click.option("--config", envvar=CONFIG_ENV, metavar="PATH",
              help=f"TOML configuration file. [env: {CONFIG_ENV}]")
@click.version_option(__version__, prog_name="polysec")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, keyring: str | None, config: str | None) -> None:
    """polysec: the security-operations console of the POLYCOIN exchange.

    Exit codes: 0 success, 1 a check or verification failed, 2 usage or input error,
    3 authentication or permission refused, 4 conflict (someone else decided first).
    """
    ctx.obj = resolve_settings(db_url, keyring, config)


def _error(text: str) -> None:
    """An error line on stderr; what it quotes (an argument, a value from a file or the
    database) is shown with its control characters as escapes (polysec_tui.text)."""
    click.echo(visible_lines(text.rstrip("\n")), err=True)


def _database_refused(exc: Exception) -> bool:
    """A value the database refused (out of range, too long for its column): bad input
    that got past the checks, reported as such rather than as an internal error."""
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and isinstance(exc, errors.DataError)


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="polysec", standalone_mode=False)
    except PolysecError as exc:
        # printable, not visible: the message quotes values a service showed through
        # visible already (their backslashes doubled once); it is one line either way.
        _error(f"polysec: error: {printable(exc, limit=4000)}")
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _error("polysec: aborted")
        sys.exit(EXIT_USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        shown = io.StringIO()
        exc.show(file=shown)
        _error(shown.getvalue())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _error("polysec: interrupted")
        sys.exit(130)
    except Exception as exc:
        if _database_refused(exc):
            _error("polysec: error: the database refused a value (out of range or too long "
                   "for its column)")
            sys.exit(EXIT_USAGE)
        # Never a traceback with locals (secrets); a plain one only on request.
        if env_flag("POLYSEC_DEBUG"):
            import traceback

            traceback.print_exc()
        _error(f"polysec: internal error: {type(exc).__name__} (set POLYSEC_DEBUG=1 for "
               "details)")
        sys.exit(70)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
