"""``hub fhir pull``: read a practice's FHIR server into the hub."""

from __future__ import annotations

import datetime as dt
import json

import click

from hub.errors import ConfigError


@click.group("fhir")
def fhir_group() -> None:
    """FHIR R4: pull from a practice's FHIR server."""


@fhir_group.command("pull")
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
    from hub.pull import connector_config

    from .pull import pull

    runtime = _runtime(ctx)
    config = connector_config(runtime.engine, practice, "fhir")
    base = base or config.get("base_url")  # type: ignore[assignment]
    if not base or not str(base).startswith(("http://", "https://")):
        raise ConfigError("give --base URL (http or https), or base_url in the practice's fhir connector settings")
    if since is not None:
        since = _checked_since(since)
    reports = pull(runtime, practice, str(base), since=since, types=types or None, config=config)
    if fmt == "json":
        click.echo(json.dumps([r.__dict__ for r in reports], indent=2))
        return
    for r in reports:
        click.echo(f"{r.resource_type}: {r.pages} page(s), {r.resources} resource(s); messages accepted "
                   f"{r.accepted}, duplicate {r.duplicate}, error {r.error}; high-water {r.high_water or '-'}")


def _runtime(ctx: click.Context):  # type: ignore[no-untyped-def]
    state = ctx.obj
    if state is not None and hasattr(state, "runtime"):
        return state.runtime
    from hub.runtime import Runtime

    return Runtime.create()


def _checked_since(value: str) -> str:
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value[:40]!r} is not a date or ISO 8601 instant") from None
    return value
