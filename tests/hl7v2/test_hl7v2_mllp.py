"""``hub mllp`` as a subprocess on a loopback port, spoken to over real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.mllp.framing import frame, read_answer
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "connectors" / "hub_hl7v2" / "samples"
HUB = str(Path(sys.executable).parent / "hub")


def message(control_id: str, facility: str = "NORTHDERM", extra: str = "") -> bytes:
    return (f"MSH|^~\\&|DERMPM|{facility}|HUB|MSO|20250301080000-0500||SIU^S12^SIU_S12|{control_id}|P|2.5.1\r"
            f"SCH||{control_id}|||||NP||30|min|^^30^20250310090000-0500\r"
            f"PID|1||MRN-{control_id}^^^NORTHDERM^MR||Sampleton^Avery\r{extra}").encode()


def msa(answer: bytes) -> str:
    for segment in answer.strip(b"\x0b\x1c\r").split(b"\r"):
        if segment.startswith(b"MSA|"):
            return segment.split(b"|")[1].decode()
    return "NONE"


@dataclass
class Listener:
    process: subprocess.Popen
    port: int
    env: dict[str, str]

    def connect(self, timeout: float = 10) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def send(self, data: bytes) -> bytes:
        with self.connect() as sock:
            sock.sendall(frame(data))
            return read_answer(sock)

    def stored_control_ids(self) -> list[str]:
        import sqlite3

        path = self.env["HUB_DATABASE_URL"].removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT control_id FROM messages WHERE status != 'duplicate'").fetchall()
        db.close()
        return [r[0] for r in rows]

    def status_when_processed(self, control_id: str, timeout: float = 60) -> str:
        """The message's status once processing (after the answer, in a child process) has taken it."""
        import sqlite3

        path = self.env["HUB_DATABASE_URL"].removeprefix("sqlite:///")
        deadline = time.monotonic() + timeout
        while True:
            with sqlite3.connect(path) as db:
                row = db.execute("SELECT status FROM messages WHERE control_id = ?", (control_id,)).fetchone()
            db.close()
            if (row and row[0] != "received") or time.monotonic() > deadline:
                return row[0] if row else "missing"
            time.sleep(0.2)


def hub(env: dict[str, str], *args: str) -> None:
    subprocess.run([HUB, *args], env=env, check=True, capture_output=True)


