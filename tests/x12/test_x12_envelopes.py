"""Interchanges: detection, envelopes and their errors, one message per transaction, duplicates, the API's
acceptance report, and the corpus sample."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hub_x12 import X12Connector

from hub.connector import Context
from hub.errors import ParseError
from hub.runtime import Runtime
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice

from .build import GS, ISA, ST, payment

CLAIM = ["CLP*PCN1*1*100*90**12*ICN1", "SVC*HC:99213*100*90", "CAS*CO*45*10"]


def body(trace: str) -> list[str]:
    return [*payment(trace=trace, total="90"), *CLAIM]


def split(isa: ISA) -> list:  # type: ignore[type-arg]
    return X12Connector().split(isa.bytes(), origin="drop/file.835")


def test_detection_by_the_isa_header_and_not_otherwise() -> None:
    assert X12Connector.detect(ISA([GS("1", [ST("1", body("T"))])]).bytes())
    assert X12Connector.detect(b"\xef\xbb\xbf\r\nISA|00|")
    assert not X12Connector.detect(b"MSH|^~\\&|")
    assert not X12Connector.detect(b"ISAAC,NEWTON\n")
    assert {".x12", ".835", ".837", ".edi"} <= set(X12Connector.file_extensions)
    assert "application/edi-x12" in X12Connector.media_types


def test_each_transaction_is_one_message_and_a_bad_one_is_refused_alone() -> None:
    isa = ISA([GS("1", [ST("0001", body("A")), ST("0002", body("B"), se_count=4), ST("0003", body("C"))])])
    envelopes = split(isa)
    assert [e.meta["control"] for e in envelopes] == ["0001", "0002", "0003"]
    assert [e.error is None for e in envelopes] == [True, False, True]
    error = envelopes[1].error
    # ISA, GS, then 16 segments per transaction (ST, 11 of payment, 3 of claim, SE): the second SE is 2 + 16 + 16
    assert error.location == "SE-01, segment 34" and "says '4' segments" in str(error)
    # the message kept is an interchange of its own, read again on its own
    raw = envelopes[2].raw.decode()
    assert raw.startswith("ISA*") and "GE*1*1~" in raw and raw.rstrip().endswith("IEA*1*000000101~")
    [again] = X12Connector().split(envelopes[2].raw)
    assert again.meta["control"] == "0003" and again.error is None


@pytest.mark.parametrize(("isa", "location", "words"), [
    (ISA([GS("1", [ST("0001", body("A"), se_control="0009")])]), "SE-02, segment 18", "does not match ST-02"),
    (ISA([GS("1", [ST("0001", body("A"), no_se=True), ST("0002", body("B"))])]), "SE, segment 18",
     "SE missing before the next ST"),
    (ISA([GS("1", [ST("0001", body("A")), ST("0002", body("B"))], ge_count=3)]), "GE-01, segment 35",
     "says '3' transactions, the group has 2"),
    (ISA([GS("1", [ST("0001", body("A"))], ge_control="7")]), "GE-02, segment 19", "does not match GS-06"),
])
def test_transaction_and_group_errors_refuse_those_transactions(isa: ISA, location: str, words: str) -> None:
    envelopes = split(isa)
    bad = [e for e in envelopes if e.error is not None]
    assert bad and bad[0].error.location == location and words in str(bad[0].error)
    with pytest.raises(ParseError):
        X12Connector().parse(bad[0], Context(practice="p"))


@pytest.mark.parametrize(("data", "location", "words"), [
    (ISA([GS("1", [ST("0001", body("A"))])], iea_control="000000999").bytes(), "IEA-02, segment 20",
     "does not match ISA-13"),
    (ISA([GS("1", [ST("0001", body("A"))])], iea_count=2).bytes(), "IEA-01, segment 20", "says '2' functional"),
    (ISA([GS("1", [ST("0001", body("A"))])], no_iea=True).bytes(), "IEA, segment 19", "IEA missing"),
    (ISA([GS("1", [ST("0001", body("A"))], no_ge=True)]).bytes(), "GE, segment 19", "IEA before the group's GE"),
    (b"GS*HP*X~", "ISA, segment 1", "does not start with an ISA"),
    (ISA([]).bytes(), "ST, segment 2", "no transaction"),
])
def test_interchange_errors_refuse_the_file_naming_segment_and_position(data: bytes, location: str,
                                                                         words: str) -> None:
    with pytest.raises(ParseError) as caught:
        X12Connector().split(data, origin="drop/file.835")
    assert caught.value.location == location and words in str(caught.value)
    assert caught.value.source == "drop/file.835"


def test_a_transaction_set_the_hub_does_not_read_is_refused_naming_it() -> None:
    [envelope] = split(ISA([GS("1", [ST("0001", ["BHT*0022*13"], set_id="270", version="005010X279A1")])]))
    with pytest.raises(ParseError) as caught:
        X12Connector().normalize(envelope, Context(practice="p"))
    assert "'270'" in str(caught.value) and caught.value.location.startswith("ST-01")


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'x12.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    return runtime


def test_ingest_keeps_the_good_transactions_and_a_resend_is_a_duplicate(runtime: Runtime) -> None:
    from hub.pipeline.intake import receive
    from hub.store.canonical import count_records

    isa = ISA([GS("1", [ST("0001", body("A")), ST("0002", body("B"), se_count=2), ST("0003", body("C"))])])
    receipts = receive(runtime, "north", isa.bytes(), origin="file.835")
    assert [r.status for r in receipts] == ["accepted", "error", "accepted"]
    with runtime.engine.connect() as conn:
        assert count_records(conn, "north")["remittance"] == 2
    # the same payment sent again in a new interchange and group: the same messages
    resent = ISA([GS("77", [ST("0001", body("A"))])], control="000000555")
    [again] = receive(runtime, "north", resent.bytes(), origin="resent.835")
    assert again.status == "duplicate"
    with runtime.engine.connect() as conn:
        messages = list_messages(conn, practice="north")
    assert len([m for m in messages if m["connector"] == "x12"]) >= 3


def test_the_api_takes_edi_x12_and_answers_with_an_acceptance_report(runtime: Runtime) -> None:
    from hub.app import create_app
    from hub.security.keys import create_key

    with writer(runtime.engine).begin() as conn:
        feed = create_key(conn, "feed", "north")
    isa = ISA([GS("1", [ST("0001", body("A")), ST("0002", body("B"), se_control="0099")])])
    response = create_app(runtime).test_client().post(
        "/api/v1/practices/north/messages", data=isa.bytes(), content_type="application/edi-x12",
        headers={"Authorization": f"Bearer {feed}"})
    assert response.status_code == 200
    report = orjson.loads(response.get_data())
    assert (report["accepted"], report["rejected"], report["duplicate"]) == (1, 1, 0)
    bad = report["transactions"][1]
    assert bad["control"] == "0002" and bad["status"] == "rejected" and "SE-02" in bad["location"]


def test_the_corpus_835(corpus: Path) -> None:
    path = corpus / "x12" / "pyx12__835__1.x12"
    connector = X12Connector()
    [envelope] = connector.split(path.read_bytes(), origin=path.name)
    records = connector.normalize(envelope, Context(practice="p"))
    # one denied claim (CLP-02 = 4) of three service lines, T1005, nothing paid, each adjusted in full
    assert [(r["procedure_code"], r["charged_amount"], r["paid_amount"], r["units"]) for r in records] == [
        ("T1005", "500.04", "0", 68), ("T1005", "127.8", "0", 16), ("T1005", "287.55", "0", 36)]
    assert all(r["denied"] and r["claim_id"] == "2005555A" and r["payer_claim_id"] == "4276512332" for r in records)
    assert [a["group"] + a["reason"] for r in records for a in r["adjustments"]] == ["CO16", "OAA7", "OAA7"]
    assert sum(Decimal(r["adjustment_amount"]) for r in records) == Decimal("915.39")  # CLP-03
    assert [r["service_date"] for r in records] == ["2003-11-29", "2003-10-30", "2003-10-31"]  # DTM*150
    assert {r["paid_on"] for r in records} == {"2004-10-28"} and records[0]["trace_number"] == "000000000"
    assert all(r["remark_codes"] == ["N14"] for r in records)
    assert records[0]["payee_npi"] is None  # the payee is named by its tax id (FI), not an NPI
    assert connector.findings(envelope, Context(practice="p")) == []
