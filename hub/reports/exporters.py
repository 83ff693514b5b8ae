"""The essential report formats, json and csv, registered through ``hub_register_exporters``.

Each exporter is ``exporter(report, out)`` writing a ``Report`` to the binary file ``out``.
CSV (and XLSX, ``hub.reports.xlsx``) is wide: one line per slice, one column per KPI, with a
``section`` (``site``, ``total``, ``site_median``) so the MSO total and the median sit beside
the sites. This module is an essential plugin (``hub.plugins.ESSENTIAL_PLUGINS``): no allow or
block list removes these two formats; xlsx and html are default plugins that one may.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import orjson

from hub import hookimpl

if TYPE_CHECKING:
    from hub.plugins import ExporterRegistry
    from hub.reports.engine import Report

SECTIONS = (("rows", "site"), ("total", "total"), ("site_median", "site_median"))


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


@hookimpl
def hub_register_exporters(registry: ExporterRegistry) -> None:
    registry.add("json", write_json)
    registry.add("csv", write_csv)
