"""Leadership's monthly packet: an XLSX and a PDF of one month's consolidated KPIs.

``build_packet(runtime, "2026-06", folder)`` writes ``mso-packet-2026-06.xlsx`` (the xlsx exporter's
workbook of the month and the twelve before it, by site and month, plus an ``onboarding`` sheet) and
``mso-packet-2026-06.pdf``, printed by WeasyPrint from HTML made here from the same report data as the
dashboard and with the dashboard's CSS. The dashboard draws its charts with JavaScript, which WeasyPrint
does not run: the packet's trend charts are SVG drawn here, one per KPI (the MSO total as the dashboard's
blue line, the site median dashed grey, over the month and the twelve before it).

The PDF, page by page: the month's headline KPIs (tiles with the change against the month before) and
their trend charts; the site table (one row per site, the headline KPIs, the MSO site median below);
each practice's status and, for those still onboarding, the verdict of their scorecard over the messages
stored (``hub.onboarding.sources.check_stored``); then every other KPI that has a figure, tile and chart.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
import logging
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import ConfigError, HubError, ValidationError
from hub.reports.dashboard import ASSETS as DASHBOARD_ASSETS

if TYPE_CHECKING:
    from hub.reports.engine import Report
    from hub.runtime import Runtime

log = logging.getLogger("hub.reports.packet")

ASSETS = Path(__file__).parent / "packet_assets"
TRAIL = 12  # months before the packet's month in its charts and workbook
# the first page and the site table: these, where the catalog has them and the months have figures
HEADLINE_KPIS = ("visit_volume", "new_patient_share", "no_show_rate", "schedule_utilization", "gross_charges",
                 "net_collection_rate", "denial_rate", "days_in_ar")
HEADLINE_COUNT = len(HEADLINE_KPIS)
LINE = "#2364aa"  # the dashboard's series colour (dashboard.js), which the tests look for in the PDF's pixels
MEDIAN = "#9aa5b1"
MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass
class Packet:
    month: str
    xlsx: Path
    pdf: Path

    @property
    def files(self) -> list[Path]:
        return [self.xlsx, self.pdf]


# ------------------------------------------------------------------ months
def parse_month(text: str, location: str = "--month") -> str:
    match = MONTH_RE.match(text.strip())
    if not match or not 1900 <= int(match.group(1)) <= 2999:
        raise ValidationError(f"not a month (YYYY-MM): {text[:40]!r}", location=location)
    return text.strip()


def shift_month(month: str, delta: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_before(day: dt.date) -> str:
    """The month a packet run on ``day`` reports: the one before (complete by then)."""
    return shift_month(f"{day.year:04d}-{day.month:02d}", -1)


def month_label(month: str, *, short: bool = False) -> str:
    number = int(month[5:7])
    return (f"{calendar.month_abbr[number]} {month[2:4]}" if short
            else f"{calendar.month_name[number]} {month[:4]}")


def file_stem(month: str) -> str:
    return f"mso-packet-{month}"


# ------------------------------------------------------------------ figures as the dashboard shows them
def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(Decimal(str(value)))
    except ArithmeticError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _round(value: float) -> int:
    """Half up, as JavaScript's Math.round (Python's round is half to even)."""
    return math.floor(value + 0.5)


def fmt(value: float | None, unit: str | None) -> str:
    """A figure as the dashboard's ``format`` writes it."""
    if value is None:
        return "\u2014"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "usd":
        return f"${_round(value):,}"
    if unit == "days":
        return f"{value:.1f} d"
    if unit == "minutes":
        return f"{_round(value)} min"
    rounded = _round(value * 10) / 10
    return f"{rounded:,.0f}" if rounded == int(rounded) else f"{rounded:,.1f}"


