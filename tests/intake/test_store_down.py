"""The store going down answers a retryable 503 with Retry-After on every path, the fast path's key look-up
included (it once raised past the 503 handler: a bare 500)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from hub.app import create_app
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.security.keys import create_key
from hub.store import writer
from hub.store.practices import add_practice

from . import feedline as feedline_plugin
from .conftest import FEEDLINE, feedline

URL = "/api/v1/practices/alpha/messages"


def test_a_store_outage_at_the_key_look_up_is_a_503_with_retry_after(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_KEY_CACHE_SECONDS", "0")
    runtime = Runtime.create(database_url=url, dispatcher="inline", plugins=load_plugins(extra=[feedline_plugin]))
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
        key = create_key(conn, "feed", "alpha")
    client = create_app(runtime).test_client()
    auth = {"Authorization": f"Bearer {key}", "Content-Type": FEEDLINE}
    assert client.post(URL, data=feedline(("MRN1", "F", "G", "F")), headers=auth).status_code == 200  # warm

    def store_down(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("SELECT ...", {}, Exception("connection refused"))

    monkeypatch.setattr("hub.api.intake.key_for_token", store_down)
    answer = client.post(URL, data=feedline(("MRN2", "F", "G", "F")), headers=auth)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json["message"] == "the store is unavailable; retry later"
