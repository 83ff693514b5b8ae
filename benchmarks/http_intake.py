"""HTTP (and MLLP) intake throughput against the real server, beside ``hub ingest`` in-process.

    .venv/bin/python benchmarks/http_intake.py [--messages 50000] [--clients 16]

Starts, on loopback: ``hub serve`` (gunicorn, threaded workers) and ``hub worker``
processes on PostgreSQL and Redis (fresh database and queue of its own). Clients
post one HL7 v2 message per request over keep-alive connections, each waiting for
its answer before sending the next. Prints acknowledged messages per second, p50 /
p99 acknowledgement latency, the time from the last acknowledgement until every
message is processed, and checks the store's counts (nothing lost or duplicated).
The baseline, measured in the same run on its own database: the same messages
stored and processed through ``hub ingest`` in-process (inline processing).

With no connector for ``x-application/hl7-v2+er7`` installed, the benchmark falls
back to the test connector of tests/intake/feedline.py and says so. The MLLP part
runs when ``hub mllp`` exists (one connection, then 16), and is skipped otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
HUB = str(Path(sys.executable).with_name("hub"))
HL7 = "x-application/hl7-v2+er7"
FEEDLINE = "text/x-hub-feedline"
PG_ADMIN = os.environ.get("HUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("HUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# ------------------------------------------------------------------ messages
def spelled(n: int) -> str:
    """``n`` in letters (0 → a, 1 → b, ...): the patient index folds names to letters, so digits in a
    name would make every synthetic patient one person, compared with every other."""
    return "".join("abcdefghij"[int(d)] for d in str(n))


def born(n: int) -> str:
    """A birth date of its own for each of the first 20,000 patients (YYYYMMDD)."""
    return (dt.date(1940, 1, 1) + dt.timedelta(days=n % 20_000)).strftime("%Y%m%d")


def hl7_message(i: int) -> bytes:
    patient = i % 5000  # several messages per patient, as in a real schedule feed
    minute = i % 480
    start = f"202503{4 + i % 20:02d}{8 + minute // 60:02d}{minute % 60:02d}00-0500"
    segments = [
        f"MSH|^~\\&|PMS|ALPHA|HUB|MSO|20250304090000-0500||SIU^S12^SIU_S12|BENCH{i:08d}|P|2.5.1",
        f"SCH|A{i:08d}|A{i:08d}|||||NP^New patient|NP^New patient|30|min|^^30^{start}|||||||||||||||Booked",
        f"PID|1||MRN{patient:06d}^^^ALPHA^MR||Fam{spelled(patient)}^Giv{spelled(patient)}||{born(patient)}|F",
        "RGS|1",
        "AIP|1||1234567893^Doc^Alice^^^^^^NPI|||" + start,
        "AIL|1||MAIN^^^ALPHA",
    ]
    return ("\r".join(segments) + "\r").encode()


def feedline_message(i: int) -> bytes:
    return f"FEEDLINE\nPAT|MRN{i:08d}|Fam{spelled(i)}|Giv{spelled(i)}|{'FMU'[i % 3]}\n".encode()


# ------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited early (code {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def create_database() -> str:
    name = f"intakebench_{uuid.uuid4().hex[:8]}"  # a prefix no test fixture cleans up
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    from hub.store.engine import dispose_engines

    dispose_engines()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def run_hub(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([HUB, *args], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"hub {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def status_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT status, count(*) FROM messages GROUP BY status")).all())
    finally:
        engine.dispose()


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return total


def backend_cpu(url: str, since: dict[int, float] | None = None) -> Any:
    """CPU seconds of the PostgreSQL backends serving this database: per pid, or (given ``since``)
    the total used since then. Other databases' backends (other tenants) are not counted."""
    name = url.rsplit("/", 1)[1]
    engine = sa.create_engine(PG_ADMIN)
    try:
        with engine.connect() as conn:
            pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": name})
            now = {pid: tree_cpu_s([pid]) for (pid,) in pids}
    finally:
        engine.dispose()
    if since is None:
        return now
    return sum(cpu - since.get(pid, 0.0) for pid, cpu in now.items())


