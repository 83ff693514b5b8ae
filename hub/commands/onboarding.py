"""``hub onboard check|backfill`` and ``hub practice go-live``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from hub.commands.identity import link_after_ingest


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str)


@click.group("onboard")
def onboard() -> None:
    """Onboard an acquired practice: dry-run scorecard and history backfill."""


@onboard.command("check")
@click.option("--practice", required=True, help="The practice the sample belongs to.")
@click.option("--mapping", "mapping_file", type=click.Path(exists=True, dir_okay=False),
              help="A mapping file to try (default: the practice's stored mapping).")
@click.option("--connector", help="Connector name; found from the content or file extension when not given.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--no-findings", is_flag=True, help="Skip the connectors' deep structural validation.")
@click.option("--timezone", help="The practice's IANA zone (default: the registered practice's).")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.pass_context
def check(ctx: click.Context, practice: str, mapping_file: str | None, connector: str | None, fmt: str,
          no_findings: bool, timezone: str | None, paths: tuple[str, ...]) -> None:
    """Dry-run a sample feed and print its scorecard. Stores nothing.

    Exit status 1 when the scorecard is below the go-live thresholds of the mapping."""
    from hub.mapping import load_mapping
    from hub.onboarding.scorecard import render_text
    from hub.onboarding.sources import check_files
    from hub.store.practices import get_practice

    state = ctx.obj
    if mapping_file:  # a sample tried before the practice is registered: nothing is read from the store
        mapping = load_mapping(Path(mapping_file).read_text(encoding="utf-8"), source=mapping_file)
    else:
        with state.runtime.engine.connect() as conn:
            row = get_practice(conn, practice)
        mapping = load_mapping(row["mapping"], source=f"mapping of practice {practice}")
        timezone = timezone or row["timezone"]
    card = check_files(state.plugins, practice, mapping, paths, connector=connector, findings=not no_findings,
                       timezone=timezone)
    click.echo(_dumps(card) if fmt == "json" else render_text(card))
    if not card["passed"]:
        click.echo("hub: the sample is below the go-live thresholds of the mapping", err=True)
        sys.exit(1)


@onboard.command("backfill")
@click.option("--practice", required=True, help="The registered practice the history belongs to.")
@click.option("--connector", help="Connector name; found from the content or file extension when not given.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Files per group commit.")
@click.option("--chunk-rows", type=click.IntRange(1, 1_000_000), default=5000, show_default=True,
              help="Rows per chunk when a large export is streamed.")
@click.option("--stream-above-mb", type=click.IntRange(0), default=64, show_default=True,
              help="Stream files larger than this (when the connector can) instead of reading them whole.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.pass_context
def backfill(ctx: click.Context, practice: str, connector: str | None, batch: int, chunk_rows: int,
             stream_above_mb: int, quiet: bool, paths: tuple[str, ...]) -> None:
    """Load a practice's history in batches; rerun after an interruption to continue (nothing twice)."""
    from hub.files import iter_files
    from hub.onboarding.backfill import Backfill

    state = ctx.obj
    total = sum(p.stat().st_size for p in iter_files(paths))
    with click.progressbar(length=max(total, 1), label="backfill", file=sys.stderr,
                           hidden=quiet or not sys.stderr.isatty(), show_percent=True, show_eta=True) as bar:
        job = Backfill(state.runtime, practice, connector=connector, batch=batch, chunk_rows=chunk_rows,
                       stream_above=stream_above_mb * 1024 * 1024, progress=bar.update)
        result = job.run(paths)
    c = result.counts
    click.echo(f"files {result.files} (already done {result.skipped}, refused {len(result.refused)})  "
               f"messages accepted {c['accepted']}  duplicate {c['duplicate']}  error {c['error']}")
    for path in result.refused:
        click.echo(f"hub: {path}: refused whole (on_bad_row: refuse): see hub onboard check --practice "
                   f"{practice} {path}", err=True)
    if c["accepted"]:
        link_after_ingest(state.runtime)
    _refresh_reports(state.runtime)
    if c["error"]:
        click.echo(f"hub: {c['error']} message(s) in error: hub messages list --practice {practice} --status error",
                   err=True)
    if c["error"] or result.refused:
        sys.exit(1)


def _refresh_reports(runtime: Any) -> None:
    """Processed inline, the backfill's records are stored by now: bring the report rollups up to date, so
    that the first dashboard view after a large backfill does not pay the catch-up. Queued to workers,
    they are not yet: ``hub report refresh`` (or the next report) does it once the workers are done."""
    from hub.pipeline.dispatch import InlineDispatcher
    from hub.reports.rollups import refresh_dirty

    if isinstance(runtime.dispatcher, InlineDispatcher):
        click.echo(f"report rollups refreshed ({refresh_dirty(runtime.engine)} practice-month cells)")
    else:
        click.echo("messages queued for the workers: run hub report refresh once they are processed")


@click.command("go-live")
@click.argument("slug")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def go_live(ctx: click.Context, slug: str, fmt: str) -> None:
    """Move a practice from onboarding to live; refused while its scorecard fails.

    With ``--format json`` the scorecard is printed whether the practice goes live or not, with ``live``
    (true or false) and, on a refusal, ``refused`` (why); the exit status is 1 on a refusal."""
    from hub.onboarding.golive import NotReady
    from hub.onboarding.golive import go_live as do_go_live
    from hub.onboarding.scorecard import render_text

    try:
        card = do_go_live(ctx.obj.runtime, slug)
    except NotReady as exc:
        if fmt == "json":
            click.echo(_dumps({**exc.card, "live": False, "refused": str(exc)}))
        raise
    if fmt == "json":
        click.echo(_dumps({**card, "live": True}))
    else:
        click.echo(render_text(card))
        click.echo(f"practice {slug} is live")
