"""CSV duplicates: a row is its export file (by content) and its line. The same file sent twice is
all duplicates; a later export repeating a row byte for byte is a new message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hub_csv import CsvConnector

from hub.connector import Envelope, content_key

ROOT = Path(__file__).resolve().parents[2]
SLUG = "lakeview"
HEADER = "Appt ID,MRN,Provider,Location,Appt Date/Time,Minutes,Appt Type,Status,Cancel Reason,Created,Cancelled On"
BOOKED = "A100,M0001,DRALV,LP,2025-03-10 09:00,30,EST,Scheduled,,,"
CANCELLED = "A100,M0001,DRALV,LP,2025-03-10 09:00,30,EST,Cancelled,PT CANCEL,,"
OTHER = "A101,M0002,DRBRE,OB,2025-03-11 10:00,15,FU,Scheduled,,,"


def export(*rows: str) -> bytes:
    return "\r\n".join([HEADER, *rows, ""]).encode()


def keys(data: bytes, origin: str = "f.csv") -> list[str]:
    connector = CsvConnector()
    return [connector.store_key(envelope) for envelope in connector.split(data, origin=origin)]


# ------------------------------------------------------------------ the key itself
def test_the_key_is_the_file_and_the_line() -> None:
    first = export(BOOKED, OTHER)
    assert keys(first) == keys(first, origin="renamed.csv")  # the file's bytes, not its name
    assert len(set(keys(export(BOOKED, BOOKED)))) == 2  # one row twice in a file: two rows
    later = export(BOOKED, CANCELLED)  # line 2 repeats the first export's line 2 byte for byte
    assert CsvConnector().split(later)[0].raw == CsvConnector().split(first)[0].raw
    assert keys(later)[0] != keys(first)[0]
    assert all(len(k) == 64 for k in keys(first))


def test_a_row_not_cut_from_a_file_is_keyed_by_its_bytes() -> None:
    raw = export(BOOKED)
    assert CsvConnector().store_key(Envelope(raw=raw)) == content_key(raw)


def test_streamed_chunks_are_keyed_alike_on_every_read() -> None:
    import io

    connector = CsvConnector()
    data = export(*[BOOKED.replace("A100", f"A{n}") for n in range(7)])
    chunks = [list(connector.iter_chunks(io.BytesIO(data), rows=3)) for _ in range(2)]
    assert chunks[0] == chunks[1]
    per_read = [[k for payload, line in read for k in keys(payload, origin=f"big.csv#line={line}")]
                for read in chunks]
    assert per_read[0] == per_read[1] and len(set(per_read[0])) == 7


# ------------------------------------------------------------------ through the intake
@pytest.fixture
def hub(runtime):  # type: ignore[no-untyped-def]
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    mapping = (ROOT / "mappings" / "example-practice.yaml").read_text().replace(
        "practice: example-practice", f"practice: {SLUG}")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, SLUG, "Lakeview", mapping=mapping, timezone="America/Chicago")
    return runtime


def stored(runtime) -> list[dict]:  # type: ignore[no-untyped-def]
    from hub.store.messages import list_messages

    with runtime.engine.connect() as conn:
        return sorted(list_messages(conn, practice=SLUG, limit=1000), key=lambda r: r["id"])


def appointment_status(runtime, source_id: str) -> str:  # type: ignore[no-untyped-def]
    from hub.store.canonical import fetch_records

    with runtime.engine.connect() as conn:
        return {r["source_id"]: r["status"] for r in fetch_records(conn, "appointment", SLUG)}[source_id]


def three_exports(folder: Path) -> list[Path]:
    """Booked, then cancelled, then booked again: the third export's line 2 is the first's, byte for byte."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [(folder / "appointments_2025-03-01.csv", export(BOOKED)),
             (folder / "appointments_2025-03-02.csv", export(CANCELLED)),
             (folder / "appointments_2025-03-03.csv", export(BOOKED, OTHER))]
    for path, data in files:
        path.write_bytes(data)
    return [path for path, _ in files]


def test_booked_cancelled_booked_across_three_exports_none_dropped(hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.ingest import ingest_paths

    counts = [ingest_paths(hub, SLUG, (str(path),)) for path in three_exports(tmp_path / "feed")]
    assert counts == [{"accepted": 1, "duplicate": 0, "error": 0}, {"accepted": 1, "duplicate": 0, "error": 0},
                      {"accepted": 2, "duplicate": 0, "error": 0}]
    rows = stored(hub)
    assert [(r["status"], r["control_id"]) for r in rows] == [("processed", "line 2")] * 3 + [("processed", "line 3")]
    assert rows[0]["content_hash"] == rows[2]["content_hash"]  # the same row bytes, kept twice
    assert appointment_status(hub, "A101") == "booked"
    # the third export is the latest message and event (its date), so the appointment is booked again
    # (depends on the canonical store's event-time ordering: per-field stamps, ties to the later message)
    assert appointment_status(hub, "A100") == "booked"


def test_the_same_file_sent_twice_is_all_duplicates(hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.ingest import ingest_paths
    from hub.pipeline.intake import receive

    first, _, third = three_exports(tmp_path / "feed")
    ingest_paths(hub, SLUG, (str(first),))
    ingest_paths(hub, SLUG, (str(third),))
    resent = tmp_path / "resent" / "appointments_copy.csv"  # the same bytes under another name
    resent.parent.mkdir()
    shutil.copy(third, resent)
    assert ingest_paths(hub, SLUG, (str(resent),)) == {"accepted": 0, "duplicate": 2, "error": 0}
    over_http = receive(hub, SLUG, third.read_bytes(), media_type="text/csv", origin="POST")  # as HTTP does
    assert [r.status for r in over_http] == ["duplicate", "duplicate"]
    rows = stored(hub)
    originals = {r["control_id"]: r["id"] for r in rows[1:3]}  # the third export's two rows
    assert [r["status"] for r in rows] == ["processed"] * 3 + ["duplicate"] * 4
    assert [r["duplicate_of"] for r in rows[3:]] == [originals["line 2"], originals["line 3"]] * 2


def test_backfill_keys_rows_like_ingest(hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hub.onboarding.backfill import Backfill

    feed = tmp_path / "history"
    first, _, _ = three_exports(feed)
    shutil.copy(first, feed / "appointments_2025-03-01_resent.csv")
    result = Backfill(hub, SLUG).run([str(feed)])
    assert result.counts == {"accepted": 4, "duplicate": 1, "error": 0}
    assert appointment_status(hub, "A101") == "booked"


def test_a_streamed_export_sent_again_is_all_duplicates(hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from hub.onboarding.backfill import Backfill

    rows = [BOOKED.replace("A100", f"A{n}") for n in range(200, 207)]
    big = tmp_path / "one" / "appointments_2025-03-01.csv"
    big.parent.mkdir()
    big.write_bytes(export(*rows))
    copy = tmp_path / "two" / "appointments_2025-03-01.csv"
    copy.parent.mkdir()
    shutil.copy(big, copy)
    first = Backfill(hub, SLUG, chunk_rows=3, stream_above=10).run([str(big)])
    again = Backfill(hub, SLUG, chunk_rows=3, stream_above=10).run([str(copy)])
    assert first.counts == {"accepted": 7, "duplicate": 0, "error": 0}
    assert again.counts == {"accepted": 0, "duplicate": 7, "error": 0}
