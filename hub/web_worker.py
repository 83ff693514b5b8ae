"""The gunicorn worker of ``hub serve``: gunicorn's threaded worker, with each request read by its event loop.

gunicorn's ``gthread`` worker gives a connection to a thread as soon as it is readable, and the thread
then reads the request blocking: a client sending its headers a byte a second holds a thread, and as
many such clients as threads stop the process. Here the worker's event loop reads what each connection
sends, without blocking, until the request's head is complete and, for a body with a Content-Length of
at most ``HUB_MAX_PAYLOAD``, the body too; only then does a thread parse and answer the request, from
memory. So a slow or silent client costs a socket and a buffer, never a thread.

Deadlines (``hub.settings``):

- ``HUB_HEADER_TIMEOUT``: from a connection's first byte (or from its opening: a connection that sends
  nothing is closed as well) to the end of the request's head. A kept-alive connection starts it again
  with its next request.
- ``HUB_BODY_TIMEOUT``: from the end of the head to the end of the body. A body the thread reads itself
  (``Transfer-Encoding: chunked``, one larger than ``HUB_MAX_PAYLOAD``, or one the per-process buffer
  budget cannot hold now) is read under the same deadline: past it the read ends as if the client had
  gone (400, connection closed). It also bounds each write of the answer to a client that does not read.

A request late for its deadline is answered 408 and closed. When every connection slot is taken, the
oldest connections that have sent nothing yet make room. A connection the server closes lingers (to
read what the client still sends, so the answer is not cut by a reset) in the event loop, not in it
blocking for up to two seconds as gunicorn's own close does.

Answers go out the same way round: what the socket does not take at once (up to ``OUTBOX_LIMIT``) is
left to the event loop, which writes it as the client reads, within ``HUB_BODY_TIMEOUT``; and a
client's next request (pipelined) waits until it has taken its earlier answers (on Linux the socket is
writable only below ``UNSENT_LIMIT`` unsent bytes). So a client that never reads holds no thread, and
gets no more work done than its own buffers hold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from hub.api.intake import DRAIN_LIMIT
from hub.settings import current

log = logging.getLogger("hub.http")

HEAD_LIMIT = 65_536  # a head not ended within this is the parser's to refuse (gunicorn's header limits)
BUFFER_BUDGET = 64 * 1024 * 1024  # bodies held in memory by one process's event loop at a time
OUTBOX_LIMIT = 1024 * 1024  # of one answer, kept for the event loop to write
UNSENT_LIMIT = 16_384  # bytes of answers not yet sent beyond which a client's next request waits
LINGER_SECONDS = 2.0
SWEEP_SECONDS = 0.25
ACCEPT_BATCH = 64
REPORT_SECONDS = 10.0


def _writable(sock: Any) -> bool:
    """Room in the socket's send buffer (the kernel's own mark: about a third of it free)."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))


