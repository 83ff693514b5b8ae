"""Headless Chromium (Debian's ``/usr/bin/chromium``) driven by playwright, for the dashboard tests.

Skips with a reason when the browser or playwright is missing, and fails instead under
``HUB_REQUIRE_SERVICES=1`` (CI installs chromium). No browser is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("HUB_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def need_chromium() -> None:
    reason = None
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None:
        return
    if os.environ.get("HUB_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " and HUB_REQUIRE_SERVICES=1")
    pytest.skip(reason)


@contextmanager
def browser_page(profile: Path, width: int = 1400, height: int = 1000,
                 **context: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh profile, and the list its console errors and page errors land in; ``context``: more
    options of the browser context (``has_touch=True`` for a phone's taps)."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": width, "height": height}, **context)
        try:
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            yield page, problems
        finally:
            context.close()


def chart_pixels(png: Path, colour: tuple[int, int, int] = (0x23, 0x64, 0xAA), tolerance: int = 40) -> int:
    """How many pixels of the screenshot are (close to) the charts' line colour."""
    from PIL import Image

    with Image.open(png) as image:
        counts = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return sum(n for n, (r, g, b) in counts
               if abs(r - colour[0]) + abs(g - colour[1]) + abs(b - colour[2]) <= tolerance)


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or ())
