"""``hub rvu import|list|unpriced``: the work RVU table provider productivity is measured with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.group("rvu")
def rvu_group() -> None:
    """Work RVUs by procedure code (the CMS Physician Fee Schedule's, or the MSO's own): docs/reports.md."""


@rvu_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--year", type=int, help="The effective year of every row, for a file without a year column.")
@click.pass_context
def import_command(ctx: click.Context, file: str, year: int | None) -> None:
    """Import a CSV of code, modifier, work_rvu, year. Each year in the file replaces that year's rows; a bad
    line refuses the whole file."""
    from hub.reports.rollups import refresh_dirty
    from hub.reports.rvus import import_file

    state: Any = ctx.obj
    engine = state.runtime.engine
    done = import_file(engine, Path(file), year=year)
    years = ", ".join(str(y) for y in done.years)
    replaced = f", replacing {done.replaced} row(s) stored before" if done.replaced else ""
    click.echo(f"imported {done.rows} RVU row(s) for {years} from {file}{replaced}")
    if done.cells:
        cells = refresh_dirty(engine)  # as hub costs import: the next report reads the new figures
        click.echo(f"report rollups refreshed ({cells} practice-month cells)")


@rvu_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def list_command(ctx: click.Context, fmt: str) -> None:
    """The imported schedules, one line per effective year."""
    from hub.commands.base import dumps
    from hub.reports.rvus import schedules

    with ctx.obj.runtime.engine.connect() as conn:
        found = schedules(conn)
    if fmt == "json":
        click.echo(dumps(found))
        return
    if not found:
        click.echo("no RVU table imported (hub rvu import FILE)")
    for s in found:
        click.echo(f"{s['year']}  {s['rows']:>6} rows ({s['base_rows']} codes, {s['modifier_rows']} modifier rows)  "
                   f"{s['source']}")


@rvu_group.command("unpriced")
@click.option("--from", "date_from", help="First service date (YYYY-MM-DD).")
@click.option("--to", "date_to", help="Last service date (YYYY-MM-DD).")
@click.option("--practice", help="Only this practice (slug).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def unpriced_command(ctx: click.Context, date_from: str | None, date_to: str | None, practice: str | None,
                     fmt: str) -> None:
    """Charge lines no RVU row prices (they count 0 work RVUs), by practice, service year and code."""
    import datetime as dt

    from hub.commands.base import dumps
    from hub.errors import ValidationError
    from hub.reports.rvus import unpriced

    for name, value in (("--from", date_from), ("--to", date_to)):
        if value is not None:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ValidationError(f"{name}: not a date (YYYY-MM-DD): {value[:40]!r}") from None
    with ctx.obj.runtime.engine.connect() as conn:
        found = unpriced(conn, date_from=date_from, date_to=date_to, practice=practice)
    if fmt == "json":
        click.echo(dumps(found))
        return
    if not found:
        click.echo("every charge line has a work RVU")
        return
    click.echo(f"{'practice':<24} {'year':<5} {'code':<8} {'lines':>7} {'units':>7}")
    for r in found:
        click.echo(f"{r['practice']:<24} {r['year']:<5} {r['code'] or '(none)':<8} {r['lines']:>7} {r['units']:>7}")