def _timeout_answer() -> bytes:
    body = json.dumps({"code": 408, "status": "Request Timeout",
                       "message": "the request did not arrive in time; send it again"}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


TIMEOUT_ANSWER = _timeout_answer()


class HubConn(TConn):
    """A connection and what the event loop has read of its next request."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.received = bytearray()
        self.deadline = 0.0  # of the head, then of the body, while the event loop reads
        self.head_end = -1
        self.need: int | None = None  # bytes (head and body) to hold before a thread takes the request
        self.reserved = 0  # of the process's buffer budget
        self.read_deadline: float | None = None  # for the reads a thread still makes
        self.continue_sent = False
        self.discard = 0  # bytes of an oversized body still to read and drop
        self.dropped = False  # its body was dropped: the thread reads nothing more of this request
        self.chunk_at = -1  # of a chunked body: where the next chunk's size line starts
        self.outbox = bytearray()  # of the answer: what the socket did not take at once, for the event loop


class DeadlineReader:
    """The connection's socket as gunicorn's parser reads it: no read waits past the request's deadline.
    Past it a read returns ``b""``, the end of the stream, which gunicorn and the app answer as a request
    cut short (a 400, or the connection closed) instead of a thread held."""

    def __init__(self, conn: HubConn) -> None:
        self._conn = conn
        self._sock = conn.sock

    def recv(self, size: int) -> bytes:
        deadline = self._conn.read_deadline
        if deadline is None:
            return bytes(self._sock.recv(size))
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        prior = self._sock.gettimeout()
        self._sock.settimeout(left if prior is None else min(prior, left))
        try:
            return bytes(self._sock.recv(size))
        except (TimeoutError, BlockingIOError):
            return b""
        finally:
            self._sock.settimeout(prior)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class WriteBehind:
    """The connection's socket as gunicorn writes the answer: what the socket takes at once goes now, the
    rest waits in ``conn.outbox`` for the event loop (so a client that does not read holds no thread).
    Beyond ``OUTBOX_LIMIT`` the thread writes itself, each write bound by HUB_BODY_TIMEOUT."""

    def __init__(self, conn: HubConn, worker: HubThreadWorker) -> None:
        self._conn = conn
        self._sock = conn.sock
        self._worker = worker  # its budget, read (an estimate) from this thread

    def sendall(self, data: bytes) -> None:
        outbox = self._conn.outbox
        view = memoryview(data)
        if not outbox:
            timeout = self._sock.gettimeout()
            self._sock.setblocking(False)  # (with a timeout set, send() would first wait for room)
            try:
                view = view[self._sock.send(view):]
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                self._sock.settimeout(timeout)
        if not view:
            return
        if len(outbox) + len(view) <= OUTBOX_LIMIT and self._worker.buffered + len(view) <= BUFFER_BUDGET:
            outbox += view
            return
        self._sock.sendall(bytes(outbox))
        outbox.clear()
        self._sock.sendall(view)

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class HubThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = current()
        self.header_timeout = float(settings.header_timeout)
        self.body_timeout = float(settings.body_timeout)
        self.max_payload = int(settings.max_payload)
        self.reading: dict[HubConn, None] = {}  # connections whose request the event loop is reading, oldest first
        self.lingering: dict[Any, float] = {}  # closed for writing, until the client closes or the deadline
        self.flushing: dict[HubConn, float] = {}  # answers the event loop writes, until their deadline
        self.buffered = 0
        self._next_sweep = 0.0
        self._late = 0
        self._next_report = 0.0

    # -- the event loop: accepting and reading ------------------------------------------------------
    def accept(self, listener: Any) -> None:
        """Every connection waiting (up to ``ACCEPT_BATCH``): under a flood of connections, one turn of
        the loop each would leave a well-behaved client's connection waiting behind the flood's."""
        for _ in range(ACCEPT_BATCH):
            if self.nr_conns >= self.worker_connections:
                return
            try:
                client, address = listener.accept()
            except OSError:
                return  # none left (EAGAIN), or gone before it was taken (ECONNABORTED)
            self._accepted(listener, client, address)

    def _accepted(self, listener: Any, client: Any, address: Any) -> None:
        self.nr_conns += 1
        with contextlib.suppress(OSError, AttributeError):  # Linux: "writable" means the client takes its answers
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_LIMIT)
        conn = HubConn(self.cfg, client, address, listener.getsockname())
        self._read(conn)

    def on_client_socket_readable(self, conn: HubConn, client: Any) -> None:
        """A kept-alive connection's next request: read by the event loop too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read(conn)
        self._on_readable(conn)

    def _read(self, conn: HubConn) -> None:
        conn.deadline = time.monotonic() + self.header_timeout
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: HubConn, _fileobj: Any = None) -> None:
        if conn not in self.reading:
            return
        try:
            data = conn.sock.recv(65_536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._unread(conn)
            self._close(conn)
            return
        conn.received += data
        self._progress(conn, len(data))

    def _progress(self, conn: HubConn, fresh: int) -> None:
        """Hand the request to a thread once what it needs is here."""
        if conn.discard:
            taken = min(conn.discard, len(conn.received) - conn.head_end)
            conn.discard -= taken
            del conn.received[conn.head_end:conn.head_end + taken]
            if not conn.discard:
                del conn.received[conn.head_end:]  # the connection closes after the 413
                self._dispatch(conn)
            return
        if conn.chunk_at >= 0:
            self._scan_chunks(conn)
            return
        if conn.head_end < 0:
            end = conn.received.find(b"\r\n\r\n", max(0, len(conn.received) - fresh - 3))
            if end < 0:
                if len(conn.received) > HEAD_LIMIT:
                    self._dispatch(conn)  # gunicorn's parser refuses it (400)
                return
            conn.head_end = end + 4
            if not self._plan_body(conn):
                self._dispatch(conn)
                return
            if conn.discard or conn.chunk_at >= 0:
                self._progress(conn, 0)
                return
        if conn.need is not None and len(conn.received) >= conn.need:
            self._dispatch(conn)

    def _plan_body(self, conn: HubConn) -> bool:
        """True when the event loop reads the body too: a Content-Length within the limit and the budget, a
        chunked body, or an oversized one it drops; False: a thread takes the request now."""
        length: int | None = None
        expect = chunked = False
        lines = bytes(conn.received[:conn.head_end]).split(b"\r\n")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding":
                chunked = value.strip().lower() == b"chunked"
            elif name == b"content-length":
                text = value.strip()
                if not text.isdigit() or length is not None:
                    return False  # the parser refuses it
                length = int(text)
            elif name == b"expect":
                expect = value.strip().lower() == b"100-continue"
        if chunked and length is None and not expect:
            conn.chunk_at = conn.head_end
            conn.deadline = time.monotonic() + self.body_timeout
            return True
        if chunked:  # with a Content-Length too (the parser refuses it), or waiting for "100 Continue"
            return False
        if length and length > self.max_payload:
            # the app answers 413 and would read the body to drop it, so that the client, busy sending,
            # sees the answer: dropped here instead, without a thread (beyond DRAIN_LIMIT it answers at once)
            conn.dropped = True
            if length > DRAIN_LIMIT or expect:  # a client that waits for "100 Continue" sends no body
                return False
            conn.discard = length
            conn.deadline = time.monotonic() + self.body_timeout
            return True
        if not length or self.buffered + length > BUFFER_BUDGET:
            return False
        conn.reserved = length
        self.buffered += length
        conn.need = conn.head_end + length
        conn.deadline = time.monotonic() + self.body_timeout
        if expect and lines[0].endswith(b"HTTP/1.1") and len(conn.received) < conn.need:
            try:  # the client waits for this before it sends the body
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                conn.continue_sent = True
            except OSError:
                pass  # a client that gets none sends the body after its own wait
        return True

    def _scan_chunks(self, conn: HubConn) -> None:
        """Follow a chunked body's framing to its end (the last chunk and the trailers), holding it whole,
        within HUB_MAX_PAYLOAD and the budget; past them, the thread reads the rest (the app answers 413)."""
        data = conn.received
        grown = len(data) - conn.reserved
        conn.reserved += grown
        self.buffered += grown
        while True:
            line_end = data.find(b"\r\n", conn.chunk_at)
            if line_end < 0:
                if len(data) - conn.chunk_at > 1024:
                    break  # no size line is that long: the parser refuses it
                if len(data) - conn.head_end > self.max_payload or self.buffered > BUFFER_BUDGET:
                    break
                return
            size_text = bytes(data[conn.chunk_at:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                break  # the parser refuses it
            if size == 0:
                end = data.find(b"\r\n", line_end + 2)  # trailer lines, then an empty line
                while end >= 0 and end != line_end + 2 and data[end - 2:end] != b"\r\n":
                    end = data.find(b"\r\n", end + 2)
                if end < 0:
                    return
                break
            conn.chunk_at = line_end + 2 + size + 2
            if conn.chunk_at - conn.head_end > self.max_payload or self.buffered > BUFFER_BUDGET:
                break
        conn.chunk_at = -1
        self._dispatch(conn)

    def _dispatch(self, conn: HubConn) -> None:
        if not _writable(conn.sock):
            # the client has not read its last answers (it pipelines without reading): its next
            # request waits, within its deadline, until it does, so no thread blocks writing to it
            self.poller.modify(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn))
            return
        self._unread(conn)
        now = time.monotonic()
        conn.read_deadline = now - 1 if conn.dropped else now + self.body_timeout
        conn.data_ready = True  # gunicorn's thread then reads no further before parsing
        self.enqueue_req(conn)

    def _on_writable(self, conn: HubConn, _fileobj: Any = None) -> None:
        if conn in self.reading:
            self._dispatch(conn)

    def _unread(self, conn: HubConn) -> None:
        """Out of the event loop's reading (to a thread, or closed)."""
        self.reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    # -- the thread: parse and answer ---------------------------------------------------------------
    def handle(self, conn: HubConn) -> Any:
        if conn.read_deadline is None:  # a request the client sent behind the last one, already buffered
            conn.read_deadline = time.monotonic() + self.header_timeout + self.body_timeout
        conn.sock.setblocking(True)
        conn.init()
        unreader = conn.parser.unreader
        if not isinstance(unreader.sock, DeadlineReader):
            unreader.sock = DeadlineReader(conn)
        if conn.received:
            unreader.unread(bytes(conn.received))
            conn.received = bytearray()
        return super().handle(conn)

    def handle_request(self, req: Any, conn: HubConn) -> Any:
        if conn.continue_sent:  # the event loop answered the expectation already
            req._expected_100_continue = False
            conn.continue_sent = False
        sock = conn.sock
        sock.settimeout(self.body_timeout)  # each write the thread makes itself (an answer past OUTBOX_LIMIT)
        conn.sock = WriteBehind(conn, self)
        try:
            return super().handle_request(req, conn)
        except TimeoutError:
            log.info("closed a connection whose client did not read its answer within HUB_BODY_TIMEOUT")
            return False
        finally:
            conn.sock = sock

    # -- back in the event loop: keep alive or close ------------------------------------------------
    def finish_request(self, conn: HubConn, fs: Any) -> None:
        self.buffered -= conn.reserved
        conn.reserved, conn.need, conn.head_end, conn.read_deadline = 0, None, -1, None
        conn.dropped, conn.chunk_at = False, -1
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        if conn.outbox:
            conn.reserved = len(conn.outbox)
            self.buffered += conn.reserved
            self._flush(conn, keep)
            return
        self._after_answer(conn, keep)

    def _flush(self, conn: HubConn, keep: bool) -> None:
        """The rest of the answer, written by the event loop as the client takes it (HUB_BODY_TIMEOUT)."""
        try:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self._on_flushable, conn, keep))
        except (OSError, ValueError, KeyError):
            conn.outbox.clear()
            self._close(conn)
            return
        self.flushing[conn] = time.monotonic() + self.body_timeout

    def _on_flushable(self, conn: HubConn, keep: bool, _fileobj: Any = None) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent, keep = len(conn.outbox), False
        del conn.outbox[:sent]
        if conn.outbox:
            return
        self.buffered -= conn.reserved
        conn.reserved = 0
        self.flushing.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        self._after_answer(conn, keep)

    def _after_answer(self, conn: HubConn, keep: bool) -> None:
        if not keep:
            self.nr_conns -= 1
            self._linger(conn)
            return
        try:
            ahead = conn.parser.unreader.take_buffered()
            conn.sock.setblocking(False)
            if ahead:  # the client sent its next request already: read on from there
                conn.received = bytearray(ahead)
                self._read(conn)
                self._progress(conn, len(ahead))
                return
            conn.set_timeout()
            if not self.alive:
                conn.timeout = min(conn.timeout, time.monotonic() + LINGER_SECONDS)
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
        except Exception:
            self._unread(conn)
            self.nr_conns -= 1
            conn.close()

    def _close(self, conn: HubConn) -> None:
        self.buffered -= conn.reserved
        conn.reserved = 0
        self.nr_conns -= 1
        conn.close()

    def _linger(self, conn: HubConn) -> None:
        """Close after the answer: half-close, then read (and drop) until the client closes, without blocking."""
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        if len(self.lingering) >= self.worker_connections:
            conn.close()
            return
        self.lingering[sock] = time.monotonic() + LINGER_SECONDS
        self.poller.register(sock, selectors.EVENT_READ, self._on_lingering_readable)

    def _on_lingering_readable(self, sock: Any) -> None:
        try:
            if sock.recv(65_536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock: Any) -> None:
        self.lingering.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()

    # -- deadlines (gunicorn's loop calls this at least once a second) ------------------------------
    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        for conn in list(self.reading):
            if conn.deadline <= now:
                self._late += bool(conn.received)
                self._expire(conn, answer=bool(conn.received))
            elif not self.alive and not conn.received:
                self._expire(conn, answer=False)
        for sock, deadline in list(self.lingering.items()):
            if deadline <= now:
                self._end_linger(sock)
        for conn, deadline in list(self.flushing.items()):
            if deadline <= now:  # a client that does not take its answer
                self.flushing.pop(conn)
                conn.outbox.clear()
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(conn.sock)
                self._late += 1
                self._close(conn)
        if self.nr_conns >= self.worker_connections:
            self._make_room()
        if self._late and now >= self._next_report:
            log.warning("closed %d connections whose request did not arrive within HUB_HEADER_TIMEOUT (%gs) "
                        "or HUB_BODY_TIMEOUT (%gs)", self._late, self.header_timeout, self.body_timeout)
            self._late = 0
            self._next_report = now + REPORT_SECONDS

    def _expire(self, conn: HubConn, *, answer: bool) -> None:
        self._unread(conn)
        if answer:
            with contextlib.suppress(OSError):
                conn.sock.send(TIMEOUT_ANSWER)
        self._close(conn)

    def _make_room(self) -> None:
        """Every slot taken: the oldest connections that sent nothing yet go (a tenth of the slots)."""
        room = max(1, self.worker_connections // 10)
        for conn in list(self.reading):
            if room == 0:
                break
            if not conn.received and conn.head_end < 0:
                self._expire(conn, answer=False)
                room -= 1
