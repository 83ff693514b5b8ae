"""A well-behaved client's latency while hostile clients attack ``hub serve`` and ``hub mllp``, beside a baseline.

    .venv/bin/python benchmarks/hostile_clients.py [--requests 300] [--timeout 2] [--skip-mllp] [--stock]

Starts on loopback, on SQLite: ``hub serve`` (one process of 8 threads, the smallest a deployment runs,
so that a held thread shows) and ``hub mllp`` (facility routing). For each attack of
tests/support/hostile.py (slow heads and bodies, oversized and never-ending bodies or frames, 500 idle
connections, clients that never read their answers, a connection flood) a well-behaved client sends
``--requests`` requests one after the other: over HTTP a feed opening a connection per post, over MLLP a
sender on one connection waiting for each ACK. Prints p50 / p99 / max latency, with the same client's
figures without attack (baseline) measured in the same run, and how many attacking connections the server
cut off. ``--timeout`` sets HUB_HEADER_TIMEOUT, HUB_BODY_TIMEOUT and the listener's --idle-timeout and
--frame-timeout (short, so the attacks are cut off and come back during a run of a few seconds each).

``--stock`` also runs the slow-head and partial-body attacks against gunicorn's own ``gthread`` worker
(same processes and threads), for the comparison: there a slow client holds a thread for as long as it
likes, so the well-behaved client's requests wait (each is given 5 s, and a late one is counted).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hl7v2.test_hl7v2_mllp import start as start_mllp  # noqa: E402
from tests.hl7v2.test_hl7v2_mllp import stop as stop_mllp  # noqa: E402
from tests.intake.conftest import HUB, Server, free_port, hub, start_server, stop  # noqa: E402
from tests.support.hostile import (  # noqa: E402
    Attack,
    MllpSender,
    http_attacks,
    http_poster,
    mllp_attacks,
    percentile,
    running,
    timed,
)

BODY_LIMIT = 1_048_576


def row(name: str, took: list[float], attack: Attack | None = None, late: int = 0) -> None:
    cut = "" if attack is None else f"{attack.crowd.closed:>6}"
    extra = f"  ({late} took over 5 s)" if late else ""
    print(f"  {name[:78]:<78} {percentile(took, 50) * 1e3:7.1f} {percentile(took, 99) * 1e3:8.1f} "
          f"{took[-1] * 1e3:8.1f} {cut:>6}{extra}", flush=True)


def header(title: str) -> None:
    print(f"\n{title}\n  {'':<78} {'p50 ms':>7} {'p99 ms':>8} {'max ms':>8} {'cut':>6}", flush=True)


def http_part(tmp: Path, requests: int, timeout: float) -> None:
    env = {"HUB_DATABASE_URL": f"sqlite:///{tmp / 'web.db'}", "HUB_SQLITE_SYNCHRONOUS": "NORMAL", "HUB_REDIS_URL": "",
           "HUB_RATE_LIMIT": "0", "HUB_LOG_LEVEL": "WARNING", "HUB_HEADER_TIMEOUT": str(timeout),
           "HUB_BODY_TIMEOUT": str(timeout), "HUB_MAX_PAYLOAD": str(BODY_LIMIT)}
    server = start_server(tmp, env, practices=("alpha",))
    try:
        key = server.key("feed", "alpha")
        address = ("127.0.0.1", int(server.base.rsplit(":", 1)[1]))
        header(f"hub serve (1 process x 8 threads; HUB_HEADER_TIMEOUT = HUB_BODY_TIMEOUT = {timeout:g} s): "
               f"{requests} posts, a connection each")
        row("baseline (no attack)", timed(http_poster(address, key, "BASE-"), requests))
        for i, attack in enumerate(http_attacks(address, body_limit=BODY_LIMIT)):
            with running(attack):
                took = timed(http_poster(address, key, f"A{i}-"), requests, at_least=timeout * 1.5)
            row(attack.name, took, attack)
            assert server.process.poll() is None, "hub serve died"
    finally:
        stop(server)


def stock_part(tmp: Path, requests: int) -> None:
    """The same attacks against gunicorn's own gthread worker (the comparison; no deadline to cut them)."""
    env = os.environ.copy()
    env.update({"HUB_DATABASE_URL": f"sqlite:///{tmp / 'stock.db'}", "HUB_SQLITE_SYNCHRONOUS": "NORMAL",
                "HUB_REDIS_URL": "", "HUB_RATE_LIMIT": "0", "HUB_LOG_LEVEL": "WARNING",
                "HUB_PLUGINS": "tests.intake.feedline", "PYTHONPATH": str(ROOT)})
    assert hub("practice", "add", "alpha", "--name", "Alpha", env=env).returncode == 0
    port = free_port()
    code = ("from hub.commands.serve import hub_server, server_options\n"
            "from hub.runtime import Runtime\nfrom hub.store.engine import dispose_engines\n"
            "Runtime.create(); dispose_engines()\n"
            f"o = server_options('127.0.0.1', {port}, 1, 8); o['worker_class'] = 'gthread'\n"
            "hub_server(o).run()\n")
    log = (tmp / "stock.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, tmp / "stock.log", env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if server.call("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"gunicorn did not start: {server.log()[-2000:]}")
        key = server.key("feed", "alpha")
        address = ("127.0.0.1", port)
        header(f"gunicorn's own gthread worker (1 process x 8 threads), for comparison: {requests} posts")
        row("baseline (no attack)", timed(http_poster(address, key, "SBASE-"), requests))
        for i, attack in enumerate(http_attacks(address, body_limit=BODY_LIMIT)[:2]):
            late: list[int] = []
            with running(attack):
                took = timed(patient(http_poster(address, key, f"S{i}-", timeout=5), late), requests)
            row(attack.name, took, attack, len(late))
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def patient(call: Callable[[int], None], late: list[int]) -> Callable[[int], None]:
    """``call``, with a request that timed out counted in ``late`` instead of ending the run."""
    def bounded(n: int) -> None:
        try:
            call(n)
        except OSError:
            late.append(n)
    return bounded


def mllp_part(tmp: Path, requests: int, timeout: float) -> None:
    listener = start_mllp(tmp, "--max-size", "65536", "--idle-timeout", str(timeout), "--frame-timeout", str(timeout))
    try:
        address = ("127.0.0.1", listener.port)
        header(f"hub mllp (--idle-timeout = --frame-timeout = {timeout:g} s): {requests} messages on one "
               "connection, each after the last ACK")
        sender = MllpSender(address, "BASE-")
        row("baseline (no attack)", timed(sender, requests))
        sender.close()
        for i, attack in enumerate(mllp_attacks(address)):
            sender = MllpSender(address, f"A{i}-")
            with running(attack):
                took = timed(sender, requests, at_least=timeout * 1.5)
            sender.close()
            row(attack.name, took, attack)
            assert listener.process.poll() is None, "hub mllp died"
    finally:
        stop_mllp(listener)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--skip-mllp", action="store_true")
    parser.add_argument("--stock", action="store_true")
    args = parser.parse_args()
    assert Path(HUB).exists(), f"{HUB} is missing: make install"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        http_part(tmp, args.requests, args.timeout)
        if not args.skip_mllp:
            (tmp / "mllp").mkdir()
            mllp_part(tmp / "mllp", args.requests, args.timeout)
        if args.stock:
            (tmp / "stock").mkdir()
            stock_part(tmp / "stock", min(args.requests, 10))  # each request may wait its 5 s there
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; 'cut': attacking connections the server closed")


if __name__ == "__main__":
    main()
