"""The standard tests every connector passes (see ``hub.testing``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hub.connector import DEDUP_KEY_MAX, Connector, Context, Envelope
from hub.errors import HubError
from hub.model import phi_fields, to_json_ready, validate_record

# Inputs no connector can read. Each must give a HubError, never another exception.
DEFAULT_MALFORMED: tuple[bytes, ...] = (b"", b"\x00\xff\xfe garbage \x00", b"{{{{", b"MSH", b"\r\n\r\n")


def _phi_values(records: Iterable[dict[str, Any]]) -> set[str]:
    values: set[str] = set()
    for record in records:
        for name in phi_fields(record["kind"]):
            value = record.get(name)
            if isinstance(value, list):
                values.update(str(v.get("value")) for v in value if isinstance(v, dict) and v.get("value"))
            elif value not in (None, ""):
                values.add(str(value))
    return {v for v in values if len(v) >= 4}  # short values (sex, initials) match too much to test


def connector_test_class(connector: type[Connector], *, samples: Sequence[str | Path],
                         malformed: Sequence[bytes] = (), practice: str = "contract-test",
                         config: dict[str, Any] | None = None) -> type:
    """Build a pytest test class that holds ``connector`` to the hub's contract."""
    sample_paths = [Path(s) for s in samples]
    bad_inputs = tuple(malformed) + DEFAULT_MALFORMED
    context = Context(practice=practice, config=config or {}, origin="contract-test")

    def normalize(path: Path) -> list[dict[str, Any]]:
        instance = connector()
        data = path.read_bytes()
        records: list[dict[str, Any]] = []
        for envelope in instance.split(data, origin=str(path)):
            records.extend(instance.normalize(envelope, Context(practice=practice, config=config or {},
                                                                 origin=str(path))))
        return records

    class ConnectorContract:
        connector_class = connector

        def test_has_samples(self) -> None:
            assert sample_paths, "give the contract suite at least one sample file"
            for path in sample_paths:
                assert path.is_file(), f"sample {path} does not exist"

        @pytest.mark.parametrize("path", sample_paths, ids=[p.name for p in sample_paths])
        def test_sample_is_detected(self, path: Path) -> None:
            assert connector.detect(path.read_bytes()), f"{connector.name} does not recognise {path.name}"

        @pytest.mark.parametrize("path", sample_paths, ids=[p.name for p in sample_paths])
        def test_sample_normalizes_to_valid_records(self, path: Path) -> None:
            records = normalize(path)
            assert records, f"{path.name} yielded no records"
            for record in records:
                assert record.get("kind") and record.get("source_id"), record.get("kind")
                validate_record(record)

        @pytest.mark.parametrize("path", sample_paths, ids=[p.name for p in sample_paths])
        def test_normalizing_twice_gives_the_same_records(self, path: Path) -> None:
            first = to_json_ready(normalize(path))
            second = to_json_ready(normalize(path))
            assert first == second

        @pytest.mark.parametrize("data", bad_inputs, ids=[f"malformed{i}" for i in range(len(bad_inputs))])
        def test_malformed_input_raises_the_hubs_error(self, data: bytes) -> None:
            instance = connector()
            with pytest.raises(HubError) as caught:
                for envelope in instance.split(data, origin="malformed"):
                    records = list(instance.to_canonical(instance.parse(envelope, context), context))
                    if not records:
                        raise AssertionError("malformed input yielded no error and no records")
                    for record in records:
                        validate_record({**record, "practice": practice})
            assert str(caught.value).strip(), "the error needs a message a person can act on"

        @pytest.mark.parametrize("path", sample_paths, ids=[p.name for p in sample_paths])
        def test_no_patient_data_in_logs(self, path: Path, caplog: pytest.LogCaptureFixture) -> None:
            with caplog.at_level(logging.DEBUG):
                records = normalize(path)
            text = "\n".join(r.getMessage() for r in caplog.records)
            leaked = sorted(v for v in _phi_values(records) if v in text)
            assert not leaked, f"{len(leaked)} patient data value(s) appear in the logs"

        # -- duplicates: Connector.dedup_key ------------------------------------------------
        @pytest.mark.parametrize("path", sample_paths, ids=[p.name for p in sample_paths])
        def test_dedup_key_is_a_short_str_and_the_same_on_every_read(self, path: Path) -> None:
            data = path.read_bytes()
            reads = []
            for _ in range(2):  # a fresh instance each time: the key may not depend on the instance
                instance = connector()
                reads.append([(env.raw, instance.dedup_key(env)) for env in instance.split(data, origin=str(path))])
            assert [k for _, k in reads[0]] == [k for _, k in reads[1]], "the same message gave two dedup keys"
            for _, key in reads[0]:
                assert isinstance(key, str) and key, "dedup_key must be a non-empty str"
                assert len(key) <= DEDUP_KEY_MAX, f"dedup_key is {len(key)} characters (at most {DEDUP_KEY_MAX})"

        @pytest.mark.parametrize("path", sample_paths, ids=[p.name for p in sample_paths])
        def test_distinct_messages_of_a_sample_have_distinct_dedup_keys(self, path: Path) -> None:
            instance = connector()
            envelopes = instance.split(path.read_bytes(), origin=str(path))
            by_key: dict[str, bytes] = {}
            for env in envelopes:
                seen = by_key.setdefault(instance.dedup_key(env), env.raw)
                assert seen == env.raw, (f"two different messages of {path.name} share a dedup key: the second "
                                         "would be dropped as a duplicate")

        @pytest.mark.parametrize("path", sample_paths, ids=[p.name for p in sample_paths])
        def test_dedup_key_carries_no_patient_data(self, path: Path) -> None:
            instance = connector()
            keys = " ".join(instance.dedup_key(env) for env in instance.split(path.read_bytes(), origin=str(path)))
            leaked = sorted(v for v in _phi_values(normalize(path)) if v in keys)
            assert not leaked, f"{len(leaked)} patient data value(s) appear in dedup keys (hash them)"

        @pytest.mark.parametrize("data", bad_inputs, ids=[f"malformed{i}" for i in range(len(bad_inputs))])
        def test_dedup_key_of_a_refused_payload(self, data: bytes) -> None:
            # a payload split refuses is stored as an error, keyed from an envelope of its bytes alone
            key = connector().dedup_key(Envelope(raw=data))
            assert isinstance(key, str) and key and len(key) <= DEDUP_KEY_MAX

    ConnectorContract.__name__ = ConnectorContract.__qualname__ = f"Test{connector.__name__}Contract"
    return ConnectorContract
