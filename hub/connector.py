"""The connector contract: the only code that knows a wire format.

A connector turns the bytes a practice sends into common-model records. It never
touches the database; the pipeline stores what it returns. Subclass ``Connector``,
set the declarative attributes, implement ``parse`` and ``to_canonical``, and
register the class from a plugin::

    from hub import hookimpl
    from hub.connector import Connector

    class MyConnector(Connector):
        name = "my-format"
        version = "1.0.0"
        media_types = ("application/x-my-format",)
        file_extensions = (".myf",)

        @classmethod
        def detect(cls, data: bytes) -> bool: ...
        def parse(self, envelope): ...
        def to_canonical(self, parsed, context): ...

    @hookimpl
    def hub_register_connectors(registry):
        registry.add(MyConnector)

``normalize`` (given) runs the two steps, stamps ``practice`` on every record and
turns any unexpected exception into the hub's ``ParseError``, so a connector bug
shows as a clear error on that message rather than a crash of the pipeline.

Duplicates: the connector says what makes two arrivals the same message
(``dedup_key``, default: identical bytes); the message store keeps one message per
practice and key and records a repeat as a ``duplicate`` row. ``unique_control_ids``
says the sender promises a message's ``control_id`` is unique (HL7 v2 MSH-10): a
stored message that repeats another's sender and control id with other content is
then processed and flagged ``control-id-reused``.

Time: each record should carry ``event_time``, when the event it reports happened
(the store keeps, field by field, the value of the latest event, whatever the arrival
order; a record without one takes its message's arrival). A date-time sent without an
offset is emitted without one (``2025-02-28T22:30:00``): the hub reads it in the
practice's time zone.

Samples: a connector may also write records in its format (``render``, optional), so the
demo, the tests and the benchmarks get their payloads from the connector, never from the
core.

Pulling: a connector that reads from a practice's system (a FHIR server, an API) implements
``poller(settings)``, returning a ``Poller`` whose ``poll(resource_type, cursor)`` yields
``Page``s of payloads, each with the cursor to keep once it is stored. The core schedules it:
it loads the settings, stores every page through the ordinary intake and only then moves the
high-water mark, so a connector that pulls still never touches the database.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from hub.errors import HubError, ParseError

DEDUP_KEY_MAX = 64  # characters of a connector's dedup key; the store prefixes the practice


def content_key(raw: bytes) -> str:
    """The default dedup key: the sha256 of the message's bytes (identical content is one message)."""
    return hashlib.sha256(raw).hexdigest()


def digest_key(*parts: str | bytes) -> str:
    """A dedup key made of several parts (sha256, 64 hex characters). Start with the connector's name so
    that keys of different connectors never meet; each part is length-prefixed, so ("ab", "c") and
    ("a", "bc") differ."""
    pieces: list[bytes] = []
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        pieces += (b"%d:" % len(data), data)
    return hashlib.sha256(b"".join(pieces)).hexdigest()  # one update: the digest of the pieces one after another


def frozen_init(instance: object, values: dict[str, Any]) -> None:
    """Set the fields of a frozen dataclass made per message (``Envelope``, ``Context``, ``Outcome``) in one
    step: its generated ``__init__`` sets them one by one through ``object.__setattr__``, about twice the
    cost. The instance stays frozen (its ``__setattr__`` refuses)."""
    instance.__dict__.update(values)


@dataclass(frozen=True)
class Envelope:
    """One message as it arrived, before parsing.

    ``sender`` and ``control_id`` name it in the store and in acknowledgements (for
    HL7 v2: MSH-3^MSH-4 and MSH-10); ``meta`` carries what the connector needs to
    answer (for example the acknowledgement mode) and to compute its ``dedup_key``.
    ``error``: ``split`` found this one message of a payload unreadable (an HL7 batch
    message without MSH-10); it is stored and refused alone, the others are kept.
    """

    raw: bytes
    sender: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    error: HubError | None = None

    def __init__(self, raw: bytes, sender: str | None = None, control_id: str | None = None,
                 message_type: str | None = None, meta: Mapping[str, Any] | None = None,
                 error: HubError | None = None) -> None:
        # made twice per message (split, then processing): the fields set in one step rather than by
        # a frozen dataclass's setattr each (``frozen_init``)
        frozen_init(self, {"raw": raw, "sender": sender, "control_id": control_id, "message_type": message_type,
                            "meta": {} if meta is None else meta, "error": error})


