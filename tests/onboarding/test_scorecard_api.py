"""``GET /api/v1/practices/<slug>/scorecard`` on a real server over loopback: admins only, JSON figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import free_port

from .feeds import build
from .test_end_to_end import mapping_v1

SERVE = ("import sys; from werkzeug.serving import make_server; from hub.app import create_app; "
         "make_server('127.0.0.1', int(sys.argv[1]), create_app(), threaded=True).serve_forever()")


def hub(*args: str) -> str:
    from click.testing import CliRunner

    from hub.cli import cli

    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code in (0, 1), done.output
    return done.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    env = dict(os.environ)  # the test's own database (HUB_DATABASE_URL), prepared here, served there
    feed = tmp_path / "feed"
    build(feed, appt_files=1, per_file=20)
    hub("practice", "add", "lakeview", "--name", "Lakeview", "--mapping", str(mapping_v1(tmp_path)))
    hub("onboard", "backfill", "--practice", "lakeview", "--quiet", str(feed))
    keys = {role: hub("key", "create", "--role", role, *(["--practice", "lakeview"] if role == "feed" else []))
            .strip() for role in ("admin", "analyst", "feed")}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield base, keys, env
    finally:
        process.terminate()
        process.wait(timeout=15)


def get(url: str, key: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_scorecard_for_admins_only(served: tuple[str, dict[str, str], dict[str, str]]) -> None:
    base, keys, env = served
    status, card = get(f"{base}/api/v1/practices/lakeview/scorecard", keys["admin"])
    assert status == 200
    assert card["practice"] == "lakeview" and card["source"] == "stored messages"
    assert card["messages"]["read"] == 20 + 60 + 24 and card["records"]["charge"] == 60
    assert card["passed"] is False and any(c["name"] == "mapped visit_type" for c in card["checks"])
    assert get(f"{base}/api/v1/practices/lakeview/scorecard", None)[0] == 401
    assert get(f"{base}/api/v1/practices/lakeview/scorecard", keys["analyst"])[0] == 403
    assert get(f"{base}/api/v1/practices/lakeview/scorecard", keys["feed"])[0] == 403
    assert get(f"{base}/api/v1/practices/nowhere/scorecard", keys["admin"])[0] == 404
    status, spec = get(f"{base}/api/v1/openapi.json", None)
    assert "/api/v1/practices/{slug}/scorecard" in spec["paths"]
