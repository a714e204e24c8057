"""`polysec keys`: field-key status, add, promote, rotate, retire (docs/keys.md).

Changes need an admin and a fresh authenticator code; each is audited.
"""

from __future__ import annotations

import click

from polysec_tui.commands.common import (
    COUNT,
    RECORD_ID,
    actor_of,
    echo,
    emit_json,
    prompt_secret,
    runtime_of,
)
from polysec_tui.services.operations import keys as service

CODE_HELP = "A fresh authenticator code (asked if not given)."


@click.group()
def keys() -> None:
    """Field keys: status, add, promote, rotate, retire."""


@keys.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Each field key: state, whether primary, values it protects, encryptions so far."""
    actor = actor_of(ctx, "audit.run")
    found = service.status(runtime_of(ctx), actor)
    if as_json:
        emit_json([k.to_dict() for k in found])
        return
    for k in found:
        mark = "primary" if k.primary else k.status
        echo(f"key {k.id:>3}  {mark:<8}  created {k.created_at:%Y-%m-%d}  "
             f"values {k.values:>10}  encryptions {k.encryptions:>12}")


@keys.command()
@click.option("--code", help=CODE_HELP)
@click.pass_context
def add(ctx: click.Context, code: str | None) -> None:
    """Add a new active field key (promote it to encrypt with it)."""
    actor = actor_of(ctx, service.PERMISSION)
    new = service.add(runtime_of(ctx), actor, prompt_secret("Authenticator code", code))
    echo(f"added field key {new.id}; next: polysec keys promote {new.id}")


@keys.command()
@click.argument("key_id", type=RECORD_ID)
@click.option("--code", help=CODE_HELP)
@click.pass_context
def promote(ctx: click.Context, key_id: int, code: str | None) -> None:
    """Make KEY_ID the primary key for new encryptions."""
    actor = actor_of(ctx, service.PERMISSION)
    service.promote(runtime_of(ctx), actor, key_id, prompt_secret("Authenticator code", code))
    echo(f"field key {key_id} is the primary; next: polysec keys rotate")


@keys.command()
@click.option("--batch", type=COUNT, default=service.DEFAULT_BATCH,
              show_default=True, help="Rows per transaction.")
@click.option("--max-batches", type=COUNT,
              help="Stop after this many batches (run again to continue).")
@click.option("--code", help=CODE_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def rotate(ctx: click.Context, batch: int, max_batches: int | None, code: str | None,
           as_json: bool) -> None:
    """Re-encrypt every value under the primary key, in resumable batches."""
    actor = actor_of(ctx, service.PERMISSION)
    rt = runtime_of(ctx)
    report = service.rotate(rt, actor, prompt_secret("Authenticator code", code),
                            batch=batch, max_batches=max_batches)
    if as_json:
        emit_json(report.to_dict())
        return
    echo(f"re-encrypted {report.reencrypted} values under key {report.primary} in "
         f"{report.batches} batches; {report.remaining} values still under older keys")


@keys.command()
@click.argument("key_id", type=RECORD_ID)
@click.option("--code", help=CODE_HELP)
@click.pass_context
def retire(ctx: click.Context, key_id: int, code: str | None) -> None:
    """Retire KEY_ID: refused while any value or retained backup needs it."""
    actor = actor_of(ctx, service.PERMISSION)
    service.retire(runtime_of(ctx), actor, key_id, prompt_secret("Authenticator code", code))
    echo(f"field key {key_id} retired")
