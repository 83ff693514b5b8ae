"""Faults with real processes: ``hub serve``, ``hub mllp`` and ``hub worker`` killed with SIGKILL, PostgreSQL
crashed and started again, Redis stopped and started, the SQLite store full.

After each: every acknowledged message is stored once and processed, with no operator command (the
sweepers of the restarted processes take what a crash left ``received``), nothing was acknowledged
without being stored, and a message sent again after a lost answer is a duplicate, not a second row.
The shared PostgreSQL and Redis of the machine are never stopped: the tests that stop a service start
a private one (tests/support/services.py).
"""

from __future__ import annotations

import http.client
import os
import pickle
import signal
import socket
import subprocess
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.mllp.framing import frame, read_answer
from tests.conftest import ROOT
from tests.support.services import (
    PrivatePostgres,
    PrivateRedis,
    free_port,
    kill9,
    postgres_bin,
    session_members,
    spawn,
    terminate,
    wait_listening,
)
from tests.support.waiting import wait_for

HL7 = "x-application/hl7-v2+er7"
PRACTICE = "northderm"
FAST_SWEEP = {"HUB_SWEEP_INTERVAL": "0.5", "HUB_REQUEUE_AFTER": "1"}


def message(control_id: str) -> bytes:
    return (f"MSH|^~\\&|DERMPM|NORTHDERM|HUB|MSO|20250301080000-0500||SIU^S12^SIU_S12|{control_id}|P|2.5.1\r"
            f"SCH||{control_id}|||||NP||30|min|^^30^20250310090000-0500\r"
            f"PID|1||MRN-{control_id}^^^NORTHDERM^MR||Sampleton^Avery\r").encode()


def msa_code(answer: bytes) -> str:
    for segment in answer.strip(b"\x0b\x1c\r").split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode()
    return "none"


def need_binary(found: bool, what: str) -> None:
    if found:
        return
    if os.environ.get("HUB_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is not installed and HUB_REQUIRE_SERVICES=1")
    pytest.skip(f"{what} is not installed")


# -- senders -----------------------------------------------------------------------------------------


