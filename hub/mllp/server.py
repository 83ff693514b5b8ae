"""The MLLP listener: framed messages in over TCP, stored, then answered on the same connection.

MLLP is transport, not wire format: this module frames bytes (0x0B … 0x1C 0x0D) and
hands each frame to the connector (``split``, ``acknowledge``, ``answer``) and to
``hub.pipeline.intake.receive``. It never reads HL7 itself; the only thing it asks
of an envelope is ``meta["facility"]``, the sender's facility, to pick the practice
when the port is not bound to one.

Promises:

- an answer is written only after the message's commit has returned, so an
  acknowledged message is never lost; every frame gets an answer, also when the
  practice is unknown (a rejection), the store fails (an application error) or the
  frame is larger than the size limit (a rejection, the rest of it discarded);
- many messages per connection, one after the other, and many connections at once
  (asyncio). The frames of all connections go to one group committer
  (hub.pipeline.group_commit): the frames that arrive while a commit runs are
  stored together in the next transaction, so sixteen busy connections cost about
  one commit per round, not sixteen, while the frame of a connection alone is
  committed at once by the event loop itself (no wait for company, no thread
  hand-off; on PostgreSQL by one statement, one round trip: hub.store.messages.save_alone; on
  SQLite by its insert between the driver's BEGIN IMMEDIATE and COMMIT: hub.pipeline.intake); and the
  stored ids reach the queue in batches, or without a queue a processing child process, when intake
  pauses (hub.pipeline.dispatch_buffer). Finding a frame's practice by its sending facility may read
  the database, so that runs on a small thread pool; the connections' audit rows are written there
  too, at the store's write turn;
- a connection idle longer than ``idle_timeout`` (bytes outside a frame do not count:
  noise keeps no connection open) or a frame not complete within ``frame_timeout`` is
  closed, without touching other connections; so is a client that does not take its
  answer within ``frame_timeout`` (it stops reading its ACKs): the listener reads
  nothing more from it meanwhile, so what it sends waits in its own buffers, not in
  the listener's memory;
- at most ``max_connections`` at once: one more makes the listener close its longest
  idle connection (between frames, nothing being stored), or, with none idle, the new one;
- with ``tls`` (an ``ssl.SSLContext``), MLLP over TLS; the handshake is bound by
  ``frame_timeout`` too;
- SIGTERM / SIGINT: stop accepting, let frames being stored finish and their
  answers go out, then close. A frame cut off by shutdown was never acknowledged,
  so the sender sends it again; the message store's dedup keeps it single.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import signal
import socket
import ssl
import struct
import termios
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.connector import Connector, Envelope, Outcome
from hub.errors import HubError, NotFound
from hub.mapping import load_mapping
from hub.mllp import framing
from hub.mllp.audit import ConnectionTally, peer_address
from hub.mllp.framing import END_BLOCK, START_BLOCK
from hub.pipeline.group_commit import GroupCommitter, Pending
from hub.pipeline.intake import Arrival, Receipt
from hub.pipeline.process import write_turn
from hub.security.audit import record
from hub.store.engine import save_failure_reason
from hub.store.engine import writer as store_writer
from hub.store.practices import list_practices

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.mllp")

CARRIAGE_RETURN = 0x0D
HEAD_KEPT = 16_384  # of an oversize frame: enough to answer it (its header)
SEND_BUFFER = 16_384  # bytes of answers a connection may have unsent (kernel and transport, each)
UNTAKEN_LIMIT = 4096  # bytes of answers the client's TCP has not acknowledged before its next frame waits


def unsent(sock: Any) -> int:
    """Bytes written to the socket that the peer's TCP has not acknowledged yet (Linux; 0 elsewhere)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


@dataclass(frozen=True)
class Limits:
    max_size: int = 1_048_576
    idle_timeout: float = 600.0
    frame_timeout: float = 60.0
    shutdown_grace: float = 30.0
    max_connections: int = 1000


@dataclass(frozen=True)
class Frame:
    data: bytes
    oversize: bool = False


class _Later:
    """A frame not stored at once (``MllpServer._stored_at_once``)."""


LATER = _Later()

# what a frame becomes before storage: an answer already known (a refusal), or per message either the
# answer (a message no practice takes) or the payload to store
Plan = bytes | None | list[bytes | Pending]


