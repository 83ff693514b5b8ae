"""The hot path's shortcuts answer as the general reading does: usual dates and date-times, the MSH
header of an envelope, a field's components, the records' deduplication."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hub_hl7v2 import HL7v2Connector, er7
from hub_hl7v2.ack import header_of
from hub_hl7v2.mapping import _deduplicated
from hub_hl7v2.values import calendar_date, to_date, to_datetime, to_sex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.connector import Context
from hub.errors import ParseError

PROPERTY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHICAGO = dt.timezone(dt.timedelta(hours=-6))


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# YYYYMMDDHHMMSS+ZZZZ with each part a little beyond its range, so that both readings are tried
DTM_LIKE = st.builds(lambda y, mo, d, h, mi, s, sign, oh, om: f"{y:04d}{mo}{d}{h}{mi}{s}{sign}{oh}{om}",
                     st.integers(0, 9999), two(0, 13), two(0, 32), two(0, 25), two(0, 61), two(0, 61),
                     st.sampled_from("+-"), two(0, 16), two(0, 61))
ODD_19 = st.text(alphabet="0123456789+- .\u0661\uff12", min_size=19, max_size=19)


@PROPERTY
@given(st.one_of(DTM_LIKE, ODD_19), st.sampled_from([None, CHICAGO]))
def test_usual_datetime_reads_as_the_pattern_does(value: str, tz: dt.tzinfo | None) -> None:
    # a leading space takes the value past the 19-character shortcut, to the general pattern
    assert to_datetime(value, tz) == to_datetime(" " + value, tz)


def test_datetimes_by_hand() -> None:
    assert to_datetime("20250721080000-0500") == "2025-07-21T08:00:00-05:00"
    assert to_datetime("20240229235959+1400") == "2024-02-29T23:59:59+14:00"  # a leap day: checked as a date
    assert to_datetime("20230229120000-0500") is None  # no such day
    assert to_datetime("20250721240000-0500") is None  # hour 24
    assert to_datetime("20250721080000+1500") is None  # no such offset
    assert to_datetime("00000721080000-0500") is None  # no year 0
    assert to_datetime("20250721080000-0000") == "2025-07-21T08:00:00+00:00"  # -0000: read by the pattern
    # a time of day that looks usual after 8 characters that are no date: the pattern reads the rest
    assert to_datetime("  202507080000-0500") == "2025-07-08T00:00:00-05:00"
    # digits that are not ASCII: the pattern reads them as numbers
    assert to_datetime("\uff12\uff10\uff12\uff150721080000-0500") == "2025-07-21T08:00:00-05:00"


@PROPERTY
@given(st.one_of(DTM_LIKE, st.text(alphabet="0123456789-\u0661\uff11 ", max_size=12)))
def test_usual_date_reads_as_datetime_does(value: str) -> None:
    assert to_date(value) == calendar_date(value)  # the regex path against datetime's


def test_dates_by_hand() -> None:
    assert to_date("20250228") == "2025-02-28"
    assert to_date("20240229") == "2024-02-29"
    assert to_date("20250229") is None
    assert to_date("20250131120000-0500") == "2025-01-31"  # a DTM's day
    assert to_date("00010101") == "0001-01-01"
    assert to_date("00000101") is None and to_date("20251301") is None and to_date("20250100") is None
    assert to_date("2025-01-01") is None and to_date("2025010") is None and to_date("") is None
    assert to_date("\uff11\uff19\uff19\uff1001010") == "1990-01-01"  # digits that are not ASCII


def test_sex_codes_by_hand() -> None:
    assert to_sex("F") == "female" and to_sex("M") == "male" and to_sex("U") == "unknown"
    assert to_sex(" f") == "female" and to_sex("male") == "male" and to_sex("Q") == "unknown"
    assert to_sex("") is None and to_sex(None) is None


def general_header(fields: list[str], sep: er7.Separators) -> dict[str, str]:
    """``header_of`` as a split per field and per separator, whatever the field holds."""
    rs, cs = sep.repetition, sep.component
    fields = fields + [""] * (18 - len(fields))

    def first(i: int) -> str:
        return fields[i].split(rs, 1)[0].split(cs, 1)[0].strip()

    kind = fields[8].split(rs, 1)[0].split(cs) + [""]
    return {"separators": sep.field + sep.encoding_characters, "sending_app": fields[2].split(rs, 1)[0].strip(),
            "sending_facility": fields[3].split(rs, 1)[0].strip(), "receiving_app": fields[4].split(rs, 1)[0].strip(),
            "receiving_facility": fields[5].split(rs, 1)[0].strip(), "message_code": kind[0].strip(),
            "trigger": kind[1].strip(), "control_id": first(9), "processing_id": first(10), "version": first(11),
            "accept_ack": first(14), "application_ack": first(15), "charset": first(17)}


SEPARATOR_SETS = [er7.DEFAULT_SEPARATORS, er7.Separators("!", "@", "#", "$", "%")]


@PROPERTY
@given(st.sampled_from(SEPARATOR_SETS), st.data())
def test_header_reads_as_a_split_per_field(sep: er7.Separators, data: st.DataObject) -> None:
    text = st.text(alphabet=["A", "1", " ", "-", sep.component, sep.repetition, sep.subcomponent, sep.escape],
                   max_size=8)
    fields = ["MSH", sep.encoding_characters] + data.draw(st.lists(text, max_size=20))
    header = header_of(fields, sep)
    expected = general_header(fields, sep)
    assert header == expected and list(header) == list(expected)


def test_envelope_header_by_hand() -> None:
    connector = HL7v2Connector()
    message = (b"MSH|^~\\&|APP^X~OTHER|FAC^Y|HUB|MSO|20250101||ADT^A04^ADT_A01~X|C1^Z~C2| P |2.5.1|||AL|NE\n"
               b"PID|1||M1^^^A^MR\n")
    envelope = connector.split(message)[0]
    assert envelope.sender == "APP^FAC"  # the first component of the first repetition of MSH-3 and MSH-4
    assert envelope.control_id == "C1" and envelope.message_type == "ADT^A04"
    assert envelope.meta["sending_app"] == "APP^X" and envelope.meta["facility"] == "FAC"
    assert envelope.meta["processing_id"] == "P" and envelope.meta["accept_ack"] == "AL"


TERMINATORS = st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\r", b"\n\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(TERMINATORS, min_size=3, max_size=3))
def test_envelope_and_key_whatever_the_line_ends(ends: list[bytes]) -> None:
    segments = [b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101||ADT^A04|C1|P|2.5.1", b"EVN|A04", b"PID|1||M1^^^A^MR"]
    usual = b"\r".join(segments) + b"\r"
    sent = b"".join(segment + end for segment, end in zip(segments, ends, strict=True))
    connector = HL7v2Connector()
    expected, envelope = connector.split(usual)[0], connector.split(sent)[0]
    assert (envelope.sender, envelope.control_id, envelope.message_type, envelope.meta) == \
        (expected.sender, expected.control_id, expected.message_type, expected.meta)
    assert connector.dedup_key(envelope) == connector.dedup_key(expected)


def test_batch_lines_dropped_by_hand() -> None:
    connector = HL7v2Connector()
    message = b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101||ADT^A04|C1|P|2.5.1\rPID|1||M1^^^A^MR\r"
    batch = b"BHS|^~\\&|APP\r" + message + b"BTS|1\r"
    [envelope] = connector.split(batch)
    assert envelope.raw == message.strip()  # the batch header and trailer are not the message's


FIELD_TEXT = st.text(alphabet=["A", "b", "1", " ", "^", "~", "&", "\\", "F", "S", '"', "!", "@", "#", "$", "%"],
                     max_size=30)


@PROPERTY
@given(st.sampled_from(SEPARATOR_SETS), st.lists(FIELD_TEXT, min_size=1, max_size=4), st.integers(0, 5))
def test_shared_components_read_as_components(sep: er7.Separators, fields: list[str], field: int) -> None:
    msg = er7.Message([["ZZZ", *fields]], sep)
    seg = msg.segments[0]
    assert msg.shared_components(seg, field) == msg.components(seg, field)


def general_deduplicated(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (kind, source_id), the first's values winning, written as a plain loop."""
    out: list[dict[str, Any]] = []
    for record in records:
        first = next((r for r in out if (r["kind"], r["source_id"]) == (record["kind"], record["source_id"])), None)
        if first is None:
            out.append(record)
        else:
            for key, value in record.items():
                if key not in first:
                    first[key] = value
    return out


