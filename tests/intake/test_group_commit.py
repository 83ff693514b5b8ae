"""The group committer: concurrent requests share commits, each still gets its own receipts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hub.pipeline import group_commit as committer_module
from hub.pipeline.group_commit import GroupCommitter, Pending, fate_summary
from hub.pipeline.intake import Arrival
from hub.security.audit import AuditEntry, list_entries
from hub.store.engine import writer
from hub.store.practices import add_practice

from .conftest import FEEDLINE, ROOT, feedline


@pytest.fixture
def feed_runtime(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(ROOT))  # the test connector is tests.intake.feedline
    monkeypatch.setenv("HUB_PLUGINS", "tests.intake.feedline")
    from hub.runtime import Runtime

    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'g.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
    return runtime


def test_concurrent_requests_share_commits(feed_runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = committer_module.receive_many

    def counting(runtime: Any, practice: str, arrivals: Any, **kw: Any) -> Any:
        sizes.append(len(arrivals))
        return real(runtime, practice, arrivals, **kw)

    monkeypatch.setattr(committer_module, "receive_many", counting)
    group = GroupCommitter(feed_runtime, window_s=0.02)
    receipts: dict[int, Any] = {}

    def send(i: int) -> None:
        entry = AuditEntry("k1", "intake", "alpha", "alpha", "127.0.0.1")
        item = Pending("alpha", FEEDLINE, Arrival(feedline((f"M{i}", "F", "G", "F")), "test"), entry)
        receipts[i] = group.submit(item, timeout_s=30)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(receipts) == list(range(40))
    ids = {r[0].outcome.message_id for r in receipts.values()}
    assert len(ids) == 40 and all(r[0].status == "accepted" for r in receipts.values())
    assert sum(sizes) == 40 and len(sizes) < 40  # fewer commits than requests
    with feed_runtime.engine.connect() as conn:
        audit = list_entries(conn, limit=100)
    assert len(audit) == 40 and {a["outcome"] for a in audit} == {"stored=1"}


def test_unknown_practice_fails_only_its_requests(feed_runtime: Any) -> None:
    from hub.errors import NotFound

    group = GroupCommitter(feed_runtime)
    entry = AuditEntry("k1", "intake", "nosuch", "nosuch", None)
    with pytest.raises(NotFound):
        group.submit(Pending("nosuch", FEEDLINE, Arrival(feedline(("M1", "F", "G", "F"))), entry), timeout_s=30)
    ok = group.submit(Pending("alpha", FEEDLINE, Arrival(feedline(("M2", "F", "G", "F"))), entry), timeout_s=30)
    assert ok[0].status == "accepted"


def test_fate_summary_names_counts_not_content() -> None:
    assert fate_summary(["refused", "refused"]) == "rejected"
    assert fate_summary(["stored", "duplicate", "stored"]) == "duplicate=1 stored=2"
