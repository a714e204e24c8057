"""`polysec evidence` (an auditor's evidence pack and its offline check) and `polysec
retention report`. docs/audit.md, "Evidence for auditors"."""

from __future__ import annotations

from pathlib import Path

import click

from polysec_tui.backup.envelope import Signer
from polysec_tui.commands.common import actor_of, echo, emit_json, runtime_of, settings_of
from polysec_tui.crypto.keyring import load_keyring
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.services.operations import evidence as service
from polysec_tui.services.operations import retention as retention_service
from polysec_tui.services.operations.backups import BackupConfig
from polysec_tui.text import printable


@click.group(invoke_without_command=True)
@click.option("--period", help="2026-Q4, 2026-11 or 2026 (UTC).")
@click.option("--out", type=click.Path(path_type=Path), help="A new directory for the pack.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def evidence(ctx: click.Context, period: str | None, out: Path | None, as_json: bool) -> None:
    """An evidence pack for auditors: `polysec evidence --period 2026-Q4 --out DIR`.

    The period's audit-log slice with the chain's proof and a signed checkpoint, the
    officers (roles, grants, last logins) and access reviews, backups, restore drills and
    audit-check runs, four-eyes requests and the review's service levels, rule-set
    changes; a manifest of SHA-256 digests signed with the backup signing key ([backup]
    signing_key). `polysec evidence verify DIR` checks a pack offline. Audited."""
    if ctx.invoked_subcommand is not None:
        return
    if period is None or out is None:
        raise InputError("give --period (e.g. 2026-Q4) and --out DIR, or `evidence verify DIR`")
    rt = runtime_of(ctx)
    done = service.build(rt, actor_of(ctx, "auditlog.read"), period, out)
    if as_json:
        emit_json(done.as_dict())
        return
    echo(f"evidence pack of {period} ({done.start:%Y-%m-%d} to {done.end:%Y-%m-%d}) in "
         f"{done.out}: {len(done.files)} files, {done.audit_entries} audit entries, signed "
         f"by {done.signer}")


@evidence.command()
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--signer", "signers", multiple=True,
              help="A trusted public key (polysec-ed25519:...); default: [backup] signers.")
@click.option("--audit-key", "audit_key", is_flag=True,
              help="Also check every audit entry's MAC with the keyring's audit key "
                   "(--keyring): holds even against whoever holds the signing key.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def verify(ctx: click.Context, directory: Path, signers: tuple[str, ...], audit_key: bool,
           as_json: bool) -> None:
    """Check a pack offline: the manifest's signature by a trusted key, every file's
    digest, no file added or missing, the audit slice an unbroken run of the chain (and
    with --audit-key each entry's own MAC). Exit 1 when anything fails."""
    settings = settings_of(ctx)
    trusted = (tuple(Signer.parse(s) for s in signers) if signers
               else BackupConfig.from_settings(settings).signers)
    key = load_keyring(settings.keyring_path).audit_key if audit_key else None
    report = service.verify(directory, trusted, audit_key=key)
    if as_json:
        emit_json(report.as_dict())
    elif report.ok:
        echo(f"evidence pack ok: period {report.period}, {report.files} files, "
             f"{report.audit_entries} audit entries, signed by {report.signer}")
    else:
        for problem in report.problems:
            echo(f"FAIL {printable(problem)}")
    if not report.ok:
        raise CheckFailed(f"the evidence pack in {directory} does not verify "
                          f"({len(report.problems)} problem(s))")


@click.group()
def retention() -> None:
    """Records kept past the retention period ([retention] years, default 5)."""


@retention.command("report")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def retention_report(ctx: click.Context, as_json: bool) -> None:
    """Per kind of record, how many are older than the retention period, and the oldest.
    Deletes nothing (polysec deletes no records; a deletion would need four-eyes)."""
    years, cutoff, found = retention_service.report(runtime_of(ctx),
                                                    actor_of(ctx, "auditlog.read"))
    if as_json:
        emit_json({"years": years, "cutoff": cutoff, "kinds": [p.as_dict() for p in found]})
        return
    echo(f"retention {years} years: records before {cutoff:%Y-%m-%d}")
    for p in found:
        oldest = f"oldest {p.oldest:%Y-%m-%d}" if p.oldest else ""
        echo(f"{p.kind:<22} {p.past_retention:>10,}  {oldest}")
