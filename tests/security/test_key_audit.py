"""Issuing and revoking a key are audited (an emergency admin key included): who, which key, what role."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.cli import _build_cli
from hub.runtime import Runtime


def test_key_create_and_revoke_leave_audit_rows(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("USER", "ops-ravi")
    monkeypatch.setenv("LOGNAME", "ops-ravi")
    done = CliRunner().invoke(_build_cli(), ["key", "create", "--role", "admin", "--label", "emergency",
                                             "--expires-in-days", "1"])
    assert done.exit_code == 0, done.output
    secret = done.stdout.strip().splitlines()[-1]
    key_id = secret.split("_")[1]
    assert CliRunner().invoke(_build_cli(), ["key", "revoke", key_id]).exit_code == 0
    assert CliRunner().invoke(_build_cli(), ["key", "revoke", "000000000000"]).exit_code != 0  # no such key
    runtime = Runtime.create(database_url=url, dispatcher="inline")
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key_id, action, target, address, outcome FROM audit_log "
                                    "WHERE action LIKE 'keys.%' ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [
        (None, "keys.create", key_id, "cli:ops-ravi", "role=admin expires in 1 d"),
        (None, "keys.revoke", key_id, "cli:ops-ravi", "revoked")]
    assert all(secret.split("_")[2] not in str(r) for r in rows)  # never the secret
