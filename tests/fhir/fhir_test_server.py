"""A small FHIR server on a loopback port for the pull tests: paged searchsets built from the corpus.

It honours ``_count``, ``_lastUpdated=ge|gt``, ``_include`` and ``_include:iterate`` (the referenced
resources, as ``search.mode`` include entries), refuses unknown search parameters and ``_include``s with 400
and an OperationOutcome as real R4 servers do, pages by ``Bundle.link`` ``next``, asks for a
bearer token, offers a SMART backend-services token endpoint (``/token``) that checks the
client's signed assertion, and can be told to fail (``faults``) to exercise retries.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hub_fhir.bundle import load
from hub_fhir.pull import PULL_TYPES
from hub_fhir.validate import validate_resource

START = dt.datetime(2025, 1, 1, 8, 0, tzinfo=dt.UTC)

# The R4 search parameters a server knows (https://hl7.org/fhir/R4/searchparameter-registry.html),
# enough of them for the pull: the result and common parameters of every type, and each pulled
# type's reference search parameters (what an _include may name). A parameter or _include not
# here is refused with 400 and an OperationOutcome, as real servers do ("page" is this server's
# own paging parameter, which it writes into its next links).
R4_RESULT_PARAMS = {"_count", "_sort", "_include", "_revinclude", "_summary", "_total", "_elements", "_contained",
                    "_containedType",
                    # the R4 modifier of _include and _revinclude that follows the included resources' own
                    # references (https://hl7.org/fhir/R4/search.html#include), sent as its own name
                    "_include:iterate", "_revinclude:iterate"}
R4_COMMON_PARAMS = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text", "_content", "_list",
                    "_has", "_type", "_query"}
R4_REFERENCE_PARAMS = {
    "Organization": {"endpoint", "partof"},
    "Patient": {"general-practitioner", "link", "organization"},
    "Practitioner": set(),
    "PractitionerRole": {"endpoint", "location", "organization", "practitioner", "service"},
    "Location": {"endpoint", "organization", "partof"},
    "Schedule": {"actor"},
    "Slot": {"schedule"},
    "Appointment": {"actor", "based-on", "location", "patient", "practitioner", "reason-reference", "slot",
                    "supporting-info"},
    "Encounter": {"account", "appointment", "based-on", "diagnosis", "episode-of-care", "location", "part-of",
                  "participant", "patient", "practitioner", "reason-reference", "service-provider", "subject"},
    "ServiceRequest": {"based-on", "encounter", "patient", "performer", "replaces", "requester", "specimen",
                       "subject"},
    "Coverage": {"beneficiary", "patient", "payor", "policy-holder", "subscriber"},
    "Claim": {"care-team", "encounter", "enterer", "facility", "insurer", "patient", "payee", "provider"},
    "ChargeItem": {"account", "context", "enterer", "patient", "performer-actor", "performing-organization",
                   "requesting-organization", "service", "subject"},
    "ClaimResponse": {"insurer", "patient", "request", "requestor"},
    # no "insurer": ExplanationOfBenefit.insurer has no search parameter in R4
    "ExplanationOfBenefit": {"care-team", "claim", "coverage", "encounter", "enterer", "facility", "patient",
                             "payee", "provider"},
    "PaymentReconciliation": {"payment-issuer", "request", "requestor"},
}
# the elements the reference parameters above that this server can include read (dotted: through lists)
INCLUDE_ELEMENTS = {"Coverage:payor": "payor", "Slot:schedule": "schedule", "Claim:insurer": "insurer",
                    "PractitionerRole:practitioner": "practitioner", "ExplanationOfBenefit:provider": "provider",
                    "ExplanationOfBenefit:claim": "claim", "ExplanationOfBenefit:patient": "patient",
                    "ExplanationOfBenefit:coverage": "insurance.coverage", "ClaimResponse:insurer": "insurer",
                    "PaymentReconciliation:payment-issuer": "paymentIssuer"}


def refusal(rtype: str, query: dict[str, list[str]]) -> str | None:
    """Why a real R4 server would refuse this search (None when it would not)."""
    for name in query:
        base_name = name.split(":", 1)[0]
        if name == "page" or base_name in R4_RESULT_PARAMS | R4_COMMON_PARAMS \
                or base_name in R4_REFERENCE_PARAMS.get(rtype, set()):
            continue
        return f"Unknown search parameter '{name}' for resource type '{rtype}'"
    for include in query.get("_include", []):
        target, _, param = include.partition(":")
        if target != rtype or param.split(":", 1)[0] not in R4_REFERENCE_PARAMS.get(rtype, set()):
            return f"Invalid _include parameter value: '{include}'"
    for include in query.get("_include:iterate", []):  # from the included resources: any type's parameter
        target, _, param = include.partition(":")
        if param.split(":", 1)[0] not in R4_REFERENCE_PARAMS.get(target, set()):
            return f"Invalid _include:iterate parameter value: '{include}'"
    return None


# the corpus files the pull tests serve, named so that what they serve stays the same as the corpus grows
# (the files of ../shared/corpus/fhir that hold valid resources of a pulled type)
PULL_CORPUS_FILES = (
    "carinkit__Bundle-searchset__1.json", "carinkit__Bundle-searchset__2.json", "carinkit__Coverage__1.json",
    "carinkit__Practitioner__1.json", "msfc__Bundle-batch-response__1.json", "msfc__Bundle-batch__1.json",
    "msfc__Bundle-batch__2.json", "msfc__Bundle-batch__3.json", "msfhirsrv__Appointment__1.json",
    "msfhirsrv__Bundle-batch__1.json", "msfhirsrv__Bundle-transaction__1.json",
    "msfhirsrv__Bundle-transaction__2.json", "msfhirsrv__ChargeItem__1.json", "msfhirsrv__ClaimResponse__1.json",
    "msfhirsrv__Claim__1.json", "msfhirsrv__Coverage__1.json", "msfhirsrv__Coverage__2.json",
    "msfhirsrv__Encounter__1.json", "msfhirsrv__Encounter__2.json", "msfhirsrv__ExplanationOfBenefit__1.json",
    "msfhirsrv__Location__1.json", "msfhirsrv__Location__2.json", "msfhirsrv__Organization__1.json",
    "msfhirsrv__Patient__1.json", "msfhirsrv__Practitioner__1.json", "msfhirsrv__Schedule__1.json",
    "msfhirsrv__ServiceRequest__1.json", "msfhirsrv__Slot__1.json",
)


def corpus_resources(folder: Path, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every valid resource of a pulled type in the corpus files ``names`` of ``folder`` (default: every
    JSON file there), once, stamped with a lastUpdated a minute apart."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    paths = [folder / name for name in names] if names is not None else sorted(folder.glob("*.json"))
    for path in paths:
        doc = load(path.read_bytes())
        found = [e.get("resource") for e in doc.get("entry") or ()] if doc["resourceType"] == "Bundle" else [doc]
        for res in found:
            if not isinstance(res, dict) or res.get("resourceType") not in PULL_TYPES or not res.get("id"):
                continue
            try:
                validate_resource(res, res["resourceType"])
            except Exception:
                continue
            seen.setdefault((res["resourceType"], res["id"]), res)
    out = []
    for n, res in enumerate(seen.values()):
        stamped = dict(res)
        stamped["meta"] = {**(res.get("meta") or {}), "lastUpdated": (START + dt.timedelta(minutes=n)).isoformat()}
        out.append(stamped)
    return out


def bundle_resources(path: Path, start: dt.datetime = START) -> list[dict[str, Any]]:
    """The resources of one Bundle file as a server holds them once the Bundle is loaded (a Synthea
    patient's transaction): every entry's resource, its ``urn:uuid`` references rewritten to the
    ``Type/id`` they name, stamped with a lastUpdated a minute apart in entry order."""
    doc = load(path.read_bytes())
    entries = [e for e in doc.get("entry") or () if isinstance(e.get("resource"), dict)]
    local = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries
             if isinstance(e.get("fullUrl"), str) and e["resource"].get("id")}

    def rewritten(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (local.get(v, v) if k == "reference" and isinstance(v, str) else rewritten(v))
                    for k, v in value.items()}
        return [rewritten(v) for v in value] if isinstance(value, list) else value

    out = []
    for n, entry in enumerate(entries):
        res = rewritten(entry["resource"])
        res["meta"] = {**(res.get("meta") or {}), "versionId": "1",
                       "lastUpdated": (start + dt.timedelta(minutes=n)).isoformat()}
        out.append(res)
    return out


class FhirTestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.resources = resources
        self.tokens = {"test-token"}
        self.faults: dict[str, list[int]] = {}  # "Type" or "Type#page" → statuses to answer first
        self.requests: list[str] = []
        self.public_key: Any = None
        self.client_id = "hub-test-client"
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/fhir"

    def add(self, resource: dict[str, Any]) -> None:
        with self.lock:
            self.resources.append(resource)


class Handler(BaseHTTPRequestHandler):
    server: FhirTestServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        import jwt

        if not self.path.startswith("/token"):
            return self._send(404, {})
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        try:
            claims = jwt.decode(form["client_assertion"][0], self.server.public_key, algorithms=["RS384", "ES384"],
                                audience=f"http://127.0.0.1:{self.server.server_address[1]}/token")
        except Exception:
            return self._send(401, {"error": "invalid_client"})
        if claims["iss"] != self.server.client_id or form["grant_type"] != ["client_credentials"]:
            return self._send(401, {"error": "invalid_client"})
        token = f"smart-{len(self.server.tokens)}"
        self.server.tokens.add(token)
        self._send(200, {"access_token": token, "token_type": "bearer", "expires_in": 300})

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        self.server.requests.append(self.path)
        if self.headers.get("Authorization", "").removeprefix("Bearer ") not in self.server.tokens:
            return self._send(401, {"resourceType": "OperationOutcome", "issue": []})
        rtype = parts.path.rstrip("/").rsplit("/", 1)[-1]
        query = urllib.parse.parse_qs(parts.query)
        page = int(query.get("page", ["1"])[0])
        for key in (f"{rtype}#{page}", rtype):
            queue = self.server.faults.get(key)
            if queue:
                status = queue.pop(0)
                return self._send(status, {}, {"Retry-After": "1"} if status == 429 else None)
        refused = refusal(rtype, query)
        if refused:
            return self._send(400, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "invalid", "details": {"text": refused}}]})
        count = int(query.get("_count", ["100"])[0])
        matches = [r for r in self.server.resources if r["resourceType"] == rtype]
        for cond in query.get("_lastUpdated", []):
            op, value = cond[:2], dt.datetime.fromisoformat(cond[2:])
            value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            stamp = lambda r: dt.datetime.fromisoformat(r["meta"]["lastUpdated"])  # noqa: E731
            matches = [r for r in matches if (stamp(r) >= value if op == "ge" else stamp(r) > value)]
        matches.sort(key=lambda r: r["meta"]["lastUpdated"])
        chunk = matches[(page - 1) * count: page * count]
        links = [{"relation": "self", "url": self.path}]
        if page * count < len(matches):
            nxt = {k: v for k, v in query.items()}
            nxt["page"] = [str(page + 1)]
            links.append({"relation": "next", "url": f"{self.server.base}/{rtype}?"
                                                     f"{urllib.parse.urlencode(nxt, doseq=True)}"})
        entries = [{"fullUrl": f"{self.server.base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                   for r in chunk]
        entries += [{"fullUrl": f"{self.server.base}/{r['resourceType']}/{r['id']}", "resource": r,
                     "search": {"mode": "include"}}
                    for r in self._included(chunk, query.get("_include", []), query.get("_include:iterate", []))]
        self._send(200, {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "link": links,
                         "entry": entries})

    def _included(self, chunk: list[dict[str, Any]], includes: list[str],
                  iterated: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The resources the page's matches refer to by the ``_include``d parameters, then those the
        included ones refer to by the ``_include:iterate``d ones (until nothing new), each once."""
        by_key = {f"{r['resourceType']}/{r['id']}": r for r in self.server.resources}
        wanted: list[str] = []
        sources, params = chunk, includes
        while sources:
            found = []
            for include in params:
                element = INCLUDE_ELEMENTS.get(include)
                for res in sources:
                    if element is None or res["resourceType"] != include.partition(":")[0]:
                        continue
                    for ref in _values(res, element):
                        target = ref.get("reference") if isinstance(ref, dict) else None
                        if isinstance(target, str) and target not in wanted and target in by_key:
                            wanted.append(target)
                            found.append(by_key[target])
            sources, params = found, list(iterated)
        return [by_key[key] for key in wanted]


def _values(resource: dict[str, Any], element: str) -> list[Any]:
    """The values at a dotted element path, through lists (``insurance.coverage``)."""
    values: list[Any] = [resource]
    for name in element.split("."):
        values = [v.get(name) for v in values if isinstance(v, dict)]
        values = [c for v in values for c in (v if isinstance(v, list) else [v])]
    return values


@contextmanager
def running(resources: list[dict[str, Any]]) -> Iterator[FhirTestServer]:
    server = FhirTestServer(resources)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
