"""The hub's connector contract, on synthetic samples (tests/fhir/samples, written for these tests)."""

from pathlib import Path

from hub_fhir import FhirConnector

from hub.testing import connector_test_class

SAMPLES = Path(__file__).parent / "samples"

TestFhir = connector_test_class(
    FhirConnector,
    samples=sorted(SAMPLES.glob("*.json")),
    malformed=[b'{"resourceType": "Bundle", "type": "batch-response"}', b'{"resourceType": 3}', b"[1, 2]",
               b'{"resourceType": "Appointment", "id": "a1", "status": "booked", "start": 7}'],
)