def commit_latency(url: str, n: int = 200) -> float:
    """Median seconds of a one-row INSERT + COMMIT on this database: the floor under one MLLP
    connection, which waits for each ACK (so for each commit) before it sends the next."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TABLE bench_commit_probe (x int)")
        conn.commit()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO bench_commit_probe VALUES (%s)", (i,))
            conn.commit()
            times.append(time.perf_counter() - t0)
        conn.execute("DROP TABLE bench_commit_probe")
        conn.commit()
    return statistics.median(times)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------ HTTP clients
def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response off a keep-alive socket (a raw client: http.client costs the
    client more CPU than the server spends on some requests); ``buf`` keeps what follows."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return int(head[0].split(" ", 2)[1]), headers, body


def _client_process(port: int, key: str, media_type: str, kind: str, indexes: list[list[int]],
                    out: mp.Queue) -> None:  # type: ignore[type-arg]
    make = hl7_message if kind == "hl7" else feedline_message
    results: list[tuple[float, int, str]] = []
    lock = threading.Lock()
    head = (f"POST /api/v1/practices/alpha/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: {media_type}\r\nContent-Length: ")

    def run(chunk: list[int]) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        mine = []
        for i in chunk:
            body = make(i)
            request = f"{head}{len(body)}\r\n\r\n".encode() + body
            t0 = time.perf_counter()
            sock.sendall(request)
            status, headers, _ = _read_response(sock, buf)
            mine.append((time.perf_counter() - t0, status, headers.get("x-hub-message-ids", "")))
            if headers.get("connection", "").lower() == "close":
                sock.close()
                sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                buf.clear()
        sock.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in indexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((results, time.process_time()))


def http_run(port: int, key: str, media_type: str, kind: str, n: int, clients: int,
             processes: int, offset: int = 0) -> tuple[float, list[tuple[float, int, str]], float]:
    """Elapsed seconds, (latency, status, message ids) per request, and the clients' CPU seconds."""
    per_client = [list(range(offset + c, offset + n, clients)) for c in range(clients)]
    groups = [per_client[p::processes] for p in range(processes)]
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_client_process, args=(port, key, media_type, kind, g, out)) for g in groups]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results: list[tuple[float, int, str]] = []
    cpu = 0.0
    for _ in procs:
        part, used = out.get()
        results.extend(part)
        cpu += used
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return elapsed, results, cpu


# ------------------------------------------------------------------ MLLP clients
def _mllp_process(port: int, chunks: list[range], offset: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    from hub.mllp.framing import frame, read_answer

    latencies: list[float] = []
    acked = 0
    lock = threading.Lock()

    def run(chunk: range) -> None:
        nonlocal acked
        mine, ok = [], 0
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in chunk:
                data = frame(hl7_message(offset + i))
                t0 = time.perf_counter()
                s.sendall(data)
                buf = read_answer(s)
                mine.append(time.perf_counter() - t0)
                ok += b"MSA|AA" in buf
        with lock:
            latencies.extend(mine)
            acked += ok

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((latencies, acked, time.process_time()))


def mllp_run(port: int, n: int, connections: int, offset: int,
             processes: int) -> tuple[float, list[float], int, float]:
    """Elapsed seconds, latencies, answers that were AA, and the clients' CPU seconds."""
    per = n // connections
    chunks = [range(c * per, (c + 1) * per) for c in range(connections)]
    groups = [g for g in (chunks[p::processes] for p in range(min(processes, connections))) if g]
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_mllp_process, args=(port, g, offset, out)) for g in groups]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    latencies: list[float] = []
    acked, cpu = 0, 0.0
    for _ in procs:
        part, ok, used = out.get()
        latencies.extend(part)
        acked += ok
        cpu += used
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return elapsed, latencies, acked, cpu


