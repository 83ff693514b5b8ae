"""Soak under faults: a steady mixed feed for minutes while processes are killed and services restarted.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--fault-every 120] [--rate 10]

Starts, on loopback, a private PostgreSQL cluster and a private Redis (tests/support/services.py: the
machine's shared ones are never stopped), then ``hub serve``, ``hub mllp``, two ``hub worker`` and
``hub watch``, each in a session of its own. Four feeds send at a steady pace, one practice each:

- HL7 v2 over MLLP (``--rate`` messages/s), each message sent again until it is answered AA;
- HL7 v2 over HTTP (``--rate``), sent again until 200 with AA;
- FHIR R4 Patient resources over HTTP (``--rate``), sent again until 2xx;
- files of five HL7 v2 messages into the watched folder (one file every 5 / ``--rate`` s), taken when
  they reach ``done/``.

Every ``--fault-every`` seconds the next fault of the cycle: kill -9 of ``hub serve``, of ``hub mllp``,
of a worker, of ``hub watch`` (each started again a second later), Redis stopped for 10 s, PostgreSQL
crashed (immediate stop) for 5 s. It prints throughput every 10 s, then acknowledgement latency
percentiles per feed (the answered attempt, and until acknowledged, resends included), the resident
memory of every process (first and last sample of each; a process started again starts afresh), and
the reconciliation per feed: sent = acknowledged = stored (once) = processed. Exit 1 if they differ.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub.mllp.framing import frame, read_answer  # noqa: E402
from tests.support.services import (  # noqa: E402
    PrivatePostgres,
    PrivateRedis,
    free_port,
    kill9,
    session_members,
    spawn,
    terminate,
    wait_listening,
)

HL7 = "x-application/hl7-v2+er7"
FHIR = "application/fhir+json"
FEEDS = {"mllp": "alpha", "http": "beta", "fhir": "gamma", "files": "delta"}  # feed → its practice
FILE_MESSAGES = 5


def hl7(practice: str, control_id: str) -> bytes:
    return (f"MSH|^~\\&|PMS|{practice.upper()}|HUB|MSO|20250301080000-0500||SIU^S12^SIU_S12|{control_id}|P|2.5.1\r"
            f"SCH||{control_id}|||||NP||30|min|^^30^20250310090000-0500\r"
            f"PID|1||MRN-{control_id}^^^{practice.upper()}^MR||Soak^Avery\r").encode()


def fhir_patient(n: int) -> bytes:
    return json.dumps({"resourceType": "Patient", "id": f"soak-{n}", "gender": "female", "birthDate": "1990-02-03",
                       "identifier": [{"system": "urn:synthetic:mrn", "value": f"SOAK-{n}"}],
                       "name": [{"family": f"Soak{n}", "given": ["Ada"]}]}).encode()


def msa(answer: bytes) -> str:
    for segment in answer.strip(b"\x0b\x1c\r").split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode()
    return "none"


class Feed(threading.Thread):
    """Sends at ``rate`` messages a second, each again (after 0.2 s) until ``send`` says it was taken."""

    def __init__(self, name: str, send: Callable[[int], bool], rate: float, stop: threading.Event) -> None:
        super().__init__(daemon=True, name=name)
        self.send, self.rate, self.stop = send, rate, stop
        self.sent = 0  # messages given to the feed (each until acknowledged)
        self.acked: list[float] = []  # when each was acknowledged
        self.attempt_ms: list[float] = []  # the answered attempt
        self.until_ms: list[float] = []  # from the first try until acknowledged
        self.resends = 0

    def run(self) -> None:
        due = time.monotonic()
        for n in itertools.count():
            if self.stop.is_set():
                return
            due += 1 / self.rate
            self.sent += 1
            first = time.monotonic()
            while True:
                started = time.monotonic()
                if self.send(n):
                    now = time.monotonic()
                    self.attempt_ms.append((now - started) * 1e3)
                    self.until_ms.append((now - first) * 1e3)
                    self.acked.append(now)
                    break
                self.resends += 1
                time.sleep(0.2)
                if self.stop.is_set() and time.monotonic() - first > 120:
                    return  # given up: reported as sent, not acknowledged
            time.sleep(max(0.0, due - time.monotonic()))


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"hub-soak-{os.getpid()}"
        self.tmp.mkdir(parents=True)
        self.pg = PrivatePostgres()
        self.pg.start()
        self.redis = PrivateRedis()
        self.redis.start()
        self.db_url = self.pg.database("soak")
        self.env = {**os.environ, "HUB_DATABASE_URL": self.db_url, "HUB_REDIS_URL": self.redis.url,
                    "HUB_RATE_LIMIT": "0", "HUB_LOG_LEVEL": "WARNING", "HUB_WEB_WORKERS": "2"}
        self.http_port, self.mllp_port = free_port(), free_port()
        self.folder = self.tmp / "drop"
        self.folder.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.rss: dict[tuple[str, int], list[int]] = {}  # (role, pid) → [first kB, last kB, max kB]
        self.faults: list[str] = []
        self.engine = sa.create_engine(self.db_url, pool_pre_ping=True)

    # -- processes ------------------------------------------------------------------------------------
    def setup(self) -> str:
        from hub.runtime import Runtime
        from hub.security.keys import create_key
        from hub.store import writer
        from hub.store.practices import add_practice

        runtime = Runtime.create(database_url=self.db_url, dispatcher="inline")
        with writer(runtime.engine).begin() as conn:
            for practice in FEEDS.values():
                add_practice(conn, practice, practice.title())
            return str(create_key(conn, "admin"))

    def start(self, role: str) -> None:
        commands = {
            "serve": ["serve", "--host", "127.0.0.1", "--port", str(self.http_port)],
            "mllp": ["mllp", "--practice", FEEDS["mllp"], "--port", str(self.mllp_port)],
            "worker0": ["worker"], "worker1": ["worker"],
            "watch": ["watch", str(self.folder), "--practice", FEEDS["files"], "--interval", "1", "--settle", "0.5"],
        }
        self.procs[role] = spawn(commands[role], self.env, self.tmp / f"{role}.log")
        port = {"serve": self.http_port, "mllp": self.mllp_port}.get(role)
        if port:
            wait_listening(port, 60, self.procs[role])

    def sample_rss(self) -> None:
        for role, proc in list(self.procs.items()):
            for pid in session_members(proc.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
                entry = self.rss.setdefault((role, pid), [kb, kb, kb])
                entry[1], entry[2] = kb, max(entry[2], kb)

    # -- feeds ----------------------------------------------------------------------------------------
    def http_send(self, practice: str, body: bytes, ctype: str, check: Callable[[int, bytes], bool]) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            conn.request("POST", f"/api/v1/practices/{practice}/messages", body=body,
                         headers={"Authorization": f"Bearer {self.key}", "Content-Type": ctype})
            response = conn.getresponse()
            return check(response.status, response.read())
        except OSError:
            return False
        finally:
            conn.close()

    def feeds(self, stop: threading.Event) -> dict[str, Feed]:
        rate = self.args.rate
        mllp_sock: list[socket.socket | None] = [None]

        def mllp(n: int) -> bool:
            try:
                if mllp_sock[0] is None:
                    mllp_sock[0] = socket.create_connection(("127.0.0.1", self.mllp_port), timeout=30)
                mllp_sock[0].sendall(frame(hl7(FEEDS["mllp"], f"M{n:07d}")))
                answer = read_answer(mllp_sock[0])
            except OSError:
                answer = b""
            if not answer:
                if mllp_sock[0] is not None:
                    mllp_sock[0].close()
                mllp_sock[0] = None
            return msa(answer) == "AA"

        def http_hl7(n: int) -> bool:
            return self.http_send(FEEDS["http"], hl7(FEEDS["http"], f"H{n:07d}"), HL7,
                                  lambda status, body: status == 200 and msa(body) == "AA")

        def fhir(n: int) -> bool:
            return self.http_send(FEEDS["fhir"], fhir_patient(n), FHIR, lambda status, body: 200 <= status < 300)

        def files(n: int) -> bool:
            name = f"f{n:06d}.hl7"
            target = self.folder / name
            if not target.exists() and not (self.folder / "done" / name).exists():
                part = self.folder / (name + ".part")
                part.write_bytes(b"".join(hl7(FEEDS["files"], f"F{n:06d}-{i}") for i in range(FILE_MESSAGES)))
                part.rename(target)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if (self.folder / "done" / name).exists():
                    return True
                time.sleep(0.05)
            return False

        made = {"mllp": Feed("mllp", mllp, rate, stop), "http": Feed("http", http_hl7, rate, stop),
                "fhir": Feed("fhir", fhir, rate, stop),
                "files": Feed("files", files, rate / FILE_MESSAGES, stop)}
        return made

    # -- faults ---------------------------------------------------------------------------------------
    def fault(self, kind: str) -> None:
        self.faults.append(f"{time.monotonic() - self.t0:6.0f}s {kind}")
        print(f"  fault: {kind}", flush=True)
        if kind.startswith("kill "):
            role = kind.split()[1]
            kill9(self.procs[role])
            time.sleep(1)
            self.start(role)
        elif kind == "stop redis":
            self.redis.stop()
            time.sleep(10)
            self.redis.start()
        elif kind == "crash postgres":
            self.pg.crash()
            time.sleep(5)
            self.pg.start()

    def counts(self) -> dict[str, dict[str, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT practice, status, count(*) FROM messages GROUP BY practice, status"))
            out: dict[str, dict[str, int]] = defaultdict(dict)
            for practice, status, n in rows:
                out[practice][status] = n
        return out

    # -- the run --------------------------------------------------------------------------------------
    def run(self) -> int:
        self.key = self.setup()
        for role in ("serve", "mllp", "worker0", "worker1", "watch"):
            self.start(role)
        stop = threading.Event()
        feeds = self.feeds(stop)
        self.t0 = time.monotonic()
        for feed in feeds.values():
            feed.start()
        cycle = itertools.cycle(["kill serve", "kill mllp", "kill worker0", "stop redis", "crash postgres",
                                 "kill watch", "kill worker1"])
        end = self.t0 + self.args.minutes * 60
        next_fault = self.t0 + self.args.fault_every
        next_report = self.t0 + 10
        last: dict[str, int] = {name: 0 for name in feeds}
        last_processed = 0
        print("   time  " + "  ".join(f"{n:>6}/s" for n in feeds) + "  processed/s  received", flush=True)
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_fault:
                self.fault(next(cycle))
                next_fault += self.args.fault_every
            if time.monotonic() >= next_report:
                self.sample_rss()
                window = time.monotonic() - next_report + 10
                rates = {n: (len(f.acked) - last[n]) * (FILE_MESSAGES if n == "files" else 1) / window
                         for n, f in feeds.items()}
                last = {n: len(f.acked) for n, f in feeds.items()}
                try:
                    totals = self.counts()
                    processed = sum(c.get("processed", 0) for c in totals.values())
                    received = sum(c.get("received", 0) for c in totals.values())
                    tail = f"{(processed - last_processed) / window:11.1f}  {received:8d}"
                    last_processed = processed
                except sa.exc.OperationalError:
                    tail = "   (database down)"
                print(f"  {time.monotonic() - self.t0:5.0f}s  " + "  ".join(f"{rates[n]:8.1f}" for n in feeds)
                      + f"  {tail}", flush=True)
                next_report = time.monotonic() + 10
            time.sleep(0.2)
        stop.set()
        for feed in feeds.values():
            feed.join(timeout=150)
        self.sample_rss()
        settle_started = time.monotonic()
        while time.monotonic() - settle_started < 180:
            try:
                totals = self.counts()
                if not any(c.get("received") for c in totals.values()):
                    break
            except sa.exc.OperationalError:
                pass
            time.sleep(1)
        settled_in = time.monotonic() - settle_started
        return self.report(feeds, self.counts(), settled_in)

    def report(self, feeds: dict[str, Feed], totals: dict[str, dict[str, int]], settled_in: float) -> int:
        elapsed = time.monotonic() - self.t0
        print(f"\nfaults ({len(self.faults)}):")
        for line in self.faults:
            print("  " + line)
        print("\nacknowledgement latency, ms (answered attempt | until acknowledged, resends included):")
        for name, feed in feeds.items():
            a, u = sorted(feed.attempt_ms) or [0.0], sorted(feed.until_ms) or [0.0]
            pct = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
            print(f"  {name:6} p50 {pct(a, .5):7.1f}  p95 {pct(a, .95):7.1f}  p99 {pct(a, .99):7.1f}  | "
                  f"p50 {pct(u, .5):7.1f}  p99 {pct(u, .99):8.1f}  max {u[-1]:8.1f}  resends {feed.resends}")
        print("\nresident memory, MB (first → last sample, max; per process, a restarted one starts afresh):")
        for (role, pid), (first, last, top) in sorted(self.rss.items()):
            print(f"  {role:8} pid {pid:7d}  {first / 1024:7.1f} → {last / 1024:7.1f}  max {top / 1024:7.1f}")
        print(f"\nreconciliation (all settled {settled_in:.0f} s after the feeds stopped):")
        print("  feed    sent  acknowledged  stored once  duplicates  processed  error  received")
        ok = True
        for name, feed in feeds.items():
            per = FILE_MESSAGES if name == "files" else 1
            c = totals.get(FEEDS[name], {})
            stored = sum(n for s, n in c.items() if s != "duplicate")
            sent, acked = feed.sent * per, len(feed.acked) * per
            good = sent == acked == stored == c.get("processed", 0)
            ok &= good
            print(f"  {name:6} {sent:6d}  {acked:12d}  {stored:11d}  {c.get('duplicate', 0):10d}  "
                  f"{c.get('processed', 0):9d}  {c.get('error', 0):5d}  {c.get('received', 0):8d}"
                  f"  {'ok' if good else 'MISMATCH'}")
        total = sum(len(f.acked) * (FILE_MESSAGES if n == "files" else 1) for n, f in feeds.items())
        print(f"\n{total} messages acknowledged in {elapsed:.0f} s ({total / elapsed:.1f}/s) under "
              f"{len(self.faults)} faults; load average {os.getloadavg()[0]:.1f}; "
              f"{'reconciled' if ok else 'NOT reconciled'}")
        return 0 if ok else 1

    def close(self) -> None:
        for proc in self.procs.values():
            terminate(proc)
        self.engine.dispose()
        self.redis.close()
        self.pg.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the feeds run (default 30)")
    parser.add_argument("--fault-every", type=float, default=120.0, help="seconds between faults (default 120)")
    parser.add_argument("--rate", type=float, default=10.0, help="messages a second per feed (default 10)")
    args = parser.parse_args(argv)
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        soak.close()
        print(f"logs: {soak.tmp}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
