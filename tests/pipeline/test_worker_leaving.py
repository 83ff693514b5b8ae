"""A worker leaves at once: the thread listening for rq's commands ends when it unsubscribes, whatever
state that thread is in (real Redis)."""

import time
import uuid

import pytest

from hub.pipeline.worker import leased
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def worker(redis_url):
    from redis import Redis
    from rq import Queue, SimpleWorker

    connection = Redis.from_url(redis_url)
    queue = Queue(f"hub-test-{uuid.uuid4().hex[:8]}", connection=connection)
    made = leased(SimpleWorker, 30)([queue], connection=connection)
    made.subscribe()
    yield made
    connection.close()


def test_unsubscribing_ends_the_listening_thread_at_once(worker):
    thread = worker.pubsub_thread
    assert wait_for(lambda: worker.pubsub.subscribed, timeout=5)
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 5
    assert wait_for(lambda: not thread.is_alive(), timeout=5)  # ended by the reply, not left behind


def test_unsubscribing_does_not_wait_for_a_thread_parked_until_a_subscription(worker):
    """The thread got the UNSUBSCRIBE's reply before it was told to stop: it then waits for a subscription
    for rq's sleep time (60 s). Leaving must not wait for it (it took a minute, now and then)."""
    worker.pubsub.unsubscribe()  # its reply reaches the thread first
    assert wait_for(lambda: not worker.pubsub.subscribed, timeout=5)
    time.sleep(0.2)  # the thread back in its loop, waiting for a subscription
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 5
