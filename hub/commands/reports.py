"""``hub report kpis|refresh|rebuild`` and ``hub costs import``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from hub.errors import ConfigError
from hub.reports.costs import import_costs, parse_costs
from hub.reports.engine import compute_report, parse_by
from hub.reports.rollups import rebuild_all, refresh_dirty
from hub.store.engine import writer

FORMATS = ("json", "csv", "xlsx", "html")


def register(cli: click.Group) -> None:
    cli.add_command(report)
    cli.add_command(costs)


@click.group()
def report() -> None:
    """Consolidated reports."""


@report.command("kpis")
@click.option("--by", default="site,month", show_default=True,
              help="Comma-separated: site, location, provider, service_line, financial_class, "
                   "month|quarter|year|week (ISO weeks, Monday to Sunday).")
@click.option("--from", "date_from", help="First day (YYYY-MM-DD); whole months (by week: whole weeks) are reported.")
@click.option("--to", "date_to", help="Last day (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option("--kpi", "kpi_ids", multiple=True, help="Only these KPI ids (repeatable).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True),
              help="Write here instead of standard output.")
@click.pass_context
def report_kpis(ctx: click.Context, by: str, date_from: str | None, date_to: str | None, fmt: str,
                kpi_ids: tuple[str, ...], out_path: str | None) -> None:
    """The consolidated KPIs by site, month and any other slicing; the MSO total and site median beside them."""
    state: Any = ctx.obj
    plugins = state.plugins
    exporter = plugins.exporters.get(fmt)  # a missing format fails before any work
    if fmt == "xlsx" and out_path is None and sys.stdout.isatty():
        raise ConfigError("--format xlsx needs --out FILE (it is not text)")
    result = compute_report(state.runtime.engine, by=parse_by(by), date_from=date_from, date_to=date_to,
                            kpis=list(kpi_ids) or None, plugins=plugins)
    if out_path:
        with open(out_path, "wb") as out:
            exporter(result, out)
        click.echo(f"report written to {out_path} ({len(result.rows)} rows, {len(result.kpi_ids)} KPIs)", err=True)
    else:
        exporter(result, sys.stdout.buffer)
        sys.stdout.flush()


@report.command("refresh")
@click.pass_context
def report_refresh(ctx: click.Context) -> None:
    """Recompute the rollup cells ingest marked since the last refresh (else the next report does)."""
    started = time.perf_counter()
    cells = refresh_dirty(ctx.obj.runtime.engine)
    click.echo(f"report rollups refreshed ({cells} practice-month cells, {time.perf_counter() - started:.1f} s)")


@report.command("rebuild")
@click.pass_context
def report_rebuild(ctx: click.Context) -> None:
    """Recompute every report rollup from the stored records (after a bulk load outside the pipeline)."""
    with writer(ctx.obj.runtime.engine).begin() as conn:
        cells = rebuild_all(conn)
    click.echo(f"report rollups rebuilt ({cells} practice-month cells)")


@click.group()
def costs() -> None:
    """Costs the MSO supplies (for margin by service line)."""


@costs.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def costs_import(ctx: click.Context, file: str) -> None:
    """Import a CSV of practice, service_line, month (YYYY-MM), cost."""
    state: Any = ctx.obj
    rows = parse_costs(Path(file).read_text(encoding="utf-8-sig"), source=file)
    with writer(state.runtime.engine).begin() as conn:
        count = import_costs(conn, rows, source=file)
    click.echo(f"imported {count} cost figure(s) from {file}")
