"""The hub's connector contract suite on the X12 samples, and the pyx12 check of them against the guides."""

from __future__ import annotations

from pathlib import Path

from hub_x12 import X12Connector

from hub.connector import Context
from hub.testing import connector_test_class

from .build import GS, ISA, ST, payment

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "connectors" / "hub_x12" / "samples").glob("*.x12"))

TestX12 = connector_test_class(
    X12Connector,
    samples=SAMPLES,
    malformed=[
        b"ISA*00*bad",  # an ISA of too few elements
        ISA([GS("1", [ST("1", payment())])], iea_control="000000999").bytes(),  # IEA-02 is not ISA-13
        ISA([GS("1", [ST("1", payment(), se_count=3)])]).bytes(),  # SE-01 wrong
        ISA([GS("1", [ST("1", ["BHT*0019"], set_id="270", version="005010X279A1")])]).bytes(),  # not read
        ISA([GS("1", [ST("1", [*payment(), "CLP*PCN1*1*abc*0**12*ICN"])])]).bytes(),  # an amount that is none
    ],
)


def test_the_samples_pass_the_implementation_guides_in_pyx12() -> None:
    connector = X12Connector()
    for path in SAMPLES:
        for envelope in connector.split(path.read_bytes(), origin=path.name):
            assert connector.findings(envelope, Context(practice="p")) == [], path.name


def test_pyx12_finds_what_breaks_the_guide_and_names_no_value() -> None:
    # CLP-02 "99" is no claim status code; the payer name segment is left out (N1*PR is required)
    body = [s for s in payment() if not s.startswith("N1*PR")] + ["CLP*PCN1*99*10*0**12*ICNSECRET"]
    connector = X12Connector()
    [envelope] = connector.split(ISA([GS("1", [ST("0001", body)])]).bytes())
    findings = connector.findings(envelope, Context(practice="p"))
    assert findings
    assert not any("ICNSECRET" in f or "PCN1" in f for f in findings)
