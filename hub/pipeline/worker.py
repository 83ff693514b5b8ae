"""``hub worker``: an rq worker on the hub queue.

The default is rq's non-forking ``SimpleWorker`` (about 4x cheaper per job than
forking; jobs are batches, so a crash costs a batch that is then retried).
At start the worker re-enqueues messages left ``received`` longer than
``requeue_after`` seconds (their job died with a worker), and its sweeper keeps doing so on a timer. Processing is
idempotent, so a message enqueued twice is still stored once.

Faults it rides out, each without an operator:

- **Redis goes away.** rq's loop quits on some connection errors (one raised while
  it finishes a job, say); ``run_worker`` then starts a new rq worker once Redis
  answers again, waiting 1 s, 2 s, ... up to 30 s between tries. Only a stop
  request (SIGTERM, SIGINT) or the end of a ``--burst`` run ends the process.
- **The worker is killed** (SIGKILL, the machine's OOM killer). A job holds a
  lease in rq's started-job registry of ``HUB_WORKER_LEASE`` seconds (30), renewed
  by a heartbeat thread every third of it, whatever the job is doing; a job whose
  lease ran out belongs to a dead worker, and the next sweep of any hub process
  dispatches its messages that are still ``received`` again (``hub.pipeline.sweeper``):
  a killed batch runs again within about ``HUB_WORKER_LEASE + HUB_SWEEP_INTERVAL``
  seconds, not after rq's job timeout and maintenance interval (~15 minutes).
- **No orphan.** rq's scheduler (it moves retries that wait for their backoff
  onto the queue) runs as a thread of the worker, not in a child process that a
  SIGKILL of the worker would leave running on its own.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from hub.errors import HubError
from hub.logging import install_redaction
from hub.pipeline import jobs
from hub.pipeline.dispatch import RqDispatcher, child_factory
from hub.pipeline.sweeper import Sweeper, Ticker
from hub.store import messages as message_store
from hub.store.engine import writer

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.worker")

RECONNECT_WAIT_MAX = 30.0  # seconds between two tries to start again while Redis stays away
SCHEDULE_INTERVAL = 1  # seconds between two looks for retries whose backoff is over


def requeue_stale(runtime: Runtime, older_than_s: int) -> int:
    """At start: messages left ``received`` for ``older_than_s`` seconds go to the queue again."""
    with writer(runtime.engine).begin() as conn:
        ids = message_store.claim_stale(conn, dt.timedelta(seconds=older_than_s))
    if ids:
        RqDispatcher(runtime).submit(ids)
        log.info("re-enqueued %d messages left unprocessed", len(ids))
    return len(ids)


def leased(base: type, lease: int) -> type:
    """rq's worker class ``base`` whose running job claims its place in the started-job registry for
    ``lease`` seconds at a time (rq's own default: the job timeout plus a minute), renewed by ``Heartbeat``."""

    class LeasedWorker(base):
        stop_requested = False
        running: tuple[Any, Any] | None = None  # (job, execution) while a job runs

        def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
            return lease

        def prepare_execution(self, job: Any) -> Any:
            execution = super().prepare_execution(job)
            self.running = (job, execution)
            return execution

        def cleanup_execution(self, job: Any, pipeline: Any, execution: Any = None) -> None:
            self.running = None
            super().cleanup_execution(job, pipeline, execution)

        def request_stop(self, signum: Any = None, frame: Any = None) -> None:
            self.stop_requested = True
            super().request_stop(signum, frame)

        def unsubscribe(self) -> None:
            # rq's own, in another order and with a bounded wait. rq sent UNSUBSCRIBE, then stopped the thread
            # listening for its commands, and redis-py 8's stop() waits for that thread: when the reply had
            # come in first, the thread was waiting for a subscription again, for rq's sleep_time (60 s), and
            # a worker leaving (--burst, SIGTERM) took a minute. Here the thread's loop is told to end first,
            # so the reply ends it; a thread that does not end within a second (a daemon) is left behind.
            thread = self.pubsub_thread
            if thread is None:
                return
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            try:
                thread.stop(timeout=0)  # redis-py 8: lower the flag, wait for nothing
            except TypeError:  # earlier redis-py: stop() takes no wait, and lowers the flag only
                thread.stop()
            self.pubsub.unsubscribe()
            thread.join(timeout=1)
            self.pubsub.close()

    LeasedWorker.__name__ = f"Leased{base.__name__}"
    return LeasedWorker


class Heartbeat(Ticker):
    """Renews the lease of the job the worker runs, from a thread of its own (rq's ``SimpleWorker``
    sends none while a job runs, and the forking worker only every 30 s)."""

    name = "hub-worker-heartbeat"
    log = log

    def __init__(self, lease: int) -> None:
        super().__init__(max(lease / 3, 0.5))
        self.lease = lease
        self.worker: Any = None

    def tick(self) -> None:
        worker = self.worker
        running = worker.running if worker is not None else None
        if running is None:
            return
        job, execution = running
        with worker.connection.pipeline() as pipeline:
            execution.heartbeat(job.started_job_registry, self.lease, pipeline=pipeline)
            pipeline.expire(worker.key, self.lease + 60)  # never creates it (rq's heartbeat would)
            pipeline.execute()


class Scheduling(Ticker):
    """rq's scheduler, in a thread: moves the retries whose backoff is over onto the queue.

    One worker at a time does it, the one holding rq's scheduler lock of the queue. The lock is taken
    here for ``SCHEDULE_LOCK`` seconds and renewed at every tick, so when its holder dies another worker
    takes over within seconds (rq's own scheduler holds it for a minute past its last renewal)."""

    name = "hub-worker-scheduler"
    log = log

    def __init__(self, queues: list[Any], connection: Any) -> None:
        from rq.scheduler import RQScheduler

        super().__init__(SCHEDULE_INTERVAL)
        self.connection = connection
        self.scheduler = RQScheduler(queues, connection=connection, interval=SCHEDULE_INTERVAL,
                                     logging_level=logging.WARNING)
        self.names = [q.name for q in queues]
        self.held: list[str] = []

    def tick(self) -> None:
        held = [name for name in self.names if self._lock(scheduler_lock_key(self.scheduler, name))]
        if held != self.held:
            self.scheduler.prepare_registries(held)
            self.held = held
        if held:
            self.scheduler.enqueue_scheduled_jobs()

    def _lock(self, key: str) -> bool:
        """Take the lock if free, renew it if ours (one round trip, atomic)."""
        return bool(self.connection.eval(_LOCK_SCRIPT, 1, key, self.scheduler.name, SCHEDULE_LOCK))

    def stop(self) -> None:
        super().stop()
        for name in self.held:
            try:
                self.connection.eval(_UNLOCK_SCRIPT, 1, scheduler_lock_key(self.scheduler, name), self.scheduler.name)
            except Exception as exc:  # Redis away: the lock expires by itself
                log.debug("could not release the scheduler lock (%s)", type(exc).__name__)


SCHEDULE_LOCK = 5  # seconds the scheduler lock outlives its holder's last renewal
_LOCK_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_UNLOCK_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def scheduler_lock_key(scheduler: Any, queue_name: str) -> str:
    """rq's scheduler lock of a queue (its own scheduler takes the same, so the two never run at once)."""
    return str(scheduler.get_locking_key(queue_name))


def run_worker(runtime: Runtime, *, burst: bool = False, fork: bool = False, requeue_after: int = 300) -> None:
    # rq and redis (0.1 s to import) only where the production queue is used, not in the embedded hub
    from redis import Redis
    from redis.exceptions import RedisError
    from rq import Queue, SimpleWorker, Worker

    install_redaction()  # rq logs a failed job's traceback and exception text: redacted (hub.logging)
    settings = runtime.settings
    # a connect that hangs (a host that drops packets) counts as down after a few seconds; reads are rq's
    # blocking pops, bounded by rq itself
    redis = Redis.from_url(settings.redis_url or "", socket_connect_timeout=5, health_check_interval=30)
    jobs.use_runtime_factory(child_factory(runtime))  # the jobs' runtimes, like this one (a fork inherits it)
    requeue_stale(runtime, requeue_after)
    sweeper = Sweeper(runtime, older_than=requeue_after).start()  # and on a timer (hub.pipeline.sweeper)
    lease = max(1, round(settings.worker_lease))
    cls = leased(Worker if fork else SimpleWorker, lease)
    queues = [Queue(settings.queue, connection=redis)]
    heartbeat = Heartbeat(lease).start()
    scheduling = Scheduling(queues, redis)
    if not burst:
        scheduling.start()
    stopping = threading.Event()
    wait = 0.5
    try:
        while not stopping.is_set():
            worker = None
            try:
                # log_job_description: rq would log each job's call with its arguments
                worker = cls(queues, connection=redis, job_monitoring_interval=max(1, lease // 3),
                             log_job_description=False)
                heartbeat.worker = worker
                if burst:  # what waits for its backoff goes on the queue first, as rq's burst run does
                    scheduling.tick()
                worked = worker.work(burst=burst, logging_level=settings.log_level or "WARNING")
                heartbeat.worker = None  # a job it left behind is not renewed: the sweepers take it
            except RedisError as exc:
                heartbeat.worker = None  # at birth or at death: rq does not catch these
                if burst:
                    raise HubError(f"the queue (HUB_REDIS_URL) is unreachable: {type(exc).__name__}") from None
                log.warning("the queue is unreachable (%s)", type(exc).__name__)
                worked = False
            if burst or (worker is not None and worker.stop_requested):
                break
            # rq's loop ended on an error of its own (Redis went away): start a new worker once it answers;
            # meanwhile a stop request ends the wait (rq's handlers belong to the worker that ended)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stopping.set())
            wait = 1.0 if worked else min(wait * 2, RECONNECT_WAIT_MAX)
            log.warning("the rq worker stopped on an error; starting again in %.0f s", wait)
            stopping.wait(wait)
    finally:
        heartbeat.stop()
        scheduling.stop()
        sweeper.stop()
