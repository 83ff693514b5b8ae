"""The MLLP listener's frames from many connections share commits; no ACK before its commit returned.

The listener runs in this process (its asyncio loop on the main thread, so that its signal
handlers install) on a loopback port; the clients are threads speaking real sockets.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from hub.mllp.framing import frame, read_answer
from hub.pipeline import group_commit

from .test_hl7v2_mllp import free_port, message, msa

CONNECTIONS = 16
PER_CONNECTION = 15


@pytest.fixture
def store(database_url: str) -> Any:
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    runtime = Runtime.create(database_url=database_url, dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")
    return runtime


async def serve_while(server: Any, port: int, clients: list[threading.Thread]) -> None:
    """Serve on ``port`` until it listens, start ``clients`` and keep serving until they all end."""
    serving = asyncio.create_task(server.serve())
    for _ in range(100):  # until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    for t in clients:
        t.start()
    while any(t.is_alive() for t in clients):  # the loop keeps serving meanwhile
        await asyncio.sleep(0.02)
    server._stopping.set()
    await serving


def test_concurrent_connections_share_commits_and_each_ack_follows_its_commit(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub_hl7v2 import HL7v2Connector

    from hub.mllp.server import MllpServer

    sizes: list[int] = []
    real = group_commit.receive_many

    def counting(runtime: Any, practice: str, arrivals: Any, **kw: Any) -> Any:
        result = real(runtime, practice, arrivals, **kw)
        sizes.append(len(arrivals))  # the transaction has committed by now
        return result

    monkeypatch.setattr(group_commit, "receive_many", counting)
    port = free_port()
    server = MllpServer(store, HL7v2Connector(), practice="northderm", host="127.0.0.1", port=port)
    # a connection of its own to the store, as a second process would see it: only committed rows
    observer = sa.create_engine(store.database_url)
    answers: dict[str, str] = {}
    unseen: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CONNECTIONS, timeout=30)

    def client(c: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            start.wait()
            for i in range(PER_CONNECTION):
                control_id = f"GC{c:02d}-{i:03d}"
                sock.sendall(frame(message(control_id)))
                answer = read_answer(sock)
                with observer.connect() as conn:
                    stored = conn.execute(sa.text("SELECT count(*) FROM messages WHERE control_id = :c"),
                                          {"c": control_id}).scalar()
                with lock:
                    answers[control_id] = msa(answer)
                    if not stored:
                        unseen.append(control_id)

    try:
        asyncio.run(serve_while(server, port, [threading.Thread(target=client, args=(c,))
                                               for c in range(CONNECTIONS)]))
    finally:
        observer.dispose()
    total = CONNECTIONS * PER_CONNECTION
    assert len(answers) == total and set(answers.values()) == {"AA"}
    assert unseen == []  # every acknowledged message was already committed when its ACK arrived
    assert sum(sizes) == total
    assert len(sizes) < total  # frames of different connections went into the same transactions
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT control_id FROM messages ORDER BY id")).scalars().all()
    assert sorted(rows) == sorted(answers)
