"""The hub's connector contract suite, run on the synthetic samples."""

from __future__ import annotations

from pathlib import Path

from hub_hl7v2 import HL7v2Connector

from hub.testing import connector_test_class

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "connectors" / "hub_hl7v2" / "samples").glob("*.hl7"))

TestHL7v2 = connector_test_class(
    HL7v2Connector,
    samples=SAMPLES,
    malformed=[
        b"MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5\r",  # no MSH-10
        b"MSH|^~\\&|A|B|C|D|2025|||X1|P|2.5\r",  # no MSH-9
        b"MSH|^~\\&|A|B|C|D|2025||SIU^S12|X1|P|2.5\rPID|1||P1^^^A^MR\r",  # no SCH
        b"MSH|^~\\&|A|B|C|D|2025||DFT^P03|X1|P|2.5\rPID|1||P1^^^A^MR\rFT1|1|T1||2025||CG|99213\r",  # no amount
        b"MSH|^~\\&|A|B|C|D|2025||ORU^R01|X1|P|2.5\rOBX|1|NM|x\r",  # nothing to keep
        b"PID|1||P1\r",
    ],
)
