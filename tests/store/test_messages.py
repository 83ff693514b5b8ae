"""The message store: durable save, duplicates, statuses."""

import datetime as dt

import sqlalchemy as sa

from hub.model.tables import messages
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


# ------------------------------------------------------------------ the connector's dedup key
def test_the_connectors_key_decides_what_is_a_duplicate(database_url):
    engine = get_engine(database_url)
    first, same_key, other_key = save(engine, ms.NewMessage("derm", "x", b"one", dedup_key="k1"),
                                      ms.NewMessage("derm", "x", b"other bytes", dedup_key="k1"),
                                      ms.NewMessage("derm", "x", b"one", dedup_key="k2"))
    assert not first.duplicate and same_key.duplicate_of == first.id  # other bytes, same key: a duplicate
    assert not other_key.duplicate  # the same bytes under another key: a message of its own
    (later,) = save(engine, ms.NewMessage("derm", "x", b"third bytes", dedup_key="k1"))
    assert later.duplicate_of == first.id
    (elsewhere,) = save(engine, ms.NewMessage("ortho", "x", b"one", dedup_key="k1"))
    assert not elsewhere.duplicate  # keys are per practice
    with engine.connect() as conn:
        rows = {r["id"]: r for r in ms.list_messages(conn, practice="derm")}
    assert rows[other_key.id]["content_hash"] == rows[first.id]["content_hash"] == ms.content_hash(b"one")


def test_the_default_key_is_the_content_as_before(database_url):
    """A message stored without a connector key (as every message was before) is found again by the
    default key of a connector that keeps it."""
    from hub.connector import content_key

    engine = get_engine(database_url)
    (old,) = save(engine, ms.NewMessage("derm", "x", b"payload"))
    (again,) = save(engine, ms.NewMessage("derm", "x", b"payload", dedup_key=content_key(b"payload")))
    assert again.duplicate_of == old.id


def test_store_keys_fit_the_column_whatever_the_connector_gives(database_url):
    engine = get_engine(database_url)
    practice = "p" * 64  # the longest slug the practices table holds
    long_key = "k" * 500
    assert len(ms.store_key(practice, long_key)) <= 140
    assert ms.store_key(practice, long_key) == ms.store_key(practice, long_key)
    assert ms.store_key(practice, long_key) != ms.store_key(practice, long_key + "x")
    first, again = save(engine, ms.NewMessage(practice, "x", b"a", dedup_key=long_key),
                        ms.NewMessage(practice, "x", b"b", dedup_key=long_key))
    assert again.duplicate_of == first.id


def _flags(engine, practice="derm"):
    with engine.connect() as conn:
        return {r["id"]: r["flag"] for r in ms.list_messages(conn, practice=practice)}


def hl7(content: bytes, control_id: str = "42", sender: str = "EHR^NORTH") -> ms.NewMessage:
    return ms.NewMessage("derm", "hl7v2", content, sender=sender, control_id=control_id,
                         dedup_key=ms.content_hash(sender.encode() + control_id.encode() + content),
                         unique_control_id=True)


def test_a_control_id_reused_for_other_content_is_stored_and_flagged(database_url):
    engine = get_engine(database_url)
    (first,) = save(engine, hl7(b"content one"))
    (reused,) = save(engine, hl7(b"content two"))
    (resent,) = save(engine, hl7(b"content two"))  # the reuse resent: a duplicate, not a second flag
    (other_sender,) = save(engine, hl7(b"content three", sender="LAB^NORTH"))
    assert not first.duplicate and not reused.duplicate and resent.duplicate_of == reused.id
    assert not other_sender.duplicate
    flags = _flags(engine)
    assert flags[first.id] is None and flags[other_sender.id] is None  # the first of each sender stands
    assert flags[reused.id] == ms.CONTROL_ID_REUSED
    assert sum(1 for f in flags.values() if f) == 1


def test_a_reuse_inside_one_group_is_flagged_and_other_practices_do_not_count(database_url):
    engine = get_engine(database_url)
    elsewhere = ms.NewMessage("ortho", "hl7v2", b"content zero", sender="EHR^NORTH", control_id="7",
                              dedup_key="o7", unique_control_id=True)
    save(engine, elsewhere)
    one, two, three = save(engine, hl7(b"content one", "7"), hl7(b"content two", "7"), hl7(b"content x", "8"))
    flags = _flags(engine)
    assert flags[one.id] is None  # ortho's message 7 is another practice's
    assert flags[two.id] == ms.CONTROL_ID_REUSED and flags[three.id] is None


