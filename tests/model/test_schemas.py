import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import ValidationError
from hub.model import KINDS, schema_for, validate_record
from hub.model.schemas import _fast_validator


def appointment(**over):
    base = {"kind": "appointment", "practice": "p", "source_id": "A1", "start": "2025-03-04T09:00:00-05:00",
            "status": "booked"}
    return {**base, **over}


def test_valid_record_gets_python_values():
    out = validate_record(appointment(duration_min=30, booked_at="2025-02-01T10:00:00+00:00"))
    assert out["start"] == dt.datetime(2025, 3, 4, 9, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert out["duration_min"] == 30


def test_every_kind_has_a_schema_and_a_table():
    from hub.model.tables import RECORD_TABLES

    assert set(KINDS) == set(RECORD_TABLES)
    for kind in KINDS:
        assert schema_for(kind) is schema_for(kind)


@pytest.mark.parametrize(("record", "field"), [
    (appointment(status="maybe"), "status"),
    (appointment(start=None), "start"),
    (appointment(unknown_field="x"), "unknown_field"),
    ({"kind": "charge", "practice": "p", "source_id": "C", "service_date": "2025-01-01", "amount": 12.5}, "amount"),
    ({"kind": "patient", "practice": "p", "source_id": "M", "sex": "F"}, "sex"),
    ({"kind": "coverage", "practice": "p", "source_id": "C", "financial_class": "gold"}, "financial_class"),
    # shaped like a date or date-time, but none: a field error, not a crash of the fast path
    ({"kind": "charge", "practice": "p", "source_id": "C", "service_date": "0000-00-00"}, "service_date"),
    ({"kind": "charge", "practice": "p", "source_id": "C", "service_date": "2025-02-30"}, "service_date"),
    (appointment(start="2025-13-04T09:00:00-05:00"), "start"),
])
def test_invalid_records_name_the_field(record, field):
    with pytest.raises(ValidationError) as caught:
        validate_record(record)
    assert field in caught.value.errors
    assert f".{field}" in str(caught.value)


def test_errors_never_quote_the_value():
    with pytest.raises(ValidationError) as caught:
        validate_record({"kind": "patient", "practice": "p", "source_id": "M", "birth_date": "Zebediah-01"})
    assert "Zebediah" not in str(caught.value)


def test_unknown_kind():
    with pytest.raises(ValidationError, match="unknown record kind"):
        validate_record({"kind": "invoice", "practice": "p", "source_id": "1"})


def test_money_is_exact():
    out = validate_record({"kind": "charge", "practice": "p", "source_id": "C", "service_date": "2025-01-01",
                           "amount": "1,234.50"})
    assert out["amount"] == Decimal("1234.50")


# The fast path must agree with marshmallow wherever it answers.
values = st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 5000), st.booleans(),
                   st.sampled_from(["2025-01-31", "2025-13-01", "2025-01-31T09:30:00-05:00", "2025-01-31T09:30:00Z",
                                    "2025-01-31T09:30:00", "12.50", "-3", "booked", "female", "x",
                                    "1e3", "NaN"]),
                   st.lists(st.text(max_size=4), max_size=3),
                   st.lists(st.fixed_dictionaries({"value": st.text(max_size=4)},
                                                  optional={"system": st.none() | st.text(max_size=3),
                                                            "amount": st.sampled_from(["1.00", "x", 2])}),
                            max_size=2))


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_fast_path_agrees_with_marshmallow(kind, data):
    names = [f.name for f in KINDS[kind]]
    record = {"kind": kind, "practice": "p", "source_id": "S1"}
    for name in data.draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names))):
        record[name] = data.draw(values)
    fast = _fast_validator(kind)(record)
    if fast is None:
        return
    assert fast == schema_for(kind).load(record)


def test_a_time_without_offset_is_read_in_the_practice_zone():
    import datetime as dt
    from zoneinfo import ZoneInfo

    chicago = ZoneInfo("America/Chicago")
    # 22:30 on 28 February where the practice is: the same wall clock, at Chicago's winter offset
    out = validate_record(appointment(start="2025-02-28T22:30:00"), chicago)
    assert out["start"].isoformat() == "2025-02-28T22:30:00-06:00"
    # without a zone (a practice still onboarding without one) it is UTC
    assert validate_record(appointment(start="2025-02-28T22:30:00"))["start"].utcoffset() == dt.timedelta(0)


def test_an_instant_keeps_its_moment_and_shows_the_practice_local_date():
    from zoneinfo import ZoneInfo

    out = validate_record(appointment(start="2025-03-01T04:30:00+00:00"), ZoneInfo("America/Chicago"))
    assert out["start"].isoformat() == "2025-02-28T22:30:00-06:00"  # February where the visit happened
    # no zone: kept as sent
    assert validate_record(appointment(start="2025-03-01T04:30:00+00:00"))["start"].isoformat() \
        == "2025-03-01T04:30:00+00:00"


