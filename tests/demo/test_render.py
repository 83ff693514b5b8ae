"""Sample payloads come from the connectors (``Connector.render``): each built-in connector writes records
in its format so that reading them back gives the same facts, and the demo only asks for them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
import yaml

from hub.connector import Connector, Context, Envelope, Rendered, RenderOptions
from hub.demo.feeds import feed_files, render_options
from hub.demo.generator import Truth, generate
from hub.errors import ConfigError
from hub.plugins import ConnectorRegistry, load_plugins
from tests.conftest import ROOT

PRACTICE = "test-derm"
NPI = "1234567893"
# one patient referred in February, booked twice: a visit cancelled the day before, another seen, billed, paid
RECORDS: list[dict[str, Any]] = [
    {"kind": "location", "source_id": "MAIN", "name": "Main Street"},
    {"kind": "provider", "source_id": NPI, "npi": NPI, "family_name": "Alder", "given_name": "Avery"},
    {"kind": "patient", "source_id": "MRN1", "identifiers": [{"system": "urn:test:mrn", "value": "MRN1", "type": "MR"}],
     "family_name": "Birch", "given_name": "Blake", "birth_date": "1970-05-06", "sex": "female",
     "postal_code": "60601"},
    {"kind": "coverage", "source_id": "MRN1-1", "patient_source_id": "MRN1", "payer_name": "ACME PPO",
     "member_id": "M100", "rank": 1},
    {"kind": "referral", "source_id": "R1", "patient_source_id": "MRN1", "referring_provider": "Cedar Casey MD",
     "specialty": "dermatology", "received_on": "2025-02-14", "status": "completed"},
    {"kind": "appointment", "source_id": "A1", "patient_source_id": "MRN1", "provider_source_id": NPI,
     "location_source_id": "MAIN", "start": "2025-03-04T09:30:00-06:00", "duration_min": 30, "visit_type": "NP",
     "status": "cancelled", "cancel_reason": "PT", "cancelled_at": "2025-03-03T15:00:00-06:00",
     "booked_at": "2025-02-20T10:00:00-06:00", "referral_source_id": "R1", "new_patient": True,
     "_visit_name": "New patient", "_final_at": "2025-03-03T15:00:00-06:00"},
    {"kind": "appointment", "source_id": "A2", "patient_source_id": "MRN1", "provider_source_id": NPI,
     "location_source_id": "MAIN", "start": "2025-03-11T10:00:00-05:00", "duration_min": 30, "visit_type": "NP",
     "status": "fulfilled", "cancel_reason": None, "cancelled_at": None, "booked_at": "2025-03-03T15:05:00-06:00",
     "referral_source_id": "R1", "new_patient": True, "_visit_name": "New patient",
     "_final_at": "2025-03-11T11:00:00-05:00"},
    {"kind": "encounter", "source_id": "E2", "patient_source_id": "MRN1", "provider_source_id": NPI,
     "appointment_source_id": "A2", "location_source_id": "MAIN", "start": "2025-03-11T10:00:00-05:00",
     "end": "2025-03-11T10:30:00-05:00", "status": "finished", "visit_type": "NP"},
    {"kind": "charge", "source_id": "E2-1", "encounter_source_id": "E2", "patient_source_id": "MRN1",
     "provider_source_id": NPI, "location_source_id": "MAIN", "service_date": "2025-03-11",
     "posted_on": "2025-03-12", "procedure_code": "99203", "modifiers": [], "units": 1, "amount": "150.00",
     "diagnosis_codes": ["L57.0"], "payer_name": "ACME PPO", "visit_type": "NP"},
    {"kind": "remittance", "source_id": "P2-1", "charge_source_id": "E2-1", "claim_id": "E2",
     "payer_name": "ACME PPO", "paid_amount": "90.00", "adjustment_amount": "60.00",
     "adjustments": [{"group": "CO", "reason": "45", "amount": "60.00"}], "denied": False, "paid_on": "2025-04-02"},
]
OPTIONS = RenderOptions(practice=PRACTICE, timezone="America/Chicago")
# what the practice's system sent, by month: bookings (A1 on 20 Feb, A2 on 3 Mar), A1 cancelled on 3 Mar,
# A2 done 30 minutes after its end (11 Mar), the referral received 14 Feb, the charge posted 12 Mar, paid 2 Apr
EXPECTED_FILES = {
    "hl7v2": {"2025-02/siu.hl7", "2025-03/siu.hl7", "2025-02/ref.hl7", "2025-03/dft.hl7", "2025-04/pay.hl7"},
    # a Bundle a day: the patient with the referral (14 Feb), A1 in its final state on the day it was
    # cancelled (3 Mar), location and provider on the first visit day (4 Mar), A2 and its encounter on
    # the visit day (11 Mar), the claim when posted (12 Mar), the EOB when paid (2 Apr)
    "fhir": {"2025-02/2025-02-14.json", "2025-03/2025-03-03.json", "2025-03/2025-03-04.json",
             "2025-03/2025-03-11.json", "2025-03/2025-03-12.json", "2025-04/2025-04-02.json"},
    "csv": {"2025-03/appointments_2025-03.csv", "2025-03/charges_2025-03.csv", "2025-04/payments_2025-04.csv",
            "2025-02/referrals_2025-02.csv"},
}


@pytest.fixture(scope="module")
def connectors() -> ConnectorRegistry:
    return load_plugins().connectors


def read_back(connector: Connector, files: list[Rendered], config: Mapping[str, Any] | None = None
              ) -> list[dict[str, Any]]:
    """What the connector reads from its own files, as ``hub normalize`` would."""
    records: list[dict[str, Any]] = []
    for f in files:
        for envelope in connector.split(f.data, origin=f.name):
            records += connector.normalize(envelope, Context(practice=PRACTICE, config=config or {}, origin=f.name))
    return records


def latest(records: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The state that stands for each record of a kind: its latest event (as the store keeps it)."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted((r for r in records if r["kind"] == kind), key=lambda r: str(r.get("event_time"))):
        out[r["source_id"]] = r
    return out


def csv_config() -> dict[str, Any]:
    mapping = yaml.safe_load((ROOT / "mappings" / "examples" / "fishers-pt.yaml").read_text())
    return dict(mapping["connectors"]["csv"])


@pytest.mark.parametrize("name", ["hl7v2", "fhir", "csv"])
def test_a_builtin_connector_renders_records_it_reads_back(connectors: ConnectorRegistry, name: str) -> None:
    connector = connectors.get(name)
    assert connector.can_render()
    files = connector.render(RECORDS, options=OPTIONS)
    assert {f.name for f in files} == EXPECTED_FILES[name]
    assert connector.render(RECORDS, options=OPTIONS) == files  # same records, same bytes
    read = read_back(connector, files, csv_config() if name == "csv" else None)
    appointments = latest(read, "appointment")
    assert {a: (r["status"], r.get("cancel_reason")) for a, r in appointments.items()} == {
        "A1": ("cancelled", "PT"), "A2": ("fulfilled", None)}
    # the start as sent: with its offset in HL7 v2 and FHIR, the wall-clock time in the CSV export
    wall = "" if name == "csv" else "-05:00"
    assert appointments["A2"]["start"] == f"2025-03-11T10:00:00{wall}"
    assert [c["amount"] for c in read if c["kind"] == "charge"] == ["150.00"]
    assert "90.00" in [r.get("paid_amount") for r in read if r["kind"] == "remittance"]


def test_hl7v2_writes_the_sender_it_is_given_and_times_without_an_offset(connectors: ConnectorRegistry) -> None:
    connector = connectors.get("hl7v2")
    options = RenderOptions(practice=PRACTICE, timezone="America/Chicago", times="naive",
                            settings={"sending_application": "TESTEHR", "sending_facility": "TESTFAC"})
    files = connector.render(RECORDS, options=options)
    envelopes = [e for f in files for e in connector.split(f.data, origin=f.name)]
    assert {e.sender for e in envelopes} == {"TESTEHR^TESTFAC"}
    # two SIU per visit (booked, then cancelled or done), one REF, one charge DFT, one payment DFT
    assert sorted(str(e.message_type) for e in envelopes) == [
        "DFT^P03", "DFT^P03", "REF^I12", "SIU^S12", "SIU^S12", "SIU^S14", "SIU^S15"]
    appointment = latest(read_back(connector, files), "appointment")["A2"]
    assert appointment["start"] == "2025-03-11T10:00:00"  # the practice's wall clock, no offset


def test_hl7v2_backfill_holds_the_same_messages_one_file_per_family(connectors: ConnectorRegistry) -> None:
    connector = connectors.get("hl7v2")
    ordered = connector.render(RECORDS, options=OPTIONS)
    shuffled_options = RenderOptions(practice=PRACTICE, timezone="America/Chicago", shuffled=True)
    shuffled = connector.render(RECORDS, options=shuffled_options)
    assert {f.name for f in shuffled} == {"backfill/siu.hl7", "backfill/ref.hl7", "backfill/dft.hl7",
                                          "backfill/pay.hl7"}

    def messages(files: Iterable[Rendered]) -> list[bytes]:
        return sorted(e.raw for f in files for e in connector.split(f.data, origin=f.name))

    assert messages(shuffled) == messages(ordered)
    assert connector.render(RECORDS, options=shuffled_options) == shuffled  # no particular order, but repeatable


@pytest.mark.parametrize("name", ["fhir", "csv"])
def test_a_format_without_a_backfill_order_says_so(connectors: ConnectorRegistry, name: str) -> None:
    with pytest.raises(NotImplementedError, match=name):
        connectors.get(name).render(RECORDS, options=RenderOptions(practice=PRACTICE, shuffled=True))


def test_fhir_names_entries_in_the_namespace_it_is_given(connectors: ConnectorRegistry) -> None:
    options = RenderOptions(practice=PRACTICE, timezone="America/Chicago", settings={"namespace": "urn:acme"})
    files = connectors.get("fhir").render(RECORDS, options=options)
    urls = [e["fullUrl"] for f in files for e in json.loads(f.data)["entry"]]
    assert "urn:acme:Appointment/A1" in urls and all(u.startswith("urn:acme:") for u in urls)


class Silent(Connector):
    name = "silent"

    def parse(self, envelope: Envelope, context: Context) -> Any:
        return envelope.raw

    def to_canonical(self, parsed: Any, context: Context) -> Iterable[dict[str, Any]]:
        return []


def test_a_connector_that_cannot_render_says_so() -> None:
    assert not Silent.can_render()
    with pytest.raises(NotImplementedError, match="silent"):
        Silent().render(RECORDS, options=OPTIONS)


class Recorder(Silent):
    """Stands in for a practice's feed connector: renders one file and keeps what it was asked."""

    name = "hl7v2"
    asked: list[tuple[Sequence[Mapping[str, Any]], RenderOptions]] = []

    def render(self, records: Sequence[Mapping[str, Any]], *, options: RenderOptions) -> list[Rendered]:
        self.asked.append((records, options))
        return [Rendered("2025-01/one.hl7", b"written by the connector")]


def test_the_demo_gets_its_feed_files_from_the_practice_feeds_connector() -> None:
    truth: Truth = generate(seed=3, months=2, scale=0.05)
    spec = truth.practice("lakeshore-derm")
    registry = ConnectorRegistry()
    registry.add(Recorder)
    files = feed_files(truth, spec, registry)
    assert files == [Rendered("lakeshore-derm/2025-01/one.hl7", b"written by the connector")]
    records, options = Recorder.asked[-1]
    assert records is truth.records["lakeshore-derm"]
    assert options == render_options(spec)
    assert (options.practice, options.timezone, options.times, options.shuffled) == (
        "lakeshore-derm", "America/Chicago", "local", False)
    assert options.settings["sending_application"] == "DERMEHR"
    # a practice whose feed no installed connector writes is a clear error, not a silent skip
    with pytest.raises(ConfigError, match="no connector named 'fhir'"):
        feed_files(truth, truth.practice("carmel-aesthetics"), registry)


def test_render_is_optional_for_a_connector() -> None:
    registry = ConnectorRegistry()
    registry.add(Silent)  # render is optional: the contract's required methods are parse and to_canonical
    assert registry.names() == ["silent"]
