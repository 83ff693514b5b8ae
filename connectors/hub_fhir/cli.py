"""``hub fhir pull``: read a practice's FHIR server into the hub."""

from __future__ import annotations

import datetime as dt
import json

import click

from hub.connector import PullService
from hub.errors import ConfigError

_PULL = "hub_fhir.pull"  # where the group leaves the core's pull service for its commands (click's ctx.meta)


def fhir_group(pull: PullService) -> click.Group:
    """The ``hub fhir`` commands, pulling through the core's ``pull`` service (``hub_cli_commands``)."""

    @click.group("fhir")
    @click.pass_context
    def group(ctx: click.Context) -> None:
        """FHIR R4: pull from a practice's FHIR server."""
        ctx.meta[_PULL] = pull

    group.add_command(pull_command)
    return group


@click.command("pull")
@click.option("--practice", "practice", required=True, help="the registered practice the data belongs to")
@click.option("--base", "base", default=None,
              help="the FHIR server's base URL (default: base_url of the practice's fhir connector settings)")
@click.option("--since", "since", default=None,
              help="read what changed since this date or instant, instead of since the stored high-water mark")
@click.option("--type", "types", multiple=True, help="only this resource type (repeatable)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def pull_command(ctx: click.Context, practice: str, base: str | None, since: str | None, types: tuple[str, ...],
                 fmt: str) -> None:
    """Search the server for each mapped type changed since the last run, page by page;
    every page is stored before the practice's high-water mark moves past it."""
    pull: PullService = ctx.meta[_PULL]
    if since is not None:
        since = _checked_since(since)
    reports = pull(practice, "fhir", options={"base_url": base} if base else None, since=since,
                   resource_types=types or None)
    if fmt == "json":
        click.echo(json.dumps([r.__dict__ for r in reports], indent=2))
        return
    for r in reports:
        click.echo(f"{r.resource_type}: {r.pages} page(s), {r.resources} resource(s); messages accepted "
                   f"{r.accepted}, duplicate {r.duplicate}, error {r.error}; high-water {r.high_water or '-'}")


def _checked_since(value: str) -> str:
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value[:40]!r} is not a date or ISO 8601 instant") from None
    return value