@dataclass
class Tally:
    """What a message held besides the records it gave (partial acceptance), filled by the connector.

    ``not_mapped``: parts of kinds the hub does not map (resource types, segments), by type;
    ``invalid``: optional elements left out because they failed validation, as (element path,
    reason) with no values; ``notes``: anything else worth saying about the message (text skipped
    before the first segment, resources used only as references), without patient data;
    ``mapped``: records the message gave (set by the core). Kept with the message in the store
    and printed by ``hub normalize`` / ``hub ingest``."""

    not_mapped: dict[str, int] = field(default_factory=dict)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mapped: int = 0

    def skip(self, what: str, count: int = 1) -> None:
        """``count`` parts of type ``what`` (a resource type, a segment id) are not mapped."""
        self.not_mapped[what] = self.not_mapped.get(what, 0) + count

    def drop(self, path: str, reason: str) -> None:
        """The optional element at ``path`` failed validation and is left out (lenient mappings)."""
        self.invalid.append((path, reason))

    def __bool__(self) -> bool:
        return bool(self.not_mapped or self.invalid or self.notes)

    def add(self, other: Mapping[str, Any]) -> None:
        """Add a stored tally (``as_dict``) to this one: a file's or a run's total."""
        self.mapped += int(other.get("mapped") or 0)
        for what, count in (other.get("not_mapped") or {}).items():
            self.skip(what, int(count))
        self.invalid.extend((i.get("path", ""), i.get("reason", "")) for i in other.get("invalid") or ())
        self.notes.extend(n for n in other.get("notes") or () if n not in self.notes)

    def summary(self) -> str:
        """One line for a person: ``not mapped: Observation 3, MessageHeader 1; left out as invalid: 2
        (Claim.item[0].net: ...)``; empty when there is nothing to say."""
        parts = []
        if self.not_mapped:
            parts.append("not mapped: " + ", ".join(f"{what} {n}" for what, n in sorted(self.not_mapped.items())))
        if self.invalid:
            first = "; ".join(f"{path}: {reason}" for path, reason in self.invalid[:3])
            more = f"; and {len(self.invalid) - 3} more" if len(self.invalid) > 3 else ""
            parts.append(f"left out as invalid: {len(self.invalid)} element(s) ({first}{more})")
        parts.extend(self.notes[:5])
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mapped": self.mapped}
        if self.not_mapped:
            out["not_mapped"] = dict(sorted(self.not_mapped.items()))
        if self.invalid:
            out["invalid"] = [{"path": path, "reason": reason} for path, reason in self.invalid]
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class Context:
    """What a connector may know about where a message belongs.

    ``strict``: the practice's mapping asks for all or nothing (``acceptance: strict``): an element
    that fails validation refuses the whole message. Otherwise (``lenient``, the default) a connector
    leaves out what fails validation where it is optional, and records it in ``tally``."""

    practice: str
    config: Mapping[str, Any] = field(default_factory=dict)  # the connector section of the mapping file
    message_id: int | None = None
    origin: str | None = None  # file name or transport, for error messages
    strict: bool = False
    tally: Tally = field(default_factory=Tally)

    def __init__(self, practice: str, config: Mapping[str, Any] | None = None, message_id: int | None = None,
                 origin: str | None = None, strict: bool = False, tally: Tally | None = None) -> None:
        # ``frozen_init``, written out: one per message
        self.__dict__.update({"practice": practice, "config": {} if config is None else config,
                              "message_id": message_id, "origin": origin, "strict": strict,
                              "tally": Tally() if tally is None else tally})


@dataclass(frozen=True)
class Outcome:
    """How the hub handled a message, for the connector's acknowledgement.

    ``duplicate``: the same message (by the connector's ``dedup_key``) arrived before and is stored
    once; ``accepted`` then tells how the first copy fared, so a resend of a failed message is not
    answered as a success.
    """

    accepted: bool
    duplicate: bool = False
    error: str | None = None
    error_location: str | None = None
    rejected: bool = False  # refused outright (unreadable); otherwise an application error
    message_id: int | None = None

    def __init__(self, accepted: bool, duplicate: bool = False, error: str | None = None,
                 error_location: str | None = None, rejected: bool = False, message_id: int | None = None) -> None:
        frozen_init(self, {"accepted": accepted, "duplicate": duplicate, "error": error,
                            "error_location": error_location, "rejected": rejected, "message_id": message_id})


