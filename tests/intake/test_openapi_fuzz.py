"""Schemathesis against the served OpenAPI document, with a valid admin key: no 5xx, and every
answer (status, media type, body) as the document describes it. Bounded to about a minute."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FEEDLINE, Server, feedline, start_server, stop

pytestmark = pytest.mark.slow
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_no_server_error_and_no_schema_break(tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    srv: Server = start_server(tmp_path, {"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'st.db'}", "HUB_REDIS_URL": "",
                                          "HUB_RATE_LIMIT": "0"}, practices=("alpha",))
    try:
        admin = srv.key("admin")
        srv.call("POST", "/api/v1/practices/alpha/messages", admin, feedline(("M1", "A", "B", "Q")), FEEDLINE)
        done = subprocess.run([st, "run", f"{srv.base}/api/v1/openapi.json", "-H", f"Authorization: Bearer {admin}",
                               "--max-examples", "15", "--max-time", "45", "--seed", "7", "--checks", CHECKS,
                               "--workers", "1"], capture_output=True, text=True, timeout=180)
        summary = done.stdout[done.stdout.rfind("SUMMARY"):] if done.returncode == 0 else done.stdout[-6000:]
        (tmp_path / "schemathesis.txt").write_text(done.stdout)
        print(summary)
        assert done.returncode == 0, summary
    finally:
        stop(srv)
