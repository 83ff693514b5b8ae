"""The dashboard as ``hub serve`` serves it: a real server on a loopback port, a real browser, an analyst key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub.demo.build import DemoResult
from tests.demo.browser import browser_page, chart_pixels, need_chromium

HUB = str(Path(sys.executable).with_name("hub"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(database_url: str, folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``hub serve`` on a loopback port over ``database_url``: its base URL and environment."""
    need_chromium()
    env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_KEY_CACHE_SECONDS": "0"}
    port = _free_port()
    with (folder / "serve.log").open("wb") as log:
        process = subprocess.Popen([HUB, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                    "--threads", "4"], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("hub serve did not start: " + (folder / "serve.log").read_text()[-2000:])
                time.sleep(0.2)
        yield base, env
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def server(small_demo: DemoResult, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with serving(small_demo.database_url, tmp_path) as running:
        yield running


def _key(env: dict[str, str], role: str, *extra: str) -> str:
    done = subprocess.run([HUB, "key", "create", "--role", role, *extra], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_served_page_asks_for_a_key_then_draws_the_store_s_kpis(server: tuple[str, dict[str, str]],
                                                                     tmp_path: Path) -> None:
    base, env = server
    analyst = _key(env, "analyst")
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(base + "/")
        page.wait_for_selector("#login:not([hidden])")
        assert page.locator("svg.trend").count() == 0
        page.fill("#key", analyst)
        page.click("#login-form button")
        page.wait_for_selector("svg.trend path.series-line")
        assert page.locator("svg.trend").count() >= 10
        sites = page.eval_on_selector_all("#sites tbody tr[data-site]", "rows => rows.map(r => r.dataset.site)")
        assert sites == ["carmel-aesthetics", "fishers-pt", "lakeshore-derm", "mke-skin"]
        shot = tmp_path / "served.png"
        page.screenshot(path=str(shot), full_page=True)
        page.reload()  # the key is kept for the tab: no second prompt
        page.wait_for_selector("svg.trend path.series-line")
        assert problems == []
    assert chart_pixels(shot) > 2_000


def test_a_key_that_may_not_read_reports_is_refused_with_a_reason(server: tuple[str, dict[str, str]],
                                                                  tmp_path: Path) -> None:
    base, env = server
    feed = _key(env, "feed", "--practice", "fishers-pt")
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(base + "/")
        page.fill("#key", feed)
        page.click("#login-form button")
        page.wait_for_selector("#login-error:has-text('may not read reports')")
        assert page.locator("svg.trend").count() == 0
    # the browser logs the refused request itself; nothing else went wrong
    assert all("403" in p for p in problems), problems