def test_the_fast_path_reads_each_set_of_fields_alike_in_any_order():
    """Records of one kind with other fields, or the same fields in another order, each get their own
    answer; a missing required field, an unknown one or a value to coerce leave it to marshmallow."""
    check = _fast_validator("appointment")
    first = check({"kind": "appointment", "practice": "p", "source_id": "A1", "duration_min": 30,
                   "start": "2025-03-04T09:00:00-05:00", "status": "booked"})
    assert first is not None and first["duration_min"] == 30 and first["start"].utcoffset() == dt.timedelta(hours=-5)
    assert list(first) == ["kind", "practice", "source_id", "duration_min", "start", "status"]  # the record's order
    again = check({"start": "2025-03-05T10:00:00Z", "status": "noshow", "source_id": "A2", "duration_min": 45,
                   "practice": "p", "kind": "appointment"})
    assert again is not None and (again["source_id"], again["duration_min"]) == ("A2", 45)
    sure = {"start": "2025-03-04T09:00:00-05:00", "status": "booked"}
    assert check({"kind": "appointment", "practice": "p", "duration_min": 30, **sure}) is None  # no source_id
    assert check({"kind": "appointment", "practice": "p", "source_id": "A3", "status": "booked"}) is None  # no start
    assert check({"kind": "appointment", "practice": "p", "source_id": "A3", "colour": "red", **sure}) is None
    assert check({"kind": "appointment", "practice": "p", "source_id": "A4", "duration_min": "30", **sure}) is None
    assert check({"kind": "appointment", "practice": "p", "source_id": None, **sure}) is None
    assert check({"kind": "charge", "practice": "p", "source_id": "A5", **sure}) is None  # another kind's record



FITTING = {"str": "x", "text": "x y", "date": "2025-01-31", "datetime": "2025-01-31T09:30:00-05:00", "int": 5,
           "money": "12.50", "bool": True, "list": ["a"]}


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), data=st.data())
def test_the_check_of_a_set_of_fields_answers_as_the_field_by_field_check(kind, data):
    """Each set of keys (in its order) gets a check written out for it: it answers as the check that looks
    each field's rule up by name, for any values, any order, a key of another kind or none at all."""
    names = ["kind", "practice", "source_id", "event_time", *(f.name for f in KINDS[kind]), "colour", "npi"]
    keys = data.draw(st.permutations(names))[:data.draw(st.integers(0, len(names)))]
    fields = {f.name: f for f in KINDS[kind]}
    usual = {"kind": kind, "practice": "p", "source_id": "S1", "event_time": "2025-01-31T09:30:00Z"}
    for name, f in fields.items():  # a value each field's rule takes as it is or converts
        usual[name] = f.choices[0] if f.type == "enum" else FITTING[f.type] if f.type != "json" else \
            [{"value": "1", "amount": "2.00"} if name == "adjustments" else {"value": "1"}]
    # mostly values that fit, for each rule to be reached; now and then anything
    record = {name: usual[name] if name in usual and data.draw(st.integers(0, 5)) else data.draw(values)
              for name in keys}
    check = _fast_validator(kind)
    assert check(record) == check.check_any(record)
    assert check(dict(record)) == check.check_any(record)  # the second record of a shape: the kept check


def test_a_written_check_refuses_a_required_field_none_or_of_another_type_in_one_test():
    """A required field's test in a written check also refuses None (there is no test of None after it):
    kind, practice and source_id (text), and an appointment's start (a date-time), each None, of another
    type or empty, are refused as the field-by-field check refuses them; kind must be the check's own."""
    check = _fast_validator("appointment")
    record = appointment(event_time="2025-03-01T04:30:00+00:00")
    assert check(dict(record)) is not None
    for name, wrong in [("kind", None), ("kind", 7), ("kind", ""), ("kind", "charge"), ("kind", ["appointment"]),
                        ("practice", None), ("practice", ""), ("practice", 3), ("practice", "p" * 256),
                        ("source_id", None), ("source_id", False), ("start", None), ("start", 20250304),
                        ("start", "2025-03-04"), ("status", None), ("status", "BOOKED")]:
        changed = {**record, name: wrong}
        assert check(changed) is None, (name, wrong)
        assert check.check_any(changed) is None, (name, wrong)
    assert check({**record, "practice": "p" * 255})["practice"] == "p" * 255  # the longest text a field takes
    assert check({**record, "event_time": None})["event_time"] is None  # not required: None kept


