"""The console in a real browser against ``hub serve`` over SQLite: an engineer signs in with an admin key,
finds a feed gone silent, opens an errored message, fixes the mapping, reprocesses and sees it processed;
an analyst key and a feed key are refused. Screenshots at 1440 px are kept in the test's folder."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo.browser import browser_page, need_chromium
from tests.intake.conftest import HUB, Server, start_server, stop

MAPPING = """version: {version}
practice: {slug}
timezone: America/Chicago
connectors:
  csv:
    exports:
      - kind: appointment
        date_formats: {formats}
        columns: {{source_id: "Appt ID", patient_source_id: MRN, start: "Appt Date/Time", status: Status}}
{alerts}"""
READS_DASHES = "['%Y-%m-%d %H:%M']"
READS_DOTS_TOO = "['%Y-%m-%d %H:%M', '%Y.%m.%d %H:%M']"
SILENCE = "alerts:\n  silence: {minutes: 30}\n"


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([HUB, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"hub {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    need_chromium()
    db = tmp_path / "hub.db"
    env = {**os.environ, "HUB_DATABASE_URL": f"sqlite:///{db}", "HUB_SQLITE_SYNCHRONOUS": "NORMAL",
           "HUB_REDIS_URL": "", "HUB_KEY_CACHE_SECONDS": "0"}
    for slug, formats, alerts in (("lakeview", READS_DASHES, ""), ("quietville", READS_DOTS_TOO, SILENCE)):
        (tmp_path / f"{slug}-1.yaml").write_text(MAPPING.format(version=1, slug=slug, formats=formats, alerts=alerts))
        run(env, "practice", "add", slug, "--name", slug.title(), "--mapping", str(tmp_path / f"{slug}-1.yaml"))
    (tmp_path / "lakeview-2.yaml").write_text(MAPPING.format(version=2, slug="lakeview", formats=READS_DOTS_TOO,
                                                               alerts=""))
    export = tmp_path / "appts.csv"
    export.write_text("Appt ID,MRN,Appt Date/Time,Status\r\nA1,M100,2025.03.03 09:00,booked\r\n"
                      "A2,M200,2025-03-04 10:00,booked\r\n")
    for slug in ("lakeview", "quietville"):
        subprocess.run([HUB, "ingest", "--practice", slug, str(export)], env=env, capture_output=True, timeout=120)
    # quietville's last message came in two hours ago: past its 30 silent minutes, at any hour of the day
    with sqlite3.connect(db) as conn:
        earlier = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(tzinfo=None).isoformat(sep=" ")
        conn.execute("UPDATE messages SET received_at = ?, processed_at = ? WHERE practice = 'quietville'",
                     (earlier, earlier))
    run(env, "alerts", "check")
    server = start_server(tmp_path, {k: env[k] for k in ("HUB_DATABASE_URL", "HUB_SQLITE_SYNCHRONOUS",
                                                         "HUB_REDIS_URL")}, practices=())
    server.keys = {role: server.key(role, "lakeview" if role == "feed" else None)
                   for role in ("admin", "analyst", "feed")}
    try:
        yield server, tmp_path
    finally:
        stop(server)


def test_silent_feed_error_fix_reprocess_in_the_browser(served: tuple[Server, Path]) -> None:
    server, tmp = served
    with browser_page(tmp / "profile", width=1440, height=900) as (page, problems):
        for role in ("analyst", "feed"):  # refused, with the reason on the form
            page.goto(server.base + "/console/")
            page.fill("input[name=key]", server.keys[role])
            page.click("form button[type=submit]")
            page.wait_for_load_state("load")
            assert "for admin keys" in page.inner_text("p.problem")
            assert page.context.cookies() == []
        assert all("403" in p for p in problems)  # the refusals' status, as the browser logs it
        problems.clear()
        page.goto(server.base + "/console/messages")
        assert "/console/login" in page.url
        page.fill("input[name=key]", server.keys["admin"])
        page.click("form button[type=submit]")
        page.wait_for_load_state("load")
        assert page.url.endswith("/console/messages")
        [cookie] = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        page.click("nav >> text=Feeds")

        page.wait_for_load_state("load")
        quiet = page.locator("table.feeds tbody tr", has_text="quietville")
        assert "silent" in quiet.inner_text()
        assert "quietville" in page.inner_text("section.problem") and "silence" in page.inner_text("section.problem")
        lakeview = page.locator("table.feeds tbody tr", has_text="lakeview")
        assert "silent" not in lakeview.inner_text()
        page.screenshot(path=str(tmp / "feeds-1440.png"), full_page=True)

        page.click("nav >> text=Errors")

        page.wait_for_load_state("load")
        row = page.locator("table.grid tbody tr", has_text="lakeview")
        assert "is not a date-time" in row.inner_text() and row.locator("td.num").inner_text() == "1"
        page.screenshot(path=str(tmp / "errors-1440.png"), full_page=True)
        row.locator("td.reason a").click()
        page.wait_for_load_state("load")
        assert "error" in page.inner_text("h1") and "A1,M100,2025.03.03 09:00" in page.inner_text("pre.raw")
        message_url = page.url
        page.screenshot(path=str(tmp / "message-1440.png"), full_page=True)

        run(server.env, "practice", "mapping", "lakeview", str(tmp / "lakeview-2.yaml"))  # the fix
        page.click("nav >> text=Errors")
        page.wait_for_load_state("load")
        page.click("text=Reprocess these")
        assert "Reprocess 1 message?" in page.inner_text("h1")
        page.click("button.primary")
        page.wait_for_load_state("load")
        assert "1 reprocessed: 1 processed, 0 in error" in page.inner_text("p.notice")
        assert "No message is in error." in page.inner_text("main")
        page.goto(message_url)
        assert "processed" in page.inner_text("h1 .badge")
        assert page.locator("table.grid td", has_text="A1").count() == 2  # read now, and in its lineage

        page.click("nav >> text=Messages")

        page.wait_for_load_state("load")
        page.fill("input[name=mrn]", "M100")
        page.click("form.search button")
        page.wait_for_load_state("load")
        assert page.locator("table.grid tbody tr").count() == 2  # the same MRN at both practices
        page.select_option("select[name=practice]", "lakeview")
        page.click("form.search button")
        page.wait_for_load_state("load")
        assert page.locator("table.grid tbody tr").count() == 1
        page.click("text=Sign out")
        page.wait_for_load_state("load")
        assert "/console/login" in page.url
        page.goto(server.base + "/console/feeds")
        page.wait_for_load_state("load")
        assert "/console/login" in page.url
        assert problems == []
    audit = run(server.env, "audit", "list", "--format", "json")
    assert '"console.message"' in audit and '"console.sign_in"' in audit
