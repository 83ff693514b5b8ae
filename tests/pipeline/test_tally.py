"""Partial acceptance on the record: what a message held besides its records is kept with it, shown, and said.

The test connector reads a JSON object ``{"records": [...], "skip": {type: n}, "drop": [[path, reason]]}``
and reports the skipped parts and dropped elements through ``context.tally``, as the real connectors do."""

import json
import sys
import types
from typing import Any

import pytest
from click.testing import CliRunner

from hub import hookimpl
from hub.cli import _build_cli
from hub.connector import Connector, Context, Envelope, Tally
from hub.pipeline.intake import receive
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.store import messages as ms
from hub.store import writer
from hub.store.practices import add_practice


class Tallying(Connector):
    name = "tallying"
    version = "1.0.0"
    media_types = ("application/x-test-tallying",)

    @classmethod
    def detect(cls, data: bytes) -> bool:
        return data.lstrip().startswith(b'{"records"')

    def parse(self, envelope: Envelope, context: Context) -> dict[str, Any]:
        return dict(json.loads(envelope.raw))

    def to_canonical(self, parsed: dict[str, Any], context: Context) -> Any:
        for what, n in parsed.get("skip", {}).items():
            context.tally.skip(what, n)
        for path, reason in parsed.get("drop", []):
            context.tally.drop(path, reason)
        yield from parsed["records"]


plugin = types.ModuleType("tallying_plugin")
plugin.hub_register_connectors = hookimpl(lambda registry: registry.add(Tallying))  # type: ignore[attr-defined]
sys.modules[plugin.__name__] = plugin

PATIENT = {"kind": "patient", "source_id": "MRN1", "family_name": "Synthetic", "sex": "female"}
LOCATION = {"kind": "location", "source_id": "L1", "name": "Main"}


def payload(records: list[dict[str, Any]], skip: dict[str, int] | None = None,
            drop: list[list[str]] | None = None) -> bytes:
    return json.dumps({"records": records, "skip": skip or {}, "drop": drop or []}).encode()


@pytest.fixture
def hub_runtime(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm", "Derm")
        add_practice(conn, "strict", "Strict", mapping="acceptance: strict\n")
    return runtime


def test_the_tally_is_kept_with_the_message_and_listed(hub_runtime: Runtime) -> None:
    data = payload([PATIENT, LOCATION], skip={"Observation": 2, "MessageHeader": 1},
                   drop=[["Patient.address[0].period", "not a Period"]])
    (receipt,) = receive(hub_runtime, "derm", data, origin="a.json")
    assert receipt.status == "accepted"
    plain = receive(hub_runtime, "derm", payload([LOCATION | {"source_id": "L2"}]), origin="b.json")
    assert plain[0].status == "accepted"
    with hub_runtime.engine.connect() as conn:
        rows = {r["origin"]: r for r in ms.list_messages(conn, practice="derm")}
    assert rows["a.json"]["status"] == "processed" and rows["a.json"]["record_count"] == 2
    assert rows["a.json"]["tally"] == {
        "mapped": 2, "not_mapped": {"MessageHeader": 1, "Observation": 2},
        "invalid": [{"path": "Patient.address[0].period", "reason": "not a Period"}]}
    assert rows["b.json"]["tally"] is None  # nothing to say: nothing kept


def test_a_strict_practice_refuses_the_whole_message_at_an_invalid_element(hub_runtime: Runtime) -> None:
    data = payload([PATIENT], drop=[["Patient.birthDate", "not a date"]])
    (receipt,) = receive(hub_runtime, "strict", data, origin="s.json")
    assert receipt.status == "error"
    assert "Patient.birthDate" in (receipt.outcome.error or "") and "strict" in (receipt.outcome.error or "")
    (lenient,) = receive(hub_runtime, "derm", data, origin="s.json")
    assert lenient.status == "accepted"
    # parts of kinds the hub does not map are no reason to refuse, even when strict
    (skipped,) = receive(hub_runtime, "strict", payload([PATIENT], skip={"OBX": 3}), origin="t.json")
    assert skipped.status == "accepted"


def _cli(monkeypatch: pytest.MonkeyPatch, database_url: str, *args: str) -> Any:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    installed = load_plugins
    monkeypatch.setattr("hub.commands.base.load_plugins", lambda **kw: installed(extra=[plugin], **kw))
    return CliRunner().invoke(_build_cli(), list(args))


def test_normalize_says_on_stderr_what_was_not_mapped_and_when_a_file_gave_nothing(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    some = tmp_path / "some.json"
    some.write_bytes(payload([PATIENT], skip={"Observation": 2}, drop=[["Patient.telecom[1]", "no value"]]))
    none = tmp_path / "none.json"
    none.write_bytes(payload([], skip={"Organization": 1}))
    result = _cli(monkeypatch, database_url, "normalize", "--practice", "derm", str(some), str(none))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["source_id"] for line in result.stdout.splitlines()] == ["MRN1"]
    err = result.stderr.splitlines()
    assert f"hub: {some}: 1 record(s); not mapped: Observation 2; left out as invalid: 1 element(s) " \
           f"(Patient.telecom[1]: no value)" in err
    assert f"hub: {none}: no record (not mapped: Organization 1)" in err


def test_ingest_says_per_file_what_was_not_mapped(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                  database_url: str) -> None:
    assert _cli(monkeypatch, database_url, "practice", "add", "derm", "--name", "Derm").exit_code == 0
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "a.json").write_bytes(payload([PATIENT], skip={"AL1": 1}))
    (feed / "b.json").write_bytes(payload([LOCATION]))
    (feed / "c.json").write_bytes(payload([], skip={"Schedule": 2}))
    result = _cli(monkeypatch, database_url, "ingest", "--practice", "derm", str(feed))
    assert result.exit_code == 0, result.output
    assert "accepted 3  duplicate 0  error 0" in result.stdout
    err = result.stderr.splitlines()
    assert f"hub: {feed / 'a.json'}: 1 record(s); not mapped: AL1 1" in err
    assert f"hub: {feed / 'c.json'}: no record (not mapped: Schedule 2)" in err
    assert not any("b.json" in line for line in err)  # a file that mapped whole is not mentioned


def test_tally_adds_up_and_summarizes() -> None:
    total = Tally()
    one = Tally()
    one.skip("OBX", 2)
    one.drop("PID-7", "not a date")
    one.mapped = 3
    total.add(one.as_dict())
    total.add(one.as_dict())
    assert total.not_mapped == {"OBX": 4} and total.mapped == 6 and len(total.invalid) == 2
    assert not Tally() and bool(one)
