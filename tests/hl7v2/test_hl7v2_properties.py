"""Property-based: random bytes and mutated messages never crash or hang the connector."""

from __future__ import annotations

from pathlib import Path

from hub_hl7v2 import HL7v2Connector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.connector import Context, Envelope, Outcome
from hub.errors import HubError
from hub.model.schemas import validate_record

SAMPLES = [p.read_bytes() for p in
           sorted((Path(__file__).resolve().parents[2] / "connectors" / "hub_hl7v2" / "samples").glob("*.hl7"))]
CONTEXT = Context(practice="p1", origin="fuzz")
SPECIAL = [b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"\\X", b"\\F\\", b"MSH", b"\xff", b"\x00", b'""', b"\xc3"]
PROPERTY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_or_refuse(data: bytes) -> None:
    connector = HL7v2Connector()
    try:
        for envelope in connector.split(data, origin="fuzz"):
            # parse and to_canonical directly: normalize would wrap a connector bug as a ParseError
            for record in connector.to_canonical(connector.parse(envelope, CONTEXT), CONTEXT):
                validate_record({**record, "practice": "p1"})
    except HubError as exc:
        assert str(exc).strip()
    ack = connector.acknowledge(Envelope(raw=data), Outcome(accepted=False, rejected=True, error="x"))
    assert b"MSA" in ack


@PROPERTY
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    read_or_refuse(data)


@PROPERTY
@given(st.binary(max_size=600))
def test_random_bytes_after_a_header(tail: bytes) -> None:
    read_or_refuse(b"MSH|^~\\&|A|B|C|D|20250101||ADT^A01|X1|P|2.5\rPID|1||" + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate"]))
        if op == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(SPECIAL))
        elif op == "replace":
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = data[max(0, at - 30):at]
    return bytes(data)


@PROPERTY
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    read_or_refuse(data)


def test_a_header_cut_right_after_msh_in_bytes_that_are_not_utf8_is_refused() -> None:
    # found by test_mutated_messages: "MSH" then a line break, in a payload that is not UTF-8, so the
    # charset (MSH-18) is looked for in a header with no field separator
    read_or_refuse(b"MSH\r\x80@%$*!OLDPM!SOUTHFAM!MSOHUB!MSO!200804011205!!SIU@S14!SF-0002!P!2.3\nPID!1!!SF7788")

