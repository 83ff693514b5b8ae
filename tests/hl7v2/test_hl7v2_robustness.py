"""What real feeds send around the messages: batches with one bad message, text before the first MSH,
mixed line ends, segments run together, bare NPIs and conflicting encoding characters."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hub_hl7v2 import HL7v2Connector
from hub_hl7v2.er7 import parse_bytes, read_separators

from hub.connector import Context, Envelope, Outcome
from hub.errors import ParseError

HL7 = "x-application/hl7-v2+er7"


def message(control_id: str, *, mrn: str = "P1", end: bytes = b"\r") -> bytes:
    msh = f"MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000||ADT^A04|{control_id}|P|2.5.1".encode()
    segments = [msh, b"EVN|A04|20250101120000", f"PID|1||{mrn}^^^A^MR||Doe^Jane||19800101|F".encode()]
    return end.join(segments) + end


def no_control_id() -> bytes:
    return b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000||ADT^A04||P|2.5.1\rPID|1||P99^^^A^MR\r"


# ------------------------------------------------------------------ 6. a batch keeps its good messages
def test_a_batch_keeps_every_good_message_and_refuses_the_bad_one_by_index() -> None:
    good = [message(f"C{i}", mrn=f"P{i}") for i in range(1, 14)]
    data = b"".join(good[:6]) + no_control_id() + b"".join(good[6:])
    envelopes = HL7v2Connector().split(data)
    assert len(envelopes) == 14
    bad = [i for i, e in enumerate(envelopes) if e.error is not None]
    assert bad == [6]
    assert envelopes[6].error is not None and envelopes[6].error.location == "message 7, MSH-10"
    assert [e.control_id for e in envelopes if e.error is None] == [f"C{i}" for i in range(1, 14)]


def test_a_file_batch_with_fhs_and_bhs_keeps_the_good_messages() -> None:
    data = (b"FHS|^~\\&|APP|FAC\rBHS|^~\\&|APP|FAC\r" + message("C1") + no_control_id() + message("C3")
            + b"BTS|3\rFTS|1\r")
    envelopes = HL7v2Connector().split(data)
    assert [e.control_id for e in envelopes] == ["C1", None, "C3"]
    assert envelopes[1].error is not None and envelopes[1].error.location == "message 2, MSH-10"
    assert not any(b"BTS" in e.raw or b"FHS" in e.raw for e in envelopes)


def test_a_single_message_without_msh10_is_still_refused_whole() -> None:
    with pytest.raises(ParseError) as caught:
        HL7v2Connector().split(no_control_id())
    assert caught.value.location == "MSH-10"


@pytest.fixture
def store(runtime):  # type: ignore[no-untyped-def]
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")
    return runtime


def test_intake_stores_the_good_messages_and_answers_ar_only_for_the_bad_one(store) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.intake import receive
    from hub.store.messages import counts_by_status

    data = message("C1", mrn="P1") + no_control_id() + message("C3", mrn="P3")
    receipts = receive(store, "northderm", data, media_type=HL7)
    assert [r.outcome.rejected for r in receipts] == [False, True, False]
    assert b"MSA|AA|C1" in receipts[0].ack and b"MSA|AA|C3" in receipts[2].ack
    assert b"MSA|AR|" in receipts[1].ack and b"MSH-10" in receipts[1].ack
    with store.engine.connect() as conn:
        assert counts_by_status(conn, "northderm") == {"processed": 2, "error": 1}


def test_normalize_reports_the_bad_message_and_keeps_the_others() -> None:
    from hub.pipeline.normalize import normalize_payload
    from hub.plugins import load_plugins

    results = normalize_payload(load_plugins(), message("C1") + no_control_id() + message("C3"), practice="p1")
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].error is not None and results[1].error.location == "message 2, MSH-10"
    assert all(any(rec["kind"] == "patient" for rec in r.records) for r in (results[0], results[2]))


def test_real_batches_with_a_message_lacking_msh10_keep_the_others(corpus: Path) -> None:
    # hapi example_oml_o21: 13 messages (CR ends), the 11th and 12th (HIS^ASE, OML^O21) have an empty MSH-10;
    # nhapi OML_O21_messages: 7 messages, the 5th and 7th have an empty MSH-10
    for name, count, bad in (("hapi__example_oml_o21.hl7", 13, [10, 11]),
                             ("nhapi__OML_O21_messages.txt", 7, [4, 6])):
        envelopes = HL7v2Connector().split((corpus / "real" / "hl7v2" / name).read_bytes(), origin=name)
        assert len(envelopes) == count, name
        assert [i for i, e in enumerate(envelopes) if e.error is not None] == bad, name
        assert all(e.error.location.endswith("MSH-10") for e in envelopes if e.error is not None)


# ------------------------------------------------------------------ 3. text before the first MSH
@pytest.mark.parametrize("prefix", [b"# exported 2025-01-01 by the practice system\n",
                                    b"/*\n * comment block\n */\n", b"[SOM]", b"\r\n\r\n  \n"])
def test_text_before_the_first_msh_is_skipped_and_said(prefix: bytes, caplog: pytest.LogCaptureFixture) -> None:
    data = prefix + message("C1") + message("C2")
    assert HL7v2Connector.detect(data)
    with caplog.at_level(logging.WARNING, logger="hub.connector.hl7v2"):
        envelopes = HL7v2Connector().split(data, origin="feed.hl7")
    assert [e.control_id for e in envelopes] == ["C1", "C2"]
    assert all(e.error is None for e in envelopes)
    assert envelopes[0].raw.startswith(b"MSH|")
    warned = [r.getMessage() for r in caplog.records if "before the first MSH" in r.getMessage()]
    if prefix.strip():
        assert warned == [f"feed.hl7: skipped {len(prefix.strip())} bytes "
                          f"({len(prefix.strip().splitlines())} lines) before the first MSH segment "
                          "(a comment or vendor prefix)"]
        assert "2025-01-01" not in warned[0]  # counts, never the skipped text
        findings = HL7v2Connector().findings(envelopes[0], Context(practice="p1"))
        assert findings[0] == "MSH: " + warned[0].removeprefix("feed.hl7: ")
    else:
        assert warned == [] and "skipped" not in envelopes[0].meta


def test_detect_does_not_take_json_or_text_without_msh() -> None:
    assert not HL7v2Connector.detect(b'{"resourceType": "Bundle", "note": "\\nMSH|^~\\\\&|"}')
    assert not HL7v2Connector.detect(b"name,dob\nJane,1980-01-01\n")
    with pytest.raises(ParseError, match="no MSH segment"):
        HL7v2Connector().split(b"# just a comment\nnothing here\n")


def test_real_files_with_a_comment_or_vendor_prefix_are_read(corpus: Path) -> None:
    folder = corpus / "real" / "hl7v2"
    # hapi messages.txt opens with a 3-line /* ... */ comment; its first message is ORU^R01 1994050216163360
    data = (folder / "hapi__messages.txt").read_bytes()
    assert HL7v2Connector.detect(data)
    envelopes = HL7v2Connector().split(data)
    assert envelopes[0].control_id == "1994050216163360" and envelopes[0].message_type == "ORU^R01"
    # mirth hl7.txt: "[SOM]" before MSH, ADT^A04 control id 603266
    data = (folder / "mirth__hl7.txt").read_bytes()
    assert HL7v2Connector.detect(data)
    (only,) = HL7v2Connector().split(data)
    assert only.control_id == "603266" and only.message_type == "ADT^A04" and only.error is None


# ------------------------------------------------------------------ 4. CR, LF and CRLF mixed in one file
def test_mixed_segment_terminators_in_one_file_are_all_read() -> None:
    data = message("C1", mrn="P1", end=b"\r") + message("C2", mrn="P2", end=b"\n") + \
        message("C3", mrn="P3", end=b"\r\n") + b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000||ADT^A04|C4|P|2.5.1\n" \
        b"EVN|A04|20250101120000\r\nPID|1||P4^^^A^MR||Doe^Jane||19800101|F\r"
    connector = HL7v2Connector()
    envelopes = connector.split(data)
    assert [e.control_id for e in envelopes] == ["C1", "C2", "C3", "C4"]
    for envelope, mrn in zip(envelopes, ["P1", "P2", "P3", "P4"], strict=True):
        parsed = parse_bytes(envelope.raw)
        assert [s[0] for s in parsed.segments] == ["MSH", "EVN", "PID"]
        records = connector.normalize(envelope, Context(practice="p1"))
        assert [r["source_id"] for r in records if r["kind"] == "patient"] == [mrn]


# ------------------------------------------------------------------ 5. segments run together with spaces
def test_segments_run_together_with_spaces_are_refused_with_that_reason() -> None:
    data = b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000||ADT^A04|C1|P|2.5.1| EVN|A04|20250101| PID|1||P1^^^A^MR"
    with pytest.raises(ParseError, match="run together") as caught:
        HL7v2Connector().split(data)
    assert caught.value.location == "MSH"
    with pytest.raises(ParseError, match="run together"):
        parse_bytes(data)
    # in a batch: that message alone
    envelopes = HL7v2Connector().split(message("C0") + data + b"\r" + message("C2"))
    assert [e.error is not None and "run together" in e.error.message for e in envelopes] == [False, True, False]


def test_a_header_only_message_is_not_taken_for_run_together_segments() -> None:
    parsed = parse_bytes(b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000||ADT^A04|C1|P|2.5.1|| AL")
    assert parsed.control_id == "C1"


def test_real_file_with_segments_run_together(corpus: Path) -> None:
    # node-hl7 healthcare-it-systems ADT example: one line, "...|2.3||| EVN|A01|... PID|1||..."
    data = (corpus / "real" / "hl7v2" / "nodehl7__healthcare-it-systems_adt-example.hl7").read_bytes()
    with pytest.raises(ParseError, match="run together"):
        HL7v2Connector().split(data)


# ------------------------------------------------------------------ 1. bare NPIs
def providers(pv1_attending: str) -> list[dict]:
    data = message("C1") + f"PV1|1|O|||||{pv1_attending}\r".encode()
    envelope = HL7v2Connector().split(data)[0]
    return [r for r in HL7v2Connector().normalize(envelope, Context(practice="p1")) if r["kind"] == "provider"]


def test_a_bare_ten_digit_id_with_a_valid_npi_check_digit_is_an_npi() -> None:
    # 1234567893: Luhn over 80840123456789 gives the check digit 3 (the CMS example NPI)
    (valid,) = providers("1234567893^Smith^Ann")
    assert valid["npi"] == "1234567893"
    (invalid,) = providers("1234567890^Smith^Ann")  # same digits, check digit 0: not an NPI
    assert invalid.get("npi") is None and invalid["source_id"] == "1234567890"


def test_an_id_typed_as_something_else_is_not_taken_for_an_npi() -> None:
    (typed,) = providers("1234567893^Smith^Ann^^^^^^LOCAL^^^^DN")  # XCN-9 authority LOCAL, XCN-13 type DN
    assert typed.get("npi") is None
    (npi,) = providers("1234567890^Smith^Ann^^^^^^^^^^NPI")  # typed NPI: taken as sent, as before
    assert npi["npi"] == "1234567890"


# ------------------------------------------------------------------ 2. conflicting encoding characters
@pytest.mark.parametrize("msh2", ["^^\\&", "^~\\^", "^~&&"])
def test_an_encoding_character_in_two_roles_is_refused_with_ar(msh2: str) -> None:
    data = f"MSH|{msh2}|APP|FAC|HUB|MSO|20250101120000||ADT^A04|C1|P|2.5.1\rPID|1||P1^^^A^MR\r".encode()
    connector = HL7v2Connector()
    with pytest.raises(ParseError, match="two roles") as caught:
        connector.split(data)
    assert caught.value.location == "MSH-2"
    ack = connector.acknowledge(Envelope(raw=data), Outcome(accepted=False, rejected=True,
                                                            error=caught.value.message,
                                                            error_location=caught.value.location))
    assert b"MSA|AR|" in ack and b"two roles" in ack


def test_a_doubled_escape_character_is_still_read() -> None:
    sep = read_separators("MSH|^~\\\\&|APP")  # "^~\\&" from a badly escaped export
    assert (sep.component, sep.repetition, sep.escape, sep.subcomponent) == ("^", "~", "\\", "&")


def test_conflicting_encoding_characters_through_intake_answer_ar(store) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.intake import receive

    data = b"MSH|^^\\&|APP|FAC|HUB|MSO|20250101120000||ADT^A04|C1|P|2.5.1\rPID|1||P1^^^A^MR\r"
    (receipt,) = receive(store, "northderm", data, media_type=HL7)
    assert receipt.outcome.rejected and b"MSA|AR|" in receipt.ack and b"two roles" in receipt.ack


@pytest.mark.parametrize(("location", "err2"), [("PID-3", "PID^1^3"), ("FT1 #2-11", "FT1^2^11"),
                                                ("message 7, MSH-10", "MSH^1^10")])
def test_err2_names_segment_sequence_and_field(location: str, err2: str) -> None:
    ack = HL7v2Connector().acknowledge(Envelope(raw=message("C1")), Outcome(
        accepted=False, rejected=True, error="bad", error_location=location))
    (err,) = [seg for seg in parse_bytes(ack).segments if seg[0] == "ERR"]
    assert err[2] == err2