class MllpServer:
    def __init__(self, runtime: Runtime, connector: Connector, *, practice: str | None = None,
                 host: str = "127.0.0.1", port: int = 2575, limits: Limits | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.runtime = runtime
        self.connector = connector
        self.practice = practice
        self.host, self.port = host, port
        self.limits = limits or Limits()
        self.tls = tls
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mllp-route")
        self._committer = GroupCommitter(runtime)
        self._clients: dict[asyncio.Task[Any], bool] = {}  # task → busy storing a frame
        self._idle: dict[asyncio.Task[Any], None] = {}  # between frames, longest idle first
        self._facilities = FacilityDirectory(runtime, connector.name)
        self._stopping = asyncio.Event()
        self.origin = f"mllp:{port}"

    # -- lifecycle ----------------------------------------------------------------
    def run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        server = await asyncio.start_server(self._client, self.host, self.port, limit=65_536, backlog=2048,
                                            ssl=self.tls,
                                            ssl_handshake_timeout=self.limits.frame_timeout if self.tls else None)
        bound = server.sockets[0].getsockname()
        log.info("listening on %s:%s", bound[0], bound[1])
        print(f"hub mllp: listening on {bound[0]}:{bound[1]}"
              f"{' for practice ' + self.practice if self.practice else ' (practice from MSH-4)'}", flush=True)
        async with server:
            await self._stopping.wait()
            server.close()
            await self._drain()
        self._pool.shutdown(wait=True)
        flush = getattr(self.runtime.dispatcher, "flush", None)
        if flush is not None:  # ids still buffered for the queue go out before the process ends
            flush()
        print("hub mllp: stopped", flush=True)

    async def _drain(self) -> None:
        """Idle connections are closed now; busy ones first finish storing and answering."""
        deadline = time.monotonic() + self.limits.shutdown_grace
        for task, busy in list(self._clients.items()):
            if not busy:
                task.cancel()
        while self._clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            for task, busy in list(self._clients.items()):
                if not busy:
                    task.cancel()
        for task in list(self._clients):
            task.cancel()

    # -- one connection ---------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= self.limits.max_connections and not self._make_room():
            writer.close()
            return
        # small send buffers: a client that stops reading its ACKs is paused (drain) after some KiB of
        # them, not after the megabytes an auto-tuned buffer holds, each its frame's work
        with contextlib.suppress(OSError, AttributeError):
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        writer.transport.set_write_buffer_limits(high=SEND_BUFFER)
        self._clients[task] = False
        tally = ConnectionTally(self.origin, peer_address(writer.get_extra_info("peername")))
        try:
            async for frame in self._frames(reader, task):
                await self._taken(writer)
                self._clients[task] = True
                self._audit_progress(tally)
                answer: bytes | None | _Later = LATER
                if self.practice or frame.oversize:  # known without the database: perhaps stored at once
                    if len(self._clients) > 1:  # the frames already arrived on other connections are read meanwhile
                        await asyncio.sleep(0)
                    answer = self._stored_at_once(frame, tally)
                if isinstance(answer, _Later):  # shielded: a frame being stored is stored, even if the connection ends
                    answer = await asyncio.shield(self._handle(frame, tally))
                if answer:
                    writer.write(framing.frame(answer))
                    if writer.transport.get_write_buffer_size():  # not all sent at once: wait for the client
                        async with asyncio.timeout(self.limits.frame_timeout):  # no task of its own, as wait_for's
                            await writer.drain()
                self._clients[task] = False
                if self._stopping.is_set():
                    break
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._clients.pop(task, None)
            self._idle.pop(task, None)
            if tally.opened:  # before any await: the pool is still open while _drain waits for this client
                self._audit(tally, tally.summary("closed"))
            writer.close()
            with contextlib.suppress(TimeoutError, ConnectionError, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _taken(self, writer: asyncio.StreamWriter) -> None:
        """Wait until the client has taken its earlier answers (at most ``frame_timeout``): one that sends
        frames without reading the ACKs gets a few frames' work, then nothing until it reads or is closed."""
        sock = writer.get_extra_info("socket")
        deadline = time.monotonic() + self.limits.frame_timeout
        while writer.transport.get_write_buffer_size() + unsent(sock) > UNTAKEN_LIMIT:
            if time.monotonic() >= deadline:
                raise TimeoutError
            await asyncio.sleep(0.02)

    def _make_room(self) -> bool:
        """Close the longest idle connection for a new one; False when none is idle."""
        for task in self._idle:
            self._idle.pop(task)
            task.cancel()
            return True
        return False

    async def _frames(self, reader: asyncio.StreamReader, task: asyncio.Task[Any]) -> AsyncIterator[Frame]:
        limits = self.limits
        buf = bytearray()
        in_frame = oversize = False
        deadline = 0.0
        idle_until = time.monotonic() + limits.idle_timeout  # from the last frame: noise does not extend it
        while True:
            if not in_frame:
                self._idle[task] = None
            timeout = max(idle_until - time.monotonic(), 0.001)
            if in_frame:
                timeout = min(timeout, max(deadline - time.monotonic(), 0.001))
            async with asyncio.timeout(timeout):
                chunk = await reader.read(65_536)
            if not chunk:
                return
            while chunk:
                if not in_frame:
                    start = chunk.find(START_BLOCK)
                    if start < 0:
                        break  # bytes between frames (a stray CR, noise): not a message
                    self._idle.pop(task, None)
                    in_frame, oversize = True, False
                    deadline = time.monotonic() + limits.frame_timeout
                    buf.clear()
                    chunk = chunk[start + 1:]
                end = chunk.find(END_BLOCK)
                body = chunk if end < 0 else chunk[:end]
                if not oversize:
                    buf += body
                    if len(buf) > limits.max_size:
                        oversize = True
                        del buf[HEAD_KEPT:]
                if end < 0:
                    break
                in_frame = False
                chunk = chunk[end + 1:]
                if chunk[:1] == bytes([CARRIAGE_RETURN]):
                    chunk = chunk[1:]
                yield Frame(bytes(buf), oversize)
                idle_until = time.monotonic() + limits.idle_timeout
                buf.clear()

    # -- one frame ----------------------------------------------------------------------
    def _stored_at_once(self, frame: Frame, tally: ConnectionTally) -> bytes | None | _Later:
        """The answer of a frame whose practice is known without the database, stored here and now, on
        the event loop (it waits one commit), when its connection is the only one with a frame in hand and
        nothing else commits: no task and no thread hand-off, so one connection's answers come as soon as
        the commit returns. ``LATER`` (nothing done) otherwise: then ``_handle``."""
        if sum(self._clients.values()) > 1:
            return LATER
        plan = self._plan(frame)
        if not isinstance(plan, list):
            tally.add("refused")
            return plan
        if len(plan) != 1 or not isinstance(plan[0], Pending) or not self._committer.commit_if_idle(plan[0]):
            return LATER
        return self._finish(frame, plan, tally)

    async def _handle(self, frame: Frame, tally: ConnectionTally | None = None) -> bytes | None:
        """Store the frame's messages (with the other connections' frames), then return the answer."""
        if self.practice or frame.oversize:
            plan = self._plan(frame)
        else:  # the facility directory may read the database: not on the event loop
            plan = await asyncio.get_running_loop().run_in_executor(self._pool, self._plan, frame)
        if not isinstance(plan, list):
            if tally is not None:
                tally.add("refused")
            return plan
        parts = [part for part in plan if isinstance(part, Pending)]
        # the only connection with a frame in hand, and nothing committing: stored here at once (the loop
        # waits one commit), sparing two thread hand-offs; otherwise the frames in hand commit together
        alone = len(parts) == 1 and sum(self._clients.values()) <= 1
        if not (alone and self._committer.commit_if_idle(parts[0])):
            await asyncio.gather(*(asyncio.wrap_future(self._committer.enqueue(p)) for p in parts),
                                 return_exceptions=True)
        return self._finish(frame, plan, tally)

    def handle(self, frame: Frame) -> bytes | None:
        """The same, blocking (for a caller on a thread of its own). Never raises: every frame is answered."""
        plan = self._plan(frame)
        if not isinstance(plan, list):
            return plan
        for part in plan:
            if isinstance(part, Pending):
                concurrent.futures.wait([self._committer.enqueue(part)])
        return self._finish(frame, plan)

    def _plan(self, frame: Frame) -> Plan:
        connector = self.connector
        if frame.oversize:
            return self._refuse(frame.data, f"message larger than the limit of {self.limits.max_size} bytes; "
                                "it was not stored")
        if self.practice:  # the whole frame is the practice's: receive_many splits it
            return [Pending(self.practice, None, Arrival(frame.data, self.origin), connector=connector.name)]
        try:
            envelopes = connector.split(frame.data, origin=self.origin)
        except HubError as exc:
            return self._refuse(frame.data, exc.message, exc.location)
        try:
            parts: list[bytes | Pending] = []
            for envelope in envelopes:
                facility = str((envelope.meta or {}).get("facility") or "")
                practice = self._facilities.practice_for(facility)
                if practice is None:
                    outcome = Outcome(accepted=False, rejected=True, error="sending facility (MSH-4) "
                                      f"{facility or '(empty)'} belongs to no registered practice",
                                      error_location="MSH-4")
                    parts.append(connector.acknowledge(envelope, outcome) or b"")
                else:
                    parts.append(Pending(practice, None, Arrival(envelope.raw, self.origin), connector=connector.name))
            return parts
        except Exception as exc:  # the practice directory could not be read: the sender retries later
            return self._store_failed(frame, exc)

    def _finish(self, frame: Frame, plan: list[bytes | Pending], tally: ConnectionTally | None = None) -> bytes | None:
        answers: list[bytes] = []
        for part in plan:
            if not isinstance(part, Pending):
                answers.append(part)
                if tally is not None:
                    tally.add("refused")
                continue
            exc = part.future.exception()
            if isinstance(exc, NotFound):
                if tally is not None:
                    tally.add("refused")
                return self._refuse(frame.data, exc.message)
            if exc is not None:
                if tally is not None:
                    tally.add("failed")
                return self._store_failed(frame, exc)
            if tally is not None:
                tally.practices.add(part.practice)
                for receipt in part.future.result():
                    tally.add(receipt.status)
            answers.append(self._answer(part.future.result()) or b"")
        return b"".join(answers) if self.practice is None else (answers[0] or None)

    # -- audit (hub.mllp.audit) -----------------------------------------------------------
    def _audit_progress(self, tally: ConnectionTally) -> None:
        """Before a frame: the connection's ``opened`` row (its first frame), or its counts so far when due."""
        tally.frames += 1
        if not tally.opened:
            tally.opened = True
            if self.practice:
                tally.practices.add(self.practice)
            self._audit(tally, "opened")
        elif tally.due():
            self._audit(tally, tally.summary("open"))

    def _audit(self, tally: ConnectionTally, outcome: str) -> None:
        """Write the row on the pool, off the event loop; a failure is logged, never the sender's problem."""
        tally.reported_at = time.monotonic()
        entry = tally.entry(outcome)

        def write() -> None:
            try:  # at its turn (SQLite): a write lock taken by surprise would make a commit sleep in SQLite's busy wait
                with write_turn(getattr(self.runtime.dispatcher, "write_lock", None)), \
                        store_writer(self.runtime.engine).begin() as conn:
                    record(conn, [entry])
            except Exception as exc:
                log.error("could not write an MLLP audit entry (%s)", type(exc).__name__)

        try:
            self._pool.submit(write)
        except RuntimeError:  # the pool is shut down (the process is ending): write it here
            write()

    def _answer(self, receipts: list[Receipt]) -> bytes | None:
        answer = self.connector.answer([(r.envelope, r.outcome) for r in receipts])
        return answer[0] if answer else None

    def _store_failed(self, frame: Frame, exc: BaseException) -> bytes | None:
        log.error("could not store a message received over MLLP (%s)", type(exc).__name__)
        outcome = Outcome(accepted=False, error=f"the hub could not store the message ({save_failure_reason(exc)}); "
                          "send it again later")
        return self._answer_each(frame.data, outcome)

    def _refuse(self, data: bytes, reason: str, location: str | None = None) -> bytes | None:
        outcome = Outcome(accepted=False, rejected=True, error=reason, error_location=location)
        return self.connector.acknowledge(Envelope(raw=data), outcome)

    def _answer_each(self, data: bytes, outcome: Outcome) -> bytes | None:
        try:
            envelopes: Sequence[Envelope] = self.connector.split(data, origin=self.origin)
        except Exception:
            envelopes = [Envelope(raw=data)]
        return b"".join(self.connector.acknowledge(env, outcome) or b"" for env in envelopes) or None


class FacilityDirectory:
    """Sending facility → practice: the slug itself (any case), or a facility listed in the practice's
    mapping (``connectors: {<connector>: {facilities: [...]}}``). Re-read at most every few seconds."""

    REFRESH_SECONDS = 5.0

    def __init__(self, runtime: Runtime, connector_name: str) -> None:
        self.runtime = runtime
        self.connector_name = connector_name
        self._table: dict[str, str] = {}
        self._loaded_at = -1e9

    def practice_for(self, facility: str) -> str | None:
        key = facility.strip().casefold()
        if not key:
            return None
        if key not in self._table and time.monotonic() - self._loaded_at > self.REFRESH_SECONDS:
            self._load()
        return self._table.get(key)

    def _load(self) -> None:
        table: dict[str, str] = {}
        with self.runtime.engine.connect() as conn:
            rows = list_practices(conn)
        for row in rows:
            table[row["slug"].casefold()] = row["slug"]
        for row in rows:
            try:
                config = load_mapping(row.get("mapping"), source=row["slug"]).connector_config(self.connector_name)
            except HubError:
                continue
            for facility in config.get("facilities") or ():
                table.setdefault(str(facility).strip().casefold(), row["slug"])
        self._table = table
        self._loaded_at = time.monotonic()