# ------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--client-processes", type=int, default=4, help="client load spread over this many processes")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--web-threads", type=int, default=16)
    ap.add_argument("--rq-workers", type=int, default=2)
    ap.add_argument("--mllp-messages", type=int, default=10_000)
    ap.add_argument("--format", choices=["auto", "hl7", "feedline"], default="auto")
    ap.add_argument("--skip", action="append", default=[], choices=["baseline", "mllp"],
                    help="leave out a part while iterating (repeatable)")
    args = ap.parse_args()
    n = args.messages
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers, drop the databases

    env = os.environ.copy()
    env.update({"HUB_REDIS_URL": REDIS, "HUB_QUEUE": f"hub-bench-{uuid.uuid4().hex[:8]}", "HUB_RATE_LIMIT": "0",
                "HUB_LOG_LEVEL": "WARNING", "HUB_PLUGINS": "tests.intake.feedline",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))})
    os.environ.update({k: env[k] for k in ("HUB_PLUGINS", "PYTHONPATH")})
    sys.path.insert(0, str(ROOT))
    from hub.plugins import load_plugins

    has_hl7 = load_plugins().connectors.for_media_type(HL7) is not None
    kind = args.format if args.format != "auto" else ("hl7" if has_hl7 else "feedline")
    if kind == "hl7" and not has_hl7:
        raise SystemExit("no connector for x-application/hl7-v2+er7 is installed")
    media_type = HL7 if kind == "hl7" else FEEDLINE
    make = hl7_message if kind == "hl7" else feedline_message
    what = "HL7 v2 SIU^S12 messages" if kind == "hl7" else "test-feedline messages (no HL7 v2 connector installed)"
    print(f"load average before the run: {os.getloadavg()[0]:.1f}")
    print(f"payloads: {n} {what}; "
          f"{args.clients} clients; {args.web_workers}x{args.web_threads} web, {args.rq_workers} rq workers; "
          f"{os.cpu_count()} cores")

    if "baseline" not in args.skip:
        baseline(env, make, n)
    else:
        print("baseline  skipped")
    return bench_servers(env, args, kind, media_type)


def baseline(env: dict[str, str], make: Any, n: int) -> None:
    """hub ingest in-process (inline processing) on its own database."""
    base_url = create_database()
    with tempfile.TemporaryDirectory() as folder:
        for i in range(n):
            Path(folder, f"{i:08d}.msg").write_bytes(make(i))
        benv = {**env, "HUB_DATABASE_URL": base_url}
        benv.pop("HUB_REDIS_URL")
        run_hub(benv, "practice", "add", "alpha", "--name", "Alpha")
        os.environ.update({"HUB_DATABASE_URL": base_url})
        os.environ.pop("HUB_REDIS_URL", None)
        from hub.pipeline.ingest import ingest_paths
        from hub.runtime import Runtime

        runtime = Runtime.create(database_url=base_url, dispatcher="inline")
        t0, cpu0 = time.perf_counter(), time.process_time()
        counts = ingest_paths(runtime, "alpha", (folder,), connector=None)
        base_s, base_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    drop_database(base_url)
    print(f"baseline  hub ingest in-process: {n / base_s:8.0f} messages/s stored and processed "
          f"({base_s:.1f} s, CPU {base_cpu / n * 1e3:.2f} ms per message; {counts})")


