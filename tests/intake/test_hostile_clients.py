"""Hostile clients against a real ``hub serve`` (one process of 8 threads, SQLite): slow heads and bodies,
oversized and never-ending bodies, idle connections, clients that never read, connection floods. During
each attack a feed opening a connection per request posts 200 messages one after the other; every one
is acknowledged and the p99 of their latency stays under 100 ms (or twice the same run's unattacked p99,
on a machine too busy for that). The request deadlines are short here (HUB_HEADER_TIMEOUT=1,
HUB_BODY_TIMEOUT=1), so each attack is cut off and comes back during the run."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.intake.conftest import Server, start_server, stop
from tests.support.hostile import http_attacks, http_poster, percentile, running, timed

BODY_LIMIT = 1_048_576
FLOOD_RATE = 500  # connections a second: a flood the test's own process keeps up on a shared 2-core machine
ATTACKS = [attack.name for attack in http_attacks(("127.0.0.1", 0), body_limit=BODY_LIMIT, flood_rate=FLOOD_RATE)]
URL = "/api/v1/practices/alpha/messages"


@pytest.fixture(scope="module")
def hub_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("hostile")
    srv = start_server(tmp, {"HUB_DATABASE_URL": f"sqlite:///{tmp / 'hub.db'}", "HUB_SQLITE_SYNCHRONOUS": "NORMAL",
                             "HUB_REDIS_URL": "", "HUB_RATE_LIMIT": "0", "HUB_LOG_LEVEL": "WARNING",
                             "HUB_HEADER_TIMEOUT": "1", "HUB_BODY_TIMEOUT": "1",
                             "HUB_MAX_PAYLOAD": str(BODY_LIMIT)}, practices=("alpha",))
    srv.keys = {"feed": srv.key("feed", "alpha")}
    yield srv
    stop(srv)


@pytest.fixture(scope="module")
def calm_p99(hub_web: Server) -> float:
    return percentile(timed(http_poster(address(hub_web), hub_web.keys["feed"], "CALM-"), 200), 99)


def address(server: Server) -> tuple[str, int]:
    host, port = server.base.removeprefix("http://").split(":")
    return host, int(port)


def connect(server: Server) -> socket.socket:
    return socket.create_connection(address(server), timeout=5)


def answer_of(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65_536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(body) >= length:
                break
    return data


def post_head(server: Server, extra: str) -> bytes:
    return (f"POST {URL} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {server.keys['feed']}\r\n"
            f"Content-Type: text/x-hub-feedline\r\n{extra}\r\n").encode()


# -- the deadlines, one connection at a time ------------------------------------------------------------
def test_a_head_not_complete_within_the_header_timeout_is_answered_408_and_closed(hub_web: Server) -> None:
    with connect(hub_web) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
        answer = answer_of(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 < waited < 2.5  # HUB_HEADER_TIMEOUT=1, checked four times a second


def test_a_body_not_complete_within_the_body_timeout_is_answered_408_and_the_server_goes_on(hub_web: Server) -> None:
    with connect(hub_web) as sock:
        sock.sendall(post_head(hub_web, "Content-Length: 1000\r\n") + b"FEEDLINE\nPAT|PARTIAL1|Cut|Off|F\n")
        answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert hub_web.call("GET", "/healthz")[0] == 200


def test_a_request_sent_in_pieces_within_the_deadlines_is_served(hub_web: Server) -> None:
    body = b"FEEDLINE\nPAT|PIECES1|Slow|Butsure|F\n"
    request = post_head(hub_web, f"Content-Length: {len(body)}\r\n") + body
    with connect(hub_web) as sock:
        for start in range(0, len(request), 40):
            sock.sendall(request[start:start + 40])
            time.sleep(0.01)
        answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"ACK|AA" in answer


def test_expect_100_continue_gets_one_interim_answer_then_the_answer(hub_web: Server) -> None:
    body = b"FEEDLINE\nPAT|EXPECT1|Wait|Forit|F\n"
    with connect(hub_web) as sock:
        sock.sendall(post_head(hub_web, f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n"))
        interim = sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"ACK|AA" in answer and b"100 Continue" not in answer


def test_a_chunked_body_sent_in_pieces_and_two_pipelined_requests_are_served(hub_web: Server) -> None:
    chunks = [b"FEEDLINE\n", b"PAT|CHUNK1|Chunk|Ed|M\n"]
    with connect(hub_web) as sock:
        sock.sendall(post_head(hub_web, "Transfer-Encoding: chunked\r\n"))
        for chunk in chunks:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            time.sleep(0.05)
        sock.sendall(b"0\r\n\r\n")
        answer = answer_of(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"ACK|AA" in answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n" * 2)  # two requests in one write
        answers = b""
        while answers.count(b"HTTP/1.1 200 ") < 2 and (chunk := sock.recv(65_536)):
            answers += chunk
    assert answers.count(b"HTTP/1.1 200 ") == 2


def test_an_oversized_body_is_answered_413_after_the_event_loop_dropped_it(hub_web: Server) -> None:
    body = b"FEEDLINE\n" + b"A" * (BODY_LIMIT + 10)
    with connect(hub_web) as sock:
        sock.sendall(post_head(hub_web, f"Content-Length: {len(body)}\r\n") + body)
        answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"at most" in answer


# -- under attack: a well-behaved feed's latency ------------------------------------------------------------
@pytest.mark.parametrize("index", range(len(ATTACKS)), ids=[name.split(":")[0].split(" (")[0] for name in ATTACKS])
def test_a_well_behaved_feed_stays_fast_under_attack(hub_web: Server, calm_p99: float, index: int) -> None:
    attack = http_attacks(address(hub_web), body_limit=BODY_LIMIT, flood_rate=FLOOD_RATE)[index]
    poster = http_poster(address(hub_web), hub_web.keys["feed"], f"H{index}-")
    with running(attack):
        took = timed(poster, 200, at_least=2.0)  # past both deadlines: the attack is cut off and comes back
    p50, p99 = percentile(took, 50), percentile(took, 99)
    print(f"{attack.name}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, unattacked p99 "
          f"{calm_p99 * 1e3:.1f} ms")  # the figures, for `pytest -s`
    assert hub_web.process.poll() is None, hub_web.log()[-2000:]
    assert p99 < max(0.100, 2 * calm_p99), f"{attack.name}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms " \
                                           f"(unattacked p99 {calm_p99 * 1e3:.1f} ms)"
    if attack.crowd.count <= 64 and not attack.churn:  # every attacker of these is cut off by a deadline
        assert attack.crowd.closed >= attack.crowd.count, (attack.crowd.closed, attack.crowd.answers)
    if attack.name.startswith(("slowloris", "a partial body")):
        assert attack.crowd.answers.get(b"HTTP/1.1 408 Request Timeout", 0) > 0, attack.crowd.answers
