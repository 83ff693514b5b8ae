"""A drop folder (``hub watch``): files a practice or its clearinghouse puts there by SFTP, taken once each.

Each scan takes the files directly in the folder (not hidden, not a partial upload: ``.part``,
``.tmp``, ``.filepart``) whose size and modification time have not changed since the scan before and
are at least ``settle`` seconds old, so a file still being written is left for a later scan. A file
is stored through the ordinary intake (split, deduplicated, processed, errors kept) and only then
moved: to ``done/`` when every message of it was accepted (or a duplicate), else to ``failed/``. Beside
it goes ``NAME.report.json``, the file's acceptance report: per message its id, status, control id and
reason.

Restarts: a file is moved only after its messages are committed, so a crash in between leaves it in
the folder; the next run takes it again, its messages are found to be duplicates of the stored ones,
and it is moved. Nothing is lost and nothing is stored twice.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import HubError
from hub.pipeline.intake import receive

if TYPE_CHECKING:
    from hub.runtime import Runtime

DONE, FAILED = "done", "failed"
PARTIAL_SUFFIXES = (".part", ".tmp", ".filepart", ".partial")


@dataclass
class Taken:
    """What one file became: its messages by fate, where it was moved, its report."""

    name: str
    accepted: int = 0
    duplicate: int = 0
    error: int = 0
    moved_to: Path | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.error > 0


class DropFolder:
    def __init__(self, runtime: Runtime, folder: str | Path, practice: str, *, connector: str | None = None,
                 settle: float = 2.0) -> None:
        self.runtime = runtime
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise HubError("no such folder", source=str(self.folder))
        self.practice = practice
        self.connector = connector
        self.settle = settle
        self._seen: dict[Path, tuple[int, float]] = {}
        for name in (DONE, FAILED):
            (self.folder / name).mkdir(exist_ok=True)

    def files(self) -> list[Path]:
        """The files in the folder that may be feed files (not hidden, not a partial upload)."""
        return [path for path in sorted(self.folder.iterdir()) if path.is_file()
                and not path.name.startswith(".") and not path.name.endswith(PARTIAL_SUFFIXES)]

    def ready(self, now: float | None = None) -> list[Path]:
        """The files to take now: complete (unchanged since the last scan, ``settle`` seconds old)."""
        now = time.time() if now is None else now
        ready, seen = [], {}
        for path in self.files():
            stat = path.stat()
            mark = (stat.st_size, stat.st_mtime)
            seen[path] = mark
            if self._seen.get(path) == mark and now - stat.st_mtime >= self.settle:
                ready.append(path)
        self._seen = seen
        return ready

    def take(self, path: Path) -> Taken:
        """Store one file, then move it to done/ or failed/ with its report."""
        taken = Taken(path.name)
        receipts = receive(self.runtime, self.practice, path.read_bytes(), connector=self.connector,
                           origin=str(path))
        for receipt in receipts:
            status = receipt.status
            setattr(taken, status, getattr(taken, status) + 1)
            taken.messages.append(receipt.describe())
        target = self.folder / (FAILED if taken.failed else DONE)
        destination = _free_name(target / path.name)
        path.replace(destination)
        taken.moved_to = destination
        report = {"file": path.name, "practice": self.practice,
                  "taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "accepted": taken.accepted, "duplicate": taken.duplicate, "error": taken.error,
                  "messages": taken.messages}
        destination.with_name(destination.name + ".report.json").write_text(json.dumps(report, indent=2) + "\n")
        return taken

    def run(self, interval: float, on_taken: Callable[[Taken], None], *, once: bool = False,
            stop: Callable[[], bool] = lambda: False) -> None:
        """Scan every ``interval`` seconds until ``stop()`` says so; ``once``: one pass over what is there
        (files are taken as they are, without waiting for them to settle)."""
        if once:
            for path in self.files():
                on_taken(self.take(path))
            return
        while not stop():
            for path in self.ready():
                on_taken(self.take(path))
            time.sleep(interval)


def _free_name(path: Path) -> Path:
    """``path``, or with a UTC time stamp before the suffix when a file of that name was taken before."""
    if not path.exists():
        return path
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return path.with_name(f"{path.stem}.{stamp}{path.suffix}")
