"""The group committer: concurrent requests share commits, each still gets its own receipts."""

from __future__ import annotations

import threading
import time
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


def _payload(name: str) -> Pending:
    return Pending("alpha", FEEDLINE, Arrival(feedline((name, "F", "G", "F")), "test"))


def test_a_lone_payload_commits_at_once_in_its_senders_thread(feed_runtime: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing else pending: no window to wait out (it is a whole second here), no hand-off to the thread."""
    threads: list[int] = []
    real = committer_module.receive_many

    def recording(*args: Any, **kw: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kw)

    monkeypatch.setattr(committer_module, "receive_many", recording)
    group = GroupCommitter(feed_runtime, window_s=1.0)
    for i in range(3):
        started = time.monotonic()
        receipts = group.submit(_payload(f"LONE{i}"), timeout_s=30)
        assert time.monotonic() - started < 0.5 and receipts[0].status == "accepted"
    assert threads == [threading.get_ident()] * 3
    item = _payload("QUEUED")  # handed to the thread (the MLLP listener's path with frames in hand): no wait
    started = time.monotonic()
    assert group.enqueue(item).result(timeout=30)[0].status == "accepted"
    assert time.monotonic() - started < 0.5


def test_what_arrives_while_a_commit_runs_commits_together(feed_runtime: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    first_commit_entered, release = threading.Event(), threading.Event()
    real = committer_module.receive_many

    def slow_first(runtime: Any, practice: str, arrivals: Any, **kw: Any) -> Any:
        sizes.append(len(arrivals))
        if len(sizes) == 1:
            first_commit_entered.set()
            release.wait(10)
        return real(runtime, practice, arrivals, **kw)

    monkeypatch.setattr(committer_module, "receive_many", slow_first)
    group = GroupCommitter(feed_runtime, window_s=0.05)
    lone = threading.Thread(target=group.submit, args=(_payload("FIRST"), 30))
    lone.start()
    assert first_commit_entered.wait(10)
    assert not group.commit_if_idle(_payload("NOT-NOW"))  # a commit runs: nothing done, it is to be queued
    futures = [group.enqueue(_payload(f"MEANWHILE{i}")) for i in range(5)]
    release.set()
    lone.join(10)
    assert all(f.result(timeout=30)[0].status == "accepted" for f in futures)
    # the lone one at once; of the five that came meanwhile, the thread may have taken the first before the
    # others were queued (it then waits for the running commit with it), the rest go together
    assert sizes[0] == 1 and sum(sizes) == 6 and len(sizes) <= 3
