"""Ingest's loop over a message's records (``hub.pipeline.normalize``) looks each record's written check up
itself: its records and its refusals are those of ``validate_record`` called record by record."""

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.connector import Context, Envelope
from hub.errors import ValidationError
from hub.mapping import EMPTY, Mapping
from hub.model.schemas import validate_record
from hub.pipeline.normalize import normalize_envelope
from hub.plugins import load_plugins


class Handing:
    """A connector that hands over the records it is given (as copies), as a connector makes them."""

    name = "handing"

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def normalize(self, envelope: Envelope, context: Context) -> list[dict[str, Any]]:
        return [{**r, "practice": context.practice} for r in self.records]


APPOINTMENT = {"kind": "appointment", "source_id": "A1", "patient_source_id": "MRN1", "start": "2025-03-04T09:00:00",
               "status": "booked", "duration_min": 20, "event_time": "2025-03-01T04:30:00+00:00"}
CHARGE = {"kind": "charge", "source_id": "C1", "service_date": "2025-03-04", "amount": "120.50", "units": 1,
          "modifiers": ["25"], "event_time": "2025-03-04T10:00:00-05:00"}
PATIENT = {"kind": "patient", "source_id": "MRN1", "identifiers": [{"system": "S", "value": "MRN1", "type": "MR"}],
           "birth_date": "1980-02-29", "sex": "female"}  # no event_time: the message's arrival
ARRIVAL = dt.datetime(2025, 3, 5, 12, 0, tzinfo=dt.UTC)


def each_alone(records: list[dict[str, Any]], zone: Any) -> list[dict[str, Any]]:
    out = []
    for r in records:
        r = {**r, "practice": "p"}
        if r.get("event_time") is None:
            r["event_time"] = ARRIVAL.isoformat()
        out.append(validate_record(r, zone))
    return out


@pytest.mark.parametrize("timezone", [None, "America/Chicago"])
def test_a_message_records_are_those_validate_record_gives(timezone: str | None) -> None:
    records = [APPOINTMENT, CHARGE, PATIENT, {**APPOINTMENT, "source_id": "A2", "duration_min": None},
               {**CHARGE, "units": "2"},  # a number as text: marshmallow reads it, the written check does not
               dict(reversed(list(APPOINTMENT.items())))]  # the same fields in another order
    done = normalize_envelope(load_plugins(), Handing(records), Envelope(b"x"), practice="p", timezone=timezone,
                              arrival=ARRIVAL)
    assert done.error is None
    expected = each_alone(records, ZoneInfo(timezone) if timezone else None)
    assert repr(done.records) == repr(expected)  # values, their types and zones, and each record's key order
    assert done.records[0]["start"].isoformat() == ("2025-03-04T09:00:00-06:00" if timezone else
                                                    "2025-03-04T09:00:00+00:00")
    assert done.records[2]["event_time"] == ARRIVAL
    assert done.records[4]["units"] == 2
    assert done.tally.mapped == 6


@pytest.mark.parametrize(("wrong", "field"), [({"status": "maybe"}, "appointment.status"),
                                              ({"source_id": None}, "appointment.source_id"),
                                              ({"start": "2025-02-30T09:00:00"}, "appointment.start"),
                                              ({"colour": "red"}, "appointment.colour"),
                                              ({"patient_source_id": "x" * 256}, "appointment.patient_source_id")])
def test_a_refused_record_refuses_its_message_with_validate_record_words(wrong: dict[str, Any], field: str) -> None:
    bad = {**APPOINTMENT, **wrong}
    done = normalize_envelope(load_plugins(), Handing([CHARGE, bad, PATIENT]), Envelope(b"x"), practice="p",
                              arrival=ARRIVAL)
    with pytest.raises(ValidationError) as alone:
        validate_record({**bad, "practice": "p"})
    assert done.records == [] and isinstance(done.error, ValidationError)
    assert str(done.error) == str(alone.value) and field in str(done.error)


def test_a_mapping_with_code_maps_is_applied_before_the_check() -> None:
    mapping = Mapping(code_maps={"location": {"MAIN": {"mso_location": "chi-main"}}})
    record = {**APPOINTMENT, "location_source_id": "MAIN"}
    done = normalize_envelope(load_plugins(), Handing([record]), Envelope(b"x"), practice="p", mapping=mapping,
                              arrival=ARRIVAL)
    assert done.error is None and done.records[0]["mso_location"] == "chi-main"
    assert list(done.records[0])[-1] == "mso_location"  # added after the record's own fields
    assert normalize_envelope(load_plugins(), Handing([record]), Envelope(b"x"), practice="p", mapping=EMPTY,
                              arrival=ARRIVAL).records[0].get("mso_location") is None
