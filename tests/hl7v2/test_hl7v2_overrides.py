"""Per-practice overrides from the mapping file change where the HL7 connector reads a field."""

from pathlib import Path

from hub_hl7v2 import HL7v2Connector

from hub.connector import Context
from hub.mapping import load_mapping

SAMPLE = Path(__file__).resolve().parents[2] / "connectors" / "hub_hl7v2" / "samples" / "siu_s12.hl7"

MAPPING = """
version: 1
practice: quirky
connectors:
  hl7v2:
    overrides:
      visit_type: AIS.3.1
      patient_id: {from: PID.3.1, transform: [digits_only, strip_leading_zeros]}
"""


def normalize(config):
    connector = HL7v2Connector()
    (envelope,) = connector.split(SAMPLE.read_bytes())
    return connector.normalize(envelope, Context(practice="quirky", config=config))


def test_without_overrides_the_standard_places_are_read():
    records = normalize({})
    appointment = next(r for r in records if r["kind"] == "appointment")
    assert appointment["visit_type"] == "NP" and appointment["patient_source_id"] == "MRN100234"


def test_overrides_from_a_validated_mapping_move_the_fields():
    config = load_mapping(MAPPING, source="quirky.yaml").connector_config("hl7v2")
    records = normalize(config)
    appointment = next(r for r in records if r["kind"] == "appointment")
    (patient,) = [r for r in records if r["kind"] == "patient"]
    assert appointment["visit_type"] == "11102"  # AIS-3, not SCH-7
    assert patient["source_id"] == "100234" and appointment["patient_source_id"] == "100234"
