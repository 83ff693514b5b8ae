"""MLLP framing (0x0B … 0x1C 0x0D), shared by the listener and the clients that talk to it."""

from __future__ import annotations

import socket

START_BLOCK = 0x0B
END_BLOCK = 0x1C


def frame(data: bytes) -> bytes:
    return b"\x0b" + data + b"\x1c\x0d"


def read_answer(sock: socket.socket) -> bytes:
    """Read one framed answer (up to its end block); what arrived so far if the peer closes."""
    buf = b""
    while b"\x1c" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf
