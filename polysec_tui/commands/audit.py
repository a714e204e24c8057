"""`polysec audit`: run the audit checks, and read the history of runs.

Exit codes of `audit run`: 0 when no check fails (warnings included), 1 when any fails.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import click

from polysec_tui.commands.common import (
    COUNT,
    RECORD_ID,
    actor_of,
    echo,
    emit_json,
    runtime_of,
    to_json,
)
from polysec_tui.errors import CheckFailed, InputError
from polysec_tui.files import atomic_write
from polysec_tui.services.operations import audit_checks as service
from polysec_tui.services.operations.audit_checks import AuditRunReport, Finding

PERMISSION = "audit.run"
MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


@click.group()
def audit() -> None:
    """Audit checks of the encrypted database: run them, read past runs."""


def _names(values: tuple[str, ...]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def render_table(report: AuditRunReport) -> str:
    lines = [f"audit run {report.run_id}: {report.result.upper()}"]
    width = max((len(f.check) for f in report.findings), default=0)
    for f in report.findings:
        lines.append(f"{MARK[f.status]}  {f.check:<{width}}  {f.summary}")
        if f.status != "pass":
            lines.append(f"      {'':<{width}}  fix: {f.remediation}")
    return "\n".join(lines)


def render_junit(report: AuditRunReport) -> str:
    """One test case per check: fail is a failure; warn is a pass with a system-out note,
    so CI dashboards show it without failing the build."""
    failures = sum(f.status == "fail" for f in report.findings)
    suite = ET.Element("testsuite", name="polysec.audit", tests=str(len(report.findings)),
                       failures=str(failures), errors="0",
                       timestamp=report.started_at.isoformat())
    for f in report.findings:
        case = ET.SubElement(suite, "testcase", classname="polysec.audit", name=f.check)
        if f.status == "fail":
            failure = ET.SubElement(case, "failure", message=f.summary)
            failure.text = f"remediation: {f.remediation}\nevidence: {to_json(f.evidence)}"
        elif f.status == "warn":
            out = ET.SubElement(case, "system-out")
            out.text = f"WARN: {f.summary}\nremediation: {f.remediation}"
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


RENDER = {"table": render_table, "json": lambda r: to_json(r.to_dict()),
          "junit": render_junit}


@audit.command("run")
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only these checks (repeat, or comma-separated).")
@click.option("--format", "fmt", type=click.Choice(list(RENDER)), default="table",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report to FILE.")
@click.option("--sample", type=COUNT, metavar="N",
              help="Decrypt a random sample of N rows per table (a quick pass).")
@click.pass_context
def run_checks(ctx: click.Context, only: tuple[str, ...], fmt: str, out: str | None,
               sample: int | None) -> None:
    """Run the audit checks (all that apply to this database by default).

    Checks: encryption_coverage, key_hygiene, blind_index_consistency, officer_hygiene,
    client_2fa_coverage, auditlog_chain, backup_freshness, review_sla, incident_age,
    pending_migrations; on PostgreSQL and MariaDB also db_connection_tls and
    db_role_privileges. Exit 1 when any check fails.
    """
    actor = actor_of(ctx, PERMISSION)
    rt = runtime_of(ctx)
    progress = _progress if fmt == "table" and out is None and sys.stderr.isatty() else None
    _report(service.run(rt, actor, _names(only), sample=sample, progress=progress), fmt, out)


def _report(report: AuditRunReport, fmt: str, out: str | None) -> None:
    rendered = RENDER[fmt](report)
    if out:
        atomic_write(out, (rendered + "\n").encode(), mode=0o640, what="report")
        echo(f"audit run {report.run_id}: {report.result}; report written to {out}",
             err=True)
    else:
        echo(rendered)
    if report.failed:
        failed = ", ".join(f.check for f in report.findings if f.status == "fail")
        raise CheckFailed(f"audit failed: {failed}")


@audit.command("hosts")
@click.option("--inventory", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="TOML inventory of hosts (docs/audit.md).")
@click.option("--format", "fmt", type=click.Choice(list(RENDER)), default="table",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report to FILE.")
@click.pass_context
def hosts(ctx: click.Context, inventory: Path, fmt: str, out: str | None) -> None:
    """Audit servers over SSH (pinned host keys, key auth, read-only commands).

    Per host: sshd settings, firewall policy, pending security updates, time
    synchronisation, listening ports against the inventory's allow-list. Hosts run in
    parallel; an unreachable host is a failed finding. Exit 1 when any check fails.
    """
    from polysec_tui.services.operations import host_audit

    actor = actor_of(ctx, PERMISSION)
    _report(host_audit.run(runtime_of(ctx), actor, inventory), fmt, out)


def _progress(name: str, done: int, total: int) -> None:
    label = f"running {name}" if name else "done"
    echo(f"[{done}/{total}] {label:<40}", err=True, nl=not name, overwrite=True)


@audit.command("history")
@click.option("--limit", type=COUNT, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def history(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Past audit runs, newest first, with pass/warn/fail counts."""
    actor = actor_of(ctx, PERMISSION)
    runs = service.history(runtime_of(ctx), actor, limit)
    if as_json:
        emit_json([r.to_dict() for r in runs])
        return
    for r in runs:
        c = r.counts
        echo(f"{r.run_id:>6}  {r.started_at:%Y-%m-%d %H:%M}Z  {r.result or '-':<4}  "
             f"pass {c['pass']:>2}  warn {c['warn']:>2}  fail {c['fail']:>2}  "
             f"{r.officer or '-'}")


@audit.command("show")
@click.argument("run_id", type=RECORD_ID)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def show(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """The findings of one run, with evidence and remediation."""
    actor = actor_of(ctx, PERMISSION)
    findings = service.findings_of(runtime_of(ctx), actor, run_id)
    if not findings:
        raise InputError(f"no audit run {run_id}")
    if as_json:
        emit_json([f.to_dict() for f in findings])
        return
    for f in findings:
        echo(_finding_text(f))


def _finding_text(f: Finding) -> str:
    evidence: dict[str, Any] = f.evidence
    return (f"{MARK[f.status]}  {f.check}: {f.summary}\n"
            f"      evidence: {to_json(evidence)}\n      fix: {f.remediation}")
