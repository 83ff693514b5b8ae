"""The message store: durable save, duplicates, statuses."""

from hub.store import get_engine, writer
from hub.store import messages as ms


def save(engine, *items):
    with writer(engine).begin() as conn:
        return ms.save_messages(conn, list(items))


def test_duplicate_content_is_stored_once_and_its_arrival_recorded(database_url):
    engine = get_engine(database_url)
    a = ms.NewMessage("derm", "hl7v2", b"MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\r", sender="A^B", control_id="1")
    (first,) = save(engine, a)
    (second,) = save(engine, a)
    assert not first.duplicate and second.duplicate and second.duplicate_of == first.id
    with engine.connect() as conn:
        rows = ms.list_messages(conn, practice="derm")
    assert sorted(r["status"] for r in rows) == ["duplicate", "received"]
    assert sum(1 for r in rows if r["duplicate_of"] == first.id) == 1


def test_a_reused_control_id_with_other_content_is_not_a_duplicate(database_url):
    engine = get_engine(database_url)
    one = ms.NewMessage("derm", "hl7v2", b"content one", control_id="42")
    two = ms.NewMessage("derm", "hl7v2", b"content two", control_id="42")
    saved = save(engine, one, two)
    assert not any(s.duplicate for s in saved) and saved[0].id != saved[1].id


def test_same_content_for_two_practices_is_two_messages(database_url):
    engine = get_engine(database_url)
    saved = save(engine, ms.NewMessage("derm", "x", b"same"), ms.NewMessage("ortho", "x", b"same"))
    assert not any(s.duplicate for s in saved)


def test_duplicates_inside_one_group(database_url):
    engine = get_engine(database_url)
    saved = save(engine, ms.NewMessage("derm", "x", b"a"), ms.NewMessage("derm", "x", b"a"))
    assert [s.duplicate for s in saved] == [False, True]
    assert saved[1].duplicate_of == saved[0].id


def test_status_transitions(database_url):
    engine = get_engine(database_url)
    ok, bad = save(engine, ms.NewMessage("derm", "x", b"ok"), ms.NewMessage("derm", "x", b"bad"))
    with writer(engine).begin() as conn:
        ms.mark_processed(conn, {ok.id: 3})
        ms.mark_error(conn, {bad.id: "PID-3: missing"})
    with engine.connect() as conn:
        assert ms.counts_by_status(conn) == {"processed": 1, "error": 1}
        (err,) = ms.list_messages(conn, status="error")
    assert err["error"] == "PID-3: missing" and err["attempts"] == 1