class HttpFeed:
    """HL7 v2 over HTTP: one request per message. ``send`` returns what the sender saw."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key

    def send(self, data: bytes) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", f"/api/v1/practices/{PRACTICE}/messages", body=data,
                         headers={"Authorization": f"Bearer {self.key}", "Content-Type": HL7})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):  # an answer cut short (IncompleteRead) is no answer either
            return "no answer"
        finally:
            conn.close()
        if response.status == 200:
            return msa_code(body)
        if response.status == 503:
            return "503 Retry-After" if response.getheader("Retry-After") else "503"
        return str(response.status)


class MllpFeed:
    """HL7 v2 over MLLP: one connection, kept while it works, one message after the other."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def send(self, data: bytes) -> str:
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            self.sock.sendall(frame(data))
            answer = read_answer(self.sock)
        except OSError:
            answer = b""
        if not answer:
            self.close()
            return "no answer"
        return msa_code(answer)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def healthz(port: int) -> int | None:
    """The status of ``/healthz``, or None when no worker answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class Sender(threading.Thread):
    """Sends ``count`` messages one after the other, as an HL7 sender does: each until it is acknowledged
    (AA), sent again after a pause when the answer is anything else or none, until ``deadline``."""

    def __init__(self, prefix: str, feed: HttpFeed | MllpFeed, count: int, deadline: float,
                 gate: tuple[int, threading.Event] | None = None) -> None:
        super().__init__(daemon=True)
        self.prefix, self.feed, self.count, self.deadline = prefix, feed, count, deadline
        self.gate = gate  # (n, event): after n messages acknowledged, wait for the event (the fault is in place)
        self.acked: list[str] = []
        self.seen: dict[str, int] = defaultdict(int)  # every answer that was not AA, by kind
        self.resent = 0

    def run(self) -> None:
        for n in range(self.count):
            if self.gate is not None and n == self.gate[0]:
                self.gate[1].wait(max(0.0, self.deadline - time.monotonic()))
            control_id = f"{self.prefix}{n:04d}"
            tries = 0
            while time.monotonic() < self.deadline:
                tries += 1
                answer = self.feed.send(message(control_id))
                if answer == "AA":
                    self.acked.append(control_id)
                    break
                self.seen[answer] += 1
                time.sleep(0.05)
            else:
                return
            self.resent += tries - 1
        if isinstance(self.feed, MllpFeed):
            self.feed.close()


def run_senders(senders: list[Sender]) -> None:
    for s in senders:
        s.start()


def acked(senders: list[Sender]) -> int:
    return sum(len(s.acked) for s in senders)


# -- the hub's processes -------------------------------------------------------------------------------


class Hub:
    """``hub serve`` and ``hub mllp`` on fixed ports (a restart takes the same ones), one store."""

    def __init__(self, tmp: Path, database_url: str, **env: str) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_SQLITE_SYNCHRONOUS": "NORMAL",
                    "HUB_RATE_LIMIT": "0", "HUB_KEY_CACHE_SECONDS": "60", "HUB_LOG_LEVEL": "WARNING",
                    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                    **FAST_SWEEP, **env}
        if "HUB_REDIS_URL" not in env:  # inline processing unless the test runs a queue
            self.env.pop("HUB_REDIS_URL", None)
        self.http_port, self.mllp_port = free_port(), free_port()
        self.serve: subprocess.Popen[bytes] | None = None
        self.mllp: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))

    def setup(self) -> str:
        """The practice and a feed key for it (in this process: a ``hub`` command costs seconds to start)."""
        from hub.runtime import Runtime
        from hub.security.keys import create_key
        from hub.store import writer
        from hub.store.practices import add_practice

        runtime = Runtime.create(database_url=self.env["HUB_DATABASE_URL"], dispatcher="inline")
        with writer(runtime.engine).begin() as conn:
            add_practice(conn, PRACTICE, "North Derm")
            return str(create_key(conn, "feed", PRACTICE))

    def start(self, serve: bool = True, mllp: bool = True) -> None:
        """Both servers at once (each takes seconds to import its way up), then waits for both."""
        if serve:
            self.serve = spawn(["serve", "--host", "127.0.0.1", "--port", str(self.http_port), "--workers", "1",
                                "--threads", "8"], self.env, self.tmp / "serve.log")
        if mllp:
            self.mllp = spawn(["mllp", "--practice", PRACTICE, "--port", str(self.mllp_port)], self.env,
                              self.tmp / "mllp.log")
        if serve:
            wait_listening(self.http_port, 60, self.serve)
            # the master listens before its worker has built the app: wait until a worker answers
            assert wait_for(lambda: healthz(self.http_port) is not None, 60), f"hub serve never answered\n{self.logs()}"
        if mllp:
            wait_listening(self.mllp_port, 60, self.mllp)

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        worker = spawn(["worker", *args], self.env, self.tmp / f"worker{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for process in [self.serve, self.mllp, *self.workers]:
            if process is not None:
                terminate(process)
        self.engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))

    def rows(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(sa.text("SELECT control_id, status FROM messages"))]

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for _, status in self.rows():
            counts[status] += 1
        return dict(counts)

    def settled(self, timeout: float) -> dict[str, int]:
        """Waits until no message is left ``received``; the counts by status."""
        wait_for(lambda: not self.statuses().get("received"), timeout)
        return self.statuses()


@pytest.fixture
def hub_processes() -> Iterator[list[Hub]]:
    made: list[Hub] = []
    yield made
    for h in made:
        h.close()


def check_once_and_processed(hub: Hub, senders: list[Sender], timeout: float = 30) -> dict[str, int]:
    """The promise after a fault: each acknowledged message stored once and processed, each message
    sent again after a lost answer a duplicate, nothing stored twice, nothing left behind."""
    counts = hub.settled(timeout)
    assert counts.get("received", 0) == 0, f"left received: {counts}\n{hub.logs()}"
    stored: dict[str, list[str]] = defaultdict(list)
    for control_id, status in hub.rows():
        stored[control_id].append(status)
    sent = {cid for s in senders for cid in s.acked}
    assert all(len(s.acked) == s.count for s in senders), \
        f"a sender could not deliver all its messages: {[(s.prefix, len(s.acked), dict(s.seen)) for s in senders]}"
    missing = sent - stored.keys()
    assert not missing, f"acknowledged but not stored: {sorted(missing)[:10]}"
    twice = {cid: st for cid, st in stored.items() if len([s for s in st if s != "duplicate"]) != 1}
    assert not twice, f"stored more than once (or only as a duplicate): {dict(list(twice.items())[:5])}"
    not_processed = {cid: st for cid, st in stored.items() if "processed" not in st}
    assert not not_processed, f"not processed: {dict(list(not_processed.items())[:5])}"
    assert set(stored) == sent, "a message nobody sent is stored"
    with hub.engine.connect() as conn:
        appointments = conn.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one()
    assert appointments == len(sent)  # one appointment per message: none lost, none doubled
    return counts


# -- 1. kill -9 of hub serve and hub mllp ----------------------------------------------------------------


def test_serve_and_mllp_killed_while_clients_stream(tmp_path: Path, hub_processes: list[Hub]) -> None:
    """Two HTTP and two MLLP senders stream; both servers are killed with SIGKILL, at whatever point of a
    save, a processing or an answer they are, and started again on their ports."""
    hub = Hub(tmp_path, f"sqlite:///{tmp_path / 'hub.db'}")
    hub_processes.append(hub)
    key = hub.setup()
    hub.start()
    deadline = time.monotonic() + 60
    senders = [Sender(f"H{i}-", HttpFeed(hub.http_port, key), 40, deadline) for i in range(2)]
    senders += [Sender(f"M{i}-", MllpFeed(hub.mllp_port), 40, deadline) for i in range(2)]
    run_senders(senders)
    assert wait_for(lambda: acked(senders) >= 60, 30), f"too slow: {acked(senders)}\n{hub.logs()}"
    assert hub.serve is not None and hub.mllp is not None
    kill9(hub.serve)
    kill9(hub.mllp)
    hub.start()
    for s in senders:
        s.join(timeout=max(1, deadline - time.monotonic()))
    seen = defaultdict(int)
    for s in senders:
        for kind, n in s.seen.items():
            seen[kind] += n
    assert seen.get("no answer"), f"the kills interrupted no sender: {dict(seen)}"
    assert set(seen) <= {"no answer", "503 Retry-After", "AE"}, dict(seen)
    check_once_and_processed(hub, senders)


# -- 2. PostgreSQL crashed and started again during intake ------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    need_binary(postgres_bin() is not None, "PostgreSQL (initdb, pg_ctl under /usr/lib/postgresql/*/bin)")
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.close()


def test_postgres_crash_and_restart_during_intake(tmp_path: Path, private_postgres: PrivatePostgres,
                                                  hub_processes: list[Hub]) -> None:
    """The database goes down (immediate stop) under HTTP and MLLP senders and comes back: meanwhile HTTP
    answers 503 with Retry-After and MLLP anything but AA; afterwards every message is stored once."""
    hub = Hub(tmp_path, private_postgres.database("hub"))
    hub_processes.append(hub)
    key = hub.setup()
    hub.start()
    deadline = time.monotonic() + 60
    # each sender stops after 15 messages until the database is down, so that every one of them meets the
    # fault whatever their speeds (a fast MLLP sender had finished before the crash)
    crashed = threading.Event()
    senders = [Sender(f"H{i}-", HttpFeed(hub.http_port, key), 50, deadline, (15, crashed)) for i in range(2)]
    senders += [Sender(f"M{i}-", MllpFeed(hub.mllp_port), 50, deadline, (15, crashed)) for i in range(2)]
    run_senders(senders)
    assert wait_for(lambda: all(len(s.acked) == 15 for s in senders), 20), \
        f"too slow: {[len(s.acked) for s in senders]}\n{hub.logs()}"
    private_postgres.crash()
    at_crash = acked(senders)
    crashed.set()
    time.sleep(2.0)
    during = acked(senders) - at_crash
    private_postgres.start()
    for s in senders:
        s.join(timeout=max(1, deadline - time.monotonic()))
    http_seen: dict[str, int] = defaultdict(int)
    mllp_seen: dict[str, int] = defaultdict(int)
    for s in senders:
        for kind, n in s.seen.items():
            (http_seen if isinstance(s.feed, HttpFeed) else mllp_seen)[kind] += n
    assert during <= 4, f"{during} messages acknowledged while the database was down"  # those in flight only
    assert http_seen.get("503 Retry-After"), f"HTTP saw no 503 with Retry-After: {dict(http_seen)}\n{hub.logs()}"
    # never a 500; an AE is a message stored as the database went, whose processing failed: sent again, it
    # is a duplicate (checked below)
    assert set(http_seen) <= {"503 Retry-After", "no answer", "AE"}, dict(http_seen)
    assert mllp_seen.get("AE"), f"MLLP saw no AE: {dict(mllp_seen)}"
    check_once_and_processed(hub, senders)
    assert hub.serve is not None and hub.serve.poll() is None and hub.mllp is not None and hub.mllp.poll() is None


def test_a_web_worker_started_while_the_database_is_down_waits_for_it(tmp_path: Path,
                                                                     private_postgres: PrivatePostgres,
                                                                     hub_processes: list[Hub]) -> None:
    """gunicorn shuts the whole server down when a worker fails to boot: a worker restarted during a database
    outage (its predecessor killed) must wait for the store instead, and answer once it is back."""
    hub = Hub(tmp_path, private_postgres.database("hub"))
    hub_processes.append(hub)
    hub.setup()
    hub.start(mllp=False)
    assert hub.serve is not None
    workers = subprocess.run(["pgrep", "-P", str(hub.serve.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 1, workers
    private_postgres.crash()
    os.kill(int(workers[0]), signal.SIGKILL)  # gunicorn starts another, which meets the database down
    assert wait_for(lambda: "cannot open the store yet" in hub.logs(), 30), hub.logs()
    assert hub.serve.poll() is None, f"hub serve shut down while the database was down\n{hub.logs()}"
    private_postgres.start()
    assert wait_for(lambda: healthz(hub.http_port) == 200, 30), hub.logs()
    assert hub.serve.poll() is None


# -- 3. Redis stopped and started during HTTP intake with two workers --------------------------------------


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    import shutil

    need_binary(shutil.which("redis-server") is not None, "redis-server")
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.postgres
def test_redis_stopped_and_started_during_http_intake_with_two_workers(
        tmp_path: Path, pg_url: str, private_redis: PrivateRedis, hub_processes: list[Hub]) -> None:
    """Intake goes on storing and answering while Redis is away; when it is back the backlog drains by
    itself (the sweepers enqueue what failed to enqueue, within seconds, not after HUB_REQUEUE_AFTER),
    and both workers are still there."""
    hub = Hub(tmp_path, pg_url, HUB_REDIS_URL=private_redis.url, HUB_QUEUE="faults", HUB_BATCH_SIZE="20",
              HUB_SWEEP_INTERVAL="0.5", HUB_REQUEUE_AFTER="3600", HUB_DISPATCH_DELAY_MS="50",
              HUB_WORKER_LEASE="3")  # a job a worker took as Redis went: dispatched again after 3 s
    hub_processes.append(hub)
    key = hub.setup()
    workers = [hub.start_worker(), hub.start_worker()]
    hub.start(mllp=False)
    deadline = time.monotonic() + 60
    senders = [Sender(f"H{i}-", HttpFeed(hub.http_port, key), 100, deadline) for i in range(3)]
    run_senders(senders)
    assert wait_for(lambda: acked(senders) >= 60, 20), f"too slow: {acked(senders)}\n{hub.logs()}"
    private_redis.stop()
    at_stop = acked(senders)
    time.sleep(3.0)
    assert acked(senders) - at_stop >= 30, "intake stopped answering while Redis was down"
    with hub.engine.connect() as conn:
        waiting = conn.execute(sa.text("SELECT count(*) FROM messages WHERE status = 'received'")).scalar_one()
    assert waiting > 0, "nothing waited for the queue while Redis was down: the test tested nothing"
    private_redis.start()
    for s in senders:
        s.join(timeout=max(1, deadline - time.monotonic()))
    assert not any(s.seen for s in senders), [dict(s.seen) for s in senders]  # every message AA at once
    check_once_and_processed(hub, senders, timeout=30)
    assert [w.poll() for w in workers] == [None, None], hub.logs()
    from redis import Redis
    from rq import Worker

    # both work for the queue again (an rq worker that lost Redis mid-way may still be listed until its
    # registration expires: the processes are what counts)
    pids = lambda: {w.pid for w in Worker.all(connection=Redis.from_url(private_redis.url))}  # noqa: E731
    assert wait_for(lambda: pids() == {w.pid for w in workers}, 10), (pids(), hub.logs())


# -- 4. a worker killed with SIGKILL mid-batch -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_killed_mid_batch_is_recovered_within_its_lease(
        tmp_path: Path, pg_url: str, redis_url: str, hub_processes: list[Hub], example_connector: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Of two workers, one is killed with SIGKILL in the middle of a batch (the process alone, not its
    session, as the OOM killer does). The other runs that batch again once the job's lease ran out
    (seconds, not rq's fifteen minutes), and the killed worker leaves no process behind (rq's scheduler
    child was one)."""
    from hub.pipeline.intake import Arrival, receive_many
    from hub.runtime import Runtime
    from hub.store import writer
    from hub.store.practices import add_practice
    from tests.support.feeds import pipe_files

    hub = Hub(tmp_path, pg_url, HUB_REDIS_URL=redis_url, HUB_QUEUE=os.environ["HUB_QUEUE"], HUB_BATCH_SIZE="10",
              HUB_PLUGINS="tests.support.slow_plugin", HUB_TEST_SLOW_SECONDS="0.05", HUB_WORKER_LEASE="2",
              HUB_SWEEP_INTERVAL="0.5", HUB_REQUEUE_AFTER="3600")
    hub_processes.append(hub)
    monkeypatch.setenv("HUB_BATCH_SIZE", "10")
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    runtime = Runtime.create(database_url=pg_url, dispatcher="rq")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
    files = pipe_files(tmp_path / "feed", 60)
    receipts = receive_many(runtime, "derm", [Arrival(p.read_bytes(), p.name) for p in files])
    assert all(r[0].status == "accepted" for r in receipts)

    doomed = hub.start_worker()
    survivor = hub.start_worker()
    busy = lambda: hub.statuses().get("processed", 0) >= 10  # noqa: E731 - a first batch is done
    assert wait_for(busy, 60), hub.logs()
    time.sleep(0.4)  # inside its next batch (10 messages x 2 records x 50 ms)
    members = session_members(doomed.pid)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    killed_at = time.monotonic()
    left = hub.statuses().get("received", 0)
    assert left > 0, "the kill came too late to test anything"
    assert wait_for(lambda: hub.statuses() == {"processed": 60}, 40), f"{hub.statuses()}\n{hub.logs()}"
    assert survivor.poll() is None
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < 30, f"recovered after {recovered_in:.0f} s"
    with hub.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM appointments")).scalar_one() == 60
        assert conn.execute(sa.text("SELECT count(*) FROM lineage")).scalar_one() == 120
    assert wait_for(lambda: not session_members(doomed.pid), 5), \
        f"the killed worker left processes behind: {session_members(doomed.pid)} (of {members})"
    from redis import Redis
    from rq import Queue
    from rq.registry import FailedJobRegistry

    redis = Redis.from_url(redis_url)
    failed = FailedJobRegistry(queue=Queue(os.environ["HUB_QUEUE"], connection=redis))
    reasons = [failed.job_class.fetch(job_id, connection=redis).meta.get("failure", "")
               for job_id in failed.get_job_ids()]
    assert len(reasons) == 1 and "renewing its lease" in reasons[0], reasons  # found dead, not timed out


