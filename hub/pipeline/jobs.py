"""rq job functions: thin, module-level, ids in, services do the work.

A job runs in a ``hub worker`` process: before it takes jobs, the worker hands this module the
way to build a job's runtime (``use_runtime_factory``, from the worker's own runtime), so the
pipeline builds no runtime of its own. The job's dotted path (``hub.pipeline.jobs.process_batch``)
is what queued jobs name: it stays, so jobs queued by an earlier version still run.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from rq import get_current_job

from hub.errors import ConfigError
from hub.pipeline.process import process_messages

if TYPE_CHECKING:
    from hub.pipeline.dispatch import RuntimeFactory
    from hub.runtime import Runtime

_factory: RuntimeFactory | None = None


def use_runtime_factory(factory: RuntimeFactory) -> None:
    """The worker process's way to build the runtime of a job's store (``factory(database_url=...)``)."""
    global _factory
    _factory = factory
    _runtime.cache_clear()


@functools.cache
def _runtime(database_url: str | None) -> Runtime:
    if _factory is None:
        raise ConfigError("hub jobs run in hub worker processes: this process was given no runtime to run them")
    return _factory(database_url=database_url)


def process_batch(message_ids: list[int], database_url: str | None = None) -> dict[str, int]:
    job = get_current_job()
    # rq counts down retries_left as it schedules each retry; 0 (or no retry policy) = last try
    final = job is None or not job.retries_left
    result = process_messages(_runtime(database_url), message_ids, final_attempt=final)
    return {"processed": len(result.processed), "errors": len(result.errors)}
