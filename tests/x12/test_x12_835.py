"""835 remittance advice → remittance records; expected values worked out by hand from each input."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hub_x12 import X12Connector

from hub.connector import Context
from hub.model.schemas import validate_record

from .build import GS, ISA, ST, payment, remit


def records(isa: ISA, context: Context | None = None) -> list[dict[str, Any]]:
    connector = X12Connector()
    out = []
    for envelope in connector.split(isa.bytes(), origin="test.835"):
        for record in connector.normalize(envelope, context or Context(practice="p", origin="test.835")):
            out.append(validate_record(record))
    return out


def by_claim(recs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        out.setdefault(r.get("claim_id") or "PLB", []).append(r)
    return out


D = Decimal


@pytest.mark.parametrize("status", ["1", "2", "3", "4", "19", "20", "21", "22", "23", "25"])
def test_every_claim_status_gives_a_record_and_only_4_is_denied(status: str) -> None:
    # a claim without service lines: one record of the claim, CLP-03 charged, CLP-04 paid
    paid = "0" if status == "4" else "60"
    adjust = "100" if status == "4" else "40"
    sign = -1 if status == "22" else 1
    [r] = records(remit(f"CLP*PCN1*{status}*100*{paid}**12*ICN1", f"CAS*CO*45*{adjust}", "DTM*232*20250201"))
    assert r["claim_status"] == status
    assert r["denied"] is (status == "4")
    assert r["charged_amount"] == D("100") * sign
    assert r["paid_amount"] == D(paid) * sign
    assert r["adjustment_amount"] == D(adjust) * sign
    assert r["service_date"].isoformat() == "2025-02-01"
    assert r["source_id"] == "CHK1001:1512345678:1:0"


def test_a_line_carries_every_field_the_835_gives() -> None:
    [r] = records(remit(
        "CLP*PCN7*1*300*180*40*12*ICN7*11*1",
        "NM1*QC*1*SAMPLETON*AVERY****MR*MRN7",
        "MOA***MA01",
        "DTM*232*20250201",
        "SVC*HC:99214:25:59*300*180**2",
        "DTM*472*20250203",
        "CAS*CO*45*80",
        "CAS*PR*1*30**2*10",
        "REF*6R*LINE77",
        "LQ*HE*N130",
        "LQ*HE*M25",
        total="180", trace="EFT42", date="20250304"))
    assert r["kind"] == "remittance"
    assert r["claim_id"] == "PCN7" and r["payer_claim_id"] == "ICN7"
    assert r["payer_name"] == "SYNTHETIC HEALTH PLAN" and r["payer_id"] == "SHP01"
    assert r["payee_npi"] == "1999999984"
    assert r["trace_number"] == "EFT42"
    assert r["paid_on"].isoformat() == "2025-03-04"
    assert r["procedure_code"] == "99214" and r["modifiers"] == ["25", "59"]
    assert r["charged_amount"] == D("300") and r["paid_amount"] == D("180") and r["units"] == 2
    assert r["service_date"].isoformat() == "2025-02-03"  # the line's DTM*472 wins over the claim's DTM*232
    assert r["adjustments"] == [{"group": "CO", "reason": "45", "amount": D("80")},
                                {"group": "PR", "reason": "1", "amount": D("30")},
                                {"group": "PR", "reason": "2", "amount": D("10")}]
    assert r["adjustment_amount"] == D("120")  # 300 charged - 180 paid
    assert r["remark_codes"] == ["N130", "M25", "MA01"]  # the line's LQ, then the claim's MOA
    assert r["charge_source_id"] == "LINE77"
    assert r["denied"] is False
    assert r["event_time"].isoformat().startswith("2025-03-05T09:30")  # GS-04, GS-05


def test_every_cas_group_and_six_triples_in_one_cas() -> None:
    recs = records(remit(
        "CLP*PCN8*2*500*200*60*12*ICN8",
        "SVC*HC:99215*300*120**1",
        "DTM*472*20250205",
        "CAS*CO*45*100*1*253*2.40",
        "CAS*PR*1*20**2*10",
        "CAS*OA*23*5",
        "CAS*PI*94*1.60",
        "CAS*CR*18*41",
        "SVC*HC:17000*200*80",
        "CAS*CO*45*10**253*1**59*2**94*3**97*4**B7*5",
        "CAS*PR*3*95",
    ))
    first, second = recs
    assert [(a["group"], a["reason"]) for a in first["adjustments"]] == [
        ("CO", "45"), ("CO", "253"), ("PR", "1"), ("PR", "2"), ("OA", "23"), ("PI", "94"), ("CR", "18")]
    assert first["adjustment_amount"] == D("180.00")  # 100 + 2.40 + 20 + 10 + 5 + 1.60 + 41 = 300 - 120
    assert [a["reason"] for a in second["adjustments"]] == ["45", "253", "59", "94", "97", "B7", "3"]
    assert second["adjustment_amount"] == D("120")  # 10+1+2+3+4+5 + 95 = 200 - 80
    assert second["units"] == 1  # SVC-05 not sent: one unit
    assert second["service_date"] is None  # no DTM on the line nor DTM*232 on the claim


def test_a_reversal_nets_out_the_original_and_the_correction_counts_once() -> None:
    original = remit("CLP*PCN9*1*200*150**12*ICN9", "SVC*HC:99213*200*150**1", "DTM*472*20250110",
                     "CAS*CO*45*50", trace="CHK1", total="150")
    # the later payment: the reversal (signed, as payers send it), then the corrected claim
    later = remit("CLP*PCN9*22*-200*-150**12*ICN9", "SVC*HC:99213*-200*-150**1", "DTM*472*20250110",
                  "CAS*CO*45*-50",
                  "CLP*PCN9*1*200*160**12*ICN9B", "SVC*HC:99213*200*160**1", "DTM*472*20250110", "CAS*CO*45*40",
                  trace="CHK2", total="10")
    recs = records(original) + records(later)
    assert len({r["source_id"] for r in recs}) == 3  # three records: none replaces another
    assert sum(r["paid_amount"] for r in recs) == D("160")
    assert sum(r["adjustment_amount"] for r in recs) == D("40")
    reversal = next(r for r in recs if r["claim_status"] == "22")
    assert reversal["charged_amount"] == D("-200") and reversal["adjustments"][0]["amount"] == D("-50")


def test_a_reversal_sent_with_positive_amounts_is_negated() -> None:
    [r] = records(remit("CLP*PCN9*22*200*150**12*ICN9", "SVC*HC:99213*200*150", "CAS*CO*45*50"))
    assert (r["charged_amount"], r["paid_amount"], r["adjustment_amount"]) == (D("-200"), D("-150"), D("-50"))


def test_two_payers_in_one_file_and_plb_kept_per_payment() -> None:
    first = [*payment(total="78.50", trace="EFTA"), "CLP*PCN1*1*100*100**12*ICN1",
             "PLB*1999999984*20251231*WO:ICN0*25*L6*-3.50"]
    second = [*payment(payer="MEDICARE SYNTHETIC", payer_id="MCR01", total="45", trace="CHKB"),
              "CLP*PCN2*1*80*45**MB*ICN2", "CAS*CO*45*35"]
    recs = records(ISA([GS("1", [ST("0001", first)]), GS("2", [ST("0001", second)])]))
    payers = {r["source_id"]: r["payer_name"] for r in recs}
    assert payers == {"EFTA:1512345678:1:0": "SYNTHETIC HEALTH PLAN", "EFTA:1512345678:PLB": "SYNTHETIC HEALTH PLAN",
                      "CHKB:1512345678:1:0": "MEDICARE SYNTHETIC"}
    plb = next(r for r in recs if r["source_id"].endswith(":PLB"))
    assert plb["adjustments"] == [{"group": "PLB", "reason": "WO", "amount": D("25")},
                                  {"group": "PLB", "reason": "L6", "amount": D("-3.50")}]
    assert plb["adjustment_amount"] == D("21.50") and plb["paid_amount"] == D("-21.50")
    assert plb["claim_id"] is None if "claim_id" in plb else True
    # the paid amounts of a payment add up to its BPR-02
    assert sum(r["paid_amount"] for r in recs if r["trace_number"] == "EFTA") == D("78.50")


def test_claim_level_adjustments_of_a_claim_with_lines_are_a_record_of_their_own() -> None:
    recs = records(remit("CLP*PCN3*1*100*70**12*ICN3", "CAS*OA*23*10", "SVC*HC:99212*100*70", "CAS*CO*45*20"))
    assert [(r["source_id"].rsplit(":", 2)[-2:], r["adjustment_amount"], r["paid_amount"]) for r in recs] == [
        (["1", "0"], D("10"), D("0")), (["1", "1"], D("20"), D("70"))]


def test_other_separators_as_the_isa_declares_them() -> None:
    body = [*payment(), "CLP*PCN4*1*100*90**12*ICN4", "SVC*HC:99213:25*100*90**1", "CAS*CO*45*10"]
    isa = ISA([GS("1", [ST("0001", body)])], element="|", component=">", segment="\n", repetition="{", newline="")
    assert isa.text().startswith("ISA|00|")
    [r] = records(isa)
    assert (r["procedure_code"], r["modifiers"], r["paid_amount"]) == ("99213", ["25"], D("90"))


def test_a_cas_reason_without_its_amount_is_refused_naming_the_element() -> None:
    from hub.errors import ParseError

    with pytest.raises(ParseError) as caught:
        records(remit("CLP*PCN5*1*100*90**12*ICN5", "SVC*HC:99213*100*90", "CAS*CO*45"))
    assert caught.value.location == "CAS-02, transaction segment 15"


def test_rendered_835s_read_back_as_the_remittances_they_were_written_from() -> None:
    from hub.connector import RenderOptions

    charges = [{"kind": "charge", "source_id": "E1-1", "procedure_code": "99213", "modifiers": ["25"], "units": 1,
                "amount": "150.00", "service_date": "2025-03-03"},
               {"kind": "charge", "source_id": "E2-1", "procedure_code": "17000", "modifiers": [], "units": 2,
                "amount": "200.00", "service_date": "2025-03-04"}]
    remits = [{"kind": "remittance", "source_id": "P1-1", "charge_source_id": "E1-1", "claim_id": "E1",
               "payer_name": "SYNTHETIC HEALTH PLAN", "paid_amount": "120.00", "adjustment_amount": "30.00",
               "adjustments": [{"group": "CO", "reason": "45", "amount": "30.00"}], "denied": False,
               "paid_on": "2025-03-20"},
              {"kind": "remittance", "source_id": "P2-1", "charge_source_id": "E2-1", "claim_id": "E2",
               "payer_name": "SYNTHETIC HEALTH PLAN", "paid_amount": "0.00", "adjustment_amount": "200.00",
               "adjustments": [{"group": "CO", "reason": "50", "amount": "200.00"}], "denied": True,
               "paid_on": "2025-03-20"}]
    connector = X12Connector()
    [file] = connector.render([*charges, *remits], options=RenderOptions(practice="north"))
    assert file.name == "2025-03/remit.835"
    envelopes = connector.split(file.data)
    assert len(envelopes) == 1 and envelopes[0].error is None  # one payer, one day: one payment
    assert connector.findings(envelopes[0], Context(practice="p")) == []  # valid against the guide
    got = {r["charge_source_id"]: r for r in connector.normalize(envelopes[0], Context(practice="p"))}
    assert set(got) == {"E1-1", "E2-1"}
    assert (got["E1-1"]["claim_id"], got["E1-1"]["paid_amount"], got["E1-1"]["adjustments"], got["E1-1"]["denied"]) == (
        "E1", "120.00", [{"group": "CO", "reason": "45", "amount": "30.00"}], False)
    assert (got["E2-1"]["denied"], got["E2-1"]["charged_amount"], got["E2-1"]["units"]) == (True, "200.00", 2)
    assert got["E1-1"]["paid_on"] == "2025-03-20" and got["E1-1"]["service_date"] == "2025-03-03"


@pytest.mark.parametrize(("element", "component", "segment", "repetition", "newline"), [
    ("*", ":", "~", "^", "\n"), ("*", ":", "~", "^", "\r\n"), ("|", ">", "\n", "{", ""), ("+", ":", "'", "*", ""),
    ("*", "\\", "~", "^", ""),
])
def test_any_separators_the_isa_declares_give_the_same_records(element: str, component: str, segment: str,
                                                               repetition: str, newline: str) -> None:
    body = [*payment(), "CLP*PCN4*1*100*90**12*ICN4", "SVC*HC:99213:25:59*100*90**1", "CAS*CO*45*6**253*4",
            "LQ*HE*N130"]
    isa = ISA([GS("1", [ST("0001", body)])], element=element, component=component, segment=segment,
              repetition=repetition, newline=newline)
    [r] = records(isa)
    assert (r["procedure_code"], r["modifiers"], r["paid_amount"], r["remark_codes"]) == (
        "99213", ["25", "59"], D("90"), ["N130"])
    assert [(a["reason"], a["amount"]) for a in r["adjustments"]] == [("45", D("6")), ("253", D("4"))]


def test_segments_the_mapping_does_not_know_are_counted_in_the_tally() -> None:
    context = Context(practice="p")
    records(remit("CLP*PCN5*1*100*100**12*ICN5", "ZZZ*SOMETHING", "ZZZ*ELSE"), context)
    assert context.tally.not_mapped == {"ZZZ": 2}
