"""One over-long value is its own message's error, never its neighbours' (on SQLite and PostgreSQL).

PostgreSQL enforces column sizes where SQLite does not: a header or a record field longer than its column
once failed the whole batch (answered "retry" for ever, stalling the feed). Now the message store keeps the
message with its header cut and refuses it with the reason, and a record field over ``STR_MAX`` refuses its
own message at validation."""

import sqlalchemy as sa

from hub.model.kinds import STR_MAX
from hub.pipeline.intake import Arrival, receive_many
from hub.store import canonical, writer
from hub.store import messages as ms
from hub.store.practices import add_practice


def adt(control_id: str, mrn: str, family: str = "DOE") -> bytes:
    return ("\r".join([
        f"MSH|^~\\&|EHR|CLINIC|HUB|MSO|20250301090000||ADT^A04|{control_id}|P|2.5.1",
        "EVN|A04|20250301090000",
        f"PID|1||{mrn}^^^CLINIC^MR||{family}^JANE||19800101|F",
    ]) + "\r").encode()


def register(runtime) -> None:
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")


def test_an_over_long_control_id_is_refused_alone_and_kept(runtime) -> None:
    register(runtime)
    long_id = "C" * 300
    receipts = receive_many(runtime, "derm", [Arrival(adt("C1", "M1"), "a.hl7"), Arrival(adt(long_id, "M2"), "b.hl7"),
                                              Arrival(adt("C3", "M3"), "c.hl7")])
    statuses = [r[0].status for r in receipts]
    assert statuses == ["accepted", "error", "accepted"]
    bad = receipts[1][0].outcome
    assert bad.rejected and "control id is 300 characters long" in (bad.error or "")
    with runtime.engine.connect() as conn:
        rows = {r["origin"]: r for r in ms.list_messages(conn, practice="derm")}
        patients = conn.execute(sa.text("SELECT source_id FROM patients ORDER BY source_id")).scalars().all()
    assert rows["b.hl7"]["status"] == "error" and rows["b.hl7"]["control_id"] == long_id[:255]
    assert patients == ["M1", "M3"]
    # sent again, it is the same message: a duplicate, answered with the same refusal, not a retry
    (again,) = receive_many(runtime, "derm", [Arrival(adt(long_id, "M2"), "b.hl7")])
    assert again[0].outcome.duplicate and not again[0].outcome.accepted


def test_an_over_long_record_field_fails_its_own_message_not_the_batch(runtime) -> None:
    register(runtime)
    arrivals = [Arrival(adt(f"C{i}", f"M{i}"), f"{i}.hl7") for i in range(5)]
    arrivals[2] = Arrival(adt("C2", "M2", family="X" * (STR_MAX + 1)), "2.hl7")
    receipts = receive_many(runtime, "derm", arrivals)
    assert [r[0].status for r in receipts] == ["accepted", "accepted", "error", "accepted", "accepted"]
    assert "patient.family_name" in (receipts[2][0].outcome.error or "")
    assert "X" * 20 not in (receipts[2][0].outcome.error or "")  # the value itself is never shown
    with runtime.engine.connect() as conn:
        assert canonical.count_records(conn, "derm")["patient"] == 4
    # a value of exactly STR_MAX characters is kept whole
    (fits,) = receive_many(runtime, "derm", [Arrival(adt("C9", "M9", family="Y" * STR_MAX), "9.hl7")])
    assert fits[0].status == "accepted"
    with runtime.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT family_name FROM patients WHERE source_id = 'M9'")).scalar_one() \
            == "Y" * STR_MAX
