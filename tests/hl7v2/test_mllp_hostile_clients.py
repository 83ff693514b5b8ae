"""Hostile clients against a real ``hub mllp``: slow frames, frames that never end, idle connections, clients
that never read their ACKs, connection floods. During each attack a sender on one connection sends 200
messages, each after the last one's ACK: every one is acknowledged AA and the p99 stays under 100 ms (or
twice the unattacked p99 measured just before, on a machine too busy for that). Also: the connection limit, noise
between frames, and MLLP over TLS."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hl7v2.test_hl7v2_mllp import HUB, Listener, message, msa, start, stop
from tests.support.hostile import MllpSender, mllp_attacks, percentile, running, timed

FLOOD_RATE = 500  # connections a second: a flood the test's own process keeps up on a shared 2-core machine
ATTACKS = [attack.name for attack in mllp_attacks(("127.0.0.1", 0), flood_rate=FLOOD_RATE)]


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    # no --practice: MSH-4 picks it, so the frames of an unknown facility are refused without being stored
    running_listener = start(tmp_path_factory.mktemp("mllp-hostile"), "--max-size", "65536", "--idle-timeout", "1",
                             "--frame-timeout", "1")
    yield running_listener
    stop(running_listener)


@pytest.fixture
def calm_p99(listener: Listener) -> float:
    """The unattacked p99 just before each attack: the yardstick of a machine as busy as during it (the
    suite runs on two processes)."""
    sender = MllpSender(("127.0.0.1", listener.port), "CALM")
    try:
        return percentile(timed(sender, 200), 99)
    finally:
        sender.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("index", range(len(ATTACKS)), ids=[name.split(":")[0].split(" (")[0] for name in ATTACKS])
def test_a_well_behaved_sender_stays_fast_under_attack(listener: Listener, calm_p99: float, index: int) -> None:
    attack = mllp_attacks(("127.0.0.1", listener.port), flood_rate=FLOOD_RATE)[index]
    sender = MllpSender(("127.0.0.1", listener.port), f"M{index}-")
    rss_before = rss_kib(listener.process.pid)
    try:
        with running(attack):
            took = timed(sender, 200, at_least=2.0)  # past the timeouts: the attack is cut off and comes back
    finally:
        sender.close()
    p50, p99 = percentile(took, 50), percentile(took, 99)
    print(f"{attack.name}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, unattacked p99 "
          f"{calm_p99 * 1e3:.1f} ms")  # the figures, for `pytest -s`
    assert listener.process.poll() is None
    assert p99 < max(0.100, 2 * calm_p99), f"{attack.name}: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms " \
                                           f"(unattacked p99 {calm_p99 * 1e3:.1f} ms)"
    if not attack.churn and attack.crowd.count <= 64:  # each of these is cut off by --frame-timeout
        assert attack.crowd.closed >= attack.crowd.count, attack.crowd.closed
    if attack.crowd.count == 500:
        assert attack.crowd.closed >= 250  # --idle-timeout (most of them, within the run)
    assert rss_kib(listener.process.pid) - rss_before < 64 * 1024  # what they send is not kept


def test_bytes_between_frames_do_not_keep_a_connection_open(listener: Listener) -> None:
    with listener.connect() as sock:
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"\r")
                sock.settimeout(0.2)
                if sock.recv(100) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        waited = time.monotonic() - started
    assert closed and waited < 3  # --idle-timeout 1, however much noise


def test_past_the_connection_limit_the_longest_idle_connection_makes_room(tmp_path: Path) -> None:
    limited = start(tmp_path, "--practice", "northderm", "--max-connections", "20")
    opened: list[socket.socket] = []
    try:
        opened += [limited.connect() for _ in range(20)]
        time.sleep(0.3)
        assert msa(limited.send(message("ROOM-1"))) == "AA"  # the oldest idle one was closed for it
        opened[0].settimeout(2)
        assert opened[0].recv(10) == b""
        opened.append(limited.connect())
        for sock in opened[1:]:
            sock.sendall(b"\x0bMSH|")  # in a frame: not idle
        time.sleep(0.3)
        with limited.connect() as extra:  # all twenty busy: the new one is closed
            extra.settimeout(2)
            assert extra.recv(10) == b""
    finally:
        for sock in opened:
            sock.close()
        stop(limited)


def self_signed(folder: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "mllp.crt", folder / "mllp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_mllp_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("HUB_MLLP_TLS_CERT", str(cert))
    monkeypatch.setenv("HUB_MLLP_TLS_KEY", str(key))
    secure = start(tmp_path, "--practice", "northderm", "--frame-timeout", "1")
    try:
        client = ssl.create_default_context(cafile=str(cert))
        sender = MllpSender(("127.0.0.1", secure.port), "TLS",
                            wrap=lambda sock: client.wrap_socket(sock, server_hostname="localhost"))
        try:
            took = timed(sender, 20)
        finally:
            sender.close()
        assert len(took) == 20  # every message acknowledged AA over TLS (MllpSender checks each answer)
        with socket.create_connection(("127.0.0.1", secure.port), timeout=5) as plain:
            plain.sendall(b"\x0b" + message("PLAIN-1") + b"\x1c\r")
            got = b""
            with pytest.raises(OSError):
                while chunk := plain.recv(65_536):
                    got += chunk
                raise ConnectionResetError  # closed without an answer
            assert b"MSA|AA" not in got
    finally:
        stop(secure)


def test_an_unreadable_certificate_is_one_line_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    env = {**os.environ, "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}",
           "HUB_MLLP_TLS_CERT": str(tmp_path / "missing.crt")}
    done = subprocess.run([HUB, "mllp", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "HUB_MLLP_TLS_CERT" in done.stderr and "Traceback" not in done.stderr
