"""The rq dispatcher with real `hub worker` processes on Redis."""

import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from hub.pipeline.intake import Arrival, receive_many
from hub.runtime import Runtime
from hub.store import messages as ms
from hub.store import writer
from hub.store.practices import add_practice
from tests.conftest import ROOT
from tests.support.feeds import pipe_files
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis


def worker_env(database_url, redis_url, **extra):
    env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_REDIS_URL": redis_url,
           # the session's install of the example connector, if any, stays on the path
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "HUB_PLUGINS": "tests.support.slow_plugin", **extra}
    return env


def start_worker(env, *args):
    # a session of its own: a kill reaches rq's scheduler process too, as a crash of the machine would
    return subprocess.Popen([sys.executable, "-m", "hub", "worker", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def setup_store(database_url, redis_url, monkeypatch, tmp_path, count):
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url)
    assert runtime.dispatcher.name == "rq"
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
    files = pipe_files(tmp_path / "feed", count)
    receipts = receive_many(runtime, "derm", [Arrival(p.read_bytes(), p.name) for p in files])
    assert all(r[0].status == "accepted" for r in receipts)  # stored and acknowledged before processing
    return runtime


def statuses(runtime):
    with runtime.engine.connect() as conn:
        return ms.counts_by_status(conn, "derm")


def test_worker_processes_queued_batches(database_url, redis_url, monkeypatch, tmp_path, example_connector):
    runtime = setup_store(database_url, redis_url, monkeypatch, tmp_path, 30)
    assert statuses(runtime) == {"received": 30}
    worker = start_worker(worker_env(database_url, redis_url), "--burst")
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out.decode()[-2000:]
    assert statuses(runtime) == {"processed": 30}
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() == 30


def test_worker_killed_mid_batch_then_restarted_processes_each_message_once(
        pg_url, redis_url, monkeypatch, tmp_path, example_connector):
    """SIGKILL while a batch is half done: the batch's transaction never commits, the restarted
    worker re-enqueues what was left, and every message lands exactly once."""
    monkeypatch.setenv("HUB_BATCH_SIZE", "10")
    runtime = setup_store(pg_url, redis_url, monkeypatch, tmp_path, 40)
    slow = worker_env(pg_url, redis_url, HUB_TEST_SLOW_SECONDS="0.05", HUB_BATCH_SIZE="10")
    worker = start_worker(slow)
    if not wait_for(lambda: statuses(runtime).get("processed", 0) >= 10, timeout=60):
        os.killpg(worker.pid, signal.SIGKILL)
        pytest.fail(f"the worker processed too little: {statuses(runtime)}")
    time.sleep(0.3)  # well inside the next batch (10 messages × 2 records × 50 ms)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    worker.stdout.close()
    before = statuses(runtime)
    assert before.get("received", 0) > 0, f"the kill came too late to test anything: {before}"

    restarted = start_worker(worker_env(pg_url, redis_url, HUB_BATCH_SIZE="10"), "--burst", "--requeue-after", "0")
    out, _ = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, out.decode()[-2000:]
    assert statuses(runtime) == {"processed": 40}
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() == 40
        assert conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one() == 40
        assert conn.execute(sa.text("SELECT count(*) FROM lineage")).scalar_one() == 80
        assert conn.execute(sa.text("SELECT count(*) FROM messages")).scalar_one() == 40


def test_a_message_that_keeps_failing_ends_in_error_with_its_reason(
        database_url, redis_url, monkeypatch, tmp_path, example_connector):
    runtime = setup_store(database_url, redis_url, monkeypatch, tmp_path, 3)
    env = worker_env(database_url, redis_url, HUB_TEST_FAIL_SOURCE_ID="A00001")
    worker = start_worker(env, "--burst")
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, out.decode()[-2000:]
    assert statuses(runtime) == {"processed": 2, "error": 1}
    with runtime.engine.connect() as conn:
        (row,) = ms.list_messages(conn, status="error")
    assert "plugin refused" in row["error"] or "could not" in row["error"]


def test_a_store_failure_is_retried_with_backoff_until_it_clears(
        pg_url, redis_url, monkeypatch, tmp_path, example_connector):
    """The store refuses the batch (its table is gone); rq retries after a delay; once the table is
    back the retry lands it. The message was never lost: it stayed `received` with the reason."""
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    runtime = Runtime.create(database_url=pg_url)
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
        conn.execute(sa.text("ALTER TABLE appointments RENAME TO appointments_away"))
    (path,) = pipe_files(tmp_path / "feed", 1)
    receive_many(runtime, "derm", [Arrival(path.read_bytes(), path.name)])
    worker = start_worker(worker_env(pg_url, redis_url))
    try:
        def attempted():
            with runtime.engine.connect() as conn:
                (row,) = ms.list_messages(conn, practice="derm")
            return row["attempts"] >= 1 and row["status"] == "received" and "store failure" in (row["error"] or "")

        assert wait_for(attempted, timeout=30)
        with runtime.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE appointments_away RENAME TO appointments"))
        assert wait_for(lambda: statuses(runtime) == {"processed": 1}, timeout=60), statuses(runtime)
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
