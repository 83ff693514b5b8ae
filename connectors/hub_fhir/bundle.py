"""Reading FHIR JSON: one resource or a Bundle, split into messages, references resolved.

How a payload becomes messages (``split``):
- a single resource, and a Bundle of any other type (transaction, collection, searchset,
  message, history, document, transaction-response, batch-response), is ONE message, stored
  whole. What it holds is split by the connector (``parse``) into what maps and what does not:
  a transaction is all or nothing for the resources the hub maps; elsewhere an invalid
  resource is left out and counted (partial acceptance, see the package docstring);
- a batch Bundle becomes one message per entry (each a one-entry batch Bundle, so the
  entry's ``fullUrl`` and ``request`` are kept), so each entry gets its own outcome.

Duplicates are told at that level (``versions_of``, the connector's ``dedup_key``): a
message is the same as another when it carries the same resource versions (type, id
and ``meta.versionId`` with the ``meta.lastUpdated`` sent beside it, or
``meta.lastUpdated`` alone when there is no versionId; for a
Bundle, the set of its resources' versions, whatever the Bundle's own id, type or
timestamp), so a page pulled again or an entry resent in another batch is a
duplicate and a new version is a new message. A message with any resource lacking
an id or both version elements (or an entry without a resource) is keyed by its bytes.

The payload is read once: ``split`` keeps the documents it parsed for ``parse`` to take
(``read``), since the pipeline stores the message between the two. The keep is bounded
(``KEPT_BYTES`` of payload, ``KEPT_MESSAGES`` messages, ``KEPT_SECONDS``; the oldest go
first); a message parsed elsewhere (a queue worker, a reprocess) is simply read again.

References (``References.resolve``) are looked up in the payload: relative
(``Patient/123``), absolute (``http://x/fhir/Patient/123``), ``urn:uuid:`` full URLs,
contained (``#id``), logical (``identifier``) and conditional
(``Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1234567893``, by identifier). A
reference that cannot be resolved is kept as the source id it names (for a logical or
conditional one, the identifier's value), never dropped. A resource POSTed as a conditional
create (``ifNoneExist: identifier=system|value``) is known by that identifier (``created_as``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import unquote

import orjson

from hub.connector import Envelope
from hub.errors import ParseError

BOM = b"\xef\xbb\xbf"
BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset", "message", "history", "document",
                "transaction-response", "batch-response")
RESPONSE_TYPES = ("transaction-response", "batch-response")
# request methods whose entry carries no resource to take in: skipped, counted in a note
NON_RESOURCE_METHODS = ("GET", "HEAD", "DELETE", "PATCH")
SKIPPED_WHY = {
    "DELETE": "DELETE {entries} skipped: the hub keeps history and does not delete",
    "GET": "GET {entries} skipped: a read is not answered from a pushed Bundle",
    "HEAD": "HEAD {entries} skipped: a read is not answered from a pushed Bundle",
    "PATCH": "PATCH {entries} skipped: the hub takes whole resources (POST or PUT), not patches",
    "response": "{entries} with only a response skipped (no resource to take in)",
    "history": "history {entries} without a resource skipped (deletions)",
    "searchset": "search {entries} without a resource skipped",
    "malformed": "{entries} without a readable resource skipped",
}
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
_TYPE_ID = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")
# parsed documents held between split and parse (parsed JSON takes about 7 times its bytes);
# where another process parses (a queue worker), what split kept is let go after KEPT_SECONDS
KEPT_BYTES = 16_000_000
KEPT_MESSAGES = 256
KEPT_SECONDS = 60.0


class _Parsed:
    """Documents ``split`` parsed, by their exact bytes, until ``parse`` takes them (once)."""

    def __init__(self) -> None:
        self._docs: OrderedDict[bytes, tuple[dict[str, Any], float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def keep(self, raw: bytes, doc: dict[str, Any]) -> None:
        if len(raw) > KEPT_BYTES // 4:
            return  # a huge payload is cheaper to read again than to hold
        now = time.monotonic()
        with self._lock:
            if raw in self._docs:
                return
            self._docs[raw] = (doc, now)
            self._bytes += len(raw)
            while self._docs and (self._bytes > KEPT_BYTES or len(self._docs) > KEPT_MESSAGES
                                  or next(iter(self._docs.values()))[1] < now - KEPT_SECONDS):
                old, _ = self._docs.popitem(last=False)
                self._bytes -= len(old)

    def take(self, raw: bytes) -> dict[str, Any] | None:
        with self._lock:
            kept = self._docs.pop(raw, None)
            if kept is None:
                return None
            self._bytes -= len(raw)
            return kept[0]


_PARSED = _Parsed()


def load(data: bytes) -> dict[str, Any]:
    """Bytes → the JSON object of a resource; ``ParseError`` naming what is wrong."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data.strip():
        raise ParseError("empty payload: expected a FHIR resource or Bundle as JSON")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"not valid JSON ({exc.msg})", location=f"line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise ParseError("not a FHIR resource: expected a JSON object with a resourceType", location="resourceType")
    return doc