def test_control_ids_are_not_checked_where_the_connector_does_not_promise_them_unique(database_url):
    engine = get_engine(database_url)
    rows = [ms.NewMessage("derm", "csv", f"row {i}".encode(), control_id="line 2", dedup_key=f"file{i}:2")
            for i in range(3)]
    saved = save(engine, *rows)
    assert not any(s.duplicate for s in saved)
    assert set(_flags(engine).values()) == {None}


def test_a_group_of_new_messages_repeats_and_resends_of_stored_ones(database_url):
    """One group: a new message, a resend of a stored message in error, the new one again, and a
    resend of a stored message without error; each repeat is a duplicate row of its original."""
    engine = get_engine(database_url)
    bad, good = save(engine, ms.NewMessage("derm", "x", b"bad"), ms.NewMessage("derm", "x", b"good"))
    with writer(engine).begin() as conn:
        ms.mark_error(conn, {bad.id: "PID-3: missing"})
    saved = save(engine, ms.NewMessage("derm", "x", b"new", origin="o" * 300), ms.NewMessage("derm", "x", b"bad"),
                 ms.NewMessage("derm", "x", b"new"), ms.NewMessage("derm", "x", b"good"))
    new = saved[0]
    assert [s.duplicate_of for s in saved] == [None, bad.id, new.id, good.id]
    assert [s.id for s in saved] == [new.id, bad.id, new.id, good.id]  # a duplicate answers with its original
    assert [s.original_error for s in saved] == [None, "PID-3: missing", None, None]  # as the first copy fared
    with engine.connect() as conn:
        rows = conn.execute(sa.select(messages.c.status, messages.c.duplicate_of, messages.c.dedup_key,
                                      messages.c.raw, messages.c.origin)
                            .where(messages.c.id > good.id).order_by(messages.c.id)).all()
    assert [(r.status, r.duplicate_of) for r in rows] == [("received", None), ("duplicate", bad.id),
                                                         ("duplicate", new.id), ("duplicate", good.id)]
    assert rows[0].raw == b"new" and rows[0].dedup_key == ms.store_key("derm", ms.content_hash(b"new"))
    assert rows[0].origin == "o" * 255  # origins are cut to the column
    assert all(r.raw is None and r.dedup_key is None for r in rows[1:])  # duplicates carry no copy


def test_processing_loads_the_messages_asked_for_in_the_statuses_asked_for(database_url):
    """Three messages saved, one processed: a load of all three (and an id never stored) in ``received``
    gives the other two, by id, with their bytes, header and arrival time (aware, UTC) as saved."""
    engine = get_engine(database_url)
    one, two, three = save(engine, ms.NewMessage("derm", "hl7v2", b"first", sender="A^B", control_id="1",
                                                 message_type="ADT^A04", origin="a.hl7"),
                           ms.NewMessage("derm", "hl7v2", b"second", control_id="2"),
                           ms.NewMessage("derm", "hl7v2", b"third", control_id="3"))
    with writer(engine).begin() as conn:
        ms.mark_processed(conn, {two.id: 1})
    with engine.connect() as conn:
        received_at = conn.execute(sa.select(messages.c.received_at).where(messages.c.id == one.id)).scalar_one()
        rows = ms.load_for_processing(conn, [three.id, one.id, two.id, three.id + 1000], statuses=("received",))
        both = ms.load_for_processing(conn, [two.id, one.id], statuses=("received", "processed"))
    assert [r.id for r in rows] == [one.id, three.id]
    first = rows[0]
    assert (first.practice, first.connector, first.raw, first.sender, first.control_id, first.message_type,
            first.origin, first.attempts) == ("derm", "hl7v2", b"first", "A^B", "1", "ADT^A04", "a.hl7", 0)
    assert first.received_at == received_at and first.received_at.utcoffset() == dt.timedelta(0)
    assert [r.id for r in both] == [one.id, two.id]


def test_the_sqlite_insert_of_a_message_runs_without_a_temporary_table():
    """The insert reads the messages table itself (the control id reuse check): as INSERT ... SELECT
    SQLite would first run that SELECT into a temporary table (OpenEphemeral), a quarter of the insert's
    cost; as INSERT ... VALUES it inserts the row as it reads it."""
    import sqlite3

    from hub.model.tables import metadata

    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.connect() as conn:
        db = conn.connection.dbapi_connection
        assert isinstance(db, sqlite3.Connection)
        opcodes = {row[1] for row in db.execute("EXPLAIN " + ms._SQLITE_INSERT, [None] * 12)}
    assert "Insert" in opcodes and "OpenEphemeral" not in opcodes
