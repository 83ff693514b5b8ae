"""MLLP intake, one connection and sixteen, beside a plain receiver at the same durability.

    .venv/bin/python benchmarks/mllp_intake.py [--messages 2000] [--stores sqlite,postgresql]

For each store (SQLite in WAL mode with ``synchronous=FULL``; PostgreSQL with
``synchronous_commit`` on) it runs, on loopback and in turns:

- ``hub mllp --practice alpha`` on a fresh store of its own (settings from the
  environment: without ``HUB_REDIS_URL`` messages are processed in the listener);
- the plain receiver: python-hl7's asyncio MLLP server (``hl7.mllp``) that inserts
  each message into one table, commits, and then answers ``message.create_ack()``
  (about twenty lines, ``receiver`` below).

Clients send one framed SIU^S12 message at a time per connection and wait for the
answer before sending the next. Printed: messages per second, p50 / p99 answer
latency, the store's median commit latency (a one-row INSERT + COMMIT, the floor
under one connection), the machine's load average. Hub and receiver take turns,
``--rounds`` each, and the ratio is that of their median rounds: on a shared
machine the load changes from one second to the next. After each of the hub's
turns the benchmark waits, untimed, until the hub has processed what it stored
and refreshed its report rollups (``settle``), so that neither server's turn
runs beside the other's leftover work (printed: the longest such wait).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_intake import PG_ADMIN, _mllp_process, free_port, pct, wait_port

HUB = str(Path(sys.executable).with_name("hub"))
TARGETS = {1: 1.0, 16: 1.5}  # hub ÷ receiver, messages per second


# ------------------------------------------------------------------ the plain receiver
def receiver(store: str, port: int) -> None:
    """python-hl7's asyncio MLLP server; each message inserted and committed, then acknowledged."""
    import hl7
    import hl7.mllp

    if store.startswith("sqlite:"):
        db: Any = sqlite3.connect(store.removeprefix("sqlite:"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, control_id TEXT, raw TEXT)")

        def save(control_id: str, raw: str) -> None:
            db.execute("BEGIN")
            db.execute("INSERT INTO messages (control_id, raw) VALUES (?, ?)", (control_id, raw))
            db.execute("COMMIT")
    else:
        import psycopg

        db = psycopg.connect(store.replace("postgresql+psycopg://", "postgresql://"))
        db.execute("CREATE TABLE IF NOT EXISTS messages (id serial PRIMARY KEY, control_id text, raw text)")
        db.commit()

        def save(control_id: str, raw: str) -> None:
            db.execute("INSERT INTO messages (control_id, raw) VALUES (%s, %s)", (control_id, raw))
            db.commit()

    async def client(reader: Any, writer: Any) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                save(str(message.segment("MSH")(10)), str(message))
                writer.writemessage(message.create_ack())
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    async def main() -> None:
        async with await hl7.mllp.start_hl7_server(client, "127.0.0.1", port):
            await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------------ clients (http_intake's MLLP senders)
def send(port: int, first: int, n: int, connections: int, processes: int = 2) -> tuple[float, list[float], int]:
    """Messages/s, latencies and AA answers for ``n`` messages over ``connections`` connections."""
    per = n // connections
    chunks = [range(first + c * per, first + (c + 1) * per) for c in range(connections)]
    groups = [g for g in (chunks[p::processes] for p in range(min(processes, connections))) if g]
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_mllp_process, args=(port, g, 0, out)) for g in groups]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    latencies: list[float] = []
    acked = 0
    for _ in procs:
        part, ok, _cpu = out.get()
        latencies.extend(part)
        acked += ok
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return len(latencies) / elapsed, latencies, acked