def read(data: bytes) -> dict[str, Any]:
    """``load``, or the document ``split`` already parsed from these bytes. Never changed by the
    connector (validation and mapping only read it), so one parse serves both steps."""
    doc = _PARSED.take(data)
    return doc if doc is not None else load(data)


def bundle_type(doc: dict[str, Any]) -> str:
    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in BUNDLE_TYPES:
        shown = kind if isinstance(kind, str) and len(kind) < 40 else "missing"
        raise ParseError(f"Bundle.type {shown!r} is not taken in (accepted: {', '.join(BUNDLE_TYPES)})",
                         location="Bundle.type")
    return kind


def entries_of(doc: dict[str, Any]) -> list[Any]:
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise ParseError("Bundle.entry must be a list", location="Bundle.entry")
    return entries


def split(data: bytes) -> list[Envelope]:
    doc = load(data)
    rtype = doc["resourceType"]
    if rtype != "Bundle":
        _PARSED.keep(data, doc)
        return [Envelope(raw=data, message_type=rtype, meta={"bundle_type": None, "entries": [rtype],
                                                             "versions": versions_of([doc])})]
    kind = bundle_type(doc)
    entries = entries_of(doc)
    if kind != "batch":
        types = [_entry_type(e) for e in entries]
        _PARSED.keep(data, doc)
        return [Envelope(raw=data, message_type=f"Bundle-{kind}",
                         meta={"bundle_type": kind, "entries": types,
                               "versions": versions_of([_entry_resource(e) for e in entries])})]
    if not entries:
        raise ParseError("the batch Bundle has no entries", location="Bundle.entry")
    out = []
    timestamp = doc.get("timestamp")
    for index, entry in enumerate(entries):
        one: dict[str, Any] = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
        if timestamp is not None:  # each entry's message keeps the batch's time (its event time)
            one["timestamp"] = timestamp
        raw = orjson.dumps(one)
        _PARSED.keep(raw, one)
        etype = _entry_type(entry)
        out.append(Envelope(raw=raw, message_type=etype or "Bundle-batch-entry",
                            meta={"bundle_type": "batch", "index": index, "entries": [etype],
                                  "versions": versions_of([_entry_resource(entry)])}))
    return out


def versions_of(resources: list[Any]) -> str | None:
    """What names the resource versions a message carries, for duplicate detection: each resource's
    type, id and ``meta.versionId`` (else ``meta.lastUpdated``), sorted; None when any resource lacks
    an id or both (or there is none): the message is then keyed by its bytes. A ``lastUpdated`` sent
    beside the ``versionId`` counts too: a server changes both together, and a sender that keeps one
    versionId across changes must not have its changes dropped as duplicates."""
    names = []
    for resource in resources:
        if not isinstance(resource, dict):
            return None
        rtype, rid, meta = resource.get("resourceType"), resource.get("id"), resource.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        version, updated = meta.get("versionId"), meta.get("lastUpdated")
        if not (isinstance(rtype, str) and isinstance(rid, str) and rid):
            return None
        if isinstance(version, str) and version:
            names.append(f"{rtype}/{rid}/_history/{version}@{updated if isinstance(updated, str) else ''}")
        elif isinstance(updated, str) and updated:
            names.append(f"{rtype}/{rid}@{updated}")
        else:
            return None
    return "\n".join(sorted(names)) if names else None


def _entry_resource(entry: Any) -> Any:
    return entry.get("resource") if isinstance(entry, dict) else None


def _entry_type(entry: Any) -> str | None:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    return rtype if isinstance(rtype, str) else None


class Item:
    """One top-level resource of a payload and where it sits (a FHIRPath root for errors);
    its type and source id are read once, as every reference to it needs them."""

    __slots__ = ("resource", "path", "full_url", "type", "source_id")

    def __init__(self, resource: dict[str, Any], path: str, full_url: str | None = None) -> None:
        self.resource = resource
        self.path = path
        self.full_url = full_url
        self.type: str = resource.get("resourceType")  # type: ignore[assignment]
        self.source_id = source_id_of(resource, full_url)


