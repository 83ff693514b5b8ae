"""Dispatchers: how stored messages get processed. One interface, two kinds.

- ``inline`` (embedded default): processed in the calling process, right after
  the durable save; the sender's answer can report the processing outcome.
- ``rq`` (``HUB_REDIS_URL`` set): batches of message ids become rq jobs
  (``hub.pipeline.jobs.process_batch``) for ``hub worker`` processes, retried
  with backoff on store failures.

``resolve_dispatcher`` takes an alias or a dotted path to a class of one's own.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from hub.errors import ConfigError
from hub.pipeline.process import BatchResult, process_messages

if TYPE_CHECKING:
    from hub.runtime import Runtime

RETRY_INTERVALS = (2, 10, 60)  # seconds between attempts after a store failure


def queue_name() -> str:
    return os.environ.get("HUB_QUEUE", "hub")  # deployments sharing one Redis may set their own


def batch_size() -> int:
    return max(1, int(os.environ.get("HUB_BATCH_SIZE", "100")))


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

    def submit(self, message_ids: Sequence[int]) -> BatchResult:
        result = BatchResult()
        size = batch_size()
        for start in range(0, len(message_ids), size):
            result.merge(process_messages(self.runtime, message_ids[start:start + size]))
        return result

    def describe(self) -> dict[str, object]:
        return {"kind": "inline", "ok": True}


class RqDispatcher:
    name = "rq"

    def __init__(self, runtime: Runtime, redis_url: str | None = None) -> None:
        from redis import Redis
        from rq import Queue

        self.redis_url = redis_url or os.environ.get("HUB_REDIS_URL") or ""
        if not self.redis_url:
            raise ConfigError("the rq dispatcher needs HUB_REDIS_URL")
        self.redis = Redis.from_url(self.redis_url)
        self.queue = Queue(queue_name(), connection=self.redis)
        self.runtime = runtime

    def submit(self, message_ids: Sequence[int]) -> None:
        from rq import Retry

        size = batch_size()
        url = self.runtime.database_url
        for start in range(0, len(message_ids), size):
            self.queue.enqueue("hub.pipeline.jobs.process_batch", list(message_ids[start:start + size]), url,
                               retry=Retry(max=len(RETRY_INTERVALS), interval=list(RETRY_INTERVALS)),
                               job_timeout=600, result_ttl=600, failure_ttl=7 * 24 * 3600)
        return None

    def describe(self) -> dict[str, object]:
        try:
            self.redis.ping()
            return {"kind": "rq", "ok": True, "queued_jobs": self.queue.count}
        except Exception as exc:  # redis down: report it, do not raise from a health check
            return {"kind": "rq", "ok": False, "error": type(exc).__name__}


ALIASES = {"inline": InlineDispatcher, "rq": RqDispatcher}


def resolve_dispatcher(runtime: Runtime, spec: str | None = None) -> Dispatcher:
    spec = spec or os.environ.get("HUB_DISPATCHER") or ("rq" if os.environ.get("HUB_REDIS_URL") else "inline")
    cls = ALIASES.get(spec)
    if cls is None:
        module_name, _, attr = spec.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(f"HUB_DISPATCHER={spec!r} is neither inline, rq nor an importable class") from None
    dispatcher: Dispatcher = cls(runtime)
    return dispatcher