def change(definition: dict[str, Any], current: float | None, previous: float | None) -> tuple[str, str]:
    """The tile's change against the month before and its class (better, worse, same), as the dashboard's."""
    if current is None or previous is None:
        return "no previous figure", "same"
    delta = current - previous
    sign = "+" if delta >= 0 else "\u2212"
    if definition.get("unit") == "ratio":
        text = f"{sign}{abs(delta * 100):.1f} pts"
    elif previous != 0:
        text = f"{sign}{abs(delta / previous * 100):.1f}%"
    else:
        text = sign + fmt(abs(delta), definition.get("unit"))
    cls = "same"
    if abs(delta) > 1e-9:
        cls = "better" if (delta > 0) == (definition.get("higher_is_better") is not False) else "worse"
    arrow = "\u25b2 " if delta > 0 else "\u25bc " if delta < 0 else ""
    return arrow + text, cls


class _Figures:
    """The report indexed by scope and month: the MSO total, each site, the site median."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.total: dict[str, dict[str, Any]] = {}
        self.median: dict[str, dict[str, Any]] = {}
        self.site: dict[str, dict[str, dict[str, Any]]] = {}
        for row in report["rows"]:
            site, month = row["slice"].get("site"), row["slice"].get("month")
            if site and month:
                self.site.setdefault(site, {})[month] = row["values"]
        self.same_days: dict[str, dict[str, Any]] = {}  # the month in progress: the same days of the one before
        self.to_date: dict[str, dict[str, Any]] = {}  # ... and its own days so far, bookings ahead left out
        for row in report["total"]:
            if row["slice"].get("month"):
                self.total[row["slice"]["month"]] = row["values"]
                if (row.get("compare") or {}).get("values") is not None:
                    self.same_days[row["slice"]["month"]] = row["compare"]["values"]
                    self.to_date[row["slice"]["month"]] = row["compare"]["current"]
        for row in report["site_median"]:
            if row["slice"].get("month"):
                self.median[row["slice"]["month"]] = row["values"]

    def value(self, scope: dict[str, dict[str, Any]], month: str, kpi: str) -> float | None:
        return _num(scope.get(month, {}).get(kpi))

    def has_figure(self, kpi: str) -> bool:
        scopes = [self.total, self.median, *self.site.values()]
        return any(_num(values.get(kpi)) is not None for scope in scopes for values in scope.values())


# ------------------------------------------------------------------ SVG trend chart
def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** _floor_log10(value)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _floor_log10(value: float) -> int:
    return math.floor(math.log10(value))


def _path(points: list[tuple[float, float] | None]) -> str:
    out, pen = [], False
    for p in points:
        if p is None:
            pen = False
            continue
        out.append(f"{'L' if pen else 'M'}{p[0]:.1f},{p[1]:.1f}")
        pen = True
    return "".join(out)


def chart_svg(definition: dict[str, Any], months: list[str], main: list[float | None],
              median: list[float | None]) -> str:
    """The trend of one KPI over ``months``: the MSO total (solid, with dots) and the site median (dashed)."""
    width, height, left, right, top, bottom = 320, 170, 52, 10, 10, 24
    unit = definition.get("unit")
    present = [v for v in main + median if v is not None]
    top_value = _nice_max(max(present) if present else 1.0)
    low = min(present) if present else 0.0
    floor = min(0.0, -_nice_max(-low)) if low < 0 else 0.0
    span = top_value - floor or 1.0
    n = len(months)

    def x(i: int) -> float:
        return left + (i * (width - left - right) / (n - 1) if n > 1 else (width - left - right) / 2)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - floor) / span)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" class="trend" data-kpi="{html.escape(definition["id"])}" '
             f'aria-label="{html.escape(definition["name"])} by month">']
    for g in range(5):
        gv = floor + span * g / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(gv):.1f}" y2="{y(gv):.1f}" stroke="#e3e7ec" '
                     'stroke-width="1"/>')
        parts.append(f'<text x="{left - 6}" y="{y(gv) + 4:.1f}" text-anchor="end" font-size="10" fill="#5f6b7a">'
                     f'{html.escape(fmt(gv, unit))}</text>')
    ticks = list(range(n)) if n <= 6 else [0, (n - 1) // 2, n - 1]
    for i in ticks:
        anchor = "end" if n > 1 and i == n - 1 else "start" if n > 1 and i == 0 else "middle"
        parts.append(f'<text x="{x(i):.1f}" y="{height - 6}" text-anchor="{anchor}" font-size="10" fill="#5f6b7a">'
                     f'{html.escape(month_label(months[i], short=True))}</text>')

    def points(values: list[float | None]) -> list[tuple[float, float] | None]:
        return [None if v is None else (x(i), y(v)) for i, v in enumerate(values)]

    parts.append(f'<path d="{_path(points(median))}" fill="none" stroke="{MEDIAN}" stroke-width="2" '
                 'stroke-dasharray="5 4" class="median-line"/>')
    line = points(main)
    parts.append(f'<path d="{_path(line)}" fill="none" stroke="{LINE}" stroke-width="2.5" class="series-line"/>')
    parts.extend(f'<circle cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="3" fill="{LINE}"/>' for p in line if p is not None)
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------ onboarding status
def onboarding_status(runtime: Runtime, sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each practice's status; for one still onboarding, its scorecard's verdict over its stored messages."""
    from hub.onboarding.sources import check_stored

    out = []
    for site in sites:
        row = {"slug": site["slug"], "name": site["name"], "status": site["status"], "verdict": None,
               "detail": ""}
        if site["status"] == "onboarding":
            try:
                card = check_stored(runtime, site["slug"])
            except HubError as exc:  # a mapping that no longer loads, say: the packet still goes out
                row.update(verdict="unavailable", detail=str(exc)[:160])
            else:
                failing = [c["name"] for c in card["checks"] if not c["ok"]]
                read = card["messages"]["read"]
                row["verdict"] = "ready" if card["passed"] else "not ready"
                row["detail"] = f"{read:,} messages read; " + (
                    "every go-live check passes" if not failing else
                    f"{len(failing)} check(s) failing: " + ", ".join(failing[:4]) + (" ..." if len(failing) > 4
                                                                                     else ""))
        out.append(row)
    return out


