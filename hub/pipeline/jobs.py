"""rq job functions: thin, module-level, ids in, services do the work.

A job runs in a ``hub worker`` process: before it takes jobs, the worker hands this module the
way to build a job's runtime (``use_runtime_factory``, from the worker's own runtime), so the
pipeline builds no runtime of its own. The job's dotted path (``hub.pipeline.jobs.process_batch``)
is what queued jobs name: it stays, so jobs queued by an earlier version still run.
"""

from __future__ import annotations

import functools
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from rq import get_current_job

from hub.errors import ConfigError, HubError, StoreError
from hub.pipeline.process import process_messages
from hub.store.engine import store_fingerprint

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


def job_runtime() -> Runtime:
    """The runtime of the worker running the current job (its own ``HUB_DATABASE_URL``): for jobs of other
    packages (``hub.reports.schedule``)."""
    return _runtime(None)


class JobFailed(Exception):
    """A job's unexpected failure, told by type and place only (what rq logs and keeps in Redis)."""


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{type(exc).__name__}{place} (its message is not kept: it may quote patient data)"


def process_batch(message_ids: list[int], database_url: str | None = None, *,
                  store: str | None = None) -> dict[str, int]:
    """``store``: the fingerprint of the store the ids belong to; the worker processes them in its own
    store (``HUB_DATABASE_URL``) and refuses a job of another. ``database_url``: jobs queued by earlier
    versions, which carried the URL itself."""
    job = get_current_job()
    # rq counts down retries_left as it schedules each retry; 0 (or no retry policy) = last try
    final = job is None or not job.retries_left
    runtime = _runtime(database_url)
    if store is not None and store != store_fingerprint(runtime.database_url):
        raise ConfigError("this job's messages belong to another store than this worker's HUB_DATABASE_URL "
                          "(give each deployment its own HUB_QUEUE)")
    try:
        result = process_messages(runtime, message_ids, final_attempt=final)
    except StoreError as exc:
        # raised again without its cause: rq logs and keeps the traceback of a failed job, and the driver's
        # error it chains (a DETAIL line) may quote the values of the batch
        raise StoreError(str(exc)) from None
    except HubError:  # the hub's own messages name no patient data
        raise
    except Exception as exc:
        # an unexpected failure: its message may quote a value (a ValueError's repr of what it could not
        # read), so what rq keeps is the exception's type and where it was raised, which is enough to find it
        raise JobFailed(_where(exc)) from None
    return {"processed": len(result.processed), "errors": len(result.errors)}
