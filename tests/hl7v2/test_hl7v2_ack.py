"""Acknowledgements, duplicates and findings, through the connector and the real intake pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_hl7v2 import HL7v2Connector
from hub_hl7v2.er7 import parse_bytes

from hub.connector import Context, Envelope, Outcome
from hub.errors import ParseError

SAMPLES = Path(__file__).resolve().parents[2] / "connectors" / "hub_hl7v2" / "samples"
MSG = b"MSH|^~\\&|APP|FAC|HUB|MSO|20250101120000||SIU^S12^SIU_S12|CTRL42|P|2.5.1\rPID|1||P1^^^A^MR\r"


def ack_fields(ack: bytes) -> dict[str, list[str]]:
    msg = parse_bytes(ack)
    return {seg[0]: seg for seg in msg.segments}


def answer(data: bytes, outcome: Outcome) -> dict[str, list[str]]:
    connector = HL7v2Connector()
    envelope = connector.split(data)[0]
    return ack_fields(connector.acknowledge(envelope, outcome))


def test_aa_echoes_control_id_and_swaps_sender_and_receiver() -> None:
    segs = answer(MSG, Outcome(accepted=True, message_id=1))
    assert segs["MSA"][1:3] == ["AA", "CTRL42"]
    assert segs["MSH"][3:7] == ["HUB", "MSO", "APP", "FAC"]
    assert segs["MSH"][9] == "ACK^S12^ACK" and segs["MSH"][12] == "2.5.1"
    assert "ERR" not in segs


@pytest.mark.parametrize(("outcome", "code"), [
    (Outcome(accepted=True, duplicate=True), "AA"),
    (Outcome(accepted=False, error="PID-3: no patient"), "AE"),
    (Outcome(accepted=False, rejected=True, error="unreadable", error_location="PID-3"), "AR"),
])
def test_original_mode_codes(outcome: Outcome, code: str) -> None:
    segs = answer(MSG, outcome)
    assert segs["MSA"][1] == code
    if code != "AA":
        assert segs["ERR"][8] and segs["ERR"][4] == "E"


def test_err_names_the_location() -> None:
    segs = answer(MSG, Outcome(accepted=False, rejected=True, error="bad", error_location="FT1 #2-11"))
    assert segs["ERR"][2] == "FT1^2^11"


@pytest.mark.parametrize(("modes", "accepted", "code"), [
    ("AL|NE", True, "CA"), ("AL|AL", False, "CE"), ("ER|AL", True, "AA"), ("ER|AL", False, "CE"),
    ("SU|NE", True, "CA"), ("NE|AL", True, "AA"), ("NE|NE", False, "AE"),
])
def test_enhanced_mode_follows_msh15_and_msh16(modes: str, accepted: bool, code: str) -> None:
    data = MSG.replace(b"|2.5.1\r", b"|2.5.1|||" + modes.encode() + b"\r")
    assert answer(data, Outcome(accepted=accepted, error=None if accepted else "x"))["MSA"][1] == code


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff", b"MSH", b"MSH|", b"hello\rworld", "MSH|^~\\&|é".encode()])
def test_an_ack_is_built_even_for_garbage(garbage: bytes) -> None:
    ack = HL7v2Connector().acknowledge(Envelope(raw=garbage), Outcome(accepted=False, rejected=True, error="bad"))
    segs = ack_fields(ack)
    assert segs["MSA"][1] == "AR"
    assert len(segs["MSA"]) < 3 or segs["MSA"][2] == ""


def test_split_batch_and_metadata() -> None:
    envelopes = HL7v2Connector().split((SAMPLES / "batch_v23_latin1.hl7").read_bytes())
    assert [e.control_id for e in envelopes] == ["SF-0001", "SF-0002"]
    assert envelopes[0].sender == "OLDPM^SOUTHFAM" and envelopes[0].message_type == "ADT^A08"
    assert envelopes[0].meta["facility"] == "SOUTHFAM" and envelopes[0].meta["version"] == "2.3"
    assert not any(b"BTS" in e.raw or b"FHS" in e.raw for e in envelopes)


def test_split_refuses_an_unreadable_msh() -> None:
    with pytest.raises(ParseError) as caught:
        HL7v2Connector().split(b"MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5\r")
    assert caught.value.location == "MSH-10"


def test_split_refuses_only_the_bad_message_of_a_batch() -> None:
    first, bad = HL7v2Connector().split(MSG + b"MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5\r")
    assert first.error is None and first.control_id
    assert bad.error is not None and bad.error.location == "message 2, MSH-10"
    assert bad.raw == b"MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5"


def test_answer_over_several_messages_returns_each_ack() -> None:
    connector = HL7v2Connector()
    envelopes = connector.split((SAMPLES / "batch_v23_latin1.hl7").read_bytes())
    body, media_type = connector.answer([(e, Outcome(accepted=True)) for e in envelopes])
    assert media_type == "x-application/hl7-v2+er7"
    assert body.count(b"MSA!AA!") == 2 and b"SF-0002" in body  # in the sender's own separators


def test_findings_name_places_not_values() -> None:
    findings = HL7v2Connector().findings(HL7v2Connector().split((SAMPLES / "dft_p03.hl7").read_bytes())[0],
                                         Context(practice="p1"))
    assert isinstance(findings, list)
    assert not any("Sampleton" in f or "MRN100234" in f for f in findings)
    bad = HL7v2Connector().findings(Envelope(raw=b"MSH|^~\\&|A|B|C|D|2025||ADT^A01|1|P|2.5\rPV1|1|O\r"),
                                    Context(practice="p1"))
    assert any("PID" in f or "EVN" in f for f in bad), bad


# ------------------------------------------------------------------ through the real intake
@pytest.fixture
def store(runtime):  # type: ignore[no-untyped-def]
    """The real runtime on SQLite and on PostgreSQL, with one practice."""
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")
    return runtime


def test_resent_message_is_acknowledged_again_and_stored_once(store) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.intake import receive
    from hub.store.messages import counts_by_status

    data = (SAMPLES / "siu_s12.hl7").read_bytes()
    first = receive(store, "northderm", data, media_type="x-application/hl7-v2+er7")
    # the same message saved with CRLF line ends: the same segments, so the same message
    again = receive(store, "northderm", data.replace(b"\r", b"\r\n"), media_type="x-application/hl7-v2+er7")
    assert b"MSA|AA|NDS12-0001" in first[0].ack and b"MSA|AA|NDS12-0001" in again[0].ack
    assert again[0].outcome.duplicate
    resend = receive(store, "northderm", data, media_type="x-application/hl7-v2+er7")
    assert resend[0].outcome.duplicate and b"MSA|AA|" in resend[0].ack
    other = data.replace(b"FA7701", b"FA7799")  # same control id, different content: not a duplicate
    reused = receive(store, "northderm", other, media_type="x-application/hl7-v2+er7")
    assert not reused[0].outcome.duplicate
    with store.engine.connect() as conn:
        counts = counts_by_status(conn, "northderm")
    assert counts == {"processed": 2, "duplicate": 2}  # first and the reused control id; CRLF copy and resend


def test_unreadable_payload_is_kept_and_answered_ar(store) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.intake import receive

    receipts = receive(store, "northderm", b"MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5\r",
                       media_type="x-application/hl7-v2+er7")
    assert b"MSA|AR|" in receipts[0].ack and b"MSH-10" in receipts[0].ack


def test_findings_report_what_the_tokenizer_forgave() -> None:
    connector = HL7v2Connector()
    first, second = connector.split((SAMPLES / "batch_v23_latin1.hl7").read_bytes())
    findings = connector.findings(first, Context(practice="p1"))
    assert any(f.startswith("segment separator") for f in findings)
    assert any(f.startswith("MSH-1/MSH-2") for f in findings)
    assert any(f.startswith("character set") for f in findings)
    assert any(f.startswith("ZXT") for f in findings)
    later = connector.findings(second, Context(practice="p1"))
    assert any("SCH" in f and "Missing required" in f for f in later)
    assert not any("Müller" in f or "SF7788" in f for f in findings + later)