# ------------------------------------------------------------------ the page
@cache
def _css() -> str:
    return ((DASHBOARD_ASSETS / "dashboard.css").read_text(encoding="utf-8") + "\n"
            + (ASSETS / "packet.css").read_text(encoding="utf-8"))


MATURING = "still maturing: its inputs arrive weeks after the month"  # the dashboard's words


def _tile(definition: dict[str, Any], current: float | None, previous: float | None,
          uncompared: str | None = None, maturing: bool = False) -> str:
    text, cls = (uncompared, "same") if uncompared else change(definition, current, previous)
    e = html.escape
    note = f'<div class="maturing">{MATURING}</div>' if maturing else ""
    return (f'<div class="tile" data-kpi="{e(definition["id"])}"><div class="name">{e(definition["name"])}</div>'
            f'<div class="value">{e(fmt(current, definition.get("unit")))}</div>'
            f'<div class="change {cls}">{e(text)}</div>{note}</div>')


def _chart_box(definition: dict[str, Any], months: list[str], figures: _Figures) -> str:
    main = [figures.value(figures.total, m, definition["id"]) for m in months]
    median = [figures.value(figures.median, m, definition["id"]) for m in months]
    svg = chart_svg(definition, months, main, median)
    return (f'<div class="chart"><h3>{html.escape(definition["name"])}</h3>{svg}'
            f'<div class="legend"><i style="background:{LINE}"></i>MSO total'
            f'<i style="background:{MEDIAN}"></i>site median</div></div>')


