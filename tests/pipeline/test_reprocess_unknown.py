"""A payload no installed connector recognised is kept as ``unknown``; reprocessed, it keeps its reason, or is
read by a connector installed since."""

import pytest

from hub.pipeline.intake import receive
from hub.pipeline.replay import reprocess
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.store import messages as ms
from hub.store import writer
from hub.store.practices import add_practice
from tests.pipeline.test_tally import LOCATION, payload, plugin


def test_an_unrecognised_payload_keeps_its_reason_and_is_read_once_its_connector_is_installed(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    without = Runtime.create(database_url=database_url, dispatcher="inline")
    with writer(without.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
    (receipt,) = receive(without, "derm", payload([LOCATION]), origin="later.json")
    assert receipt.status == "error" and "no installed connector recognises" in (receipt.outcome.error or "")

    assert reprocess(without, practice="derm", status="error")["error"] == 1
    with without.engine.connect() as conn:
        (row,) = ms.list_messages(conn, practice="derm")
    assert row["connector"] == "unknown" and "no installed connector recognises" in row["error"]

    with_it = Runtime.create(database_url=database_url, dispatcher="inline", plugins=load_plugins(extra=[plugin]))
    result = reprocess(with_it, practice="derm", status="error")
    assert result["processed"] == 1 and result["error"] == 0
    with with_it.engine.connect() as conn:
        (row,) = ms.list_messages(conn, practice="derm")
    assert row["status"] == "processed" and row["record_count"] == 1
