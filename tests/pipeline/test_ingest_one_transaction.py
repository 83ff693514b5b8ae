"""`hub ingest` with inline processing saves and processes each batch of messages in one transaction:
killed with SIGKILL at any point, a second run stores every message of the files exactly once; a batch
whose combined transaction fails is taken again the usual way, saved first, then processed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub.pipeline.ingest import ingest_paths
from hub.store import canonical
from hub.store.engine import writer
from hub.store.practices import add_practice
from tests.support.services import kill9, spawn

HUB = str(Path(sys.executable).with_name("hub"))
DISTINCT = 6000  # messages K00000 ... K05999, each mapping to one appointment (seven patients in all) but
BAD = (1234, 4321)  # these two, sent without SCH, AIS, AIL or AIP: no appointment to read, refused at processing
REPEATED = (17, 2500, 5999)  # sent a second time, byte for byte, at the end of the file


def _siu(n: int) -> str:
    if n in BAD:
        return (f"MSH|^~\\&|PMS|EAST|HUB|MSO|20250304090000-0500||SIU^S12^SIU_S12|K{n:05d}|P|2.5.1\r"
                f"PID|1||MRN{n % 7}^^^EAST^MR||Family^Given||19800101|F\r")
    return (f"MSH|^~\\&|PMS|EAST|HUB|MSO|20250304090000-0500||SIU^S12^SIU_S12|K{n:05d}|P|2.5.1\r"
            f"SCH|A{n:05d}|A{n:05d}|||||FU^Follow up||30|min|^^30^202503{1 + n % 28:02d}0900-0500"
            "|||||||||||||||Booked\r"
            f"PID|1||MRN{n % 7}^^^EAST^MR||Family^Given||19800101|F\r"
            "RGS|1\rAIP|1||1234567893^Doc^Alice^^^^^^NPI\rAIL|1||MAIN^^^EAST\r")


def _feed(folder: Path) -> Path:
    """One file of the DISTINCT messages, then the REPEATED ones again."""
    folder.mkdir()
    text = "".join(_siu(n) for n in [*range(DISTINCT), *REPEATED])
    (folder / "history.hl7").write_text(text)
    return folder


def _counts(db: Path) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return dict(conn.exec_driver_sql("SELECT status, COUNT(*) FROM messages GROUP BY status").all())
    except sa.exc.OperationalError:  # no table yet
        return {}
    finally:
        engine.dispose()


def test_ingest_killed_mid_run_then_run_again_stores_every_message_once(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    env = {**os.environ, "HUB_DATABASE_URL": f"sqlite:///{db}", "HUB_LOG_LEVEL": "WARNING"}
    subprocess.run([HUB, "practice", "add", "east", "--name", "East"], env=env, check=True, capture_output=True)
    feed = _feed(tmp_path / "feed")
    first = spawn(["ingest", "--practice", "east", str(feed)], env, tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and not _counts(db).get("processed"):
        time.sleep(0.01)
    kill9(first)
    at_kill = _counts(db)
    assert at_kill.get("processed"), \
        f"the first run stored nothing before it was killed: {at_kill}; {(tmp_path / 'first.log').read_text()}"
    assert at_kill.get("processed", 0) + at_kill.get("error", 0) < DISTINCT, \
        f"the kill came too late to test anything: {at_kill}"
    assert "received" not in at_kill  # a batch is stored with its outcome, or not at all

    second = subprocess.run([HUB, "ingest", "--practice", "east", str(feed)], env=env, capture_output=True,
                            text=True, timeout=300)
    said = re.search(r"accepted (\d+)\s+duplicate (\d+)\s+error (\d+)", second.stdout)
    assert said, second.stdout + second.stderr
    accepted, duplicate, error = map(int, said.groups())
    assert second.returncode == (1 if error else 0), second.stdout + second.stderr  # 1: messages in error
    # every message of the file is counted once in the second run: new, or a repeat of one stored before
    assert accepted + duplicate + error == DISTINCT + len(REPEATED)
    # the totals over both runs are those of one uninterrupted run: every good message accepted, the bad
    # ones in error
    assert accepted + at_kill.get("processed", 0) == DISTINCT - len(BAD)
    assert error + at_kill.get("error", 0) == len(BAD)

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        originals = conn.exec_driver_sql(
            "SELECT control_id, COUNT(*) FROM messages WHERE status <> 'duplicate' GROUP BY control_id").all()
        statuses: dict[str, int] = dict(
            conn.exec_driver_sql("SELECT status, COUNT(*) FROM messages GROUP BY status").all())
        reasons = conn.exec_driver_sql("SELECT control_id, error FROM messages WHERE status = 'error'").all()
        records = canonical.count_records(conn, "east")
    engine.dispose()
    assert len(originals) == DISTINCT and all(n == 1 for _, n in originals)  # each stored exactly once
    assert statuses["processed"] == DISTINCT - len(BAD) and statuses["error"] == len(BAD)
    assert statuses["duplicate"] == duplicate + at_kill.get("duplicate", 0)
    assert sorted(cid for cid, _ in reasons) == [f"K{n:05d}" for n in BAD]
    assert all("no SCH segment" in (why or "") for _, why in reasons)
    assert records["appointment"] == DISTINCT - len(BAD) and records["patient"] == 7


def test_a_batch_whose_combined_transaction_fails_is_saved_then_processed(runtime, tmp_path) -> None:
    """The appointments table is gone: the combined transaction fails and rolls back; the batch is then
    saved and committed, and its processing fails as a store failure, so the messages are kept in error
    with the reason, ready for a replay once the table is back."""
    from hub.pipeline.replay import reprocess

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "east", "East")
        conn.execute(sa.text("ALTER TABLE appointments RENAME TO appointments_away"))
    folder = tmp_path / "feed"
    folder.mkdir()
    for n in range(5):
        (folder / f"{n}.hl7").write_text(_siu(n))
    counts = ingest_paths(runtime, "east", (str(folder),), connector="hl7v2")
    assert counts == {"accepted": 0, "duplicate": 0, "error": 5}
    with runtime.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, error FROM messages")).all()
        assert conn.execute(sa.text("SELECT COUNT(*) FROM patients")).scalar_one() == 0  # nothing half-written
    assert len(rows) == 5 and all(s == "error" and e.startswith("store failure") for s, e in rows), rows
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE appointments_away RENAME TO appointments"))
    assert reprocess(runtime, practice="east", status="error")["processed"] == 5


def _rows(runtime: Any) -> list[tuple[Any, ...]]:
    with runtime.engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(
            "SELECT id, status, error IS NULL, attempts, record_count, duplicate_of, origin, "
            "processed_at IS NOT NULL, queued_at = received_at FROM messages ORDER BY id")]


def test_a_batch_of_new_messages_is_stored_with_its_outcome(runtime: Any) -> None:
    """The usual batch of ``hub ingest`` (every message new), saved and processed in one transaction: each message
    stored with its outcome, under ids in arrival order after those stored before."""
    from hub.pipeline.intake import Arrival, receive_many

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "east", "East")
    first = receive_many(runtime, "east", [Arrival(_siu(1).encode(), "a.hl7")], connector="hl7v2", together=True)
    later = receive_many(runtime, "east", [Arrival(_siu(n).encode(), "b.hl7") for n in (2, BAD[0], 3)],
                         connector="hl7v2", together=True)
    base = first[0][0].outcome.message_id
    assert [(r.outcome.message_id, r.status) for receipts in first + later for r in receipts] == \
        [(base, "accepted"), (base + 1, "accepted"), (base + 2, "error"), (base + 3, "accepted")]
    # a good message: processed, its four records (appointment, patient, provider, location), one attempt; the
    # one without SCH, AIS, AIL or AIP in error with the reason; every one processed at a time, queued on arrival
    assert _rows(runtime) == [(base, "processed", True, 1, 4, None, "a.hl7", True, True),
                              (base + 1, "processed", True, 1, 4, None, "b.hl7", True, True),
                              (base + 2, "error", False, 1, None, None, "b.hl7", True, True),
                              (base + 3, "processed", True, 1, 4, None, "b.hl7", True, True)]
    with runtime.engine.connect() as conn:
        reason = conn.exec_driver_sql(f"SELECT error FROM messages WHERE id = {base + 2}").scalar_one()
        lineage = conn.exec_driver_sql("SELECT message_id, COUNT(*) FROM lineage GROUP BY message_id "
                                       "ORDER BY message_id").all()
    assert "no SCH segment" in reason
    assert [tuple(row) for row in lineage] == [(base, 4), (base + 1, 4), (base + 3, 4)]

    # a batch with a repeat of a stored message: the new one stored and processed, the repeat a duplicate row
    again = receive_many(runtime, "east", [Arrival(_siu(n).encode(), "c.hl7") for n in (4, 2)], connector="hl7v2",
                         together=True)
    assert [(r.outcome.message_id, r.status) for r in again[0] + again[1]] == \
        [(base + 4, "accepted"), (base + 1, "duplicate")]
    new, repeat = _rows(runtime)[4:]
    assert new == (base + 4, "processed", True, 1, 4, None, "c.hl7", True, True)
    # (PostgreSQL's insert takes a sequence number for the repeat it skips: its row's id comes later than next)
    assert repeat[0] > base + 4 and repeat[1:] == ("duplicate", True, 0, None, base + 1, "c.hl7", False, None)