def render_html(report: Report | dict[str, Any], month: str, onboarding: list[dict[str, Any]]) -> str:
    """The packet's HTML (print CSS, inline SVG, no script): what the PDF is printed from."""
    data = report if isinstance(report, dict) else report.to_dict()
    figures = _Figures(data)
    definitions = [d for d in data["definitions"] if figures.has_figure(d["id"])]
    by_id = {d["id"]: d for d in definitions}
    headline = [by_id[k] for k in HEADLINE_KPIS if k in by_id]
    headline += [d for d in definitions if d not in headline][:max(0, HEADLINE_COUNT - len(headline))]
    rest = [d for d in definitions if d not in headline]
    months = [shift_month(month, -k) for k in range(TRAIL, -1, -1)]
    before = shift_month(month, -1)
    e = html.escape
    label = month_label(month)

    # a month in progress is compared with the same days of the month before (hub.reports.same_days)
    period = next((p for p in data.get("periods", []) if p["period"] == month), None)
    comparison = (period or {}).get("comparison") or {}
    same = comparison if comparison.get("basis") == "same_days" and comparison.get("comparable") else None
    open_month = period is not None and not period["complete"]
    maturing = set((period or {}).get("maturing") or ())  # payments, denials, referrals: a recent month reads low

    def uncompared(kpi: str) -> str | None:
        if same is not None:
            return "not comparable by day" if kpi in same.get("not_compared", {}) else None
        return "not comparable yet" if open_month else None

    def tiles(defs: list[dict[str, Any]]) -> str:
        return "".join(_tile(d, figures.value(figures.to_date if same and not uncompared(d["id"]) else figures.total,
                                             month, d["id"]),
                             figures.value(figures.same_days if same else figures.total, month if same else before,
                                           d["id"]), uncompared(d["id"]), d["id"] in maturing) for d in defs)

    if same is not None:
        against = (f"change against the same days of {month_label(same['against'])} "
                   f"(1\u2013{same['through_day']}; {month_label(month)} to date)")
    elif open_month:
        against = f"{month_label(month)} to date: not comparable yet"
    else:
        against = f"change against {month_label(before)}"

    def charts(defs: list[dict[str, Any]]) -> str:
        return "".join(_chart_box(d, months, figures) for d in defs)

    as_of = str(data.get("as_of") or data.get("generated_at") or "").replace("T", " ").replace("Z", " UTC")
    live = sum(1 for s in data["sites"] if s["status"] == "live")
    out = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
           f"<title>MSO leadership packet, {e(label)}</title><style>{_css()}</style></head><body>",
           f'<header><h1 data-month="{e(label)}">MSO leadership packet \u00b7 {e(label)}</h1>'
           f'<div class="meta">Consolidated KPIs of {len(data["sites"])} practices ({live} live) \u00b7 '
           f"figures as of {e(as_of)} \u00b7 {e(against)}</div></header><main>",
           '<section class="first">',
           f"<h2>Headline KPIs, {e(label)} (MSO total)</h2>"]
    if not figures.total.get(month):
        out.append(f'<p class="note">No figures for {e(label)} yet.</p>')
    out.append(f'<div class="tiles">{tiles(headline)}</div>')
    out.append(f'<h2>Trends, {e(month_label(months[0]))} to {e(label)} <span class="note">(MSO total against the '
               "site median)</span></h2>")
    out.append(f'<div class="charts">{charts(headline)}</div></section>')
    # the site table
    out.append(f'<section class="page"><h2>Sites against the MSO median, {e(label)}</h2><table class="sites">'
               "<thead><tr><th>Site</th>" + "".join(f"<th>{e(d['name'])}</th>" for d in headline)
               + "</tr></thead><tbody>")
    for site in data["sites"]:
        cells = []
        for d in headline:
            v = figures.value(figures.site.get(site["slug"], {}), month, d["id"])
            m = figures.value(figures.median, month, d["id"])
            cls = "same"
            if v is not None and m is not None and abs(v - m) > 1e-9:
                cls = "better" if (v > m) == (d.get("higher_is_better") is not False) else "worse"
            cells.append(f'<td class="{cls}">{e(fmt(v, d.get("unit")))}</td>')
        badge = f'<span class="badge">{e(site["status"])}</span>' if site["status"] != "live" else ""
        out.append(f'<tr data-site="{e(site["slug"])}"><td>{e(site["name"])}{badge}</td>{"".join(cells)}</tr>')
    out.append('<tr class="median"><td>MSO site median</td>' + "".join(
        f"<td>{e(fmt(figures.value(figures.median, month, d['id']), d.get('unit')))}</td>" for d in headline)
        + "</tr></tbody></table>")
    # onboarding
    out.append("<h2>Practices and onboarding</h2><table class=\"onboarding\"><thead><tr><th>Practice</th>"
               "<th>Status</th><th>Scorecard</th><th>Detail</th></tr></thead><tbody>")
    for row in onboarding:
        verdict = row["verdict"] or "\u2014"
        cls = {"ready": "verdict-pass", "not ready": "verdict-fail"}.get(verdict, "")
        out.append(f'<tr data-site="{e(row["slug"])}"><td>{e(row["name"])}</td><td>{e(row["status"])}</td>'
                   f'<td class="{cls}">{e(verdict)}</td><td>{e(row["detail"])}</td></tr>')
    out.append("</tbody></table></section>")
    if rest:
        out.append(f'<section class="page"><h2>Every other KPI, {e(label)} (MSO total)</h2>'
                   f'<div class="tiles">{tiles(rest)}</div><h2>Their trends</h2>'
                   f'<div class="charts">{charts(rest)}</div></section>')
    out.append("</main></body></html>")
    return "".join(out)


