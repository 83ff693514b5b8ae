"""Durable intake on PostgreSQL with rq: a real server, real ``hub worker`` processes on Redis.

Payloads are acknowledged once stored; workers process them in batches; a message
that keeps failing is ``error`` with its reason; after a mapping fix the engineer
replays it. Messages about one patient keep their order whatever worker runs them.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.model.tables import RECORD_TABLES

from .conftest import FEEDLINE, HUB, Server, feedline, hub, start_server, stop

URL = "/api/v1/practices/alpha/messages"
patient = RECORD_TABLES["patient"]
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def wait_until_settled(engine: sa.Engine, timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            counts = dict(conn.execute(sa.text("SELECT status, count(*) FROM messages GROUP BY status")).all())
        if not counts.get("received") or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_queue_workers_errors_reprocess_and_order(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    env = {"HUB_DATABASE_URL": pg_url, "HUB_REDIS_URL": redis_url, "HUB_BATCH_SIZE": "3", "HUB_RATE_LIMIT": "0"}
    srv: Server = start_server(tmp_path, env, practices=("alpha",), workers=2)
    logs = [(tmp_path / f"worker{i}.log").open("wb") for i in range(2)]
    workers = [subprocess.Popen([HUB, "worker"], env=srv.env, stdout=subprocess.DEVNULL, stderr=log) for log in logs]
    engine = sa.create_engine(pg_url)
    try:
        feed = srv.key("feed", "alpha")
        admin = srv.key("admin")
        good = [(f"MRN{i}", f"Family{i}", f"Given{i}", "FMU"[i % 3]) for i in range(30)]
        bad = [(f"MRNX{i}", f"Family{i}", f"Given{i}", "X") for i in range(5)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda p: srv.call("POST", URL, feed, feedline(p), FEEDLINE), good + bad))
        # acknowledged as stored; processing happens in the workers, after the answer
        assert all(a[0] == 200 and a[1].startswith(b"ACK|AA|") for a in answers)

        # one patient, updated again and again, one request after the other: the last word wins
        for n in range(12):
            assert srv.call("POST", URL, feed, feedline(("MRN-ORDER", f"Family{n}", "Same", "F")), FEEDLINE)[0] == 200

        counts = wait_until_settled(engine)
        assert counts == {"processed": 30 + 12, "error": 5}, counts
        with engine.connect() as conn:
            reasons = conn.execute(sa.text("SELECT DISTINCT error FROM messages WHERE status='error'")).scalars().all()
            family = conn.execute(sa.select(patient.c.family_name).where(patient.c.source_id == "MRN-ORDER")).scalar()
            patients = conn.execute(sa.select(sa.func.count()).select_from(patient)).scalar()
        assert len(reasons) == 1 and "unmapped sex code" in reasons[0] and "Family" not in reasons[0]
        assert family == "Family11"
        assert patients == 31

        listing = hub("messages", "list", "--status", "error", "--format", "json", env=srv.env)
        assert listing.returncode == 0 and len(json.loads(listing.stdout)) == 5

        # fix the mapping, replay one message by id, then every error
        mapping = tmp_path / "alpha.yaml"
        mapping.write_text("version: 1\npractice: alpha\nconnectors:\n  test-feedline:\n    sex_codes: {X: other}\n")
        assert hub("practice", "mapping", "alpha", str(mapping), env=srv.env).returncode == 0
        first = json.loads(listing.stdout)[0]["id"]
        status, body, _ = srv.call("POST", f"/api/v1/messages/{first}/reprocess", admin)
        assert status == 200 and json.loads(body)["queued"] is True
        assert srv.call("POST", "/api/v1/messages/999999/reprocess", admin)[0] == 404
        status, body, _ = srv.call("POST", "/api/v1/messages/reprocess?status=error", admin)
        assert status == 200
        counts = wait_until_settled(engine)
        assert counts == {"processed": 47}, counts

        status, metrics, _ = srv.call("GET", "/metrics")
        assert b"hub_queue_depth_jobs" in metrics and b"hub_queue_up 1" in metrics
        status, health, _ = srv.call("GET", "/healthz")
        assert status == 200 and json.loads(health)["queue"]["kind"] == "rq"
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:  # reaped after the kill too: a live child left behind fails the run
                w.kill()
                w.wait(timeout=15)
        for log in logs:
            log.close()
        stop(srv)
        engine.dispose()