# -- 5. the SQLite store full ------------------------------------------------------------------------------


def test_a_full_sqlite_store_refuses_with_the_reason_and_takes_again_once_space_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store cannot grow (``PRAGMA max_page_count`` at its size): HTTP answers 503 naming a full
    database, MLLP an AE naming it; nothing of the refused payloads is stored, not even in part. With
    room again both take the same payloads."""
    from hub.app import create_app
    from hub.mllp.server import Frame, MllpServer
    from hub.runtime import Runtime
    from hub.security.keys import create_key
    from hub.store import writer
    from hub.store.practices import add_practice

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_KEY_CACHE_SECONDS", "60")
    runtime = Runtime.create(database_url=url, dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, PRACTICE, "North Derm")
        key = create_key(conn, "feed", PRACTICE)
    limit: list[int | None] = [None]

    @sa.event.listens_for(runtime.engine, "begin")
    def _cap(conn: sa.Connection) -> None:  # the disk: as large as the store is now, or unbounded
        conn.exec_driver_sql(f"PRAGMA max_page_count = {limit[0] or 1073741823}")

    client = create_app(runtime).test_client()
    auth = {"Authorization": f"Bearer {key}", "Content-Type": HL7}
    url_path = f"/api/v1/practices/{PRACTICE}/messages"
    assert client.post(url_path, data=message("WARM"), headers=auth).status_code == 200
    mllp = MllpServer(runtime, runtime.plugins.connectors.get("hl7v2"), practice=PRACTICE, port=0)

    def stored() -> int:
        with runtime.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM messages")).scalar_one())

    before = stored()
    with runtime.engine.connect() as conn:
        limit[0] = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
    # a payload of many messages needs new pages: it cannot fit
    big = b"\r".join(message(f"FULL{i:03d}") + b"NTE|1||" + b"x" * 2000 + b"\r" for i in range(40))
    answer = client.post(url_path, data=big, headers=auth)
    assert answer.status_code == 503 and answer.headers.get("Retry-After"), answer.data[:300]
    assert b"the database is full" in answer.data, answer.data[:300]
    ack = mllp.handle(Frame(big))
    assert ack is not None and msa_code(ack) == "AE" and b"the database is full" in ack, ack[:300]
    assert stored() == before  # nothing half-stored

    limit[0] = None  # space again
    answer = client.post(url_path, data=big, headers=auth)
    assert answer.status_code == 200, answer.data[:300]
    assert msa_code(answer.data) == "AA"
    assert stored() == before + 40
    again = mllp.handle(Frame(big))
    assert again is not None and msa_code(again) == "AA"
    assert stored() == before + 80  # the MLLP copies are kept as duplicates of the HTTP ones
    with runtime.engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM messages GROUP BY status")).all())
    assert statuses == {"processed": 41, "duplicate": 40}


# -- the queue's jobs carry no database URL ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_a_queued_job_carries_no_database_password(pg_url: str, redis_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from redis import Redis

    from hub.pipeline.dispatch import RqDispatcher
    from hub.runtime import Runtime

    secret = "s3cret-Pa55word"
    with_password = pg_url.replace("postgres@", f"postgres:{secret}@")  # the test server trusts any password
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    monkeypatch.setenv("HUB_DATABASE_URL", with_password)
    runtime = Runtime.create(database_url=with_password, dispatcher="inline")
    dispatcher = RqDispatcher(runtime)
    dispatcher.submit([101, 102, 103])
    redis = Redis.from_url(redis_url)
    (job_id,) = dispatcher.queue.get_job_ids()
    fields = redis.hgetall(f"rq:job:{job_id}")
    raw = b"".join(fields.values())
    data = zlib.decompress(fields[b"data"])
    args: Any = pickle.loads(data)
    assert secret.encode() not in raw and secret.encode() not in data
    assert b"127.0.0.1" not in data and b"postgres" not in data  # no part of the URL at all
    assert list(args[2]) == [[101, 102, 103]] and set(args[3]) == {"store"}
    dispatcher.queue.empty()
