"""MLLP intake is audited per connection (opened, closed with its counts), never per message: a real
``hub mllp`` on a loopback port, real sockets, the audit log read from its store."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

from hub.mllp.framing import frame, read_answer
from tests.hl7v2.test_hl7v2_mllp import message, msa, start, stop


def audit_rows(env: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    path = env["HUB_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT action, target, practice, address, outcome FROM audit_log ORDER BY id").fetchall()
    db.close()
    return rows


def test_a_connection_leaves_an_opened_and_a_closed_row_with_its_counts(tmp_path: Path) -> None:
    listener = start(tmp_path, "--practice", "northderm")
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10):
            pass  # a probe that sends nothing (a load balancer's check): no row
        with listener.connect() as sock:
            client = f"127.0.0.1:{sock.getsockname()[1]}"
            codes = []
            for control_id in ("AUD-1", "AUD-2", "AUD-3", "AUD-1"):  # the last is a repeat: a duplicate
                sock.sendall(frame(message(control_id)))
                codes.append(msa(read_answer(sock)))
        assert codes == ["AA"] * 4
    finally:
        assert stop(listener) == 0  # the listener writes the closing row before it stops
    rows = audit_rows(listener.env)
    interface = f"mllp:{listener.port}"
    # four messages, two rows: one when the first frame came, one when the connection closed
    assert rows == [("intake.mllp", interface, "northderm", client, "opened"),
                    ("intake.mllp", interface, "northderm", client, "closed: 4 frames, accepted=3 duplicate=1")]


def test_frames_of_an_unknown_facility_are_counted_refused(tmp_path: Path) -> None:
    listener = start(tmp_path)  # no --practice: MSH-4 picks the practice
    try:
        with listener.connect() as sock:
            sock.sendall(frame(message("FAC-1")))
            first = msa(read_answer(sock))
            sock.sendall(frame(message("FAC-2", facility="NOBODY")))
            second = msa(read_answer(sock))
        assert (first, second) == ("AA", "AR")
    finally:
        assert stop(listener) == 0
    rows = audit_rows(listener.env)
    assert [r[4] for r in rows] == ["opened", "closed: 2 frames, accepted=1 refused=1"]
    assert rows[-1][2] == "northderm" and all("FAC-" not in (r[4] or "") for r in rows)
