"""The standard tests every connector passes (see ``hub.testing``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hub.connector import Connector, Context
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

    ConnectorContract.__name__ = ConnectorContract.__qualname__ = f"Test{connector.__name__}Contract"
    return ConnectorContract
