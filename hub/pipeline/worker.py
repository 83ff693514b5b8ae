"""``hub worker``: an rq worker on the hub queue.

The default is rq's non-forking ``SimpleWorker`` (about 4x cheaper per job than
forking; jobs are batches, so a crash costs a batch that is then retried).
At start the worker re-enqueues messages left ``received`` longer than
``requeue_after`` seconds (their job died with a worker), and its sweeper keeps doing so on a timer. Processing is
idempotent, so a message enqueued twice is still stored once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from hub.pipeline import jobs
from hub.pipeline.dispatch import RqDispatcher, child_factory
from hub.pipeline.sweeper import Sweeper
from hub.store import messages as message_store
from hub.store.engine import writer

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.worker")


def requeue_stale(runtime: Runtime, older_than_s: int) -> int:
    """At start: messages left ``received`` for ``older_than_s`` seconds go to the queue again."""
    with writer(runtime.engine).begin() as conn:
        ids = message_store.claim_stale(conn, dt.timedelta(seconds=older_than_s))
    if ids:
        RqDispatcher(runtime).submit(ids)
        log.info("re-enqueued %d messages left unprocessed", len(ids))
    return len(ids)


def run_worker(runtime: Runtime, *, burst: bool = False, fork: bool = False, requeue_after: int = 300) -> None:
    # rq and redis (0.1 s to import) only where the production queue is used, not in the embedded hub
    from redis import Redis
    from rq import Queue, SimpleWorker, Worker

    settings = runtime.settings
    redis = Redis.from_url(settings.redis_url or "")
    jobs.use_runtime_factory(child_factory(runtime))  # the jobs' runtimes, like this one (a fork inherits it)
    requeue_stale(runtime, requeue_after)
    Sweeper(runtime, older_than=requeue_after).start()  # and from then on, on a timer (hub.pipeline.sweeper)
    cls = Worker if fork else SimpleWorker
    w = cls([Queue(settings.queue, connection=redis)], connection=redis)
    w.work(burst=burst, with_scheduler=True, logging_level=settings.log_level or "WARNING")
