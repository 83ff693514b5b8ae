"""The dashboard: one self-contained HTML page, from the report JSON (``compute_report(...).to_dict()``).

The page carries its own CSS and JavaScript (hand-written SVG charts): it needs no network,
no CDN, nothing but itself. Two ways to get one:

- ``hub report kpis --format html --out F`` (the ``html`` exporter): the report is inlined in
  the page, which then works from a file, offline, for anyone it is sent to;
- ``hub serve`` at ``/`` (``hub.api.dashboard``): the page ships with no figures. It asks for an analyst
  key, keeps it in the tab's ``sessionStorage`` and calls ``/api/v1/reports/kpis`` with it,
  so the page obeys exactly the API's role checks and audit log; the server keeps no
  session of its own and the unauthenticated page holds nothing but code.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import IO, Any

from hub.errors import ValidationError

ASSETS = Path(__file__).parent / "dashboard_assets"


@cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _report_dict(report: Any) -> dict[str, Any] | None:
    if report is None or isinstance(report, dict):
        return report
    return report.to_dict()  # a hub.reports Report


def _inline_json(data: Any) -> str:
    # "</" would end the <script> element early; "<\/" is the same JSON string.
    text = json.dumps(data, separators=(",", ":"), default=str)
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(report: Any = None) -> str:
    """The whole page; with ``report`` (a Report or its dict) the figures are inlined, else it fetches them."""
    page = _asset("dashboard.html")
    page = page.replace("/*STYLE*/", _asset("dashboard.css"))
    page = page.replace("/*REPORT*/", _inline_json(_report_dict(report)))
    return page.replace("/*SCRIPT*/", _asset("dashboard.js"))


# The page draws sites by month (tiles, trends, the sites against their median): any other slicing would
# show a page that says one thing and holds another, so it is refused and the other formats named.
DASHBOARD_BY = ("site", "month")


def check_by(by: Any) -> None:
    """Refuse a slicing the dashboard cannot draw (before any figure is computed)."""
    if sorted(by) != sorted(DASHBOARD_BY):
        raise ValidationError(f"the html dashboard shows the KPIs by {','.join(DASHBOARD_BY)} only, not by "
                              f"{','.join(by) or 'nothing'}: use json, csv or xlsx for that slicing", location="by")


def write_html(report: Any, out: IO[bytes]) -> None:
    """The ``html`` exporter: the self-contained dashboard with the report inlined."""
    data = _report_dict(report)
    if data is not None:
        check_by(data.get("by", []))
    out.write(render_html(report).encode("utf-8"))


write_html.check_by = check_by  # type: ignore[attr-defined]  # callers refuse before computing (hub report kpis, the API)
