"""Essential plugins stay whatever the allow and block lists say; default ones go where they say."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hub.cli import cli
from hub.errors import ConfigError
from hub.plugins import ESSENTIAL_PLUGINS, load_plugins
from hub.reports.catalog import BUILTIN_KPIS

# two SIU messages of one site and month: one booked, one a no-show (SIU^S26): no-show rate 1 / 2
SIU = ("MSH|^~\\&|PM|CLINIC|HUB|MSO|20250301080000||SIU^{event}^SIU_S12|{control}|P|2.5.1\r"
       "SCH|PL{n}|FA{n}|||||NP||30|min|^^30^20250310090000\r"
       "PID|1||MRN{n}^^^CLINIC^MR||Doe^Sam||19800101|F\r"
       "AIS|1|A|99203|20250310090000||30|min\r"
       "AIP|1|A|1234567893^Carter^Jordan^^^^^^NPI^^^^NPI\r")


def _hub(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_an_allow_list_keeps_the_essential_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PLUGINS_ALLOW", "hl7v2")
    plugins = load_plugins()
    assert plugins.connectors.names() == ["hl7v2"]
    assert plugins.exporters.formats() == ["csv", "json"]  # xlsx and html are default plugins: left out
    assert [k.id for k in plugins.kpis] == [k.id for k in BUILTIN_KPIS]
    assert {p.name for p in plugins.info if p.essential} == set(ESSENTIAL_PLUGINS)
    assert [p.name for p in plugins.info if not p.essential] == ["hl7v2"]
    assert [i.plugin_name for i in plugins.hook.hub_records_stored.get_hookimpls()] == ["report-upkeep"]
    assert [i.plugin_name for i in plugins.hook.hub_patients_relinked.get_hookimpls()] == ["report-upkeep"]


def test_with_only_hl7v2_allowed_the_kpis_are_computed_and_exported_as_json_and_csv(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_PLUGINS_ALLOW", "hl7v2")
    feed = tmp_path / "siu.hl7"
    feed.write_bytes(b"".join(SIU.format(event=event, control=f"C{n}", n=n).encode()
                              for n, event in ((1, "S12"), (2, "S26"))))
    assert _hub("practice", "add", "derm-east", "--name", "Derm East").exit_code == 0
    ingested = _hub("ingest", "--practice", "derm-east", str(feed))
    assert ingested.exit_code == 0 and "accepted 2" in ingested.output, ingested.output

    as_json = _hub("report", "kpis", "--by", "site,month", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    (row,) = json.loads(as_json.stdout)["rows"]
    assert row["slice"] == {"site": "derm-east", "month": "2025-03"}
    assert float(row["values"]["no_show_rate"]) == 0.5

    as_csv = _hub("report", "kpis", "--by", "site,month", "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    (site,) = [line for line in csv.DictReader(io.StringIO(as_csv.stdout)) if line["section"] == "site"]
    assert (site["site"], site["month"], float(site["No-show rate (no_show_rate)"])) == ("derm-east", "2025-03", 0.5)

    xlsx = _hub("report", "kpis", "--format", "xlsx", "--out", str(tmp_path / "kpis.xlsx"))
    assert xlsx.exit_code == 1 and "no exporter for 'xlsx'" in xlsx.output


def test_blocking_an_essential_plugin_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PLUGINS_BLOCK", "hl7v2,report-exporters")
    with pytest.raises(ConfigError, match="HUB_PLUGINS_BLOCK names the essential plugin.s. report-exporters,"):
        load_plugins()
    listed = _hub("plugins", "list")
    assert listed.exit_code == 1 and "essential plugin(s) report-exporters" in listed.output
    assert "Traceback" not in listed.output


def test_a_block_list_removes_default_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PLUGINS_BLOCK", "xlsx,dashboard")
    plugins = load_plugins()
    assert plugins.exporters.formats() == ["csv", "json"]
    assert len(plugins.kpis) == len(BUILTIN_KPIS)


def test_plugins_list_marks_the_essential_ones() -> None:
    text = _hub("plugins", "list").stdout
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert all(lines[name].endswith("essential") for name in ESSENTIAL_PLUGINS)
    assert not lines["hl7v2"].endswith("essential") and not lines["xlsx"].endswith("essential")
    listed = json.loads(_hub("plugins", "list", "--format", "json").stdout)["plugins"]
    assert {p["name"] for p in listed if p["essential"]} == set(ESSENTIAL_PLUGINS)
