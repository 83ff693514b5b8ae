"""Reading FHIR JSON: one resource or a Bundle, split into messages, references resolved.

How a payload becomes messages (``split``):
- a single resource, and a Bundle of type transaction, collection, searchset, message or
  history, is ONE message, stored whole: if any entry is invalid the whole message errors
  (all or nothing, as a transaction must be);
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
contained (``#id``) and logical (``identifier``). A reference that cannot be resolved
is kept as the source id it names, never dropped.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from hub.connector import Envelope
from hub.errors import ParseError

BOM = b"\xef\xbb\xbf"
BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset", "message", "history")
# request methods whose entry carries no resource to take in
NON_RESOURCE_METHODS = ("GET", "HEAD", "DELETE", "PATCH")
_TYPE_ID = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
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
    if kind not in BUNDLE_TYPES:
        shown = kind if isinstance(kind, str) and len(kind) < 40 else "missing"
        raise ParseError(f"Bundle.type {shown!r} is not taken in (accepted: {', '.join(BUNDLE_TYPES)})",
                         location="Bundle.type")
    return kind  # type: ignore[no-any-return]


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


@dataclass
class Payload:
    """A parsed message: its resources in order and the Bundle type (None: a single resource)."""

    bundle_type: str | None
    items: list[Item]
    skipped_entries: int = 0  # history/searchset entries without a resource (deletions, outcomes)
    timestamp: str | None = None  # Bundle.timestamp: when the Bundle was assembled


def items_of(doc: dict[str, Any]) -> Payload:
    rtype = doc["resourceType"]
    if rtype != "Bundle":
        return Payload(None, [Item(doc, rtype)])
    kind = bundle_type(doc)
    entries = entries_of(doc)
    # each batch entry is its own message: paths start at the resource, as for a single resource
    entry_rooted = not (kind == "batch" and len(entries) == 1)
    timestamp = doc.get("timestamp")
    payload = Payload(kind, [], timestamp=timestamp if isinstance(timestamp, str) else None)
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            raise ParseError("a Bundle entry must be a JSON object", location=where)
        resource = entry.get("resource")
        request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        method = str(request.get("method") or "").upper()
        if resource is None:
            if kind in ("history", "searchset"):
                payload.skipped_entries += 1  # a deletion in a history, an outcome in a search
                continue
            if method in NON_RESOURCE_METHODS:
                raise ParseError(f"{method} entries are not taken in: the hub accepts resources (POST or PUT)",
                                 location=f"{where}.request.method")
            raise ParseError("the entry has no resource", location=where)
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise ParseError("the entry's resource has no resourceType", location=f"{where}.resource")
        if method in NON_RESOURCE_METHODS and kind in ("transaction", "batch"):
            raise ParseError(f"{method} entries are not taken in: the hub accepts resources (POST or PUT)",
                             location=f"{where}.request.method")
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        path = f"{where}.resource" if entry_rooted else resource["resourceType"]
        payload.items.append(Item(resource, path, full_url))
    return payload


class Target(NamedTuple):
    """What a reference points at: a resource type (when known), its source id, the resource if present."""

    type: str | None
    source_id: str
    resource: dict[str, Any] | None = None
    full_url: str | None = None


class References:
    """Every way a resource in the payload can be referred to.

    A payload refers to the same few resources over and over (its patients, providers,
    locations): each reference text is resolved once per payload. Logical references
    (``identifier``) are rare, so the identifier index is built on the first one."""

    def __init__(self, items: list[Item] | None = None) -> None:
        self.items = items or []
        self.by_key: dict[str, Item] = {}
        self._by_identifier: dict[tuple[str | None, str], Item] | None = None
        self._resolved: dict[Any, Target] = {}

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
    def by_identifier(self) -> dict[tuple[str | None, str], Item]:
        if self._by_identifier is None:
            index: dict[tuple[str | None, str], Item] = {}
            for item in self.items:
                for ident in _identifiers(item.resource):
                    index.setdefault((ident.get("system"), ident["value"]), item)
                    index.setdefault((None, ident["value"]), item)
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
            cache_key = text if declared is None else (text, declared)
            target = self._resolved.get(cache_key)
            if target is None:
                target = self._resolved[cache_key] = self._literal(text, declared)
            return target
        ident = ref.get("identifier")
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            item = self.by_identifier.get((ident.get("system"), ident["value"]))
            if item is not None and (declared is None or declared == item.type):
                return Target(item.type, item.source_id or ident["value"], item.resource, item.full_url)
            return Target(declared, ident["value"])
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


def _identifiers(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            yield ident
