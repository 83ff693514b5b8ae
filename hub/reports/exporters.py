"""The essential report formats, json and csv, registered through ``hub_register_exporters``.

Each exporter is ``exporter(report, out)`` writing a ``Report`` to the binary file ``out``.
CSV (and XLSX, ``hub.reports.xlsx``) is wide: one line per slice, one column per KPI (headed by its
name, its id beside), with a ``section`` (the slices' dimensions, ``site`` or ``provider`` say, or
``all``; then ``total``, ``site_median``) so the MSO total and the median sit beside the slices, and
with a period a ``complete`` column (``False``: the period is not over). A provider is labelled with
its name and key (``Ada Stone (NPI 1234567893)``; the key alone when no name is known; records that
name no provider ``no provider recorded``). The CSV's last column, ``as_of``, says how current the
figures are. This module is
an essential plugin (``hub.plugins.ESSENTIAL_PLUGINS``): no allow or block list removes these
two formats; xlsx and html are default plugins that one may.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import orjson

from hub import hookimpl

if TYPE_CHECKING:
    from hub.plugins import ExporterRegistry
    from hub.reports.engine import Report

SECTIONS = (("rows", "site"), ("total", "total"), ("site_median", "site_median"))  # rows: see rows_section
PERIOD_NAMES = ("month", "quarter", "year", "week")
NO_PROVIDER = "no provider recorded"  # the slice of the records that name no provider
FORMULA_STARTS = ("=", "+", "-", "@")  # what a spreadsheet reads a cell starting with as a formula


def write_json(report: Report, out: IO[bytes]) -> None:
    out.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")


def _slice_columns(report: Report) -> list[str]:
    return list(report.by)


def rows_section(report: Report) -> str:
    """What the slice lines are: the dimensions besides the period ("site", "provider", "service_line"), else "all"."""
    return ",".join(d for d in report.by if d not in PERIOD_NAMES) or "all"


def kpi_headers(report: Report) -> list[str]:
    """A column per KPI, named as people read it with its id beside: "No-show rate (no_show_rate)"."""
    return [f"{d['name']} ({d['id']})" for d in report.definitions]


def provider_label(key: str | None, name: str | None) -> str:
    """A provider as people read it: "Ada Stone (NPI 1234567893)", "Ben Okafor (south/K2)", the key alone
    ("NPI 1234567893", "north/DR8") when no name is known."""
    if not key:
        return NO_PROVIDER
    shown = key if "/" in key else f"NPI {key}"  # a key without a practice is an NPI (hub.reports.providers)
    if name and name[:1] in FORMULA_STARTS:  # a feed's name is text, never a spreadsheet formula
        name = "'" + name
    return f"{name} ({shown})" if name else shown


def slice_cells(report: Report) -> Callable[[dict[str, Any], list[str]], list[Any]]:
    """The slice's dimension values for the given columns as shown in csv and xlsx: providers labelled."""
    names = {p["id"]: p.get("name") for p in report.providers or ()}

    def cells(slice_: dict[str, Any], columns: list[str]) -> list[Any]:
        return [provider_label(slice_[c], names.get(slice_[c] or "")) if c == "provider" and c in slice_
                else slice_.get(c) for c in columns]
    return cells


def has_period(report: Report) -> bool:
    return any(d in PERIOD_NAMES for d in report.by)


def _lines(report: Report) -> Iterator[tuple[str, list[Any]]]:
    data = report.to_dict()
    columns = _slice_columns(report)
    ids = [d["id"] for d in report.definitions]
    period = has_period(report)
    cells = slice_cells(report)
    for key, section in SECTIONS:
        for row in data[key]:
            marks = [row.get("complete", True)] if period else []  # false: the period is not over yet
            yield (rows_section(report) if key == "rows" else section,
                   cells(row["slice"], columns) + marks + [row["values"].get(i) for i in ids])


def write_csv(report: Report, out: IO[bytes]) -> None:
    """The wide CSV; its last column, ``as_of``, repeats on every line when the figures were current
    (a column rather than a line above the header: every CSV reader still takes the first line as it)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["section", *_slice_columns(report), *(["complete"] if has_period(report) else []),
                     *kpi_headers(report), "as_of"])
    for section, values in _lines(report):
        writer.writerow([section, *["" if v is None else v for v in values], report.as_of])
    out.write(text.getvalue().encode())


@hookimpl
def hub_register_exporters(registry: ExporterRegistry) -> None:
    registry.add("json", write_json)
    registry.add("csv", write_csv)
