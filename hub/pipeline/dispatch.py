"""Dispatchers: how stored messages get processed. One interface, three kinds.

- ``inline`` (embedded default): processed in the calling process, right after
  the durable save; the sender's answer can report the processing outcome.
- a pool (``hub ingest --jobs N``): batches go to N local worker processes while
  the caller goes on saving the next payloads; the outcome comes from ``drain``.
  On SQLite the writes still take turns (by the pool's lock: a writer waiting
  wakes when the one before it commits), but normalizing, the larger part of
  the work, runs on every core.
- ``rq`` (``HUB_REDIS_URL`` set): batches of message ids become rq jobs
  (``hub.pipeline.jobs.process_batch``) for ``hub worker`` processes, retried
  with backoff on store failures.

``resolve_dispatcher`` takes an alias or a dotted path to a class of one's own.
"""

from __future__ import annotations

import functools
import importlib
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Protocol

from hub.errors import ConfigError
from hub.pipeline.process import BatchResult, process_messages
from hub.store.engine import forget_engines_after_fork, store_fingerprint, writer
from hub.store.messages import mark_unqueued

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.dispatch")

RETRY_INTERVALS = (2, 10, 60)  # seconds between attempts after a store failure
JOB = "hub.pipeline.jobs.process_batch"  # what queued jobs name: it stays, so queued jobs still run
FAILURE_TTL = 7 * 24 * 3600  # how long rq keeps a failed job, for a look at why
ABANDONED = "its worker stopped renewing its lease (killed?); the hub dispatched its messages again"


# Inline processing takes what one intake transaction stored (a group of ``hub ingest`` files, a
# group commit) in transactions of up to this many messages, or HUB_BATCH_SIZE if larger: the size
# of a queue job spreads work over workers, which inline processing has none of, and each commit
# costs a disk sync (500 rather than 100 a transaction: HL7 ingest 15 % less CPU, measured). 2,000 rather
# than 500: a commit writes every page its transaction dirtied, and the inserts into the keys in no arrival
# order (lineage, dedup keys, record keys) land on most of an index's pages whatever the group's size, so a
# commit of 2,000 writes about a third of the pages four of 500 do (HL7 ingest about 8 % less CPU, measured).
INLINE_BATCH = 2000


class Dispatcher(Protocol):
    name: str

    def submit(self, message_ids: Sequence[int]) -> BatchResult | None:
        """Have the messages processed; return the outcome when it is known now."""

    def describe(self) -> dict[str, object]:
        """State for /healthz and metrics (queue depth, ...)."""


class InlineDispatcher:
    name = "inline"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def batch(self) -> int:
        """How many messages one processing transaction takes (``hub ingest``'s combined transactions too)."""
        return max(self.runtime.settings.batch_size, INLINE_BATCH)

    def submit(self, message_ids: Sequence[int]) -> BatchResult:
        result = BatchResult()
        size = self.batch
        for start in range(0, len(message_ids), size):
            result.merge(process_messages(self.runtime, message_ids[start:start + size]))
        return result

    def describe(self) -> dict[str, object]:
        return {"kind": "inline", "ok": True}


# How a process that works for another (a pool worker, an rq worker's job) builds its runtime:
# ``factory(database_url=URL)``, an inline runtime of the same class and settings as the one given.
# It is handed down by the composition root's runtime itself (picklable: a class's own method
# and its settings), so the pipeline needs no import of hub.runtime to build one.
RuntimeFactory = Callable[..., "Runtime"]


def child_factory(runtime: Runtime) -> RuntimeFactory:
    """What builds ``runtime``'s like in another process, processing inline."""
    return functools.partial(type(runtime).create, dispatcher="inline", settings=runtime.settings)


_CHILD: Runtime | None = None  # the runtime of a pool worker process


_CHILD_WRITE_LOCK: Any = None  # the pool's write lock, in a pool worker process (SQLite stores)


def _start_child(factory: RuntimeFactory, database_url: str, write_lock: Any = None) -> None:
    global _CHILD, _CHILD_WRITE_LOCK
    forget_engines_after_fork()
    _CHILD = factory(database_url=database_url)
    _CHILD_WRITE_LOCK = write_lock


