"""The report's outputs: CLI formats, costs import and margin, plugin KPIs, and the HTTP API over a socket."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub import hookimpl
from hub.cli import cli
from hub.plugins import load_plugins
from hub.reports import Kpi, compute_report, rollups
from hub.reports.tables import report_dirty
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice
from tests.support.services import free_port


def _seed(url: str) -> Any:
    engine = get_engine(url)
    records = [
        {"kind": "appointment", "practice": site, "source_id": f"A{i}", "patient_source_id": f"P{i}",
         "start": f"2025-0{m}-10T09:00:00-05:00", "status": "fulfilled", "service_line": "cosmetic",
         "duration_min": 30}
        for site in ("east", "west") for i, m in enumerate((1, 2, 2, 3))
    ] + [
        {"kind": "charge", "practice": site, "source_id": f"C{i}", "service_date": dt.date(2025, m, 10),
         "amount": Decimal("100.00") * (i + 1), "service_line": "cosmetic", "financial_class": "medicare"}
        for site in ("east", "west") for i, m in enumerate((1, 2, 2, 3))
    ] + [
        {"kind": "remittance", "practice": "east", "source_id": "R0", "charge_source_id": "C0",
         "paid_amount": Decimal("80.00"), "adjustment_amount": Decimal("20.00"), "paid_on": dt.date(2025, 2, 1),
         "adjustments": [{"group": "CO", "reason": "45", "amount": "20.00"}], "denied": False},
    ]
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East Dermatology")
        add_practice(conn, "west", "West Skin")
        items = [(r, None) for r in records]
        with rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    return engine


def test_report_kpis_in_every_format(tmp_path: Path) -> None:
    _seed(os.environ["HUB_DATABASE_URL"])
    runner = CliRunner()
    done = runner.invoke(cli, ["report", "kpis", "--by", "site,month", "--from", "2025-01-01", "--to", "2025-03-31"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["by"] == ["site", "month"] and data["from"] == "2025-01-01" and data["to"] == "2025-03-31"
    east_feb = next(r for r in data["rows"] if r["slice"] == {"site": "east", "month": "2025-02"})
    assert east_feb["values"]["visit_volume"] == 2 and east_feb["values"]["gross_charges"] == "500.00"
    assert {d["id"] for d in data["definitions"]} >= {"no_show_rate", "days_in_ar", "payer_mix_medicare"}
    assert "P1" not in done.stdout  # aggregates only

    done = runner.invoke(cli, ["report", "kpis", "--format", "csv", "--by", "month"])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    # by month alone the slice lines are the whole MSO ("all", not "site"); KPI columns carry name and id
    assert [r["section"] for r in rows] == ["all", "all", "all", "total", "total", "total"]
    assert rows[1]["Visit volume (visit_volume)"] == "4"

    out = tmp_path / "kpis.xlsx"
    done = runner.invoke(cli, ["report", "kpis", "--format", "xlsx", "--out", str(out)])
    assert done.exit_code == 0, done.output
    from openpyxl import load_workbook

    book = load_workbook(out)
    assert book.sheetnames == ["by site x month", "MSO total", "site median", "definitions", "periods"]
    assert book["definitions"]["A2"].value == "visit_volume"


def test_report_kpis_by_site_and_week_in_every_format(tmp_path: Path) -> None:
    _seed(os.environ["HUB_DATABASE_URL"])
    runner = CliRunner()
    # 2025-02-12 is a Wednesday: the whole ISO week 2025-W07, Monday 10 to Sunday 16 February, is reported
    done = runner.invoke(cli, ["report", "kpis", "--by", "site,week", "--from", "2025-02-12", "--to", "2025-02-12"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["by"] == ["site", "week"] and data["from"] == "2025-02-10" and data["to"] == "2025-02-16"
    assert [r["slice"] for r in data["rows"]] == [{"site": "east", "week": "2025-W07"},
                                                 {"site": "west", "week": "2025-W07"}]
    east = data["rows"][0]["values"]
    assert east["visit_volume"] == 2 and east["gross_charges"] == "500.00" and east["costs"] is None
    # A/R at Sunday 16 February: 100 + 500 charged, 100 credited on 1 February; charges of the last 91 days
    assert east["days_in_ar"] == round(50000 / (60000 / 91), 2)

    done = runner.invoke(cli, ["report", "kpis", "--format", "csv", "--by", "site,week"])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {r["week"] for r in rows if r["section"] == "total"} == {"2025-W02", "2025-W07", "2025-W11"}
    assert [r["Visit volume (visit_volume)"] for r in rows if r["section"] == "total"] == ["2", "4", "2"]

    out = tmp_path / "weeks.xlsx"
    done = runner.invoke(cli, ["report", "kpis", "--format", "xlsx", "--by", "site,week", "--out", str(out)])
    assert done.exit_code == 0, done.output
    from openpyxl import load_workbook

    book = load_workbook(out)
    assert book.sheetnames == ["by site x week", "MSO total", "site median", "definitions", "periods"]


def test_report_rebuild_recomputes_the_same_figures() -> None:
    _seed(os.environ["HUB_DATABASE_URL"])
    runner = CliRunner()
    before = json.loads(runner.invoke(cli, ["report", "kpis"]).stdout)
    done = runner.invoke(cli, ["report", "rebuild"])
    assert done.exit_code == 0 and "rebuilt" in done.stdout
    after = json.loads(runner.invoke(cli, ["report", "kpis"]).stdout)
    assert before["rows"] == after["rows"] and before["total"] == after["total"]


def test_report_refresh_recomputes_the_marked_months_once() -> None:
    engine = _seed(os.environ["HUB_DATABASE_URL"])
    with engine.connect() as conn:
        marked = conn.execute(sa.select(sa.func.count()).select_from(report_dirty)).scalar_one()
    assert marked == 6  # two sites, three months
    runner = CliRunner()
    done = runner.invoke(cli, ["report", "refresh"])
    assert done.exit_code == 0, done.output
    assert "report rollups refreshed (6 practice-month cells" in done.stdout
    assert "(0 practice-month cells" in runner.invoke(cli, ["report", "refresh"]).stdout
    report = json.loads(runner.invoke(cli, ["report", "kpis"]).stdout)
    assert {(r["slice"]["site"], r["slice"]["month"]): r["values"]["visit_volume"] for r in report["rows"]} == {
        (site, month): n for site in ("east", "west") for month, n in (("2025-01", 1), ("2025-02", 2),
                                                                       ("2025-03", 1))}


@pytest.mark.parametrize("args, message", [
    (["--by", "site,galaxy"], "unknown dimension 'galaxy'"),
    (["--by", "month,quarter"], "at most one period (month, quarter, year, week)"),
    (["--by", "site,week", "--from", "2025-03-01", "--to", "2025-02-01"], "is after to"),
    (["--from", "2025-13-01"], "not a date"),
    # a year no report spans (9999 has no week after its last): one line, not a crash
    (["--by", "site,week", "--from", "9999-01-01", "--to", "9999-12-31"], "outside the years a report spans"),
    (["--from", "0001-01-01"], "outside the years a report spans"),
    (["--kpi", "nope"], "unknown KPI id(s): nope"),
])
def test_bad_report_arguments_give_one_line(args: list[str], message: str) -> None:
    done = CliRunner().invoke(cli, ["report", "kpis", *args])
    assert done.exit_code == 1
    assert done.stderr.strip().startswith("hub: error:") and message in done.stderr
    assert "Traceback" not in done.output


def test_costs_import_gives_margin_by_service_line(tmp_path: Path) -> None:
    _seed(os.environ["HUB_DATABASE_URL"])
    costs = tmp_path / "costs.csv"
    costs.write_text("practice,service_line,month,cost\neast,cosmetic,2025-01,30.00\n")
    runner = CliRunner()
    done = runner.invoke(cli, ["costs", "import", str(costs)])
    assert done.exit_code == 0, done.output
    data = json.loads(runner.invoke(cli, ["report", "kpis", "--by", "site,service_line,month"]).stdout)
    east_jan = next(r for r in data["rows"] if r["slice"]["site"] == "east" and r["slice"]["month"] == "2025-01")
    assert east_jan["values"]["costs"] == "30.00" and east_jan["values"]["margin"] == "50.00"
    assert east_jan["values"]["margin_rate"] == 0.625
    assert east_jan["values"]["net_collection_rate"] == 1.0  # 80 / (100 - 20)
    west_jan = next(r for r in data["rows"] if r["slice"]["site"] == "west" and r["slice"]["month"] == "2025-01")
    assert west_jan["values"]["margin"] is None  # no costs supplied: no margin, not a made-up one
    bad = tmp_path / "bad.csv"
    bad.write_text("practice,service_line,month,cost\neast,cosmetic,2025-1,30\n")
    done = runner.invoke(cli, ["costs", "import", str(bad)])
    assert done.exit_code == 1 and "line 2: month must be YYYY-MM" in done.stderr


def test_days_in_ar_and_aged_share() -> None:
    engine = _seed(os.environ["HUB_DATABASE_URL"])
    rollups.refresh_dirty(engine)
    report = compute_report(engine, by="site,month", kpis=["days_in_ar", "ar_over_90_share"]).to_dict()
    east = {r["slice"]["month"]: r["values"] for r in report["rows"] if r["slice"]["site"] == "east"}
    # January: 100 charged, nothing credited by the end of January; charges over Nov–Jan (92 days)
    assert east["2025-01"]["days_in_ar"] == round(10000 / (10000 / 92), 2)
    # March: 100 + 500 + 400 charged, 100 credited in February; 90 days Jan–Mar
    assert east["2025-03"]["days_in_ar"] == round(90000 / (100000 / 90), 2)
    assert east["2025-03"]["ar_over_90_share"] == 0.0
    assert [d["id"] for d in report["definitions"]] == ["days_in_ar", "ar_over_90_share"]


def test_a_plugin_adds_a_kpi_through_the_hook() -> None:
    engine = _seed(os.environ["HUB_DATABASE_URL"])
    extra = types.ModuleType("minutes_plugin")
    kpi = Kpi("booked_hours", "Booked hours (30-minute visits)", "count", "scheduled appointments × 30 / 60", None,
              "appts_scheduled * 30 / 60", ("appointment",), lambda f: f.count("appts_scheduled") * 30 // 60)
    extra.hub_register_kpis = hookimpl(lambda registry: registry.add(kpi))  # type: ignore[attr-defined]
    plugins = load_plugins(extra=[extra])
    assert "booked_hours" in [k.id for k in plugins.kpis] and "visit_volume" in [k.id for k in plugins.kpis]
    rollups.refresh_dirty(engine)
    report = compute_report(engine, by="month", plugins=plugins).to_dict()
    assert report["total"][1]["values"]["booked_hours"] == 2  # four 30-minute visits in February


def _get(url: str, key: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_http_api_serves_kpis_to_analysts_only(database_url: str) -> None:
    from hub.security.keys import create_key

    engine = _seed(database_url)
    rollups.refresh_dirty(engine)  # the API only reads what a refresh committed (tests/reports/test_freshness.py)
    with writer(engine).begin() as conn:
        analyst = create_key(conn, "analyst")
        feed = create_key(conn, "feed", "east")
    port = free_port()
    code = ("from werkzeug.serving import make_server; from hub.app import create_app; "
            f"make_server('127.0.0.1', {port}, create_app()).serve_forever()")
    server = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HUB_DATABASE_URL": database_url},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        assert _get(f"{base}/reports/kpis", None)[0] == 401
        assert _get(f"{base}/reports/kpis", feed)[0] == 403
        status, body = _get(f"{base}/reports/kpis?by=site,month&from=2025-02-01&to=2025-02-28", analyst)
        assert status == 200, body
        assert body["from"] == "2025-02-01" and body["by"] == ["site", "month"]
        assert {r["slice"]["site"] for r in body["rows"]} == {"east", "west"}
        assert body["total"][0]["values"]["visit_volume"] == 4
        assert _get(f"{base}/reports/kpis?by=galaxy", analyst)[0] == 400
        status, body = _get(f"{base}/reports/kpis?by=week&from=2025-02-10&to=2025-02-16", analyst)
        assert status == 200, body
        assert body["from"] == "2025-02-10" and body["to"] == "2025-02-16"
        assert body["rows"][0]["slice"] == {"week": "2025-W07"} and body["rows"][0]["values"]["visit_volume"] == 4
        assert body["rows"][0]["complete"] is True and body["periods"][0]["state"] == "complete"
        assert body["left_out"]["payments"] == {"west": "no remittance feed"}  # west stores no remittance
        status, body = _get(f"{base}/reports/kpis?by=service_line,month&format=html", analyst)
        assert status == 400 and "html dashboard shows the KPIs by site,month only" in body["detail"], body
        status, spec = _get(f"{base}/openapi.json", None)
        assert "/api/v1/reports/kpis" in spec["paths"] and "KpiReport" in spec["components"]["schemas"]
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_every_format_says_what_it_shows(tmp_path: Path) -> None:
    _seed(os.environ["HUB_DATABASE_URL"])
    runner = CliRunner()
    # the dashboard draws sites by month only: another slicing is refused, naming the formats that can
    page = tmp_path / "lines.html"
    done = runner.invoke(cli, ["report", "kpis", "--by", "service_line,month", "--format", "html", "--out", str(page)])
    assert done.exit_code != 0 and "html dashboard shows the KPIs by site,month only" in done.output
    assert "use json, csv or xlsx" in done.output and "Traceback" not in done.output and not page.exists()
    done = runner.invoke(cli, ["report", "kpis", "--by", "month,site", "--format", "html", "--out", str(page)])
    assert done.exit_code == 0, done.output

    # by provider: the slice lines say so (the appointments name no provider: one null provider)
    done = runner.invoke(cli, ["report", "kpis", "--by", "provider", "--format", "csv"])
    assert done.exit_code == 0, done.output
    lines = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [line["section"] for line in lines] == ["provider", "total"]
    assert "complete" not in lines[0]  # no period asked
    assert lines[0]["Visit volume (visit_volume)"] == "8"  # 4 visits at each site

    done = runner.invoke(cli, ["report", "kpis", "--format", "csv"])
    head = next(csv.reader(io.StringIO(done.stdout)))
    assert head[:4] == ["section", "site", "month", "complete"] and "No-show rate (no_show_rate)" in head
    assert {line["complete"] for line in csv.DictReader(io.StringIO(done.stdout))} == {"True"}  # 2025 is over

    out = tmp_path / "kpis.xlsx"
    assert runner.invoke(cli, ["report", "kpis", "--format", "xlsx", "--out", str(out)]).exit_code == 0
    from openpyxl import load_workbook

    book = load_workbook(out)
    periods = [[c.value for c in line] for line in book["periods"].iter_rows()]
    assert periods[0][:3] == ["period", "state", "complete"] and periods[1][:3] == ["2025-01", "complete", True]
    sheet = book["by site x month"]
    head = [c.value for c in sheet[1]]
    assert head[:4] == ["site", "month", "complete", "Visit volume (visit_volume)"]
    assert "Payments (payments)" in head and "visit_volume" not in head
    lines = {(r[0], r[1]): dict(zip(head, r, strict=True)) for r in sheet.iter_rows(min_row=2, values_only=True)}
    # west stores charges but never a remittance: its payments are no data, with the reason, not $0.00
    assert lines[("west", "2025-02")]["Payments (payments)"] == "no data: no remittance feed"
    assert lines[("east", "2025-02")]["Payments (payments)"] == 0  # east has a remittance feed; none in February
