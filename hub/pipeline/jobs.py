"""rq job functions: thin, module-level, ids in, services do the work."""

from __future__ import annotations

import functools

from hub.pipeline.process import process_messages


@functools.cache
def _runtime(database_url: str | None):
    from hub.runtime import Runtime

    return Runtime.create(database_url=database_url, dispatcher="inline")


def process_batch(message_ids: list[int], database_url: str | None = None) -> dict[str, int]:
    from rq import get_current_job

    job = get_current_job()
    # rq counts down retries_left as it schedules each retry; 0 (or no retry policy) = last try
    final = job is None or not job.retries_left
    result = process_messages(_runtime(database_url), message_ids, final_attempt=final)
    return {"processed": len(result.processed), "errors": len(result.errors)}