def source_id_of(resource: dict[str, Any], full_url: str | None) -> str | None:
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return rid
    if isinstance(full_url, str) and full_url:
        if full_url.startswith("urn:uuid:") or full_url.startswith("urn:oid:"):
            return full_url[9:] if full_url.startswith("urn:uuid:") else full_url[8:]
        return full_url.rstrip("/").rsplit("/", 1)[-1]
    return None


def business_id(resource: dict[str, Any]) -> str | None:
    """The identifier value a resource sent with neither id nor fullUrl is known by: a medical record
    number (type ``MR``, or a system naming an MRN) first, then an NPI, then the first identifier
    with a value that is not marked ``old``; none when it carries no identifier."""
    best: tuple[int, str] | None = None
    for ident in _identifiers(resource):
        system = ident["system"] if isinstance(ident.get("system"), str) else ""
        kind = ident.get("type")
        types = {c.get("code") for c in kind.get("coding") or () if isinstance(c, dict)} \
            if isinstance(kind, dict) else set()
        rank = 0 if "MR" in types or "mrn" in system.lower() else 1 if system == NPI_SYSTEM else \
            3 if ident.get("use") == "old" else 2
        if best is None or rank < best[0]:
            best = (rank, ident["value"])
    return best[1] if best is not None else None


@dataclass
class Payload:
    """A parsed message: its resources in order and the Bundle type (None: a single resource).

    ``skipped``: entries not taken in, by why (a ``SKIPPED_WHY`` key) → their element paths: requests
    that store nothing (DELETE, GET, ...), response entries without a resource, deletions in a
    history; ``notes()`` says them for the message's tally."""

    bundle_type: str | None
    items: list[Item]
    skipped_entries: int = 0  # entries without a resource to take in (counted in ``skipped``)
    timestamp: str | None = None  # Bundle.timestamp: when the Bundle was assembled
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, why: str, where: str) -> None:
        self.skipped.setdefault(why, []).append(where)
        self.skipped_entries += 1

    def notes(self) -> list[str]:
        out = []
        for why, places in self.skipped.items():
            shown = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
            entries = "entry" if len(places) == 1 else "entries"
            out.append(f"{len(places)} {SKIPPED_WHY[why].format(entries=entries)} ({shown})")
        return out


def items_of(doc: dict[str, Any], *, strict: bool = False) -> Payload:
    """The resources of a payload to take in. Entries that carry none are skipped and counted
    (``Payload.skipped``): DELETE, GET, HEAD and PATCH requests (the hub keeps history: it does not
    delete, and reads nothing back), response entries with only a ``response``, deletions in a
    history, search entries without a resource. Any other entry without a readable resource refuses
    a transaction (all or nothing), and any Bundle when ``strict``; otherwise it is skipped too."""
    rtype = doc["resourceType"]
    if rtype != "Bundle":
        return Payload(None, [Item(doc, rtype)])
    kind = bundle_type(doc)
    entries = entries_of(doc)
    # each batch entry is its own message: paths start at the resource, as for a single resource
    entry_rooted = not (kind == "batch" and len(entries) == 1)
    timestamp = doc.get("timestamp")
    payload = Payload(kind, [], timestamp=timestamp if isinstance(timestamp, str) else None)
    refuse_malformed = strict or kind == "transaction"
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            if refuse_malformed:
                raise ParseError("a Bundle entry must be a JSON object", location=where)
            payload.skip("malformed", where)
            continue
        resource, request = entry.get("resource"), entry.get("request")
        method = str(request.get("method") or "").upper() if isinstance(request, dict) else ""
        if method in NON_RESOURCE_METHODS and kind in ("transaction", "batch"):
            payload.skip(method, f"{where}.request.method")
            continue
        if resource is None:
            if kind in ("history", "searchset"):
                payload.skip(kind, where)  # a deletion in a history, an outcome in a search
            elif kind in RESPONSE_TYPES and isinstance(entry.get("response"), dict):
                payload.skip("response", where)
            elif refuse_malformed:
                raise ParseError("the entry has no resource", location=where)
            else:
                payload.skip("malformed", where)
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            if refuse_malformed:
                raise ParseError("the entry's resource has no resourceType", location=f"{where}.resource")
            payload.skip("malformed", f"{where}.resource")
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        path = f"{where}.resource" if entry_rooted else resource["resourceType"]
        item = Item(resource, path, full_url)
        if method == "POST":  # a conditional create is known by the identifier it is created under
            item.source_id = created_as(request, resource) or item.source_id
        payload.items.append(item)
    return payload


