"""Hostile clients against a running ``hub serve`` or ``hub mllp``, and a well-behaved client timed meanwhile.

Shared by ``benchmarks/hostile_clients.py`` (figures beside a no-attack baseline) and the tests
(tests/intake/test_hostile_clients.py, tests/hl7v2/test_mllp_hostile_clients.py), which assert that
the well-behaved client's p99 stays under 100 ms during each attack.

An attack is a crowd of sockets driven by one thread with non-blocking sends on a fixed tick, so it
costs the machine little CPU: what it does to the server comes from holding connections, not from
load. When the server closes one of its connections the attack notes it (``closed``, and the first
bytes of what it was answered) and opens another, so the pressure stays on for the whole run.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Address = tuple[str, int]

MLLP_START, MLLP_END = b"\x0b", b"\x1c\r"


@dataclass
class Crowd:
    """What every attack shares: its sockets and what the server did to them."""

    address: Address
    count: int
    opening: bytes = b""  # sent once a socket is connected
    tick: float = 0.1
    rcvbuf: int | None = None  # a small receive buffer: a client that does not read fills up quickly
    closed: int = 0
    answers: dict[bytes, int] = field(default_factory=dict)  # first line (or bytes) of what came back → count
    socks: list[socket.socket] = field(default_factory=list)

    def open(self) -> socket.socket | None:
        sock = socket.socket()
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.settimeout(2)
        try:
            sock.connect(self.address)
            sock.setblocking(False)
            if self.opening:
                sock.send(self.opening)
        except OSError:
            sock.close()
            return None
        return sock

    def fill(self) -> None:
        while len(self.socks) < self.count:
            sock = self.open()
            if sock is None:
                return
            self.socks.append(sock)

    def send_each(self, data: bytes, *, read: bool = True) -> None:
        """``data`` on every socket; a socket the server closed is counted and replaced."""
        alive = []
        for sock in self.socks:
            if self._gone(sock, data, read):
                self.closed += 1
                sock.close()
            else:
                alive.append(sock)
        self.socks = alive
        self.fill()

    def _gone(self, sock: socket.socket, data: bytes, read: bool) -> bool:
        if read:
            try:
                got = sock.recv(65_536)
                if not got:
                    return True
                first = got.split(b"\r\n", 1)[0][:40]
                self.answers[first] = self.answers.get(first, 0) + 1
                return False
            except BlockingIOError:
                pass
            except OSError:
                return True
        if data:
            try:
                sock.send(data)
            except BlockingIOError:
                pass  # its buffers are full: the server reads nothing more from it
            except OSError:
                return True
        return False

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []


@dataclass
class Attack:
    """A named crowd and what it sends on every tick."""

    name: str
    crowd: Crowd
    each_tick: bytes = b""
    read: bool = True
    churn: bool = False  # opens and closes connections as fast as it can (a connection flood)

    def run(self, stop: threading.Event) -> None:
        crowd = self.crowd
        if self.churn:
            self._flood(stop)
            return
        crowd.fill()
        while not stop.wait(crowd.tick):
            crowd.send_each(self.each_tick, read=self.read)
        crowd.close()

    def _flood(self, stop: threading.Event) -> None:
        crowd = self.crowd
        while not stop.is_set():
            for _ in range(crowd.count):
                sock = crowd.open()
                if sock is not None:
                    sock.close()
                    crowd.closed += 1
            stop.wait(crowd.tick)


# -- the attacks -------------------------------------------------------------------------------------
def http_attacks(address: Address, *, body_limit: int, feed_key: str = "none", flood_rate: int = 1000) -> list[Attack]:
    post = b"POST /api/v1/practices/alpha/messages HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer " + \
        feed_key.encode() + b"\r\nContent-Type: text/x-hub-feedline\r\n"
    openapi = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: hub\r\n\r\n"
    return [
        Attack("slowloris: 64 connections sending their headers a byte a tick",
               Crowd(address, 64, opening=post + b"X-Slow: "), each_tick=b"x"),
        Attack("a partial body: 64 connections sending it a byte a tick",
               Crowd(address, 64, opening=post + b"Content-Length: 100000\r\n\r\nFEEDLINE\n"), each_tick=b"P"),
        Attack("an oversized body, sent a byte a tick (32 connections)",
               Crowd(address, 32, opening=post + f"Content-Length: {body_limit * 2}\r\n\r\n".encode()),
               each_tick=b"O"),
        Attack("a never-ending chunked body (64 connections)",
               Crowd(address, 64, opening=post + b"Transfer-Encoding: chunked\r\n\r\n"), each_tick=b"1\r\nC\r\n"),
        Attack("500 idle connections", Crowd(address, 500, tick=0.2)),
        Attack("16 clients that never read their answers (pipelined requests, 4 KiB receive buffers)",
               Crowd(address, 16, opening=openapi * 64, rcvbuf=4096), each_tick=openapi * 8, read=False),
        flood(address, flood_rate),
    ]


def flood(address: Address, rate: int) -> Attack:
    return Attack(f"a connection flood (connect and close, {rate:,} a second)",
                  Crowd(address, max(1, rate // 50), tick=0.02), churn=True)


def mllp_attacks(address: Address, *, flood_rate: int = 1000) -> list[Attack]:
    header = MLLP_START + b"MSH|^~\\&|SLOW|SLOWFAC|HUB|MSO|20250301080000||ADT^A01|SLOW|P|2.5.1\r"
    # answered AR without being stored, by a listener without --practice (no practice has that facility)
    refused = MLLP_START + b"MSH|^~\\&|NOBODY|NOBODY|HUB|MSO|20250301080000||ADT^A01|NOREAD|P|2.5.1\r" + MLLP_END
    return [
        Attack("slowloris: 64 connections sending a frame a byte a tick", Crowd(address, 64, opening=header),
               each_tick=b"x"),
        Attack("frames that never end: 4 connections sending 64 KiB a tick past the size limit",
               Crowd(address, 4, opening=MLLP_START, tick=0.02), each_tick=b"Z" * 65_536),
        Attack("500 idle connections", Crowd(address, 500, tick=0.2)),
        Attack("16 clients that never read their ACKs (4 KiB receive buffers)",
               Crowd(address, 16, opening=refused * 200, rcvbuf=4096), each_tick=refused * 50, read=False),
        flood(address, flood_rate),
    ]


@contextlib.contextmanager
def running(attack: Attack, settle: float = 0.5) -> Iterator[Attack]:
    """The attack in a thread of its own, given ``settle`` seconds to take hold before the caller goes on."""
    stop = threading.Event()
    thread = threading.Thread(target=attack.run, args=(stop,), name=f"attack {attack.name}", daemon=True)
    thread.start()
    time.sleep(settle)
    try:
        yield attack
    finally:
        stop.set()
        thread.join(10)


# -- the well-behaved clients ------------------------------------------------------------------------
def timed(call: Callable[[int], None], n: int, *, at_least: float = 0.0) -> list[float]:
    """Seconds each of ``n`` sequential calls took (``call(i)``), sorted; goes on past ``n`` until ``at_least``
    seconds passed (so an attack outlasts the server's timeouts), counting only the first ``n``."""
    took = []
    started = time.monotonic()
    i = 0
    while i < n or time.monotonic() - started < at_least:
        t0 = time.perf_counter()
        call(i)
        if i < n:
            took.append(time.perf_counter() - t0)
        else:
            time.sleep(0.01)
        i += 1
    return sorted(took)


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def http_poster(address: Address, key: str, tag: str, timeout: float = 10) -> Callable[[int], None]:
    """A feed that opens a connection per request and posts one message, asserting it is acknowledged."""
    import http.client

    def call(i: int) -> None:
        conn = http.client.HTTPConnection(*address, timeout=timeout)
        try:
            body = f"FEEDLINE\nPAT|{tag}{i:05d}|Calm|Client|F\n".encode()
            conn.request("POST", "/api/v1/practices/alpha/messages", body,
                         {"Authorization": f"Bearer {key}", "Content-Type": "text/x-hub-feedline"})
            answer = conn.getresponse()
            data = answer.read()
            assert answer.status == 200 and data.startswith(b"ACK|AA"), (answer.status, data[:80])
        finally:
            conn.close()

    return call


class MllpSender:
    """A sender on one connection, waiting for each ACK before the next message (as MLLP senders do)."""

    def __init__(self, address: Address, tag: str, *, wrap: Callable[[socket.socket], socket.socket] | None = None):
        self.address, self.tag, self.wrap = address, tag, wrap
        self.sock: socket.socket | None = None

    def __call__(self, i: int) -> None:
        if self.sock is None:
            sock = socket.create_connection(self.address, timeout=10)
            self.sock = self.wrap(sock) if self.wrap else sock
        control = f"{self.tag}{i:05d}"
        message = (f"MSH|^~\\&|DERMPM|NORTHDERM|HUB|MSO|20250301080000-0500||SIU^S12^SIU_S12|{control}|P|2.5.1\r"
                   f"SCH||{control}|||||NP||30|min|^^30^20250310090000-0500\r"
                   f"PID|1||MRN-{control}^^^NORTHDERM^MR||Sampleton^Avery\r").encode()
        self.sock.sendall(MLLP_START + message + MLLP_END)
        answer = b""
        while b"\x1c" not in answer:
            chunk = self.sock.recv(65_536)
            assert chunk, "the listener closed a well-behaved connection"
            answer += chunk
        assert b"MSA|AA|" + control.encode() in answer, answer[:200]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