@dataclass(frozen=True)
class RenderOptions:
    """How a connector writes sample payloads (``Connector.render``).

    ``practice`` names the sender (its slug: file names, facility, identifiers); ``timezone`` is
    the practice's clock; ``times`` is how its system writes date-times: ``local`` (local time with
    its offset), ``utc`` (the UTC instant) or ``naive`` (local wall-clock time, no offset);
    ``shuffled`` asks for a history backfill written in no particular (but deterministic) order;
    ``settings`` holds what only some connectors understand (each connector's ``render`` lists its
    own and ignores the rest), as ``Context.config`` does for reading.
    """

    practice: str
    timezone: str = "UTC"
    times: str = "local"
    shuffled: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """One file a practice's system would send: a name relative to the practice's folder
    (``2025-03/siu.hl7``) and its bytes."""

    name: str
    data: bytes


CURSOR_MAX = 40  # characters of a poller's cursor (the store keeps it as the high-water mark)


@dataclass(frozen=True)
class Page:
    """One page a poller read from a practice's system (``Poller.poll``).

    The core stores ``payloads`` through the ordinary intake, each as if it had been pushed (split,
    deduplicated, processed, errors kept), all in one commit; only then does it keep ``cursor`` as
    the resource type's high-water mark (``None``: the mark stays). ``resources`` is how many items
    of the type the page carried, for the run's report. ``read=False`` marks a page that only moves
    the mark (a poller that can set it only once the type is read to the end) and is not counted.
    """

    payloads: Sequence[bytes] = ()
    cursor: str | None = None
    resources: int = 0
    read: bool = True


class Poller(ABC):
    """One pull from a practice's system (``Connector.poller``): the connector reads, the core stores.

    ``source`` names where the pages come from (a base URL, an account); with the practice and
    the resource type it keys the stored high-water marks, so two servers of one practice keep
    their own. The core asks ``poll`` for one type at a time, stores each page it yields and keeps
    the page's cursor before asking for the next: a failure leaves the mark at the last stored
    page, and a rerun starts there.
    """

    source: str = ""

    @abstractmethod
    def resource_types(self) -> Sequence[str]:
        """The resource types (streams) to read when the command names none, in order."""

    @abstractmethod
    def poll(self, resource_type: str, cursor: str | None) -> Iterable[Page]:
        """The pages of ``resource_type`` changed since ``cursor`` (the stored mark, or the one the user
        gave; ``None``: from the beginning), read lazily (a generator), each with the cursor to keep
        once it is stored: a str of at most ``CURSOR_MAX`` characters the source understands (a
        timestamp, a sequence number), free of patient data. Give a cursor at which a rerun misses
        nothing (re-reading a little is fine: duplicates are detected). Raise ``HubError`` naming what
        failed, without patient data (no query strings), when the source cannot be read."""


@dataclass
class PullReport:
    """What a pull did for one resource type: pages read, resources on them, what intake made of
    the stored messages, and the high-water mark at the end (the start mark if none was kept).
    ``finished`` is False for the type a failure stopped: what it stored before is still reported."""

    resource_type: str
    pages: int = 0
    resources: int = 0
    accepted: int = 0
    duplicate: int = 0
    error: int = 0
    high_water: str | None = None
    finished: bool = True


class PullService(Protocol):
    """The core's pull, given to plugin commands as the ``pull`` argument of ``hub_cli_commands``.

    Loads the practice's settings of ``connector`` (its section of the practice's mapping), lays
    ``options`` (the command's, e.g. a base URL given on the command line) over them, asks the
    connector for a ``Poller`` with them and runs it: per resource type (``resource_types``, else
    the poller's), from ``since`` or the stored mark, each page stored, then the mark moved.
    ``on_report`` is given each type's report as soon as the type is done, so that a command can
    still say what the types before a failure stored."""

    def __call__(self, practice: str, connector: str, *, options: Mapping[str, Any] | None = None,
                 since: str | None = None, resource_types: Sequence[str] | None = None,
                 on_report: Callable[[PullReport], None] | None = None) -> list[PullReport]: ...


