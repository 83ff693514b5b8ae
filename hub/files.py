"""Feed files on disk: what `hub ingest`, `hub onboard` and the demo read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from hub.errors import HubError


def iter_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Files named, and files inside folders named (sorted; hidden ones skipped)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(part.startswith(".") for part in child.relative_to(path).parts):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise HubError("no such file or folder", source=str(path))
