"""``hub fhir pull``: read a practice's FHIR server into the hub."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click

from hub.errors import ConfigError, HubError

if TYPE_CHECKING:  # annotations only: hub --help lists this command without the connector contract's module
    from hub.connector import PullReport, PullService

MAX_PAGE_SIZE = 1000  # _count a server is asked for at most (servers cap it lower on their own)
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
@click.option("--page-size", "page_size", type=click.IntRange(1, MAX_PAGE_SIZE), default=None,
              help="resources per search page (_count; default: page_size of the practice's fhir settings, else 100)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def pull_command(ctx: click.Context, practice: str, base: str | None, since: str | None, types: tuple[str, ...],
                 page_size: int | None, fmt: str) -> None:
    """Search the server for each mapped type changed since the last run, page by page;
    every page is stored before the practice's high-water mark moves past it. When the server
    or the store fails, the types done before are still reported, then the error (exit 1)."""
    pull: PullService = ctx.meta[_PULL]
    if since is not None:
        since = _checked_since(since)
    options: dict[str, object] = {}
    if base:
        options["base_url"] = base
    if page_size is not None:
        options["page_size"] = page_size
    done: list[PullReport] = []  # each type's report, given as soon as the type is read and stored
    try:
        pull(practice, "fhir", options=options or None, since=since, resource_types=types or None,
             on_report=done.append)
    except HubError:
        if done:  # what the types before the failure stored, then the error (exit 1)
            _summary(done, fmt)
        raise
    _summary(done, fmt)


def _summary(reports: list[PullReport], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([r.__dict__ for r in reports], indent=2))
        return
    for r in reports:
        stopped = "" if r.finished else " (stopped by the error below)"
        click.echo(f"{r.resource_type}: {r.pages} page(s), {r.resources} resource(s); messages accepted "
                   f"{r.accepted}, duplicate {r.duplicate}, error {r.error}; high-water {r.high_water or '-'}"
                   f"{stopped}")


def _checked_since(value: str) -> str:
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value[:40]!r} is not a date or ISO 8601 instant") from None
    return value