class ImportedOnRead:
    """A class attribute given as ``"module:attribute"`` and imported when first read.

    For a connector's ``config_schema``: a marshmallow schema in a module of its own is then imported
    by what checks or lists the settings, not by every command that detects or reads content
    (``hub normalize`` of one file stays quick)::

        config_schema = ImportedOnRead("hub_hl7v2.settings:HL7v2Settings")
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._value: Any = None

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if self._value is None:
            module, attribute = self.target.split(":")
            self._value = getattr(importlib.import_module(module), attribute)
        return self._value


class Connector(ABC):
    """Base class of every connector plugin."""

    name: ClassVar[str]
    version: ClassVar[str] = "0.0.0"
    media_types: ClassVar[tuple[str, ...]] = ()
    file_extensions: ClassVar[tuple[str, ...]] = ()
    # marshmallow schema of the connector's section in a practice mapping, run by the hub on the
    # section whenever a mapping is loaded; fields whose metadata says {"secret": True} or
    # {"phi": True} are redacted wherever they are shown (hub.settings.redact), and an "env" entry
    # names a variable that stands in for the field for every practice (hub.settings.connector_env)
    config_schema: ClassVar[type | None] = None
    description: ClassVar[str] = ""
    # the sender promises that Envelope.control_id is unique per Envelope.sender (HL7 v2 MSH-10):
    # a message repeating a stored one's sender and control id with other content is flagged
    unique_control_ids: ClassVar[bool] = False
    # each message is one row of a practice-system export (CSV): a row that a later, corrected export
    # repeats is not a resend, and does not count against the go-live duplicate threshold
    export_rows: ClassVar[bool] = False
    # ``to_canonical`` returns a list of dicts made for that call alone (none kept, shared or yielded
    # twice): ``normalize`` then stamps them as they are instead of copying each one first (a subclass
    # inherits the promise: one whose own ``to_canonical`` cannot keep it sets this back to False)
    fresh_records: ClassVar[bool] = False
    # fields of the common model the wire format has no place for, as "kind.field" → why (a person reads
    # it: ``hub plugins list``, the reports' "no data" reason). A record the connector yields leaves such a
    # field out (None, never a guessed False), so a KPI that needs it shows "no data" for a site whose feed
    # never carries it instead of a figure computed without it. What a field carries can also depend on the
    # practice's mapping (a CSV export's columns): then it is simply absent from the records.
    cannot_carry: ClassVar[Mapping[str, str]] = {}

    def __init__(self) -> None:
        self.log = logging.getLogger(f"hub.connector.{self.name}")

    # -- the contract ---------------------------------------------------------
    @classmethod
    def detect(cls, data: bytes) -> bool:
        """True when ``data`` looks like this connector's format (cheap: a prefix check)."""
        return False

    def split(self, data: bytes, *, origin: str | None = None) -> list[Envelope]:
        """One payload may carry several messages (an HL7 batch); the default is one."""
        return [Envelope(raw=data)]

    def dedup_key(self, envelope: Envelope) -> str:
        """What makes two arrivals the same message. Two envelopes of one practice with the same key
        are one message: the later is stored as a ``duplicate`` row pointing at the first and is not
        processed. Default: the sha256 of the raw bytes (identical content).

        Called for every envelope ``split`` returns, on the intake path (so cheap, and from the
        envelope alone: put what the key needs into ``meta`` in ``split``); also for a payload
        ``split`` refused (an ``Envelope`` of the raw payload only). The same envelope must give the
        same key in any process. At most ``DEDUP_KEY_MAX`` (64) characters: hash a longer identity
        with ``digest_key(self.name, ...)``."""
        return content_key(envelope.raw)

    @abstractmethod
    def parse(self, envelope: Envelope, context: Context) -> Any:
        """Read the bytes; raise ``ParseError`` naming where the message is unreadable."""

    @abstractmethod
    def to_canonical(self, parsed: Any, context: Context) -> Iterable[dict[str, Any]]:
        """Yield common-model records (dicts with ``kind``, ``source_id`` and, where the format says,
        ``event_time``)."""

    def acknowledge(self, envelope: Envelope, outcome: Outcome) -> bytes | None:
        """The answer to one message (an HL7 ACK, a FHIR entry response), or None."""
        return None

    def answer(self, results: Sequence[tuple[Envelope, Outcome]]) -> tuple[bytes, str] | None:
        """The answer to a whole payload as (body, media type): for HL7 the ACKs one after the
        other, for FHIR a response Bundle or OperationOutcome. Default: the ACKs concatenated."""
        acks = [self.acknowledge(env, outcome) for env, outcome in results]
        parts = [a for a in acks if a]
        return (b"".join(parts), self.media_types[0] if self.media_types else "text/plain") if parts else None

    def answer_status(self, results: Sequence[tuple[Envelope, Outcome]]) -> int | None:
        """Optional: the HTTP status of ``answer`` where the format has rules of its own (FHIR: 400 or
        422 for a refused transaction or resource). None (the default): 400 when every message was
        refused unread, else 200."""
        return None

    def findings(self, envelope: Envelope, context: Context) -> list[str]:
        """Deep structural validation for the onboarding check (slow; never on the ingest path).
        Each finding names where (segment/field, element path, line) and what, without values."""
        return []

    def render(self, records: Sequence[Mapping[str, Any]], *, options: RenderOptions) -> list[Rendered]:
        """Optional: write common-model records of one practice as the files its system would send in
        this connector's format, the inverse of ``split`` + ``normalize`` (samples for the demo, tests
        and benchmarks; never on the ingest path). ``records`` holds every record the payloads refer
        to (an appointment's patient, provider and location); keys starting with ``_`` are rendering
        hints a connector documents (a display name, say). The same records and options give the same
        bytes. A connector that cannot render raises ``NotImplementedError`` (the default), as it does
        for an option it does not support; ``can_render()`` says which connectors render at all."""
        raise NotImplementedError(f"the {self.name} connector does not render payloads")

    @classmethod
    def can_render(cls) -> bool:
        """True when the connector implements ``render``."""
        return cls.render is not Connector.render

    def poller(self, settings: Mapping[str, Any]) -> Poller:
        """Optional: a connector that pulls from a practice's system (a poll connector) returns a
        ``Poller`` for one run. ``settings`` is the connector's section of the practice's mapping with
        the command's options laid over it, a plain dict; raise ``ConfigError`` when one it needs is
        missing. The poller reads and never stores: the core stores its pages through intake and
        keeps its cursors. The default raises ``NotImplementedError``; ``can_poll()`` says which
        connectors pull at all."""
        raise NotImplementedError(f"the {self.name} connector does not pull")

    @classmethod
    def can_poll(cls) -> bool:
        """True when the connector implements ``poller``."""
        return cls.poller is not Connector.poller

    # -- given ---------------------------------------------------------------
    def normalize(self, envelope: Envelope, context: Context) -> list[dict[str, Any]]:
        try:
            parsed = self.parse(envelope, context)
            produced = self.to_canonical(parsed, context)
            records = produced if self.fresh_records and type(produced) is list else [dict(r) for r in produced]
        except HubError as exc:
            if exc.source is None:
                exc.source = context.origin
            raise
        except Exception as exc:  # a connector bug must not take the pipeline down
            self.log.exception("connector %s failed on a message", self.name)
            raise ParseError(f"{self.name} connector could not read the message ({type(exc).__name__})",
                             source=context.origin) from exc
        for record in records:
            record["practice"] = context.practice
        return records

    def store_key(self, envelope: Envelope) -> str:
        """``dedup_key`` as the store uses it: a key that is not a non-empty str, or a failing
        ``dedup_key``, falls back to the content (a connector bug must not lose a message);
        a key longer than ``DEDUP_KEY_MAX`` is hashed."""
        try:
            key = self.dedup_key(envelope)
        except Exception:
            self.log.exception("connector %s could not compute a dedup key; the content is used", self.name)
            return content_key(envelope.raw)
        if not isinstance(key, str) or not key:
            self.log.error("connector %s gave a dedup key that is not a non-empty str; the content is used",
                           self.name)
            return content_key(envelope.raw)
        return key if len(key) <= DEDUP_KEY_MAX else digest_key(self.name, key)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.name, "version": cls.version, "media_types": list(cls.media_types),
                "file_extensions": list(cls.file_extensions), "cannot_carry": dict(cls.cannot_carry),
                "class": f"{cls.__module__}.{cls.__qualname__}"}
