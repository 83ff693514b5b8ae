"""Synthetic feeds in the example connector's format (no real patients)."""

from pathlib import Path


def pipe_file(folder: Path, n: int, *, start: int = 0, status: str = "fulfilled") -> Path:
    lines = ["#HUBPIPE v1"]
    for i in range(start, start + n):
        lines.append(f"APPT|A{i:05d}|MRN{i:05d}|PRV{i % 3}|2025-03-{1 + i % 28:02d}T09:00:00-05:00|30|NP|{status}")
    path = folder / f"appts-{start}-{n}-{status}.pipe"
    path.write_text("\n".join(lines) + "\n")
    return path


def pipe_files(folder: Path, count: int) -> list[Path]:
    """``count`` files of one appointment each: one message per file."""
    folder.mkdir(parents=True, exist_ok=True)
    return [pipe_file(folder, 1, start=i) for i in range(count)]
