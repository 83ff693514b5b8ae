"""The sweeper: messages left ``received`` are dispatched again by every long-running process.

A message is committed before it is acknowledged, then handed to the dispatcher. If the process
dies between the two (a kill, a crash), or the hand-off fails (Redis down), or the job that took it
dies with its worker, the message stays ``received``. Each long-running process (``hub serve``'s
workers, ``hub mllp``, ``hub worker``) runs a sweeper thread that, every ``HUB_SWEEP_INTERVAL``
seconds, takes such messages and hands them to its dispatcher again, with no operator command:

- a message whose hand-off failed (``UNQUEUED``) at the next sweep;
- any other left ``received`` for longer than ``HUB_REQUEUE_AFTER`` seconds, unless the queue still
  holds jobs (a backlog is being worked through: its messages are not lost, only waiting).

A claim stamps the messages handed off now, so two sweepers never take the same message and a
message is taken again only after another ``HUB_REQUEUE_AFTER``. Processing is idempotent: a
message dispatched twice is still stored once.

With the rq queue a sweep also takes the jobs whose worker died (their lease in rq's started-job
registry ran out, see ``hub.pipeline.worker``): each is taken by one sweeper only, and those of its
messages still ``received`` are dispatched again at once, whether or not the queue holds a backlog.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING, Self

from hub.store import messages as message_store
from hub.store.engine import writer

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.sweeper")


def sweep(runtime: Runtime, older_than_s: float) -> int:
    """One sweep: the number of messages handed to the dispatcher again."""
    return _abandoned(runtime) + _stale(runtime, older_than_s)


def _abandoned(runtime: Runtime) -> int:
    """The messages, still ``received``, of the jobs whose worker died."""
    take = getattr(runtime.dispatcher, "take_abandoned", None)
    if take is None:
        return 0
    try:
        orphaned = take()
    except Exception as exc:  # the queue is away: nothing to take now, the stale sweep still runs
        log.debug("could not look for abandoned jobs (%s)", type(exc).__name__)
        return 0
    if not orphaned:
        return 0
    with writer(runtime.engine).begin() as conn:
        ids = message_store.claim(conn, orphaned)
    if ids:
        log.warning("dispatching again %d message(s) of a job whose worker died", len(ids))
        runtime.dispatcher.submit(ids)
    return len(ids)


def _stale(runtime: Runtime, older_than_s: float) -> int:
    waiting = runtime.dispatcher.describe().get("queued_jobs")
    backlog = isinstance(waiting, int) and waiting > 0
    older_than = None if backlog else dt.timedelta(seconds=older_than_s)
    with writer(runtime.engine).begin() as conn:
        ids = message_store.claim_stale(conn, older_than)
    if ids:
        log.info("dispatching again %d message(s) left received", len(ids))
        runtime.dispatcher.submit(ids)
    return len(ids)


class Ticker:
    """A daemon thread that calls ``tick`` every ``interval`` seconds until ``stop`` (0: never starts);
    a tick that fails is logged by the exception's type only and tried again at the next."""

    name = "hub-ticker"
    log = log

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> Self:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # the store or the queue is down: the next tick tries again
                # said once per outage, not at every tick
                (self.log.debug if failing else self.log.warning)(
                    "%s failed (%s); retrying every %ss", self.name, type(exc).__name__, self.interval)
                failing = True
            else:
                if failing:
                    self.log.warning("%s works again", self.name)
                failing = False


class Sweeper(Ticker):
    """Sweeps every ``interval`` seconds (``HUB_SWEEP_INTERVAL``)."""

    name = "hub-sweeper"

    def __init__(self, runtime: Runtime, *, interval: float | None = None, older_than: float | None = None) -> None:
        super().__init__(interval if interval is not None else runtime.settings.sweep_interval)
        self.runtime = runtime
        self.older_than = older_than if older_than is not None else runtime.settings.requeue_after

    def tick(self) -> None:
        sweep(self.runtime, self.older_than)