RECORD = st.fixed_dictionaries({"kind": st.sampled_from(["provider", "location"]),
                                "source_id": st.sampled_from(["1", "2", "3"])},
                               optional={"npi": st.sampled_from(["1", "2"]), "family_name": st.sampled_from(["A", "B"]),
                                         "given_name": st.just("C")})


@PROPERTY
@given(st.lists(RECORD, max_size=8))
def test_deduplicated_as_a_plain_loop(records: list[dict[str, Any]]) -> None:
    expected = general_deduplicated([dict(r) for r in records])
    found = _deduplicated([dict(r) for r in records])
    assert found == expected and [list(r) for r in found] == [list(r) for r in expected]


def test_deduplicated_by_hand() -> None:
    first = {"kind": "provider", "source_id": "1", "family_name": "A"}
    again = {"kind": "provider", "source_id": "1", "npi": "1", "family_name": "B"}
    place = {"kind": "location", "source_id": "1"}
    assert _deduplicated([first, place, again]) == [
        {"kind": "provider", "source_id": "1", "family_name": "A", "npi": "1"}, place]


MSH = b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101||ADT^A04|C1|P|2.5.1"


def test_one_message_split_by_hand() -> None:
    """A payload of CR-ended segments is read in one pass; anything else (a line feed, a batch line, a
    second MSH) as before."""
    connector = HL7v2Connector()
    usual = MSH + b"\rPID|1||M1^^^A^MR\r"
    [envelope] = connector.split(usual)
    assert envelope.raw == usual.strip() and envelope.sender == "APP^FAC" and envelope.control_id == "C1"
    assert envelope.message_type == "ADT^A04" and envelope.error is None
    assert connector.split(MSH + b"\nPID|1||M1^^^A^MR\n")[0].meta == envelope.meta
    # a batch header or trailer line is dropped; an FHS alone (no BHS, BTS or FTS) is kept, as before
    assert connector.split(usual + b"BTS|1\rFTS|1\r")[0].raw == usual.strip()
    kept = MSH + b"\rFHS|^~\\&|X\rPID|1||M1^^^A^MR"
    assert connector.split(kept)[0].raw == kept
    # a second MSH: two messages
    second = usual + MSH.replace(b"C1", b"C2") + b"\rPID|1||M2^^^A^MR"
    assert [e.control_id for e in connector.split(second)] == ["C1", "C2"]
    # a form feed at the end: left out of the message, as ``strip`` does
    assert connector.split(usual + b"\x0c")[0].raw == usual.strip()
    # one message without MSH-10, or run together on one line: refused whole
    with pytest.raises(ParseError, match="MSH-10"):
        connector.split(MSH.replace(b"C1", b"") + b"\rPID|1||M1^^^A^MR\r")
    with pytest.raises(ParseError, match="run together"):
        connector.split(MSH + b"| PID|1||M1^^^A^MR")


