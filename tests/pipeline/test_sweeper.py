"""Messages left ``received`` (a crash between save and processing, a failed hand-off to the queue) are
dispatched again by the sweeper, with no operator command; each is still stored once."""

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from hub.pipeline.intake import Arrival, receive_many
from hub.pipeline.sweeper import Sweeper, sweep
from hub.runtime import Runtime
from hub.store import messages as ms
from hub.store import writer
from hub.store.practices import add_practice
from tests.pipeline.test_rq_worker import start_worker, statuses, wait_for, worker_env
from tests.support.feeds import pipe_files


def left_received(runtime: Runtime, tmp_path, count: int, *, age_s: float) -> list[int]:
    """Messages saved as a crashed process leaves them: stored, never processed, handed off ``age_s`` ago."""
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
        saved = ms.save_messages(conn, [ms.NewMessage("derm", "example-pipe", p.read_bytes(), origin=p.name)
                                        for p in pipe_files(tmp_path / "feed", count)])
        ids = [s.id for s in saved]
        conn.execute(sa.update(ms.messages).where(ms.messages.c.id.in_(ids))
                     .values(queued_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)))
    return ids


def test_a_sweep_processes_what_a_crash_left_and_only_once_per_period(runtime, tmp_path, example_connector):
    left_received(runtime, tmp_path, 3, age_s=120)
    assert sweep(runtime, 300) == 0  # not old enough yet: a slow queue is not a lost message
    assert statuses(runtime) == {"received": 3}
    assert sweep(runtime, 60) == 3
    assert statuses(runtime) == {"processed": 3}
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() == 3
    assert sweep(runtime, 60) == 0


def test_two_sweepers_never_take_the_same_message(runtime, tmp_path, example_connector):
    ids = left_received(runtime, tmp_path, 4, age_s=120)
    with writer(runtime.engine).begin() as conn:
        first = ms.claim_stale(conn, dt.timedelta(seconds=60))
    with writer(runtime.engine).begin() as conn:
        second = ms.claim_stale(conn, dt.timedelta(seconds=60))
    assert first == sorted(ids) and second == []


def test_the_sweeper_thread_runs_on_its_own(runtime, tmp_path, example_connector):
    left_received(runtime, tmp_path, 2, age_s=5)
    sweeper = Sweeper(runtime, interval=0.1, older_than=1).start()
    try:
        assert wait_for(lambda: statuses(runtime) == {"processed": 2}, timeout=10), statuses(runtime)
    finally:
        sweeper.stop()


@pytest.mark.redis
def test_a_failed_hand_off_to_the_queue_is_retried_once_redis_answers(
        database_url, redis_url, monkeypatch, tmp_path, example_connector):
    """Redis down at intake: the messages are stored and acknowledged, marked for the sweeper; once Redis
    answers, the next sweep enqueues them and a worker processes each once."""
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there: Redis is "down"
    down = Runtime.create(database_url=database_url)
    assert down.dispatcher.name == "rq"
    with writer(down.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
    files = pipe_files(tmp_path / "feed", 5)
    receipts = receive_many(down, "derm", [Arrival(p.read_bytes(), p.name) for p in files])
    assert [r[0].status for r in receipts] == ["accepted"] * 5  # stored: the promise holds without the queue
    with down.engine.connect() as conn:
        queued = conn.execute(sa.select(ms.messages.c.queued_at)).scalars().all()
    assert queued == [ms.UNQUEUED] * 5

    monkeypatch.setenv("HUB_REDIS_URL", redis_url)  # Redis is back
    up = Runtime.create(database_url=database_url)
    started = time.monotonic()
    assert sweep(up, 3600) == 5  # a failed hand-off does not wait for HUB_REQUEUE_AFTER
    assert time.monotonic() - started < 5
    worker = start_worker(worker_env(database_url, redis_url, HUB_PLUGINS=""), "--burst")
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out.decode()[-2000:]
    assert statuses(up) == {"processed": 5}
    with up.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() == 5
