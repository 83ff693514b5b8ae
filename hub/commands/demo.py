"""``hub demo``: a synthetic MSO through the real connectors and pipeline, with its dashboard."""

from __future__ import annotations

from pathlib import Path

import click

from hub.commands.base import State


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="hub-demo", show_default=True,
              help="Folder for the demo store, its feed files and the outputs (replaced on each run).")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same MSO.")
@click.option("--months", type=click.IntRange(2, 36), default=13, show_default=True,
              help="Months of history.")
@click.option("--scale", type=click.FloatRange(0.05, 4.0), default=0.35, show_default=True,
              help="Visit volume relative to the practices' full schedules.")
@click.pass_context
def demo(ctx: click.Context, out_dir: str, seed: int, months: int, scale: float) -> None:
    """Build a demo MSO (several practices, each on its own feed) and write its dashboard and XLSX."""
    from hub.demo.build import build_demo

    state = ctx.find_object(State)
    plugins = state.plugins if state is not None else None
    out = Path(out_dir)
    result = build_demo(out, seed=seed, months=months, scale=scale, plugins=plugins, say=click.echo)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    labels = {"html": "dashboard", "xlsx": "XLSX", "json": "JSON", "scorecard": "onboarding scorecard"}
    for key, path in result.outputs.items():
        click.echo(f"{labels.get(key, key) + ':':<22} {path.resolve()}")
    click.echo(f"{'demo store:':<22} {result.database_url}")
    for line in result.summaries:
        click.echo(line)
    click.echo(f"done in {result.seconds:.1f} s")
    click.echo("")
    click.echo("Live dashboard:")
    click.echo(f"  HUB_DATABASE_URL={result.database_url} hub serve --port 8000")
    click.echo("  then open http://127.0.0.1:8000/ and paste this analyst key when asked (shown once):")
    click.echo(f"  {result.analyst_key}")