# ------------------------------------------------------------------ stores
def commit_latency(store: str, n: int = 200) -> float:
    """Median seconds of a one-row INSERT + COMMIT on this store."""
    times = []
    if store.startswith("sqlite:"):
        db = sqlite3.connect(store.removeprefix("sqlite:"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE probe (x int)")
        for i in range(n):
            t0 = time.perf_counter()
            db.execute("BEGIN")
            db.execute("INSERT INTO probe VALUES (?)", (i,))
            db.execute("COMMIT")
            times.append(time.perf_counter() - t0)
        db.close()
    else:
        import psycopg

        with psycopg.connect(store.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("CREATE TABLE probe (x int)")
            conn.commit()
            for i in range(n):
                t0 = time.perf_counter()
                conn.execute("INSERT INTO probe VALUES (%s)", (i,))
                conn.commit()
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Stores:
    """Fresh stores of one kind (SQLite files in a folder, PostgreSQL databases), removed at the end."""

    def __init__(self, kind: str, folder: str) -> None:
        self.kind, self.folder, self.databases = kind, folder, []  # type: ignore[var-annotated]

    def new(self) -> str:
        name = f"mllpbench_{uuid.uuid4().hex[:8]}"
        if self.kind == "sqlite":
            return f"sqlite:{self.folder}/{name}.db"
        import psycopg

        with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"

    def close(self) -> None:
        import psycopg

        for name in self.databases:
            with psycopg.connect(PG_ADMIN.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settle(store: str, timeout: float = 60.0) -> float:
    """Seconds until the hub's store holds no message still ``received`` and no report cell waiting."""
    query = ("SELECT (SELECT count(*) FROM messages WHERE status = 'received')"
             " + (SELECT count(*) FROM report_dirty) + (SELECT count(*) FROM report_refreshing)")
    t0 = time.perf_counter()
    if store.startswith("sqlite:"):
        db: Any = sqlite3.connect(store.removeprefix("sqlite:"), isolation_level=None)
    else:
        import psycopg

        db = psycopg.connect(store.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    try:
        while db.execute(query).fetchone()[0] and time.perf_counter() - t0 < timeout:
            time.sleep(0.05)
    finally:
        db.close()
    return time.perf_counter() - t0


def hub_url(store: str) -> str:
    return "sqlite:///" + store.removeprefix("sqlite:") if store.startswith("sqlite:") else store


# ------------------------------------------------------------------ main
def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    wait_port(port, process)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def bench_store(kind: str, stores: Stores, n: int, rounds: int, env: dict[str, str]) -> list[bool]:
    floor = commit_latency(stores.new())
    print(f"{kind}: commit latency (one-row INSERT + COMMIT, median) {floor * 1e3:.2f} ms "
          f"→ at most ~{1 / floor:.0f} commits/s one after the other")
    hub_store, base_store = stores.new(), stores.new()
    henv = {**env, "HUB_DATABASE_URL": hub_url(hub_store)}
    done = subprocess.run([HUB, "practice", "add", "alpha", "--name", "Alpha"], env=henv, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"hub practice add failed: {done.stderr.strip()}")
    hport, bport = free_port(), free_port()
    hub = start([HUB, "mllp", "--practice", "alpha", "--host", "127.0.0.1", "--port", str(hport)], hport, henv)
    base = start([sys.executable, __file__, "--receiver", base_store, "--port", str(bport)], bport, env)
    met = []
    first = 0
    try:
        send(hport, 10**7, 50, 1)  # warm-up: imports, caches, first connections
        settle(hub_store)
        send(bport, 10**7, 50, 1)
        for conns in (1, 16):
            rates: dict[str, list[float]] = {"hub": [], "receiver": []}
            latencies: dict[str, list[float]] = {"hub": [], "receiver": []}
            acks: dict[str, int] = {"hub": 0, "receiver": 0}
            loads, settled = [], 0.0
            for _ in range(rounds):
                for who, port in (("hub", hport), ("receiver", bport)):
                    loads.append(os.getloadavg()[0])
                    rate, lat, acked = send(port, first, n // rounds, conns)
                    first += n
                    rates[who].append(rate)
                    latencies[who] += lat
                    acks[who] += acked
                    if who == "hub":
                        settled = max(settled, settle(hub_store))
            for who in ("hub", "receiver"):
                lat = latencies[who]
                print(f"  {conns:2d} conn  {who:8s} {statistics.median(rates[who]):7.0f} msg/s (rounds: "
                      f"{' '.join(f'{r:.0f}' for r in rates[who])})  p50 {statistics.median(lat) * 1e3:5.1f} ms  "
                      f"p99 {pct(lat, 0.99) * 1e3:6.1f} ms  AA {acks[who]}/{len(lat)}")
            print(f"  {conns:2d} conn  load average {min(loads):.1f}–{max(loads):.1f}; the hub's processing "
                  f"settled within {settled:.1f} s of each turn (untimed)")
            ratio = statistics.median(rates["hub"]) / statistics.median(rates["receiver"])
            ok = ratio >= TARGETS[conns]
            met.append(ok)
            print(f"  {conns:2d} conn  hub ÷ receiver {ratio:.2f}x (target ≥{TARGETS[conns]}x: "
                  f"{'met' if ok else 'MISSED'})")
    finally:
        stop(hub)
        stop(base)
    return met


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=3000, help="per store, width and server")
    ap.add_argument("--rounds", type=int, default=5, help="turns each server takes")
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--receiver", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        receiver(args.receiver, args.port)
        return 0
    env = {**os.environ, "HUB_LOG_LEVEL": "WARNING"}
    env.pop("HUB_DATABASE_URL", None)
    print(f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores; other tenants included); "
          f"{args.messages} HL7 v2 SIU^S12 messages per server in {args.rounds} rounds; "
          f"HUB_REDIS_URL {'set' if env.get('HUB_REDIS_URL') else 'unset (processed after the answer)'}")
    met: list[bool] = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.stores.split(","):
            stores = Stores(kind, folder)
            try:
                met += bench_store(kind, stores, args.messages, args.rounds, env)
            finally:
                stores.close()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
