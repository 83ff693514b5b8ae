"""The fuzz targets: one check per reader of outside bytes, shared by ``benchmarks/fuzz.py`` (a million
inputs each) and the property tests (a few hundred, in every test run).

A check takes any bytes and either returns or raises a ``HubError`` (the documented user errors:
``ParseError``, ``ValidationError``, ``MappingError``) with a message a person can read. Anything else
escaping (a ``KeyError``, an ``IndexError``, a ``RecursionError``), a broken invariant (an
``AssertionError``), a hang or a memory blow-up is a finding.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hub_csv import CsvConnector
from hub_fhir import FhirConnector
from hub_hl7v2 import HL7v2Connector
from hub_x12 import X12Connector

from hub.connector import Connector, Context, Envelope, Outcome
from hub.errors import HubError
from hub.mapping import load_mapping
from hub.mapping.vocabulary import load_vocabulary, vocabulary_folder
from hub.mllp.framing import END_BLOCK, frame, read_answer
from hub.mllp.server import HEAD_KEPT, Frame, Limits, MllpServer
from hub.model.schemas import validate_record

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
MAX_ENVELOPES = 64  # of one input: enough to reach every path, bounded so one input stays quick
REFUSED = Outcome(accepted=False, rejected=True, error="refused", error_location="MSH-9")
ACCEPTED = Outcome(accepted=True, message_id=1)


def refused(exc: HubError) -> None:
    """A user error must say something: an empty message helps nobody fix the input."""
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


def _through(connector: Connector, envelopes: Iterable[Envelope], context: Context) -> None:
    """Each envelope as the pipeline takes it: parse, map, validate; one refused does not stop the rest."""
    for envelope in list(envelopes)[:MAX_ENVELOPES]:
        assert len(connector.dedup_key(envelope)) <= 64
        try:
            for record in connector.to_canonical(connector.parse(envelope, context), context):
                validate_record({**record, "practice": context.practice})
        except HubError as exc:
            refused(exc)


def _split(connector: Connector, data: bytes, origin: str) -> list[Envelope]:
    try:
        return connector.split(data, origin=origin)
    except HubError as exc:
        refused(exc)
        return []


# -- HL7 v2 (ER7) --------------------------------------------------------------------------------------
HL7V2 = HL7v2Connector()


def check_er7(data: bytes) -> None:
    envelopes = _split(HL7V2, data, "fuzz.hl7")
    _through(HL7V2, envelopes, Context(practice="p1", origin="fuzz.hl7"))
    for envelope in envelopes[:MAX_ENVELOPES]:
        assert b"MSA" in HL7V2.acknowledge(envelope, ACCEPTED)
    # a payload refused whole is answered from its raw bytes
    assert b"MSA" in HL7V2.acknowledge(Envelope(raw=data), REFUSED)


# -- MLLP framing ----------------------------------------------------------------------------------------
MLLP_LIMITS = Limits(max_size=4096)  # small, so that fuzzed streams reach the oversize path
_CHUNK_SIZES = (1, 2, 3, 7, 64, 500, 4096, 65_536)


class _ChunkReader:
    """What ``MllpServer._frames`` reads from: the stream in the given chunks, then end of file."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int) -> bytes:
        return next(self.chunks, b"")


class _ChunkSocket:
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def recv(self, n: int) -> bytes:
        return next(self.chunks, b"")


def chunked(stream: bytes, pattern: bytes, most: int = 16) -> Iterator[bytes]:
    """The stream cut as TCP might deliver it: chunk sizes picked by the pattern's bytes; after ``most``
    chunks the rest at once (each read costs the listener a task: bounded, so one input stays quick)."""
    at, i = 0, 0
    while at < len(stream):
        size = _CHUNK_SIZES[pattern[i % len(pattern)] % len(_CHUNK_SIZES)] if pattern and i < most else len(stream)
        yield stream[at:at + size]
        at, i = at + size, i + 1


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


# what the listener's frame reader takes besides its reader (the connection's task, for idle tracking)
_FRAMES_EXTRA = tuple(None for _ in list(inspect.signature(MllpServer._frames).parameters)[2:])


