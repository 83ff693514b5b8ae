"""The xlsx report format: a default plugin (``hub.plugins.DEFAULT_PLUGINS``), so an allow or block
list may leave it out; json and csv (``hub.reports.exporters``) stay whatever the lists say.

One sheet per section (by slice, MSO total, site median), laid out as the csv is, plus the KPI
definitions and, with a period, the periods (complete, in progress or future; maturing KPIs).
"""

from __future__ import annotations

from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

from hub import hookimpl
from hub.reports.exporters import SECTIONS, has_period, kpi_headers, slice_cells

if TYPE_CHECKING:
    from hub.plugins import ExporterRegistry
    from hub.reports.engine import Report

DEFINITION_COLUMNS = ("id", "name", "unit", "numerator", "denominator", "formula", "source_kinds", "source",
                      "higher_is_better", "note")

def _cell(value: Any, unit: str | None) -> Any:
    if unit == "usd" and isinstance(value, str):
        return Decimal(value)
    return value


def _no_data(report: Report, kpi: str, site: str | None) -> str | None:
    """A site whose feeds do not carry the KPI's inputs says so ("no data: no charge feed"); else an empty cell."""
    why = report.left_out.get(kpi, {}).get(site or "")
    return f"no data: {why}" if why else None


def write_xlsx(report: Report, out: IO[bytes]) -> None:
    # openpyxl is a heavy import: paid only when an xlsx is written
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    columns = list(report.by)
    units = [d["unit"] for d in report.definitions]
    ids = [d["id"] for d in report.definitions]
    data = report.to_dict()
    cells = slice_cells(report)  # providers by name and key
    titles = {"rows": "by " + " x ".join(report.by) if report.by else "all", "total": "MSO total",
              "site_median": "site median"}
    for key, _ in SECTIONS:
        if key == "site_median" and "site" not in report.by:
            continue
        sheet = book.create_sheet(titles[key][:31])
        head = [c for c in columns if key == "rows" or c != "site"]
        marks = ["complete"] if has_period(report) else []  # False: the period is not over yet
        sheet.append([*head, *marks, *kpi_headers(report)])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in data[key]:
            site = row["slice"].get("site")
            sheet.append(cells(row["slice"], head) + [row.get("complete", True) for _ in marks]
                         + [_no_data(report, i, site) if row["values"].get(i) is None else _cell(row["values"][i], u)
                            for i, u in zip(ids, units, strict=True)])
        head = [*head, *marks]
        for col, unit in enumerate(units, start=len(head) + 1):
            fmt = {"usd": "#,##0.00", "ratio": "0.0%", "days": "0.0"}.get(unit)
            if fmt:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=col, max_col=col):
                    cell.number_format = fmt
        sheet.freeze_panes = sheet.cell(row=2, column=len(head) + 1)
    defs = book.create_sheet("definitions")
    defs.append(list(DEFINITION_COLUMNS))
    for cell in defs[1]:
        cell.font = Font(bold=True)
    for d in report.definitions:
        defs.append([", ".join(d[c]) if c == "source_kinds" else d[c] for c in DEFINITION_COLUMNS])
    if report.periods:  # which periods are over, how they compare, which figures are still maturing
        periods = book.create_sheet("periods")
        periods.append(["period", "state", "complete", "through", "comparison", "maturing"])
        for cell in periods[1]:
            cell.font = Font(bold=True)
        for p in report.periods:
            periods.append([p["period"], p["state"], p["complete"], p.get("through"), _comparison(p["comparison"]),
                            ", ".join(p["maturing"])])
    _same_days_sheet(book, report, Font)
    book.save(out)


def _comparison(comparison: dict[str, Any]) -> str:
    if comparison.get("basis") == "same_days" and comparison.get("comparable"):
        unkept = comparison.get("not_compared") or {}
        return (f"to date ({comparison['current_first_day']} to {comparison['current_last_day']}, bookings ahead "
                f"left out) against the same days of the month before, {comparison['first_day']} to "
                f"{comparison['last_day']} (sheet \"same days\")"
                + (f"; not compared by day: {', '.join(unkept)}" if unkept else ""))
    return str(comparison.get("reason") or "whole period against the whole period before")


def _same_days_sheet(book: Any, report: Report, font: Any) -> None:
    """The month in progress's comparison figures: each row's KPIs over the same days of the month before, then
    over the month's own days so far (bookings ahead left out): the two sides of its change."""
    data = report.to_dict()
    found = [(key, row) for key, _ in SECTIONS for row in data[key] if (row.get("compare") or {}).get("values")]
    if not found:
        return
    sheet = book.create_sheet("same days")
    columns = [c for c in report.by if c != "month"]
    sheet.append(["section", *columns, "month", "side", "compared with", "first day", "last day",
                  *kpi_headers(report)])
    for cell in sheet[1]:
        cell.font = font(bold=True)
    units = [d["unit"] for d in report.definitions]
    titles = {"rows": "by " + " x ".join(report.by), "total": "MSO total", "site_median": "site median"}
    cells = slice_cells(report)
    for key, row in found:
        compare = row["compare"]
        for side, first, last in (("values", compare["first_day"], compare["last_day"]),
                                  ("current", compare["current_first_day"], compare["current_last_day"])):
            sheet.append([titles[key], *cells(row["slice"], columns), row["slice"].get("month"), SIDES[side],
                          compare["period"], first, last,
                          *[_cell(compare[side].get(d["id"]), u) for d, u in zip(report.definitions, units,
                                                                                 strict=True)]])


SIDES = {"values": "same days of the month before", "current": "month to date"}


@hookimpl
def hub_register_exporters(registry: ExporterRegistry) -> None:
    registry.add("xlsx", write_xlsx)
