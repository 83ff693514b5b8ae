"""The monthly packet of the small demo: ``hub report packet`` writes the XLSX and the PDF; the PDF's pages,
opened as images (pypdfium2), show the month, the practices and the trend charts."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.demo.build import DemoResult
from tests.conftest import need_weasyprint

LINE = (0x23, 0x64, 0xAA)  # the MSO total's line (the dashboard's colour)


def _rows_of(image, colour: tuple[int, int, int], tolerance: int = 40) -> set[int]:
    """The pixel rows holding (close to) ``colour``: a trend line crosses many rows, a rule or a legend
    swatch of the same colour a few."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    pixels = rgb.load()
    return {y for y in range(0, height) for x in range(0, width, 2)
            if sum(abs(a - b) for a, b in zip(pixels[x, y], colour, strict=True)) <= tolerance}


def _pages(pdf: Path) -> list[tuple[str, object]]:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    try:
        return [(page.get_textpage().get_text_range(), page.render(scale=1.0).to_pil()) for page in document]
    finally:
        document.close()


@pytest.fixture(scope="module")
def packet(small_demo: DemoResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_weasyprint()
    out = tmp_path_factory.mktemp("packet")
    done = CliRunner().invoke(cli, ["report", "packet", "--month", "2026-06", "--out", str(out)],
                              env={"HUB_DATABASE_URL": small_demo.database_url})
    assert done.exit_code == 0, done.output
    assert done.stdout.split() == [str(out / "mso-packet-2026-06.xlsx"), str(out / "mso-packet-2026-06.pdf")]
    return out


def test_the_first_page_has_the_month_and_the_trend_charts(packet: Path, small_demo: DemoResult) -> None:
    pages = _pages(packet / "mso-packet-2026-06.pdf")
    text, image = pages[0]
    assert "MSO leadership packet · June 2026" in text
    # the headline tiles, each with its change against May, and the charts' first and last months
    for name in ("Visit volume", "No-show rate", "Gross charges", "Days in A/R"):
        assert text.count(name) == 2, name  # its tile and its chart
    assert "change against May 2026" in text
    assert "Jun 25" in text and "Jun 26" in text  # June 2025 to June 2026: thirteen months
    # eight charts in two rows: their lines cross dozens of pixel rows; the header's rule and the
    # legends' swatches in the same colour cross a handful (the test below prints the page without charts)
    line_rows = _rows_of(image, LINE)
    assert len(line_rows) > 60, len(line_rows)
    assert any(y > image.height / 2 for y in line_rows)  # the second row of charts too
    # the site table and the onboarding status follow, with every demo practice
    rest = "\n".join(t for t, _ in pages[1:])
    for spec in small_demo.truth.practices:
        assert spec.name in rest
    assert "Sites against the MSO median, June 2026" in rest
    assert re.search(r"onboarding\s+(not ready|ready)\s+\d[\d,]* messages read", rest), rest[:2000]


def test_without_its_charts_the_same_page_fails_the_pixel_check(small_demo: DemoResult, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: the same packet printed with its SVG charts left out has no line to speak of."""
    need_weasyprint()
    from hub.reports import packet as packet_module
    from hub.runtime import Runtime

    monkeypatch.setattr(packet_module, "chart_svg", lambda *args: "<svg></svg>")
    runtime = Runtime.create(database_url=small_demo.database_url, dispatcher="inline")
    built = packet_module.build_packet(runtime, "2026-06", tmp_path)
    text, image = _pages(built.pdf)[0]
    assert "MSO leadership packet · June 2026" in text
    assert len(_rows_of(image, LINE)) < 25


def test_the_workbook_has_the_figures_and_the_onboarding_sheet(packet: Path, small_demo: DemoResult) -> None:
    from openpyxl import load_workbook

    path = packet / "mso-packet-2026-06.xlsx"
    assert zipfile.is_zipfile(path)
    book = load_workbook(path, read_only=True)
    assert book.sheetnames == ["by site x month", "MSO total", "site median", "definitions", "periods", "onboarding"]
    months = {row[1] for row in book["by site x month"].iter_rows(min_row=2, values_only=True)}
    assert "2026-06" in months and max(months) == "2026-06" and min(months) >= "2025-06"
    onboarding = {row[0]: row[2:4] for row in book["onboarding"].iter_rows(min_row=2, values_only=True)}
    assert set(onboarding) == {p.slug for p in small_demo.truth.practices}
    for slug, (status, verdict) in onboarding.items():
        assert (verdict in ("ready", "not ready")) == (status == "onboarding"), slug