def deframe(stream: bytes, pattern: bytes, limits: Limits = MLLP_LIMITS) -> list[Frame]:
    """The frames the listener reads from ``stream`` delivered in chunks (``chunked``): its own frame
    reader, run on a stand-in for the server that holds only what framing uses."""
    server: Any = SimpleNamespace(limits=limits, _idle={})
    frames: Any = MllpServer._frames

    async def collect() -> list[Frame]:
        return [f async for f in frames(server, _ChunkReader(chunked(stream, pattern)), *_FRAMES_EXTRA)]

    return _loop().run_until_complete(collect())


def check_mllp(data: bytes) -> None:
    pattern, stream = data[:8], data[8:]
    for got in deframe(stream, pattern):
        assert END_BLOCK not in got.data
        assert len(got.data) <= (HEAD_KEPT if got.oversize else MLLP_LIMITS.max_size), "frame over its bound"
    # what a sender frames comes out whole, however the stream is cut, after noise between frames
    payload = stream.replace(b"\x0b", b"").replace(b"\x1c", b"")[:MLLP_LIMITS.max_size]
    framed = b"\r\n" + frame(payload) + b"noise" + frame(payload[::-1])
    assert deframe(framed, pattern) == [Frame(payload), Frame(payload[::-1])]
    # the client side: one answer, up to its end block
    answer = read_answer(_ChunkSocket(chunked(stream, pattern)))  # type: ignore[arg-type]
    assert stream.startswith(answer)
    assert (b"\x1c" in answer) == (b"\x1c" in stream)


# -- FHIR intake -------------------------------------------------------------------------------------------
FHIR = FhirConnector()


def check_fhir(data: bytes) -> None:
    envelopes = _split(FHIR, data, "fuzz.json")
    # both acceptance modes (a strict mapping refuses what a lenient one leaves out), and a third of the
    # inputs with R4 validation off (HUB_FHIR_VALIDATE=false): the mapping then sees what validation stops
    config = {"validate": False} if len(data) % 3 == 0 else {}
    _through(FHIR, envelopes, Context(practice="p1", origin="fuzz.json", strict=bool(len(data) & 1), config=config))
    results = [(envelope, REFUSED) for envelope in envelopes[:MAX_ENVELOPES]] or [(Envelope(raw=data), REFUSED)]
    assert FHIR.answer(results) is not None


# -- CSV ------------------------------------------------------------------------------------------------------
CSV = CsvConnector()


@functools.cache
def csv_config() -> dict[str, Any]:
    """The column map of the example practice, which reads the connector's sample exports."""
    text = (ROOT / "mappings" / "example-practice.yaml").read_text(encoding="utf-8")
    return load_mapping(text, source="example-practice.yaml", vocabulary=vocabulary()).connector_config("csv")


def check_csv(data: bytes) -> None:
    envelopes = _split(CSV, data, "fuzz.csv")
    _through(CSV, envelopes, Context(practice="p1", origin="fuzz.csv", config=csv_config()))
    try:  # the streaming reader of large exports
        for payload, line in CSV.iter_chunks(io.BytesIO(data), rows=3):
            assert payload and line >= 1
    except HubError as exc:
        refused(exc)


# -- X12 ------------------------------------------------------------------------------------------------------
X12 = X12Connector()


def check_x12(data: bytes) -> None:
    envelopes = _split(X12, data, "fuzz.x12")
    _through(X12, envelopes, Context(practice="p1", origin="fuzz.x12"))
    if envelopes:
        X12.answer([(envelope, REFUSED) for envelope in envelopes[:MAX_ENVELOPES]])


# -- the mapping loader -------------------------------------------------------------------------------------
@functools.cache
def vocabulary() -> Any:
    return load_vocabulary(vocabulary_folder())


SAMPLE_RECORDS = (
    {"kind": "charge", "payer_name": "AETNA PPO", "payer_id": "60054", "visit_type": "NP",
     "location_source_id": "MAIN", "provider_source_id": "1001"},
    {"kind": "appointment", "cancel_reason": "PT", "visit_type": "np ", "location_source_id": None},
    {"kind": "remittance", "payer_name": "BLUE CROSS OF X"},
)