class Target(NamedTuple):
    """What a reference points at: a resource type (when known), its source id, the resource if present."""

    type: str | None
    source_id: str
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    system: str | None = None  # a target known only by an identifier: that identifier's system


class References:
    """Every way a resource in the payload can be referred to.

    A payload refers to the same few resources over and over (its patients, providers,
    locations): each reference text is resolved once per payload. Logical references
    (``identifier``) are rare, so the identifier index is built on the first one."""

    def __init__(self, items: list[Item] | None = None) -> None:
        self.items = items or []
        self.by_key: dict[str, Item] = {}
        self._by_identifier: dict[tuple[str | None, str | None, str], Item] | None = None
        self._resolved: dict[Any, Target | None] = {}
        self._noted: set[str] = set()

    @classmethod
    def of(cls, items: list[Item]) -> References:
        refs = cls(items)
        by_key = refs.by_key
        for item in items:
            sid = item.source_id
            key = f"{item.type}/{sid}" if sid else None
            if key is not None and key not in by_key:
                by_key[key] = item
            full_url = item.full_url
            if full_url:
                by_key.setdefault(full_url, item)
                if key is not None and full_url.endswith(key) and full_url[-len(key) - 1:-len(key)] == "/":
                    continue  # ``.../Type/id``: its Type/id key is the one just made
                found = _TYPE_ID.search(full_url.split("/_history/")[0])
                if found:
                    by_key.setdefault(f"{found.group(1)}/{found.group(2)}", item)
        return refs

    @property
    def by_identifier(self) -> dict[tuple[str | None, str | None, str], Item]:
        """(type or None, system or None, value) → the first resource carrying that identifier."""
        if self._by_identifier is None:
            index: dict[tuple[str | None, str | None, str], Item] = {}
            for item in self.items:
                for ident in _identifiers(item.resource):
                    system, value = ident.get("system"), ident["value"]
                    system = system if isinstance(system, str) and system else None
                    for rtype in (item.type, None):
                        index.setdefault((rtype, system, value), item)
                        index.setdefault((rtype, None, value), item)
            self._by_identifier = index
        return self._by_identifier

    def resolve(self, ref: Any, container: dict[str, Any] | None = None,
                container_id: str | None = None) -> Target | None:
        if not isinstance(ref, dict):
            return None
        text = ref.get("reference")
        declared = ref.get("type")
        if not isinstance(declared, str):
            declared = None
        if isinstance(text, str) and text:
            if text[0] == "#":  # contained: scoped to its container, not cached
                return self._contained(text[1:], container, container_id, declared)
            if "?" in text:  # conditional: ``Type?identifier=system|value``
                key = ("?", text, declared)
                if key not in self._resolved:
                    self._resolved[key] = self._conditional(text, declared)
                return self._resolved[key]
            cache_key = text if declared is None else (text, declared)
            target = self._resolved.get(cache_key)
            if target is None:
                target = self._resolved[cache_key] = self._literal(text, declared)
            return target
        ident = ref.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            system = ident.get("system")
            return self.by_identifier_of(declared, system if isinstance(system, str) else None, ident["value"])
        return None

    def by_identifier_of(self, declared: str | None, system: str | None, value: str) -> Target:
        """The resource of the payload carrying that identifier (of the declared type), else a target
        keyed by the identifier's value: a provider named by NPI then matches the provider with that NPI."""
        item = self.by_identifier.get((declared, system, value))
        if item is not None:
            return Target(item.type, item.source_id or business_id(item.resource) or value, item.resource,
                          item.full_url)
        return Target(declared, value, None, None, system)

    def _conditional(self, text: str, declared: str | None) -> Target | None:
        """``Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1234567893`` (a conditional reference,
        as transaction Bundles send them): resolved by identifier; other search criteria cannot be."""
        rtype, _, query = text.partition("?")
        rtype = rtype.rstrip("/").rsplit("/", 1)[-1] or declared or ""
        rtype_or_none = rtype if _TYPE_NAME.match(rtype) else declared
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name != "identifier" or not value:
                continue
            decoded = unquote(value)
            system, bar, ident = decoded.rpartition("|")
            if not bar:
                system, ident = "", decoded
            if ident:
                return self.by_identifier_of(rtype_or_none, system or None, ident)
        return None

    def _literal(self, text: str, declared: str | None) -> Target:
        item = self.by_key.get(text)  # the common case: a key as the payload spells it
        key = text if item is not None or "/_history/" not in text else text.split("/_history/")[0]
        found = None
        if item is None:
            item = self.by_key.get(key)
        if item is None and not key.startswith("urn:"):
            found = _TYPE_ID.search(key)
            if found and found.end() - found.start() != len(key):  # absolute: try its Type/id
                item = self.by_key.get(f"{found.group(1)}/{found.group(2)}")
        if item is not None:
            return Target(item.type, item.source_id or key, item.resource, item.full_url)
        if key.startswith("urn:uuid:"):
            return Target(declared, key[9:])
        if found:
            return Target(found.group(1), found.group(2))
        # an absolute URL of another shape: its last segment is the id the source system uses
        return Target(declared, key.rstrip("/").rsplit("/", 1)[-1] if "://" in key else key)

    def _contained(self, local_id: str, container: dict[str, Any] | None, container_id: str | None,
                   declared: str | None) -> Target | None:
        for res in (container or {}).get("contained") or ():
            if isinstance(res, dict) and res.get("id") == local_id:
                rtype = res.get("resourceType")
                # a contained resource has no identity of its own: its id is scoped to the container
                sid = f"{container_id}#{local_id}" if container_id else f"#{local_id}"
                return Target(rtype if isinstance(rtype, str) else declared, sid, res)
        return Target(declared, f"{container_id}#{local_id}" if container_id else f"#{local_id}")


    def uses_note(self, rtype: str) -> str | None:
        """What the payload's resources of ``rtype`` (Organization, Schedule: no record of their own) are
        used for, as one note for the message: ``Organization used only as a reference: payer name of 2
        coverages``; plainly ``... used only as a reference`` when nothing in the payload refers to one.
        Said once per type (None after); the payload is walked for references only then."""
        if rtype in self._noted:
            return None
        self._noted.add(rtype)
        held = {id(item.resource) for item in self.items if item.type == rtype}
        if not held:
            return None
        uses: Counter[tuple[str, str]] = Counter()
        for item in self.items:
            if item.type == rtype:
                continue
            for key, value in item.resource.items():
                if key in ("contained", "id", "meta", "text"):
                    continue
                for ref in _references(value):
                    target = self.resolve(ref, item.resource, item.source_id)
                    if target is not None and target.resource is not None and id(target.resource) in held:
                        uses[(item.type, key)] += 1
        said = []
        for (referrer, key), count in sorted(uses.items()):
            use = USES.get((referrer, key))
            if use is not None:
                what, noun = use
                said.append(f"{what} of {count} {noun if count == 1 else _plural(noun)}")
            else:
                said.append(f"referred to by {referrer}.{key} ({count})")
        subject = f"{rtype} used only as a reference" if len(held) == 1 else \
            f"{len(held)} {rtype}s used only as references"
        return f"{subject}: {', '.join(said)}" if said else subject


