"""The KPI table of docs/reports.md, generated from the catalog (``python -m hub.reports.docs`` rewrites it)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hub.reports.catalog import BUILTIN_KPIS

START, END = "<!-- kpi-table:start -->", "<!-- kpi-table:end -->"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        value = ", ".join(value)
    return str(value).replace("|", "\\|")


def kpi_table(kpis: Iterable[Any]) -> str:
    lines = ["| id | name | unit | numerator | denominator | formula | source kinds | published source |",
             "|---|---|---|---|---|---|---|---|"]
    for k in kpis:
        d = k.definition()
        numerator = d["numerator"] + (f" ({d['note']})" if d["note"] else "")
        lines.append("| " + " | ".join(_cell(v) for v in (f"`{d['id']}`", d["name"], d["unit"], numerator,
                                                           d["denominator"], f"`{d['formula']}`",
                                                           d["source_kinds"], d["source"])) + " |")
    return "\n".join(lines)


def render(text: str, kpis: Iterable[Any]) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{kpi_table(kpis)}\n{END}{tail}"


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/reports.md")
    path.write_text(render(path.read_text(), BUILTIN_KPIS))


if __name__ == "__main__":
    main()