def check_mapping(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        mapping = load_mapping(text, source="fuzz.yaml", vocabulary=vocabulary())
    except HubError as exc:
        refused(exc)
        return
    for record in SAMPLE_RECORDS:  # a mapping that loads must also apply
        mapping.apply(dict(record))
    for name in ("hl7v2", "csv", "fhir", "x12"):
        mapping.connector_config(name)


# -- the table of targets --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[bytes], None]
    seed_globs: tuple[str, ...]  # relative to the repository (in-tree samples) or to the shared corpus
    corpus_globs: tuple[str, ...]
    tokens: tuple[bytes, ...]  # what a byte mutator inserts: the format's delimiters and keywords
    max_len: int = 65_536

    def seed_files(self, *, corpus: Path | None = CORPUS) -> list[Path]:
        """The in-tree samples, and the shared corpus's files when ``corpus`` is given and there."""
        files = [p for g in self.seed_globs for p in sorted(ROOT.glob(g))]
        if corpus is not None and corpus.is_dir():
            files += [p for g in self.corpus_globs for p in sorted(corpus.glob(g))]
        return [p for p in files if p.is_file()]

    def seeds(self, *, corpus: Path | None = CORPUS) -> list[bytes]:
        return [p.read_bytes()[:self.max_len] for p in self.seed_files(corpus=corpus)]


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("er7", check_er7, ("connectors/hub_hl7v2/samples/*.hl7",), ("hl7v2/*", "real/hl7v2/*"),
           (b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"\\X", b"\\F\\", b"\\.br\\", b"MSH|^~\\&|", b"BHS|",
            b"BTS|", b"FHS|", b"PID|", b"PV1|", b"SCH|", b"AIS|", b"FT1|", b"MSH-18", b"UNICODE UTF-8",
            b"8859/1", b"\xff", b"\x00", b'""', b"\xc3", b"\x0b", b"\x1c")),
    Target("mllp", check_mllp, ("connectors/hub_hl7v2/samples/*.hl7",), (),
           (b"\x0b", b"\x1c", b"\r", b"\x1c\r", b"\x0b\x1c", b"\x00")),
    Target("fhir", check_fhir, ("tests/fhir/samples/*.json",), ("fhir/*", "real/fhir/*"),
           (b"{", b"}", b"[", b"]", b'"', b":", b",", b"null", b"true", b"1e999", b'"resourceType"',
            b'"Bundle"', b'"entry"', b'"resource"', b'"reference"', b'"Patient/1"', b'"#c"', b'"urn:uuid:',
            b'"fullUrl"', b'"transaction"', b'"request"', b'"method"', b'"id"', b'"meta"', b'"versionId"',
            b'"Appointment"', b'"Claim"', b'"Encounter"', b'"Coverage"', b'"start"', b'"2025-13-40T25:61:00Z"',
            b"\\u0000", b"\\ud800", b"\xef\xbb\xbf")),
    Target("csv", check_csv, ("connectors/hub_csv/samples/*.csv",), (),
           (b",", b'"', b'""', b"\r\n", b"\n", b"\r", b";", b"\t", b"\x00", b"\xef\xbb\xbf", b"\xff", b"$",
            b"1,250.00", b"03/04/2025 09:30 AM", b"2025-02-30", b"Y", b"N", b"-", b"1e400", b"NaN")),
    Target("x12", check_x12, ("connectors/hub_x12/samples/*.x12",), ("x12/*",),
           (b"*", b"~", b":", b"^", b">", b"\n", b"ISA*", b"GS*", b"ST*", b"SE*", b"GE*", b"IEA*", b"CLP*",
            b"SVC*", b"CAS*", b"CLM*", b"SV1*", b"NM1*", b"HL*", b"REF*", b"DTM*", b"N1*PR*", b"835", b"837",
            b"005010X221A1", b"005010X222A1", b"1e400", b"-0")),
    Target("mapping", check_mapping, ("mappings/*.yaml", "mappings/examples/*.yaml"), (),
           (b":", b"- ", b"\n", b"  ", b"{", b"}", b"[", b"]", b"&a ", b"*a", b"!!python/object", b"<<: *a",
            b"? ", b"|", b">", b"'", b'"', b"#", b"---", b"...", b"code_maps:", b"payer:", b"payer_patterns:",
            b"match:", b"defaults:", b"go_live:", b"connectors:", b"csv:", b"hl7v2:", b"exports:", b"timezone:",
            b"version:", b"~", b"null", b".inf", b"1e400", b"0x1F", b"2025-01-01")),
)}
