"""HL7 v2 duplicates: the sender, MSH-10 and the content make a message; a control id reused for
other content is stored, processed and flagged. Through the real intake, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_hl7v2 import HL7v2Connector

from hub.connector import Envelope, content_key

ADT = ("MSH|^~\\&|DERMEHR|NORTHDERM|MSOHUB|MSO|20250304093000-0500||ADT^A04^ADT_A01|{ctl}|P|2.5.1\r"
       "EVN|A04|20250304093000-0500\r"
       "PID|1||{mrn}^^^NORTHDERM^MR||Testperson^{given}||19790512|F\r")
HL7 = "x-application/hl7-v2+er7"


def adt(mrn: str, ctl: str = "CTRL-1", given: str = "Alex", facility: str = "NORTHDERM") -> bytes:
    return ADT.format(ctl=ctl, mrn=mrn, given=given).replace("|NORTHDERM|MSOHUB", f"|{facility}|MSOHUB").encode()


def key(data: bytes) -> str:
    connector = HL7v2Connector()
    (envelope,) = connector.split(data)
    return connector.store_key(envelope)


# ------------------------------------------------------------------ the key itself
def test_the_key_is_sender_control_id_and_segments() -> None:
    first = adt("MRN1")
    assert key(first) == key(first.replace(b"\r", b"\n")) == key(first.replace(b"\r", b"\r\n"))
    assert key(first) == key(b"\r\n" + first + b"\r\n\r\n")  # framing whitespace is not content
    assert key(first) == key(first.replace(b"\rEVN", b"\r\n\rEVN"))  # nor an empty line
    assert key(first) != key(adt("MRN2"))  # same control id, other content
    assert key(first) != key(adt("MRN1", ctl="CTRL-2"))
    assert key(first) != key(adt("MRN1", facility="SOUTHDERM"))  # another sender's control id 1
    assert len(key(first)) == 64


def test_an_envelope_without_msh10_is_keyed_by_its_bytes() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|2025||ADT^A04|\rPID|1||X^^^A^MR\r"
    assert HL7v2Connector().store_key(Envelope(raw=raw)) == content_key(raw)


# ------------------------------------------------------------------ through the intake
@pytest.fixture
def store(runtime):  # type: ignore[no-untyped-def]
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")
    return runtime


def messages_of(runtime) -> list[dict]:  # type: ignore[no-untyped-def]
    from hub.store.messages import list_messages

    with runtime.engine.connect() as conn:
        return sorted(list_messages(conn, practice="northderm"), key=lambda r: r["id"])


def patients(runtime) -> set[str]:  # type: ignore[no-untyped-def]
    from hub.store.canonical import fetch_records

    with runtime.engine.connect() as conn:
        return {r["source_id"] for r in fetch_records(conn, "patient", "northderm")}


def test_same_control_id_same_content_is_a_duplicate_of_the_original(store) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.intake import receive

    first = receive(store, "northderm", adt("MRN1"), media_type=HL7)
    again = receive(store, "northderm", adt("MRN1").replace(b"\r", b"\n"), media_type=HL7)  # the file copy
    assert first[0].status == "accepted" and again[0].status == "duplicate"
    assert b"MSA|AA|CTRL-1" in again[0].ack
    rows = messages_of(store)
    assert [r["status"] for r in rows] == ["processed", "duplicate"]
    assert rows[1]["duplicate_of"] == rows[0]["id"] and rows[1]["flag"] is None


def test_same_control_id_other_content_is_stored_processed_and_flagged(store) -> None:  # type: ignore[no-untyped-def]
    from hub.onboarding.sources import check_stored
    from hub.pipeline.intake import receive

    receive(store, "northderm", adt("MRN1"), media_type=HL7)
    reused = receive(store, "northderm", adt("MRN2", given="Blake"), media_type=HL7)
    assert reused[0].status == "accepted" and b"MSA|AA|CTRL-1" in reused[0].ack
    receive(store, "northderm", adt("MRN3", facility="SOUTHDERM"), media_type=HL7)  # CTRL-1 of another sender
    rows = messages_of(store)
    assert [r["status"] for r in rows] == ["processed"] * 3
    assert [r["flag"] for r in rows] == [None, "control-id-reused", None]
    assert patients(store) == {"MRN1", "MRN2", "MRN3"}  # the reuse was processed, not dropped
    assert check_stored(store, "northderm")["messages"]["control_id_reuses"] == 1


def test_the_flag_shows_in_hub_messages_list(store) -> None:  # type: ignore[no-untyped-def]
    from hub.cli import cli
    from hub.pipeline.intake import receive

    receive(store, "northderm", adt("MRN1") + b"\r" + adt("MRN2"), media_type=HL7)  # both in one payload
    listed = CliRunner().invoke(cli, ["messages", "list", "--practice", "northderm", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = sorted(json.loads(listed.output), key=lambda r: r["id"])
    assert [(r["status"], r["flag"]) for r in rows] == [("processed", None), ("processed", "control-id-reused")]
    text = CliRunner().invoke(cli, ["messages", "list", "--practice", "northderm"]).output
    assert text.count("[control-id-reused]") == 1


def test_the_flag_shows_in_the_json_api_and_http_intake_keys_the_same_way(store) -> None:  # type: ignore[no-untyped-def]
    from hub.app import create_app
    from hub.security.keys import create_key
    from hub.store.engine import writer

    with writer(store.engine).begin() as conn:
        feed = create_key(conn, "feed", "northderm")
        admin = create_key(conn, "admin")
    client = create_app(store).test_client()

    def post(data: bytes) -> bytes:
        response = client.post("/api/v1/practices/northderm/messages", data=data, content_type=HL7,
                               headers={"Authorization": f"Bearer {feed}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()

    post(adt("MRN1"))
    assert b"MSA|AA|CTRL-1" in post(adt("MRN1").replace(b"\r", b"\r\n"))
    post(adt("MRN2"))
    listed = client.get("/api/v1/messages?practice=northderm", headers={"Authorization": f"Bearer {admin}"})
    assert listed.status_code == 200
    rows = sorted(listed.get_json(), key=lambda r: r["id"])
    assert [(r["status"], r["flag"]) for r in rows] == [("processed", None), ("duplicate", None),
                                                       ("processed", "control-id-reused")]
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "flag" in spec["components"]["schemas"]["Message"]["properties"]


def test_the_dry_run_scorecard_counts_reused_control_ids(tmp_path: Path) -> None:
    from hub.mapping import load_mapping
    from hub.onboarding.sources import check_files
    from hub.plugins import load_plugins

    (tmp_path / "a.hl7").write_bytes(adt("MRN1"))
    (tmp_path / "b.hl7").write_bytes(adt("MRN1").replace(b"\r", b"\n"))  # a copy: a duplicate
    (tmp_path / "c.hl7").write_bytes(adt("MRN2"))  # CTRL-1 again, other content
    mapping = load_mapping("version: 1\npractice: northderm\n")
    card = check_files(load_plugins(), "northderm", mapping, [str(tmp_path)], findings=False)
    assert card["messages"]["read"] == 3
    assert card["messages"]["duplicates"] == 1 and card["messages"]["control_id_reuses"] == 1