def start(tmp: Path, *args: str, practices: tuple[tuple[str, str | None], ...] = (("northderm", None),)
          ) -> Listener:
    env = {**os.environ, "HUB_DATABASE_URL": f"sqlite:///{tmp / 'hub.db'}", "HUB_SQLITE_SYNCHRONOUS": "NORMAL"}
    env.pop("HUB_REDIS_URL", None)
    for slug, mapping in practices:
        extra = []
        if mapping:
            (tmp / f"{slug}.yaml").write_text(mapping)
            extra = ["--mapping", str(tmp / f"{slug}.yaml")]
        hub(env, "practice", "add", slug, "--name", slug.title(), *extra)
    port = free_port()
    process = subprocess.Popen([HUB, "mllp", "--host", "127.0.0.1", "--port", str(port), *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening" in line, line
    return Listener(process, port, env)


def stop(listener: Listener) -> int:
    if listener.process.poll() is None:
        listener.process.send_signal(signal.SIGTERM)
    try:
        return listener.process.wait(timeout=20)
    finally:
        if listener.process.poll() is None:
            listener.process.kill()
            listener.process.wait()
        if listener.process.stdout:
            listener.process.stdout.close()


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    running = start(tmp_path_factory.mktemp("mllp"), "--practice", "northderm", "--max-size", "4096",
                    "--idle-timeout", "1.5", "--frame-timeout", "1.5")
    yield running
    stop(running)


def test_python_hl7_mllp_client_gets_aa(listener: Listener) -> None:
    from hl7.client import MLLPClient

    with MLLPClient("127.0.0.1", listener.port) as client:
        answer = client.send_message(message("PYHL7-1"))
        second = client.send_message(message("PYHL7-2"))
    assert msa(answer) == "AA" and b"PYHL7-1" in answer
    assert msa(second) == "AA" and b"PYHL7-2" in second


def test_mllp_send_command(listener: Listener, tmp_path: Path) -> None:
    path = tmp_path / "two.hl7"
    path.write_bytes(message("CMD-1").replace(b"\r", b"\n") + b"\n" + message("CMD-2").replace(b"\r", b"\n"))
    out = subprocess.run([str(Path(sys.executable).parent / "mllp_send"), "--loose", "--port", str(listener.port),
                          "--file", str(path), "127.0.0.1"], capture_output=True, timeout=30, check=True).stdout
    assert b"MSA|AA|CMD-1" in out and b"MSA|AA|CMD-2" in out


def test_many_messages_on_one_connection_and_resend_is_aa(listener: Listener) -> None:
    with listener.connect() as sock:
        codes = []
        for i in range(5):
            sock.sendall(frame(message(f"SEQ-{i}")))
            codes.append(msa(read_answer(sock)))
        sock.sendall(frame(message("SEQ-0")))  # the same message again: a duplicate, still AA
        codes.append(msa(read_answer(sock)))
    assert codes == ["AA"] * 6
    assert listener.stored_control_ids().count("SEQ-0") == 1


def test_concurrent_connections(listener: Listener) -> None:
    results: list[str] = []

    def client(n: int) -> None:
        with listener.connect() as sock:
            for i in range(4):
                sock.sendall(frame(message(f"CC-{n}-{i}")))
                results.append(msa(read_answer(sock)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["AA"] * 32


def test_garbage_and_unreadable_get_ar_with_err(listener: Listener) -> None:
    answer = listener.send(b"this is not hl7")
    assert msa(answer) == "AR" and b"ERR|" in answer
    no_control = listener.send(b"MSH|^~\\&|A|NORTHDERM|C|D|2025||ADT^A01||P|2.5\r")
    assert msa(no_control) == "AR" and b"MSH-10" in no_control
    no_patient = listener.send(b"MSH|^~\\&|A|NORTHDERM|C|D|2025||ADT^A01|NOPID-1|P|2.5\rEVN|A01\r")
    # readable and stored: acknowledged; processing, after the answer, finds no patient
    assert msa(no_patient) == "AA" and b"MSA|AA|NOPID-1" in no_patient
    assert listener.status_when_processed("NOPID-1") == "error"


def test_ack_after_processing_answers_a_stored_but_unusable_message_ae(tmp_path: Path) -> None:
    running = start(tmp_path, "--practice", "northderm", "--ack-after-processing")
    try:
        no_patient = running.send(b"MSH|^~\\&|A|NORTHDERM|C|D|2025||ADT^A01|NOPID-2|P|2.5\rEVN|A01\r")
        assert msa(no_patient) == "AE" and b"MSA|AE|NOPID-2" in no_patient and b"ERR|" in no_patient
        assert msa(running.send(message("PROCESSED-1"))) == "AA"
        assert running.status_when_processed("PROCESSED-1", timeout=0) == "processed"  # before its answer
    finally:
        stop(running)


def test_a_frame_of_several_messages_refuses_only_the_bad_one(listener: Listener) -> None:
    bad = b"MSH|^~\\&|DERMPM|NORTHDERM|HUB|MSO|20250301080000||SIU^S12||P|2.5.1\rPID|1||MRN-X^^^NORTHDERM^MR\r"
    answer = listener.send(message("BATCH-1") + bad + message("BATCH-3"))
    codes = [seg.split(b"|")[1] for seg in answer.strip(b"\x0b\x1c\r").split(b"\r") if seg.startswith(b"MSA|")]
    assert codes == [b"AA", b"AR", b"AA"]
    assert b"MSA|AA|BATCH-1" in answer and b"MSA|AA|BATCH-3" in answer
    assert b"|MSH^1^10|" in answer and b"MSH-10 (message control id) is missing" in answer
    stored = listener.stored_control_ids()
    assert "BATCH-1" in stored and "BATCH-3" in stored


def test_oversize_is_refused_and_the_connection_goes_on(listener: Listener) -> None:
    big = message("BIG-1", extra="NTE|1||" + "x" * 6000 + "\r")
    with listener.connect() as sock:
        sock.sendall(frame(big))
        refused = read_answer(sock)
        sock.sendall(frame(message("AFTER-BIG")))
        after = read_answer(sock)
    assert msa(refused) == "AR" and b"BIG-1" in refused and b"limit" in refused
    assert msa(after) == "AA"
    assert "BIG-1" not in listener.stored_control_ids()


def test_idle_and_slow_clients_are_closed_without_harming_others(listener: Listener) -> None:
    idle, slow = listener.connect(), listener.connect()
    slow.sendall(b"\x0b" + message("SLOW-1")[:40])  # a frame that never ends
    started = time.monotonic()
    assert listener.send(message("MEANWHILE-1"))  # others are served meanwhile
    idle.settimeout(10)
    slow.settimeout(10)
    assert idle.recv(10) == b""  # closed by the server
    assert slow.recv(10) == b""
    assert time.monotonic() - started < 8
    idle.close()
    slow.close()
    assert msa(listener.send(message("AFTER-IDLE"))) == "AA"


def test_unknown_practice_is_a_startup_error(tmp_path: Path) -> None:
    env = {**os.environ, "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    done = subprocess.run([HUB, "mllp", "--practice", "nobody", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "nobody" in done.stderr and "Traceback" not in done.stderr


def test_facility_picks_the_practice(tmp_path: Path) -> None:
    mapping = "version: 1\nconnectors:\n  hl7v2:\n    facilities: [SFAM-EAST, SFAM-WEST]\n"
    running = start(tmp_path, practices=(("northderm", None), ("southfam", mapping)))
    try:
        assert msa(running.send(message("F-1", facility="NorthDerm"))) == "AA"
        assert msa(running.send(message("F-2", facility="SFAM-WEST^1.2.3^ISO"))) == "AA"
        unknown = running.send(message("F-3", facility="ELSEWHERE"))
        assert msa(unknown) == "AR" and b"MSH-4" in unknown
        out = subprocess.run([HUB, "messages", "list", "--practice", "southfam", "--format", "json"],
                             env=running.env, capture_output=True, text=True, check=True).stdout
        assert "F-2" in out and "F-1" not in out
    finally:
        stop(running)


def test_sigterm_during_traffic_loses_no_acknowledged_message(tmp_path: Path) -> None:
    running = start(tmp_path, "--practice", "northderm")
    acknowledged: list[str] = []

    def sender(n: int) -> None:
        try:
            with running.connect() as sock:
                for i in range(10_000):
                    control = f"T{n}-{i}"
                    sock.sendall(frame(message(control)))
                    if msa(read_answer(sock)) == "AA":
                        acknowledged.append(control)
        except OSError:
            pass

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert stop(running) == 0
    for t in threads:
        t.join(20)
    assert acknowledged, "no message was acknowledged before the stop"
    stored = set(running.stored_control_ids())
    assert not [c for c in acknowledged if c not in stored]


def test_a_store_failure_is_answered_ae_not_silence(tmp_path: Path) -> None:
    import sqlite3

    from hub_hl7v2 import HL7v2Connector

    from hub.mllp.server import Frame, MllpServer
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'hub.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")
    runtime.engine.dispose()
    with sqlite3.connect(tmp_path / "hub.db") as db:  # the message store breaks under the listener
        db.execute("DROP TABLE messages")
    db.close()
    server = MllpServer(runtime, HL7v2Connector(), practice="northderm", port=0)
    try:
        answer = server.handle(Frame(message("STORE-1")))
    finally:
        server._pool.shutdown()
    assert answer is not None and msa(answer) == "AE" and b"STORE-1" in answer and b"again" in answer