# ------------------------------------------------------------------ files
def weasyprint_module() -> Any:
    """WeasyPrint, loaded; a ``ConfigError`` saying what to install when it cannot load."""
    try:
        import weasyprint
    except ImportError:
        raise ConfigError("the packet's PDF needs WeasyPrint (pip install weasyprint)") from None
    except OSError as exc:  # its system libraries (Pango, HarfBuzz) are missing
        raise ConfigError("the packet's PDF needs the system libraries of WeasyPrint (Pango), not found here "
                          f"({str(exc).splitlines()[0][:120]}); on Debian or Ubuntu: apt-get install "
                          "libpango-1.0-0 libpangoft2-1.0-0") from None
    return weasyprint


def write_pdf(page: str, path: Path) -> None:
    """Print ``page`` to ``path`` with WeasyPrint."""
    weasyprint = weasyprint_module()
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # font subsetting chatter
    logging.getLogger("weasyprint").setLevel(logging.ERROR)  # the dashboard CSS's screen-only properties
    weasyprint.HTML(string=page).write_pdf(str(path))


def _onboarding_sheet(path: Path, onboarding: list[dict[str, Any]]) -> None:
    from openpyxl import load_workbook
    from openpyxl.styles import Font

    book = load_workbook(path)
    sheet = book.create_sheet("onboarding")
    sheet.append(["practice", "name", "status", "scorecard", "detail"])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in onboarding:
        sheet.append([row["slug"], row["name"], row["status"], row["verdict"], row["detail"]])
    book.save(path)


def packet_report(runtime: Runtime, month: str) -> Report:
    from hub.reports.engine import compute_report

    last = calendar.monthrange(int(month[:4]), int(month[5:7]))[1]
    return compute_report(runtime.engine, by=("site", "month"), date_from=f"{shift_month(month, -TRAIL)}-01",
                          date_to=f"{month}-{last:02d}", plugins=runtime.plugins)


def build_packet(runtime: Runtime, month: str, folder: Path) -> Packet:
    """Both files of the month's packet in ``folder`` (made if missing); current figures first."""
    from hub.reports import same_days
    from hub.reports.rollups import refresh_dirty

    month = parse_month(month)
    weasyprint_module()  # a PDF that cannot be printed fails before any work
    folder.mkdir(parents=True, exist_ok=True)
    refresh_dirty(runtime.engine)  # a command or a queue job: no background refresh to count on here
    same_days.keep(runtime.engine)  # a packet of the month in progress compares it with the same days
    report = packet_report(runtime, month)
    onboarding = onboarding_status(runtime, report.sites)
    stem = folder / file_stem(month)
    xlsx, pdf = stem.with_suffix(".xlsx"), stem.with_suffix(".pdf")
    exporter = runtime.plugins.exporters.get("xlsx")
    with xlsx.open("wb") as out:
        exporter(report, out)
    _onboarding_sheet(xlsx, onboarding)
    write_pdf(render_html(report, month, onboarding), pdf)
    log.info("packet of %s written to %s", month, folder)
    return Packet(month, xlsx, pdf)