def _process_in_child(message_ids: list[int]) -> BatchResult:
    assert _CHILD is not None
    return process_messages(_CHILD, message_ids, write_lock=_CHILD_WRITE_LOCK)


class PoolDispatcher:
    """Batches processed by ``jobs`` local worker processes, asynchronously; ``drain`` waits for them."""

    name = "pool"

    def __init__(self, runtime: Runtime, jobs: int) -> None:
        self.runtime = runtime
        self.jobs = max(1, jobs)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[tuple[list[int], Future[BatchResult]]] = deque()
        self._done = BatchResult()
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        # SQLite has one writer at a time: the pool's processes (and the caller's intake, see
        # ``receive_many``) take turns by this lock (``write_turn``); PostgreSQL writes side by side
        self.write_lock = self._context.Lock() if runtime.engine.dialect.name == "sqlite" else None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=self._context, initializer=_start_child,
                                             initargs=(child_factory(self.runtime), self.runtime.database_url,
                                                       self.write_lock))
        return self._pool

    def submit(self, message_ids: Sequence[int]) -> None:
        # what one intake transaction stored, shared evenly by the workers, in batches of at least
        # HUB_BATCH_SIZE. On SQLite each batch's commit is a disk sync taken in turn, under the pool's
        # write lock: there an intake transaction goes whole (up to INLINE_BATCH) to one worker, the
        # next to another, so the workers still normalize side by side with a commit less per group
        size = max(self.runtime.settings.batch_size, -(-len(message_ids) // self.jobs))
        if self.write_lock is not None:
            size = max(size, min(len(message_ids), INLINE_BATCH))
        for start in range(0, len(message_ids), size):
            batch = list(message_ids[start:start + size])
            self._pending.append((batch, self._executor().submit(_process_in_child, batch)))
            while len(self._pending) > 2 * self.jobs:  # keep the caller at most a few batches ahead
                self._collect_oldest()
        return None

    def _collect_oldest(self) -> None:
        batch, future = self._pending.popleft()
        try:
            self._done.merge(future.result())
        except BrokenProcessPool:  # a worker died: its messages stay received, for hub messages reprocess
            self._done.merge(BatchResult(errors=dict.fromkeys(
                batch, "worker process died; the message is stored as received: hub messages reprocess")))

    def drain(self) -> BatchResult:
        """Wait for every submitted batch; the outcome of all of them since the last drain."""
        while self._pending:
            self._collect_oldest()
        done, self._done = self._done, BatchResult()
        return done

    def close(self) -> None:
        self.drain()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def describe(self) -> dict[str, object]:
        return {"kind": "pool", "ok": True, "jobs": self.jobs, "pending_batches": len(self._pending)}


class RqDispatcher:
    name = "rq"

    def __init__(self, runtime: Runtime, redis_url: str | None = None) -> None:
        # rq and redis (0.1 s to import) only where the production queue is used, not in the embedded hub
        from redis import Redis
        from rq import Queue

        self.redis_url = redis_url or runtime.settings.redis_url or ""
        if not self.redis_url:
            raise ConfigError("the rq dispatcher needs HUB_REDIS_URL")
        # bounded waits: a Redis that hangs (not refusing, not answering) costs a hand-off a few seconds,
        # then the messages are the sweeper's, never a sender's wait
        self.redis = Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.queue = Queue(runtime.settings.queue, connection=self.redis)
        self.runtime = runtime
        self._first_seen: dict[str, float] = {}  # job ids seen taken off the queue but not started

    def submit(self, message_ids: Sequence[int]) -> None:
        from redis.exceptions import RedisError
        from rq import Retry  # as above: the production queue's import

        size = self.runtime.settings.batch_size
        store = store_fingerprint(self.runtime.database_url)  # never the URL: it may carry a password
        for start in range(0, len(message_ids), size):
            batch = list(message_ids[start:start + size])
            try:
                self.queue.enqueue(JOB, batch, store=store,
                                   retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
                                   job_timeout=600, result_ttl=600, failure_ttl=FAILURE_TTL)
            except RedisError as exc:
                # stored already (and acknowledged): the sweeper hands them off again once Redis is back
                rest = list(message_ids[start:])
                log.warning("queue unreachable (%s): %d message(s) left for the sweeper", type(exc).__name__,
                            len(rest))
                with writer(self.runtime.engine).begin() as conn:
                    mark_unqueued(conn, rest)
                return None
        return None

    def take_abandoned(self) -> list[int]:
        """The message ids of the jobs whose worker died, each job taken by one caller only and kept in
        rq's failed-job registry with the reason:

        - a running job whose lease in rq's started-job registry ran out (``hub.pipeline.worker``
          renews it while the job runs): its worker was killed;
        - a job a worker took off the queue (rq moves it to an intermediate list first) but never
          started, still there a lease later: its worker lost Redis or died in between. rq itself
          fails such a job only at its maintenance, every ten minutes, and does not run it again."""
        from rq.intermediate_queue import IntermediateQueue
        from rq.registry import StartedJobRegistry
        from rq.utils import as_text, parse_composite_key

        registry = StartedJobRegistry(queue=self.queue)
        taken: list[str] = []
        entries: list[bytes] = list(self.redis.zrangebyscore(registry.key, 0, time.time()))  # type: ignore[arg-type]
        for entry in entries:
            if self.redis.zrem(registry.key, entry):  # else another process's sweeper took it
                taken.append(parse_composite_key(as_text(entry))[0])

        # the intermediate list: a job id seen there now and a lease ago, and not started meanwhile
        stuck_key = IntermediateQueue.get_intermediate_queue_key(self.queue.key)
        now = time.monotonic()
        present = {as_text(j) for j in self.redis.lrange(stuck_key, 0, -1)}
        self._first_seen = {j: self._first_seen.get(j, now) for j in present}
        started = {j for j, _ in registry.get_job_and_execution_ids(cleanup=False)} if present else set()
        for job_id, seen in list(self._first_seen.items()):
            if now - seen >= self.runtime.settings.worker_lease and job_id not in started \
                    and self.redis.lrem(stuck_key, 1, job_id):
                taken.append(job_id)
                del self._first_seen[job_id]
        ids = self._fail(taken)
        if ids:
            log.warning("%d message(s) of jobs whose worker died are to be dispatched again", len(ids))
        return ids

    def _fail(self, job_ids: list[str]) -> list[int]:
        """Record the jobs as failed (abandoned); their message ids."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus
        from rq.registry import FailedJobRegistry

        ids: list[int] = []
        for job_id in job_ids:
            try:
                job = Job.fetch(job_id, connection=self.redis)
            except NoSuchJobError:
                continue
            if job.func_name == JOB and job.args:
                ids.extend(int(i) for i in job.args[0])
            job.meta["failure"] = ABANDONED
            job.save_meta()
            with self.redis.pipeline() as pipeline:
                job.set_status(JobStatus.FAILED, pipeline=pipeline)
                FailedJobRegistry(queue=self.queue).add(job, ttl=FAILURE_TTL, pipeline=pipeline, exc_string=ABANDONED)
                pipeline.execute()
        return ids

    def describe(self) -> dict[str, object]:
        try:
            self.redis.ping()
            return {"kind": "rq", "ok": True, "queued_jobs": self.queue.count}
        except Exception as exc:  # redis down: report it, do not raise from a health check
            return {"kind": "rq", "ok": False, "error": type(exc).__name__}


ALIASES = {"inline": InlineDispatcher, "rq": RqDispatcher}  # the pool is hub ingest --jobs's alone


def resolve_dispatcher(runtime: Runtime, spec: str | None = None) -> Dispatcher:
    settings = runtime.settings
    spec = spec or settings.dispatcher or ("rq" if settings.redis_url else "inline")
    cls = ALIASES.get(spec)
    if cls is None:
        module_name, _, attr = spec.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(f"HUB_DISPATCHER={spec!r} is neither inline, rq nor an importable class") from None
    dispatcher: Dispatcher = cls(runtime)
    return dispatcher
