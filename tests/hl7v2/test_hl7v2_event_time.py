"""Event time (EVN-6, else EVN-2, else MSH-7) and date-times sent without an offset.

Expected values are read off the hand-written messages below: a time sent without an
offset comes out as the same wall-clock time without one; a time with an offset keeps it.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hub_hl7v2 import HL7v2Connector

from hub.connector import Context
from hub.model.schemas import validate_record

SIU = ("MSH|^~\\&|PM|CLINIC|HUB|MSO|{msh7}||SIU^S12^SIU_S12|C-1|P|2.5.1\r"
       "{evn}"
       "SCH|PL1|FA1|||||NP||30|min|^^30^20250310090000\r"
       "PID|1||MRN1^^^CLINIC^MR||Doe^Sam||19800101|F\r"
       "AIS|1|A|99203|20250310090000||30|min\r"
       "AIP|1|A|1234567893^Carter^Jordan^^^^^^NPI^^^^NPI\r")


def siu(msh7: str = "20250301080000", evn: str | None = None) -> bytes:
    return SIU.format(msh7=msh7, evn=f"EVN|S12|{evn}\r" if evn is not None else "").encode()


def normalize(data: bytes, **config: str) -> list[dict]:
    connector = HL7v2Connector()
    context = Context(practice="p", config=config, origin="t.hl7")
    return [r for env in connector.split(data) for r in connector.normalize(env, context)]


def one(records: list[dict], kind: str) -> dict:
    [record] = [r for r in records if r["kind"] == kind]
    return record


def event_times(records: list[dict]) -> set:
    return {r.get("event_time") for r in records}


def test_evn6_wins_over_evn2_over_msh7_on_every_record() -> None:
    # EVN-2 recorded 09:00, EVN-6 occurred 07:00, MSH-7 08:00
    both = normalize(siu(evn="20250301090000||||20250301070000"))
    assert {r["kind"] for r in both} == {"patient", "provider", "appointment"}
    assert event_times(both) == {"2025-03-01T07:00:00"}
    assert event_times(normalize(siu(evn="20250301090000"))) == {"2025-03-01T09:00:00"}
    assert event_times(normalize(siu(evn=""))) == {"2025-03-01T08:00:00"}  # an empty EVN
    assert event_times(normalize(siu())) == {"2025-03-01T08:00:00"}  # no EVN at all


def test_booked_at_stays_the_recorded_time_when_evn6_is_sent() -> None:
    appointment = one(normalize(siu(evn="20250301090000||||20250301070000")), "appointment")
    assert appointment["booked_at"] == "2025-03-01T09:00:00"
    assert appointment["event_time"] == "2025-03-01T07:00:00"


def test_times_without_an_offset_come_out_naive() -> None:
    appointment = one(normalize(siu()), "appointment")
    assert appointment["start"] == "2025-03-10T09:00:00"
    assert appointment["booked_at"] == "2025-03-01T08:00:00"
    adt = (b"MSH|^~\\&|EHR|CLINIC|HUB|MSO|20250304101500||ADT^A03|C-2|P|2.5.1\r"
           b"EVN|A03|20250304101500\r"
           b"PID|1||MRN1^^^CLINIC^MR||Doe^Sam\r"
           b"PV1|1|O|MAIN||||1001^Carter^Jordan|||DERM|||||||||V1|||||||||||||||||||||||||"
           b"20250304093000|20250304100500\r")
    encounter = one(normalize(adt), "encounter")
    assert (encounter["start"], encounter["end"]) == ("2025-03-04T09:30:00", "2025-03-04T10:05:00")
    merge = (b"MSH|^~\\&|EHR|CLINIC|HUB|MSO|202503051015||ADT^A40|C-3|P|2.5.1\r"
             b"PID|1||MRN1^^^CLINIC^MR\rMRG|MRN9^^^CLINIC^MR\r")
    assert one(normalize(merge), "patient_merge")["merged_at"] == "2025-03-05T10:15:00"


def test_a_time_with_an_offset_keeps_it_and_stays_the_same_instant() -> None:
    records = normalize(siu(msh7="202503010430+0000"))
    assert event_times(records) == {"2025-03-01T04:30:00+00:00"}
    appointment = one(records, "appointment")
    assert appointment["booked_at"] == "2025-03-01T04:30:00+00:00"
    # read by the hub for a practice in Chicago: the same instant, the evening before locally
    checked = validate_record({**appointment, "practice": "p"}, ZoneInfo("America/Chicago"))
    assert checked["event_time"].isoformat() == "2025-02-28T22:30:00-06:00"
    # the naive start is read as Chicago wall-clock time
    assert checked["start"].isoformat() == "2025-03-10T09:00:00-05:00"  # daylight time from 9 March


def test_the_connector_timezone_setting_overrides_for_naive_times_only() -> None:
    records = normalize(siu(evn="20250301090000-0800"), timezone="America/New_York")
    appointment = one(records, "appointment")
    assert appointment["start"] == "2025-03-10T09:00:00-04:00"
    assert appointment["event_time"] == "2025-03-01T09:00:00-08:00"  # sent with an offset: kept


def test_no_readable_time_gives_no_event_time() -> None:
    records = normalize(siu(msh7="2025"))  # a year alone is no point in time; the hub uses arrival
    assert records and all("event_time" not in r for r in records)