def bench_servers(env: dict[str, str], args: argparse.Namespace, kind: str, media_type: str) -> int:
    """HTTP: gunicorn + rq workers, then the MLLP listener beside them."""
    n = args.messages
    url = create_database()
    env["HUB_DATABASE_URL"] = url
    run_hub(env, "practice", "add", "alpha", "--name", "Alpha")
    key = run_hub(env, "key", "create", "--role", "feed", "--practice", "alpha").strip().splitlines()[-1]
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    failed = False
    try:
        procs.append(subprocess.Popen([HUB, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
                                       str(args.web_workers), "--threads", str(args.web_threads)], env=env))
        wait_port(port, procs[0])
        for _ in range(args.rq_workers):
            procs.append(subprocess.Popen([HUB, "worker"], env=env))
        time.sleep(1.0)
        cpu_web0, cpu_rq0 = tree_cpu_s([procs[0].pid]), tree_cpu_s([p.pid for p in procs[1:]])
        cpu_pg0 = backend_cpu(url)
        load0 = os.getloadavg()[0]
        elapsed, results, cpu_clients = http_run(port, key, media_type, kind, n, args.clients,
                                                 args.client_processes)
        cpu_pg_ack = backend_cpu(url, cpu_pg0)
        cpu_web = tree_cpu_s([procs[0].pid]) - cpu_web0
        last_ack = time.perf_counter()
        statuses: dict[int, int] = {}
        for _, status, _ in results:
            statuses[status] = statuses.get(status, 0) + 1
        latencies = [r[0] for r in results if r[1] == 200]
        ids = [int(x) for r in results for x in r[2].split(",") if x]
        while True:
            counts = status_counts(url)
            if counts.get("received", 0) == 0 or time.perf_counter() - last_ack > 300:
                break
            time.sleep(0.25)
        drain_s = time.perf_counter() - last_ack
        cpu_rq = tree_cpu_s([p.pid for p in procs[1:]]) - cpu_rq0
        cpu_pg = backend_cpu(url, cpu_pg0)
        rate = len(latencies) / elapsed
        print(f"HTTP      gunicorn + rq workers:  {rate:8.0f} acknowledged messages/s "
              f"({elapsed:.1f} s; statuses {statuses})")
        print(f"          acknowledgement latency p50 {statistics.median(latencies) * 1e3:.1f} ms, "
              f"p99 {pct(latencies, 0.99) * 1e3:.1f} ms")
        print(f"          all processed {drain_s:.1f} s after the last acknowledgement; store: {counts}")
        print(f"          CPU per message: web {cpu_web / n * 1e3:.2f} ms, rq workers {cpu_rq / n * 1e3:.2f} ms, "
              f"PostgreSQL {cpu_pg / n * 1e3:.2f} ms ({cpu_pg_ack / n * 1e3:.2f} until the last ack), "
              f"clients {cpu_clients / n * 1e3:.2f} ms")
        print(f"          machine load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
              f"({os.cpu_count()} cores; other tenants included)")
        total = sum(counts.values())
        ok_counts = (total == n and counts.get("duplicate", 0) == 0 and counts.get("received", 0) == 0
                     and len(set(ids)) == n == len(ids))
        print(f"          nothing lost or duplicated: {'yes' if ok_counts else 'NO'} "
              f"({total} rows, {len(set(ids))} distinct acknowledged ids)")
        targets = [(rate >= 1000, "≥1000 ack/s"), (pct(latencies, 0.99) < 0.1, "p99 < 100 ms"),
                   (drain_s <= 60, "processed within 60 s"), (ok_counts, "counts")]
        print("          targets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for ok, name in targets))
        failed = not ok_counts

        # -- MLLP
        mllp = subprocess.run([HUB, "mllp", "--help"], env=env, capture_output=True)
        if "mllp" in args.skip:
            print("MLLP      skipped")
        elif mllp.returncode != 0 or kind != "hl7":
            print("MLLP      skipped: " + ("`hub mllp` is not installed in this build" if mllp.returncode != 0
                                          else "needs the HL7 v2 connector"))
        else:
            mport = free_port()
            procs.append(subprocess.Popen([HUB, "mllp", "--practice", "alpha", "--host", "127.0.0.1", "--port",
                                           str(mport)], env=env))
            wait_port(mport, procs[-1])
            m = args.mllp_messages
            time.sleep(1.0)
            floor = commit_latency(url)
            print(f"MLLP      commit latency (INSERT + COMMIT, median): {floor * 1e3:.2f} ms, so one connection "
                  f"that waits for each ACK gets roughly {1 / floor:.0f} messages/s at best (disk load varies)")
            for conns, target in ((1, 500), (16, 1500)):
                cpu0, load0 = tree_cpu_s([procs[-1].pid]), os.getloadavg()[0]
                secs, lat, acked, cpu_clients = mllp_run(mport, m, conns, offset=n + (0 if conns == 1 else m),
                                                         processes=args.client_processes)
                cpu_mllp = tree_cpu_s([procs[-1].pid]) - cpu0
                r = len(lat) / secs
                print(f"MLLP      {conns:2d} connection(s): {r:8.0f} messages/s (target ≥{target}: "
                      f"{'met' if r >= target else 'MISSED'}), p50 {statistics.median(lat) * 1e3:.1f} ms, "
                      f"p99 {pct(lat, 0.99) * 1e3:.1f} ms, {acked}/{len(lat)} AA")
                print(f"          CPU per message: listener {cpu_mllp / len(lat) * 1e3:.2f} ms, clients "
                      f"{cpu_clients / len(lat) * 1e3:.2f} ms; load average {load0:.1f} at the start, "
                      f"{os.getloadavg()[0]:.1f} at the end")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        drop_database(url)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
