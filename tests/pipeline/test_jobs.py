"""The rq job runs on a runtime built by the worker's factory (the pipeline builds none of its own)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.errors import ConfigError
from hub.pipeline import jobs
from hub.pipeline.dispatch import child_factory
from hub.store import messages as ms
from hub.store import writer
from hub.store.practices import add_practice
from tests.support.feeds import pipe_file


@pytest.fixture(autouse=True)
def _no_factory_left() -> Iterator[None]:
    yield
    jobs._factory = None
    jobs._runtime.cache_clear()


def test_a_job_runs_on_the_runtime_the_worker_gives(runtime: Any, example_connector: str, tmp_path: Path) -> None:
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
        saved = ms.save_messages(conn, [ms.NewMessage("derm", "example-pipe", pipe_file(tmp_path, 2).read_bytes())])
    built: list[str | None] = []

    def factory(*, database_url: str | None) -> Any:
        built.append(database_url)
        return runtime

    jobs.use_runtime_factory(factory)
    assert jobs.process_batch([saved[0].id], runtime.database_url) == {"processed": 1, "errors": 0}
    assert jobs.process_batch([saved[0].id], runtime.database_url) == {"processed": 0, "errors": 0}  # done
    assert built == [runtime.database_url]  # one runtime per store, kept for the process's next jobs


def test_a_job_without_a_worker_runtime_says_where_jobs_run() -> None:
    with pytest.raises(ConfigError, match="hub worker"):
        jobs.process_batch([1], "sqlite://")


def test_the_child_factory_builds_an_inline_runtime_like_its_parent(runtime: Any) -> None:
    factory = pickle.loads(pickle.dumps(child_factory(runtime)))  # it crosses to a spawned process as well
    child = factory(database_url=runtime.database_url)
    assert type(child) is type(runtime) and child is not runtime
    assert child.dispatcher.name == "inline" and child.settings == runtime.settings


def test_a_queued_job_names_its_store_without_its_url(runtime: Any, example_connector: str, tmp_path: Path,
                                                      redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret in queued jobs: the job carries a fingerprint of the store, never its URL (which may hold a
    password); the worker runs it in its own store and refuses one of another store."""
    from redis import Redis
    from rq import Queue

    from hub.pipeline.dispatch import RqDispatcher
    from hub.store.engine import store_fingerprint

    monkeypatch.setattr(runtime, "database_url", "postgresql://hub:s3cret-pw@db.example/hub")
    RqDispatcher(runtime, redis_url).submit([7, 8])
    queue = Queue(runtime.settings.queue, connection=Redis.from_url(redis_url))
    (job,) = queue.jobs
    try:
        assert "s3cret" not in repr(job.args) + repr(job.kwargs)
        assert job.args == ([7, 8],) and job.kwargs == {"store": store_fingerprint(runtime.database_url)}
    finally:
        queue.empty()

    jobs.use_runtime_factory(lambda *, database_url: runtime)
    with pytest.raises(ConfigError, match="another store"):
        jobs.process_batch([7], store="0" * 16)
