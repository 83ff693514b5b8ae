"""The pipeline end to end with the inline dispatcher, on SQLite and PostgreSQL."""

import sqlalchemy as sa

from hub.pipeline.intake import receive
from hub.pipeline.replay import reprocess
from hub.store import canonical, writer
from hub.store import messages as ms
from hub.store.practices import add_practice
from tests.support.feeds import pipe_file


def register(runtime, slug="derm"):
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, slug, slug.title())


def test_same_message_twice_one_set_of_records_and_a_duplicate(runtime, example_connector, tmp_path):
    register(runtime)
    data = pipe_file(tmp_path, 3).read_bytes()
    (first,) = receive(runtime, "derm", data, origin="a.pipe")
    (second,) = receive(runtime, "derm", data, origin="a.pipe")
    assert first.status == "accepted" and second.status == "duplicate"
    with runtime.engine.connect() as conn:
        counts = canonical.count_records(conn, "derm")
        statuses = ms.counts_by_status(conn, "derm")
    assert counts["appointment"] == 3 and counts["patient"] == 3
    assert statuses == {"processed": 1, "duplicate": 1}


def test_unreadable_message_is_kept_with_its_reason_and_reprocessable(runtime, example_connector, tmp_path):
    register(runtime)
    (receipt,) = receive(runtime, "derm", b"#HUBPIPE v1\nAPPT|broken\n", origin="bad.pipe")
    assert receipt.status == "error" and "line 2" in (receipt.outcome.error or "")
    with runtime.engine.connect() as conn:
        (row,) = ms.list_messages(conn, status="error")
    assert row["origin"] == "bad.pipe" and "line 2" in row["error"]


def test_store_failure_leaves_the_message_in_the_store(runtime, example_connector, tmp_path):
    """A real store failure (the table is gone), then a fix and a replay: nothing lost."""
    register(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE appointments RENAME TO appointments_away"))
    (receipt,) = receive(runtime, "derm", pipe_file(tmp_path, 2).read_bytes(), origin="f.pipe")
    assert receipt.status == "error"
    with runtime.engine.connect() as conn:
        (row,) = ms.list_messages(conn, practice="derm")
    assert row["status"] == "error" and row["error"].startswith("store failure")
    with runtime.engine.connect() as conn:  # the batch rolled back whole
        assert conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one() == 0
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE appointments_away RENAME TO appointments"))
    result = reprocess(runtime, practice="derm", status="error")
    assert result["processed"] == 1 and result["error"] == 0
    with runtime.engine.connect() as conn:
        assert canonical.count_records(conn, "derm")["appointment"] == 2
        assert ms.counts_by_status(conn, "derm") == {"processed": 1}


def test_reprocess_is_idempotent(runtime, example_connector, tmp_path):
    register(runtime)
    receive(runtime, "derm", pipe_file(tmp_path, 4).read_bytes())
    for _ in range(2):
        reprocess(runtime, practice="derm")
    with runtime.engine.connect() as conn:
        assert canonical.count_records(conn, "derm")["appointment"] == 4
        assert conn.execute(sa.text("SELECT count(*) FROM lineage")).scalar_one() == 8


def test_unknown_practice_stores_nothing(runtime, example_connector, tmp_path):
    import pytest

    from hub.errors import NotFound

    with pytest.raises(NotFound, match="no practice 'ghost'"):
        receive(runtime, "ghost", pipe_file(tmp_path, 1).read_bytes())
    with runtime.engine.connect() as conn:
        assert ms.counts_by_status(conn) == {}


def test_mapping_fills_mso_codes_beside_source_codes(runtime, example_connector, tmp_path):
    from hub.store.practices import set_mapping

    register(runtime)
    receive(runtime, "derm", pipe_file(tmp_path, 1).read_bytes())
    with writer(runtime.engine).begin() as conn:
        set_mapping(conn, "derm", "code_maps:\n  visit_type:\n    NP: {service_line: medical_dermatology, "
                                  "visit_category: new}\n")
    reprocess(runtime, practice="derm")
    with runtime.engine.connect() as conn:
        (appt,) = canonical.fetch_records(conn, "appointment", "derm")
    assert (appt["visit_type"], appt["service_line"], appt["visit_category"]) == ("NP", "medical_dermatology", "new")


def test_a_resent_failed_message_is_answered_as_failed_again(runtime, example_connector):
    register(runtime)
    bad = b"#HUBPIPE v1\nAPPT|broken\n"
    (first,) = receive(runtime, "derm", bad)
    (again,) = receive(runtime, "derm", bad)
    assert not first.outcome.accepted and not again.outcome.accepted and again.outcome.duplicate
    assert again.outcome.error == first.outcome.error or "line 2" in (again.outcome.error or "")
