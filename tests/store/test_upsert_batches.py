"""Writes of one record folded within a batch leave what the same writes in batches of their own leave.

SQLite writes a record straight from its fields (a statement per set of fields carried); two
writes of one key in one batch are folded first, either by keeping the one that overwrites every
field of the other, or field by field. The expected values below are read off the writes.
"""

import itertools

import pytest
import sqlalchemy as sa

from hub.model import validate_record
from hub.model.kinds import KINDS
from hub.store import canonical, get_engine, writer

# one patient, four events: (message id, event time, fields carried)
EARLY_FULL = (1, "2025-03-01T08:00:00+00:00", {"family_name": "Early", "given_name": "Ann", "sex": "female"})
LATE_NAME = (2, "2025-03-02T08:00:00+00:00", {"family_name": "Later"})
LATE_FULL = (3, "2025-03-03T08:00:00+00:00", {"family_name": "Latest", "given_name": "Anne", "sex": "female",
                                              "postal_code": "62701"})
TIE_OTHER = (4, "2025-03-03T08:00:00+00:00", {"phone": "2175550100"})  # the same time as LATE_FULL, a later message


def item(event):
    message_id, at, fields = event
    return validate_record({"kind": "patient", "practice": "derm", "source_id": "M1", "event_time": at,
                            **fields}), message_id


def stored(engine):
    with engine.connect() as conn:
        (row,) = canonical.fetch_records(conn, "patient")
        return row, canonical.lineage_of(conn, "patient", "derm", "M1")


@pytest.mark.parametrize("events, expected", [
    # the later write carries every field of the earlier one: it alone is written
    ((EARLY_FULL, LATE_FULL), {"family_name": "Latest", "given_name": "Anne", "postal_code": "62701",
                               "phone": None, "message_id": 3}),
    # the later write carries fewer fields: the earlier one's other fields stay
    ((EARLY_FULL, LATE_NAME), {"family_name": "Later", "given_name": "Ann", "sex": "female", "message_id": 2}),
    # three writes, two folded field by field, and a tie of event times ordered by message id
    ((EARLY_FULL, LATE_NAME, LATE_FULL, TIE_OTHER),
     {"family_name": "Latest", "given_name": "Anne", "postal_code": "62701", "phone": "2175550100",
      "message_id": 4, "event_time": "2025-03-03T08:00:00+00:00"}),
])
def test_one_batch_in_any_order_equals_a_batch_per_write(database_url, events, expected):
    engine = get_engine(database_url)
    for order in itertools.permutations(events):
        for together in (True, False):
            with writer(engine).begin() as conn:
                for table in ("patients", "lineage"):
                    conn.exec_driver_sql(f"DELETE FROM {table}")
            batches = [[item(e) for e in order]] if together else [[item(e)] for e in order]
            for batch in batches:
                with writer(engine).begin() as conn:
                    canonical.upsert_records(conn, batch)
            row, lineage = stored(engine)
            assert {name: row[name] for name in expected} == expected, (order, together)
            assert lineage == sorted(e[0] for e in events)


def test_every_kind_has_a_write_plan_for_all_its_fields():
    for kind, fields in KINDS.items():
        keys = ("kind", "practice", "source_id", "event_time", *(f.name for f in fields))
        plan = canonical._plan(kind, keys)
        assert plan.fields == {f.name for f in fields}


def test_every_kind_has_a_multi_row_statement_of_its_plan():
    """SQLite reads each plan's statement of a chunk of rows (at most 999 parameters, the bound of SQLite
    before 3.32): a row's parameters follow the previous row's, its stamp columns read its own stamp."""
    import sqlite3

    from hub.model.tables import metadata

    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.connect() as conn:
        db = conn.connection.dbapi_connection
        assert isinstance(db, sqlite3.Connection)
        for kind, fields in KINDS.items():
            plan = canonical._plan(kind, ("kind", "practice", "source_id", *(f.name for f in fields)))
            width = len(fields) + 6  # practice, source_id, the fields, event_time, message_id, updated_at, stamp
            assert 1 < plan.chunk <= canonical.CHUNK and plan.chunk * width <= 999
            db.execute("EXPLAIN " + plan.chunk_sql, [None] * (plan.chunk * width))
            last_row = plan.chunk_sql.split(" VALUES ", 1)[1].split("), (")[-1].split(")")[0]
            first = (plan.chunk - 1) * width
            assert last_row.split(", ") == [f"?{first + i}" for i in range(1, width + 1)] + \
                [f"?{first + width}"] * len(fields)