# what a reference-only resource is used for, by the element that refers to it
USES = {("Coverage", "payor"): ("payer name", "coverage"), ("Claim", "insurer"): ("payer name", "claim"),
        ("ClaimResponse", "insurer"): ("payer name", "claim response"),
        ("ExplanationOfBenefit", "insurer"): ("payer name", "explanation of benefit"),
        ("Slot", "schedule"): ("provider and location", "slot")}


def _plural(noun: str) -> str:
    return "explanations of benefit" if noun == "explanation of benefit" else f"{noun}s"


def _references(value: Any) -> Iterator[dict[str, Any]]:
    """The References inside an element (a dict with a ``reference`` text or a logical ``identifier``)."""
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str) or isinstance(value.get("identifier"), dict):
            yield value
        for inner in value.values():
            if isinstance(inner, dict | list):
                yield from _references(inner)
    elif isinstance(value, list):
        for inner in value:
            if isinstance(inner, dict | list):
                yield from _references(inner)


def created_as(request: Any, resource: dict[str, Any]) -> str | None:
    """The identifier value a resource is POSTed under (``ifNoneExist: identifier=system|value``, a
    conditional create), when the resource carries that identifier: a server ignores the id of a POSTed
    resource, and other payloads name it by that identifier (Synthea's
    ``Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|...``), so it is its lasting source id."""
    condition = request.get("ifNoneExist") if isinstance(request, dict) else None
    if not isinstance(condition, str) or "identifier=" not in condition:
        return None
    for part in condition.partition("?")[2 if "?" in condition else 0].split("&"):
        name, _, value = part.partition("=")
        if name != "identifier" or not value:
            continue
        system, bar, ident = unquote(value).rpartition("|")
        for carried in _identifiers(resource):
            if carried["value"] == ident and bar and (not system or carried.get("system") == system):
                return ident
    return None


def _identifiers(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            yield ident
