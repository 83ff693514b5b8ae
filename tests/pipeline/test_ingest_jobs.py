"""`hub ingest --jobs N`: worker processes store the same records, and count the same errors, as inline."""

from pathlib import Path

import pytest

from hub.pipeline.ingest import ingest_paths
from hub.store import canonical
from hub.store.engine import writer
from hub.store.practices import add_practice


def _siu(n: int, *, timed: bool = True) -> bytes:
    start = f"^^30^202503{1 + n % 28:02d}0900-0500" if timed else ""
    segments = [
        f"MSH|^~\\&|PMS|EAST|HUB|MSO|20250304090000-0500||SIU^S12^SIU_S12|J{n:05d}|P|2.5.1",
        f"SCH|A{n}|A{n}|||||FU^Follow up||30|min|{start}|||||||||||||||Booked",
        f"PID|1||MRN{n % 7}^^^EAST^MR||Family^Given||19800101|F",
        "RGS|1", "AIP|1||1234567893^Doc^Alice^^^^^^NPI", "AIL|1||MAIN^^^EAST",
    ]
    return ("\r".join(segments) + "\r").encode()


def _feed(folder: Path) -> Path:
    folder.mkdir()
    for n in range(60):
        (folder / f"{n:03d}.hl7").write_bytes(_siu(n, timed=n not in (17, 44)))  # two have no start
    return folder


@pytest.mark.parametrize("jobs", [1, 2])
def test_jobs_store_what_inline_stores(runtime, tmp_path, monkeypatch, jobs) -> None:
    monkeypatch.setenv("HUB_BATCH_SIZE", "7")  # many batches in flight at once
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "east", "East")
    feed = _feed(tmp_path / "feed")
    counts = ingest_paths(runtime, "east", (str(feed),), connector="hl7v2", group=10, jobs=jobs)
    assert counts == {"accepted": 58, "duplicate": 0, "error": 2}
    with runtime.engine.connect() as conn:
        stored = canonical.count_records(conn, "east")
        statuses = dict(conn.exec_driver_sql("SELECT status, COUNT(*) FROM messages GROUP BY status").all())
    assert stored["appointment"] == 58 and stored["patient"] == 7
    assert statuses == {"processed": 58, "error": 2}
    again = ingest_paths(runtime, "east", (str(feed),), connector="hl7v2", jobs=jobs)
    assert again == {"accepted": 0, "duplicate": 60, "error": 0}


def test_ingest_groups_files_by_count_and_by_bytes(runtime, tmp_path, monkeypatch) -> None:
    """A group ends at ``group`` files or once its files hold ``GROUP_BYTES``: 60 files of one message each,
    groups of 25 files, then a cap of two files' bytes."""
    import hub.pipeline.ingest as ingest

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "east", "East")
    feed = _feed(tmp_path / "feed")
    sizes: list[int] = []
    real = ingest.receive_many

    def counted(*args, **kwargs):
        sizes.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "receive_many", counted)
    assert ingest_paths(runtime, "east", (str(feed),), connector="hl7v2", group=25)["accepted"] == 58
    assert sizes == [25, 25, 10]
    sizes.clear()
    # the files differ in size by less than half the shortest: a cap of twice the shortest is reached by
    # the second file of a group, never by the first
    shortest = min(p.stat().st_size for p in feed.iterdir())
    assert max(p.stat().st_size for p in feed.iterdir()) < 1.5 * shortest
    monkeypatch.setattr(ingest, "GROUP_BYTES", 2 * shortest)
    assert ingest_paths(runtime, "east", (str(feed),), connector="hl7v2", group=25)["duplicate"] == 60
    assert sizes == [2] * 30
