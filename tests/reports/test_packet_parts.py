"""The packet's parts that need no store: months, figures as the dashboard writes them, the next run of a
schedule, the SVG chart, and the message when WeasyPrint cannot load."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.errors import ConfigError, ValidationError
from hub.reports.packet import change, chart_svg, fmt, month_before, month_label, parse_month, shift_month, write_pdf
from hub.reports.schedule import next_run

UTC = dt.UTC


def test_months() -> None:
    assert parse_month(" 2026-06 ") == "2026-06"
    for bad in ("2026-13", "2026-6", "26-06", "June", "0999-01"):
        with pytest.raises(ValidationError, match="not a month"):
            parse_month(bad)
    assert shift_month("2026-01", -1) == "2025-12"
    assert shift_month("2026-06", -12) == "2025-06"
    assert shift_month("2025-12", 1) == "2026-01"
    assert month_before(dt.date(2027, 1, 5)) == "2026-12"
    assert month_before(dt.date(2026, 7, 31)) == "2026-06"
    assert month_label("2026-06") == "June 2026" and month_label("2026-06", short=True) == "Jun 26"


def test_figures_and_changes_read_as_on_the_dashboard() -> None:
    assert fmt(None, "ratio") == "\u2014"
    assert fmt(0.0617, "ratio") == "6.2%"
    assert fmt(0.4, "ratio") == "40.0%"
    assert fmt(37770.4, "usd") == "$37,770"
    assert fmt(27.66, "days") == "27.7 d"
    assert fmt(37770.5, "usd") == "$37,771"  # half up, as the dashboard's Math.round
    assert fmt(1234, "count") == "1,234"
    assert fmt(2.25, "count") == "2.3"
    ratio = {"unit": "ratio", "higher_is_better": False}
    assert change(ratio, 0.062, 0.080) == ("\u25bc \u22121.8 pts", "better")  # fewer no-shows
    count = {"unit": "count", "higher_is_better": True}
    assert change(count, 162, 145) == ("\u25b2 +11.7%", "better")
    assert change(count, 100, 0) == ("\u25b2 +100", "better")
    assert change(count, 5, 5) == ("+0.0%", "same")
    assert change(count, 5, None) == ("no previous figure", "same")


@pytest.mark.parametrize(("after", "expected"), [
    (dt.datetime(2026, 12, 3, 10, 0, tzinfo=UTC), dt.datetime(2026, 12, 5, 6, 0, tzinfo=UTC)),
    (dt.datetime(2026, 12, 5, 6, 0, tzinfo=UTC), dt.datetime(2027, 1, 5, 6, 0, tzinfo=UTC)),  # strictly after
    (dt.datetime(2026, 12, 5, 5, 59, tzinfo=UTC), dt.datetime(2026, 12, 5, 6, 0, tzinfo=UTC)),
    (dt.datetime(2026, 12, 28, 0, 0, tzinfo=UTC), dt.datetime(2027, 1, 5, 6, 0, tzinfo=UTC)),
    # a zone's evening of the 4th is already the 5th in UTC
    (dt.datetime(2026, 12, 4, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
     dt.datetime(2027, 1, 5, 6, 0, tzinfo=UTC)),
])
def test_the_next_run_is_the_next_day_n(after: dt.datetime, expected: dt.datetime) -> None:
    assert next_run(5, "06:00", after) == expected


def test_the_chart_draws_the_total_and_the_median_and_breaks_at_a_missing_month() -> None:
    definition = {"id": "visit_volume", "name": "Visit volume", "unit": "count"}
    months = ["2026-04", "2026-05", "2026-06"]
    svg = chart_svg(definition, months, [100.0, None, 200.0], [50.0, 60.0, 70.0])
    series = re.search(r'<path d="([^"]*)"[^>]*class="series-line"', svg)
    median = re.search(r'<path d="([^"]*)"[^>]*class="median-line"', svg)
    assert series and median
    assert series.group(1).count("M") == 2 and "L" not in series.group(1)  # two points, no line across the gap
    assert median.group(1).count("M") == 1 and median.group(1).count("L") == 2
    assert svg.count("<circle") == 2
    # 200 tops out at 200 (the nice maximum): the June dot sits on the top grid line (y = 10)
    assert re.search(r'<circle cx="[\d.]+" cy="10.0"', svg)
    assert "Apr 26" in svg and "Jun 26" in svg and ">200<" in svg


def test_without_weasyprint_the_pdf_is_a_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint raises ImportError
    with pytest.raises(ConfigError, match="needs WeasyPrint"):
        write_pdf("<p>x</p>", tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_the_packet_command_exits_1_when_weasyprint_cannot_load(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import cli

    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    done = CliRunner().invoke(cli, ["report", "packet", "--month", "2026-06", "--out", str(tmp_path / "out")])
    assert done.exit_code == 1
    assert done.output.strip() == "hub: error: the packet's PDF needs WeasyPrint (pip install weasyprint)"
    assert not (tmp_path / "out").exists()  # refused before any work
    done = CliRunner().invoke(cli, ["report", "packet", "--month", "2026-13", "--out", str(tmp_path / "out")])
    assert done.exit_code == 1 and "--month: not a month (YYYY-MM): '2026-13'" in done.output
