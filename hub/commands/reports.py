"""``hub report kpis|drill|refresh|rebuild`` and ``hub costs import``.

The command line has no background process to count on (an embedded SQLite store, inline
processing, ``hub report kpis`` right after ``hub ingest``), so the commands that read figures
first recompute the dirty cells themselves, in transactions of their own
(``rollups.refresh_dirty``), then read the committed rollups like any request. The HTTP API never
recomputes (``hub.reports.background`` keeps its figures current).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from hub.errors import ConfigError, ValidationError

FORMATS = ("json", "csv", "xlsx", "html")


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
    from hub.reports import same_days
    from hub.reports.engine import compute_report, parse_by
    from hub.reports.rollups import refresh_dirty

    state: Any = ctx.obj
    plugins = state.plugins
    exporter = plugins.exporters.get(fmt)  # a missing format fails before any work
    if fmt == "xlsx" and out_path is None and sys.stdout.isatty():
        raise ConfigError("--format xlsx needs --out FILE (it is not text)")
    try:
        dimensions = parse_by(by)
        check_by = getattr(exporter, "check_by", None)  # a format that draws only some slicings refuses the rest
        if check_by is not None:
            check_by(dimensions)
    except ValidationError as exc:  # the engine names the parameter; here it is an option
        raise ValidationError(exc.message, location="--by") from None
    refresh_dirty(state.runtime.engine)  # no background refresh to count on here: current figures first
    same_days.keep(state.runtime.engine)  # and the prior month's same days, for the month in progress
    result = compute_report(state.runtime.engine, by=dimensions, date_from=date_from, date_to=date_to,
                            kpis=list(kpi_ids) or None, plugins=plugins)
    if out_path:
        with open(out_path, "wb") as out:
            exporter(result, out)
        click.echo(f"report written to {out_path} ({len(result.rows)} rows, {len(result.kpi_ids)} KPIs)", err=True)
    else:
        exporter(result, sys.stdout.buffer)
        sys.stdout.flush()


@report.command("packet")
@click.option("--month", required=True,
              help="The month (YYYY-MM): its KPIs, with the twelve months before in the charts.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, writable=True),
              help="The folder the XLSX and the PDF are written to (made if missing).")
@click.pass_context
def report_packet(ctx: click.Context, month: str, out_dir: str) -> None:
    """Leadership's monthly packet: an XLSX and a PDF (KPI tiles, trend charts, site table, onboarding)."""
    from hub.reports.packet import build_packet, parse_month

    month = parse_month(month)  # a bad month fails before any work
    packet = build_packet(ctx.obj.runtime, month, Path(out_dir))
    for path in packet.files:
        click.echo(str(path))


@report.command("refresh")
@click.pass_context
def report_refresh(ctx: click.Context) -> None:
    """Recompute the rollup cells changed since the last refresh, in transactions of their own."""
    from hub.reports import same_days
    from hub.reports.rollups import refresh_dirty

    started = time.perf_counter()
    cells = refresh_dirty(ctx.obj.runtime.engine)
    same_days.keep(ctx.obj.runtime.engine)  # the prior month's same days, for the month in progress
    click.echo(f"report rollups refreshed ({cells} practice-month cells, {time.perf_counter() - started:.1f} s)")


def refresh_after_ingest(runtime: Any) -> int:
    """After ``hub ingest`` (or ``hub watch --once``) processed its messages itself (inline): the cells it
    marked are recomputed now, so the next report reads current figures (a queue's ``hub worker``
    refreshes its own). Its line goes to stderr; a failure leaves the ingest as it is and says so."""
    from hub.reports.rollups import any_waiting, refresh_dirty

    if runtime.dispatcher.name != "inline":
        return 0
    with runtime.engine.connect() as conn:
        if not any_waiting(conn):
            return 0
    started = time.perf_counter()
    try:
        cells = refresh_dirty(runtime.engine)
    except Exception as exc:  # the stored records stand; never a traceback here
        click.echo(f"hub: the report refresh failed ({type(exc).__name__}); run hub report refresh", err=True)
        return 0
    click.echo(f"report rollups refreshed ({cells} practice-month cells, {time.perf_counter() - started:.1f} s)",
               err=True)
    return cells


@report.command("rebuild")
@click.pass_context
def report_rebuild(ctx: click.Context) -> None:
    """Recompute every report rollup from the stored records (after a bulk load outside the pipeline)."""
    from hub.reports.rollups import rebuild_all
    from hub.store.engine import writer

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
    from hub.reports.costs import import_costs, parse_costs
    from hub.store.engine import writer

    state: Any = ctx.obj
    rows = parse_costs(Path(file).read_text(encoding="utf-8-sig"), source=file)
    with writer(state.runtime.engine).begin() as conn:
        count = import_costs(conn, rows, source=file)
    click.echo(f"imported {count} cost figure(s) from {file}")


@report.command("drill")
@click.argument("kpi")
@click.option("--site", required=True, help="The site (practice slug), as the report's site dimension names it.")
@click.option("--month", required=True, help="The month (YYYY-MM).")
@click.option("--provider", help="Only this provider (the report's provider dimension value).")
@click.option("--service-line", "service_line", help="Only this service line (the report's dimension value).")
@click.option("--format", "fmt", type=click.Choice(("json", "csv")), default="json", show_default=True)
@click.pass_context
def report_drill(ctx: click.Context, kpi: str, site: str, month: str, provider: str | None,
                 service_line: str | None, fmt: str) -> None:
    """The records behind one KPI figure: its numerator and denominator records, each with the ids of the
    stored messages it came from. Patient-level data: audited (address cli: and the system user)."""
    from hub.commands.base import cli_user, dumps
    from hub.errors import HubError
    from hub.reports.drill import drill_down, to_csv
    from hub.reports.rollups import refresh_dirty
    from hub.security.audit import AuditEntry, record
    from hub.store.engine import writer

    state: Any = ctx.obj
    engine = state.runtime.engine
    target = f"{kpi[:60]} {site[:64]} {month[:7]}"

    def audit(outcome: str) -> None:
        with writer(engine).begin() as conn:
            record(conn, [AuditEntry(None, "reports.drill", target, site[:64], f"cli:{cli_user()}", outcome)])

    refresh_dirty(engine)  # the visit flags (new patient, conversion) come from the rollups: current first
    try:
        result = drill_down(engine, kpi, site=site, month=month, provider=provider, service_line=service_line,
                            plugins=state.plugins)
    except HubError as exc:
        audit("refused: " + type(exc).__name__)
        raise
    audit(f"{result.record_count} records")
    click.echo(dumps(result.to_dict()) if fmt == "json" else to_csv(result), nl=fmt == "json")
