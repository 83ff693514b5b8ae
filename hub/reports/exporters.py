"""The built-in report formats: json, csv and xlsx, registered through ``hub_register_exporters``.

Each exporter is ``exporter(report, out)`` writing a ``Report`` to the binary file ``out``.
CSV and XLSX are wide: one line per slice, one column per KPI, with a ``section``
(``site``, ``total``, ``site_median``) so the MSO total and the median sit beside the sites.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

import orjson

from hub import hookimpl

if TYPE_CHECKING:
    from hub.plugins import ExporterRegistry
    from hub.reports.engine import Report

SECTIONS = (("rows", "site"), ("total", "total"), ("site_median", "site_median"))
DEFINITION_COLUMNS = ("id", "name", "unit", "numerator", "denominator", "formula", "source_kinds", "source",
                      "higher_is_better", "note")


def write_json(report: Report, out: IO[bytes]) -> None:
    out.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")


def _slice_columns(report: Report) -> list[str]:
    return list(report.by)


def _lines(report: Report) -> Iterator[tuple[str, list[Any]]]:
    data = report.to_dict()
    columns = _slice_columns(report)
    ids = [d["id"] for d in report.definitions]
    for key, section in SECTIONS:
        for row in data[key]:
            yield section, [row["slice"].get(c) for c in columns] + [row["values"].get(i) for i in ids]


def write_csv(report: Report, out: IO[bytes]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["section", *_slice_columns(report), *[d["id"] for d in report.definitions]])
    for section, values in _lines(report):
        writer.writerow([section, *["" if v is None else v for v in values]])
    out.write(text.getvalue().encode())


def _cell(value: Any, unit: str | None) -> Any:
    if unit == "usd" and isinstance(value, str):
        return Decimal(value)
    return value


def write_xlsx(report: Report, out: IO[bytes]) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    columns = _slice_columns(report)
    units = [d["unit"] for d in report.definitions]
    ids = [d["id"] for d in report.definitions]
    data = report.to_dict()
    titles = {"rows": "by " + " x ".join(report.by) if report.by else "all", "total": "MSO total",
              "site_median": "site median"}
    for key, _ in SECTIONS:
        if key == "site_median" and "site" not in report.by:
            continue
        sheet = book.create_sheet(titles[key][:31])
        head = [c for c in columns if key == "rows" or c != "site"]
        sheet.append([*head, *ids])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in data[key]:
            sheet.append([row["slice"].get(c) for c in head]
                         + [_cell(row["values"].get(i), u) for i, u in zip(ids, units, strict=True)])
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
    book.save(out)


@hookimpl
def hub_register_exporters(registry: ExporterRegistry) -> None:
    registry.add("json", write_json)
    registry.add("csv", write_csv)
    registry.add("xlsx", write_xlsx)
