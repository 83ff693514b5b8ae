"""``hub audit list``: read the audit log."""

from __future__ import annotations

import datetime as dt

import click

from hub.commands.base import State, dumps, pass_state


@click.group()
def audit() -> None:
    """The audit log: who touched patient-level data, when, from where."""


@audit.command("list")
@click.option("--key", "key_id", help="Only this key id.")
@click.option("--action", help="Only this action (intake, messages.list, messages.reprocess, messages.resolve).")
@click.option("--practice")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="From this UTC date or date-time on.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def audit_list(state: State, key_id: str | None, action: str | None, practice: str | None,
               since: dt.datetime | None, limit: int, fmt: str) -> None:
    """List audit entries, newest first."""
    from hub.security.audit import list_entries

    with state.runtime.engine.connect() as conn:
        rows = list_entries(conn, key_id=key_id, action=action, practice=practice, limit=limit,
                            since=since.replace(tzinfo=dt.UTC) if since else None)
    if fmt == "json":
        click.echo(dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['at']:%Y-%m-%dT%H:%M:%SZ}  {r['key_id'] or '-':<14} {r['action']:<20} "
                   f"{r['target'] or '-':<16} {r['address'] or '-':<16} {r['outcome'] or ''}")