def test_records_written_out_by_hand() -> None:
    """The records built key by key are those ``_compact`` would leave: the keys in order, no empty values;
    a provider named in PV1 and in each FT1 is one record, and every record a dict of its own."""
    connector = HL7v2Connector()
    message = b"\r".join([
        b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000-0500||DFT^P03|C9|P|2.5.1",
        b"PID|1||M1^^^NS^MR~1EG4TE5MK73^^^CMS^MC||Doe^Jane||19800102|F|||1 Main St^^Town^IL^62701||"
        b"^PRN^PH^^^217^5550100",
        b"PV1|1|O|CLINIC||||1234567893^Smith^Ann^^^^^^NPI^^^^NPI||||||||||||V1",
        b"FT1|1|T1||20250101|20250102|CG|99213^Visit^CPT|||2|100.00||||||||L98.9|"
        b"1234567893^Smith^Ann^^^^^^NPI^^^^NPI",
        b"FT1|2|T2||20250101||CG||||||||||||||1234567893^Smith^Ann^^^^^^NPI^^^^NPI",
        b"IN1|1|PLAN1|P1|ACME",
    ]) + b"\r"
    [envelope] = connector.split(message)
    records = connector.normalize(envelope, Context("p"))
    assert [(r["kind"], r["source_id"]) for r in records] == [
        ("patient", "M1"), ("coverage", "M1:coverage:P1"), ("provider", "1234567893"), ("location", "CLINIC"),
        ("charge", "T1"), ("charge", "T2")]
    assert len({id(r) for r in records}) == len(records)
    patient, coverage, provider, _, first, second = records
    assert patient == {"kind": "patient", "source_id": "M1", "identifiers": [
        {"system": "NS", "value": "M1", "type": "MR"},
        {"system": "http://hl7.org/fhir/sid/us-mbi", "value": "1EG4TE5MK73", "type": "MC"}],
        "family_name": "Doe", "given_name": "Jane", "birth_date": "1980-01-02", "sex": "female",
        "postal_code": "62701", "address_line": "1 Main St", "phone": "2175550100",
        "event_time": "2025-01-01T12:00:00-05:00", "practice": "p"}
    assert list(coverage) == ["kind", "source_id", "patient_source_id", "payer_name", "rank", "event_time",
                              "practice"]
    assert provider == {"kind": "provider", "source_id": "1234567893", "npi": "1234567893",
                        "family_name": "Smith", "given_name": "Ann", "event_time": "2025-01-01T12:00:00-05:00",
                        "practice": "p"}
    assert list(first) == ["kind", "source_id", "encounter_source_id", "patient_source_id", "provider_source_id",
                           "service_date", "posted_on", "procedure_code", "modifiers", "units", "amount",
                           "diagnosis_codes", "payer_name", "event_time", "practice"]
    assert (first["service_date"], first["posted_on"], first["units"], first["amount"]) == \
        ("2025-01-01", "2025-01-02", 2, "100.00")
    # no price, no posting date, no procedure: those keys left out; the lists kept even when empty
    assert second["unpriced"] is True and "amount" not in second and "posted_on" not in second
    assert second["modifiers"] == [] and second["diagnosis_codes"] == [] and "procedure_code" not in second
