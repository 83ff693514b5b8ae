"""Backfill: load a practice's history (tens of thousands of files, or one multi-GB export).

Files go through the real intake (``receive_many``: durable save, then processing)
in batches, and a checkpoint table (``onboarding_files``) remembers every file taken
in, keyed by its absolute path, size and modification time. A rerun after an
interruption skips what is done and continues; a file whose messages were saved but
whose checkpoint was not (an interruption between the two) is recognised by its
messages' dedup keys in the message store and not sent again. A large export whose
connector can stream (``iter_chunks``, the CSV connector) is read in chunks of rows,
never whole, and its checkpoint counts the chunks done.

With ``on_bad_row: refuse`` in the practice's CSV settings, a file is read dry first
and refused whole (nothing stored, not checkpointed) when any row is bad.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub.files import iter_files
from hub.mapping import Mapping, load_mapping
from hub.model.tables import messages, onboarding_files
from hub.onboarding.sources import pick_connector
from hub.pipeline.intake import Arrival, receive_many
from hub.pipeline.normalize import normalize_payload
from hub.store.engine import writer
from hub.store.messages import store_key
from hub.store.practices import get_practice

if TYPE_CHECKING:
    from hub.runtime import Runtime

STREAM_ABOVE = 64 * 1024 * 1024  # files larger than this are streamed in chunks when the connector can


@dataclass
class BackfillResult:
    files: int = 0
    skipped: int = 0  # done in an earlier run
    refused: list[str] = field(default_factory=list)  # files refused whole (on_bad_row: refuse)
    counts: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "duplicate": 0, "error": 0})


def file_key(path: Path) -> tuple[str, int]:
    stat = path.stat()
    basis = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(basis.encode()).hexdigest(), stat.st_size


def _checkpoints(conn: sa.Connection, practice: str, keys: Sequence[str]) -> dict[str, Any]:
    rows = conn.execute(sa.select(onboarding_files).where(onboarding_files.c.practice == practice,
                                                          onboarding_files.c.file_key.in_(list(keys)))).all()
    return {r.file_key: r for r in rows}


def _mark(conn: sa.Connection, practice: str, key: str, path: Path, size: int, *, chunks: int, messages_n: int,
          done: bool) -> None:
    now = dt.datetime.now(dt.UTC)
    values = {"path": str(path), "size": size, "chunks_done": chunks, "messages": messages_n, "done": done,
              "updated_at": now}
    updated = conn.execute(sa.update(onboarding_files).where(onboarding_files.c.practice == practice,
                                                             onboarding_files.c.file_key == key).values(**values))
    if not updated.rowcount:
        conn.execute(sa.insert(onboarding_files).values(practice=practice, file_key=key, **values))


class Backfill:
    def __init__(self, runtime: Runtime, practice: str, *, connector: str | None = None, batch: int = 200,
                 chunk_rows: int = 5000, stream_above: int = STREAM_ABOVE,
                 progress: Callable[[int], None] | None = None) -> None:
        self.runtime = runtime
        self.practice = practice
        self.connector = connector
        self.batch = batch
        self.chunk_rows = chunk_rows
        self.stream_above = stream_above
        self.progress = progress or (lambda _n: None)
        with runtime.engine.connect() as conn:
            row = get_practice(conn, practice)
        self.mapping: Mapping = load_mapping(row["mapping"], source=f"mapping of practice {practice}")
        self.result = BackfillResult()
        self.in_flight: set[str] = set()

    def run(self, paths: Sequence[str]) -> BackfillResult:
        pending: list[tuple[Path, str, int, bytes]] = []
        for path in iter_files(paths):
            key, size = file_key(path)
            self.result.files += 1
            with self.runtime.engine.connect() as conn:
                known = _checkpoints(conn, self.practice, [key]).get(key)
            if known is not None and known.done:
                self.result.skipped += 1
                self.progress(size)
                continue
            if size > self.stream_above and self._streams(path):
                self._flush(pending)
                self._stream(path, key, size, known.chunks_done if known is not None else 0,
                             resumed=known is not None)
                continue
            if known is not None:
                self.in_flight.add(key)  # an earlier run was sending it when it stopped
            pending.append((path, key, size, path.read_bytes()))
            if len(pending) >= self.batch:
                self._flush(pending)
        self._flush(pending)
        return self.result

    # ------------------------------------------------------------------ whole files, in batches
    def _flush(self, pending: list[tuple[Path, str, int, bytes]]) -> None:
        if not pending:
            return
        groups: dict[str, list[tuple[Path, str, int, bytes]]] = {}
        already: list[tuple[Path, str, int, int]] = []
        for path, key, size, data in pending:
            chosen = pick_connector(self.runtime.plugins, path, data, self.connector)
            if self._refused(chosen.name, data, str(path)):
                self.result.refused.append(str(path))
                continue
            stored = self._already_stored(chosen, data, str(path)) if key in self.in_flight else None
            if stored is not None:
                already.append((path, key, size, stored))
            else:
                groups.setdefault(chosen.name, []).append((path, key, size, data))
        for name, items in groups.items():
            with writer(self.runtime.engine).begin() as conn:  # in flight: a rerun checks the store for these
                for path, key, size, _ in items:
                    _mark(conn, self.practice, key, path, size, chunks=0, messages_n=0, done=False)
            receipts = receive_many(self.runtime, self.practice, [Arrival(d, str(p)) for p, _, _, d in items],
                                    connector=name)
            with writer(self.runtime.engine).begin() as conn:
                for (path, key, size, _), file_receipts in zip(items, receipts, strict=True):
                    for receipt in file_receipts:
                        self.result.counts[receipt.status] += 1
                    _mark(conn, self.practice, key, path, size, chunks=1, messages_n=len(file_receipts),
                          done=True)
        if already:
            with writer(self.runtime.engine).begin() as conn:
                for path, key, size, n in already:
                    _mark(conn, self.practice, key, path, size, chunks=1, messages_n=n, done=True)
        for _, _, size, _ in pending:
            self.progress(size)
        pending.clear()

    def _already_stored(self, chosen: Any, data: bytes, origin: str) -> int | None:
        """Message count when every message of the file is in the store already (an interrupted run)."""
        try:
            envelopes = chosen.split(data, origin=origin)
        except Exception:
            return None
        if not envelopes:
            return 0
        keys = [store_key(self.practice, chosen.store_key(e)) for e in envelopes]  # as intake keys them
        found = 0
        with self.runtime.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                found += conn.execute(sa.select(sa.func.count()).select_from(messages)
                                      .where(messages.c.dedup_key.in_(chunk))).scalar_one()
        return len(keys) if found == len(set(keys)) else None

    def _refused(self, connector_name: str, data: bytes, origin: str) -> bool:
        settings = self.mapping.connector_config(connector_name)
        if settings.get("on_bad_row") != "refuse":
            return False
        results = normalize_payload(self.runtime.plugins, data, practice=self.practice, connector=connector_name,
                                    mapping=self.mapping, origin=origin)
        return any(r.error is not None for r in results)

    # ------------------------------------------------------------------ one large export, streamed
    def _streams(self, path: Path) -> bool:
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
        chosen = pick_connector(self.runtime.plugins, path, head, self.connector)
        return hasattr(chosen, "iter_chunks")

    def _chunks(self, path: Path) -> Iterator[tuple[int, bytes, str]]:
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
            fh.seek(0)
            chosen: Any = pick_connector(self.runtime.plugins, path, head, self.connector)
            encoding = self.mapping.connector_config(chosen.name).get("encoding")
            for i, (payload, first) in enumerate(chosen.iter_chunks(fh, rows=self.chunk_rows, encoding=encoding)):
                yield i, payload, f"{path}#line={first}"

    def _stream(self, path: Path, key: str, size: int, chunks_done: int, *, resumed: bool = False) -> None:
        name = self._stream_connector(path)
        if self.mapping.connector_config(name).get("on_bad_row") == "refuse":
            for _, payload, origin in self._chunks(path):
                if self._refused(name, payload, origin):
                    self.result.refused.append(str(path))
                    self.progress(size)
                    return
        sent = 0
        total = chunks_done
        for i, payload, origin in self._chunks(path):
            total = i + 1
            if i < chunks_done:
                continue
            if resumed and i == chunks_done:  # the chunk in flight when the earlier run stopped
                stored = self._already_stored(self.runtime.plugins.connectors.get(name), payload, origin)
                if stored is not None:
                    sent += stored
                    continue
            if i == chunks_done and not resumed:
                with writer(self.runtime.engine).begin() as conn:
                    _mark(conn, self.practice, key, path, size, chunks=0, messages_n=0, done=False)
            receipts = receive_many(self.runtime, self.practice, [Arrival(payload, origin)], connector=name)[0]
            for receipt in receipts:
                self.result.counts[receipt.status] += 1
            sent += len(receipts)
            with writer(self.runtime.engine).begin() as conn:
                _mark(conn, self.practice, key, path, size, chunks=i + 1, messages_n=sent, done=False)
            self.progress(min(len(payload), size))
        with writer(self.runtime.engine).begin() as conn:
            _mark(conn, self.practice, key, path, size, chunks=total, messages_n=sent, done=True)

    def _stream_connector(self, path: Path) -> str:
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
        return pick_connector(self.runtime.plugins, path, head, self.connector).name
