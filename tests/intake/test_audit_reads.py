"""Reads of patient-level data leave an audit row: the scorecard endpoint (it reads every stored message of
the practice) and ``hub messages list`` from the command line."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.app import create_app
from hub.cli import _build_cli
from hub.runtime import Runtime
from hub.security.keys import create_key
from hub.store import writer
from hub.store.practices import add_practice


def _audit_rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT key_id, action, target, practice, address, outcome FROM audit_log "
                                    "ORDER BY id")).all()


def test_a_scorecard_read_is_audited(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_KEY_CACHE_SECONDS", "0")
    runtime = Runtime.create(database_url=url, dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
        admin = create_key(conn, "admin")
    client = create_app(runtime).test_client()
    headers = {"Authorization": f"Bearer {admin}"}
    assert client.get("/api/v1/practices/alpha/scorecard", headers=headers).status_code == 200
    assert client.get("/api/v1/practices/nowhere/scorecard", headers=headers).status_code == 404
    reads = [r for r in _audit_rows(runtime.engine) if r.action == "scorecard.read"]
    key_id = admin.split("_")[1]
    assert [(r.key_id, r.target, r.outcome) for r in reads] == [(key_id, "alpha", "200"), (key_id, "nowhere", "404")]


def test_a_cli_read_of_the_message_store_is_audited(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("USER", "ops-anna")
    monkeypatch.setenv("LOGNAME", "ops-anna")
    done = CliRunner().invoke(_build_cli(), ["messages", "list", "--status", "error", "--practice", "alpha"])
    assert done.exit_code == 0, done.output
    runtime = Runtime.create(database_url=url, dispatcher="inline")
    (row,) = [r for r in _audit_rows(runtime.engine) if r.action == "messages.list"]
    assert (row.key_id, row.target, row.practice, row.address, row.outcome) == (
        None, "error", "alpha", "cli:ops-anna", "0 listed")