def test_a_check_written_for_a_set_of_fields_keeps_the_record_order_and_converts_each_type():
    check = _fast_validator("charge")
    record = {"practice": "p", "kind": "charge", "source_id": "C1", "service_date": "2025-03-04",
              "amount": "120.50", "units": 2, "modifiers": ["25"], "unpriced": None,
              "event_time": "2025-03-04T09:00:00-05:00"}
    out = check(record)
    assert list(out) == list(record)
    assert out["service_date"] == dt.date(2025, 3, 4) and out["amount"] == Decimal("120.50")
    assert out["event_time"] == dt.datetime(2025, 3, 4, 9, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert out["modifiers"] == ["25"] and out["modifiers"] is not record["modifiers"] and out["unpriced"] is None
    assert check({**record, "units": "2"}) is None  # a number as text: marshmallow converts it
    assert check({**record, "service_date": "2025-3-4"}) is None
    assert check({**record, "kind": "patient"}) is None


def test_the_fast_check_given_a_zone_reads_date_times_as_localize_does():
    """Given the practice's zone, the check reads each date-time in it (a naive one as a wall-clock time
    there, one with an offset as that instant shown there), and a message's records share one event time."""
    from zoneinfo import ZoneInfo

    chicago = ZoneInfo("America/Chicago")
    check = _fast_validator("appointment")
    record = appointment(start="2025-03-04T09:00:00", booked_at="2025-03-01T04:30:00+00:00",
                         event_time="2025-03-01T04:30:00+00:00")
    out = check(dict(record), chicago)
    assert out["start"].isoformat() == "2025-03-04T09:00:00-06:00"  # naive: Chicago's wall clock
    assert out["booked_at"].isoformat() == "2025-02-28T22:30:00-06:00"  # the same instant, in Chicago
    assert out["event_time"] is out["booked_at"]  # one text, one value
    assert check(dict(record), None)["start"].isoformat() == "2025-03-04T09:00:00+00:00"  # no zone: UTC
    assert check(dict(record))["start"].tzinfo is None  # no zone given: as sent
    assert validate_record(dict(record), chicago) == out


def test_the_usual_identifiers_take_a_shorter_check_with_the_same_answer():
    from hub.model.schemas import _NOT_FAST, _fast_identifiers, _fast_nested

    usual = [{"system": "NORTHDERM", "value": "MRN1", "type": "MR"}, {"system": None, "value": "123", "type": None}]
    out = _fast_identifiers(usual)
    assert out == usual and out[0] is not usual[0]  # copies
    assert list(out[0]) == ["system", "value", "type"]
    for other in ([{"value": "X"}],  # fewer keys: the loop takes it as it is
                  [{"system": "A", "value": "", "type": None}],  # an empty value: refused
                  [{"system": "A", "value": None, "type": None}],
                  [{"system": "A", "type": "MR", "colour": "X"}],  # no value, an unknown key
                  [{"system": 1, "value": "X", "type": None}], [{"system": "A", "value": "X", "type": 2}],
                  [{"system": "A", "value": "X", "type": "MR", "extra": None}], ["X"], "X", None, []):
        assert _fast_identifiers(other) == _fast_nested("identifiers", other)
    assert _fast_identifiers([{"value": "X"}]) == [{"value": "X"}]
    assert _fast_identifiers([{"system": "A", "value": "", "type": None}]) is _NOT_FAST


_ID_VALUES = st.one_of(st.none(), st.sampled_from(["", "A", "MRN1"]), st.integers(0, 2),
                       st.lists(st.just("a"), max_size=1))


@settings(max_examples=500, deadline=None)
@given(items=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["system", "value", "type", "amount", "colour"]), _ID_VALUES, max_size=4),
    st.fixed_dictionaries({"system": _ID_VALUES, "value": _ID_VALUES, "type": _ID_VALUES}),
    st.just("x")), max_size=3))
def test_the_identifiers_check_answers_as_the_nested_loop(items):
    from hub.model.schemas import _fast_identifiers, _fast_nested

    assert _fast_identifiers(items) == _fast_nested("identifiers", items)


def test_lists_of_text_and_money_text_read_as_before():
    from hub.model.schemas import _NOT_FAST, _money, _str_list

    assert _str_list(["25", "59"]) == ["25", "59"] and _str_list([]) == []
    codes = ["L98.9"]
    assert _str_list(codes) is not codes  # a copy
    assert _str_list(["25", 59]) is _NOT_FAST and _str_list(("25",)) is _NOT_FAST and _str_list("25") is _NOT_FAST
    assert _money("12.50") == Decimal("12.50") and _money("0.285") == Decimal("0.29")  # half up
    assert _money("-0.001") == Decimal("0.00") and str(_money("-0.001")) == "0.00"
    assert _money("12.5") is _money("12.5")  # one reading of a text, shared: a Decimal does not change
    for refused in ("1,200.00", "1e3", "NaN", " 12", "", "1234567890123"):
        assert _money(refused) is _NOT_FAST
    assert _money(Decimal("1.005")) == Decimal("1.01") and _money(12) is _NOT_FAST
