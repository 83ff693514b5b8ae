"""Pulling from a practice's FHIR server: searches by ``_lastUpdated``, paging, retries, auth.

``FhirPoller`` is the connector's poller (``hub.connector.Poller``): it reads, the core stores.
For each resource type it searches ``<base>/<Type>?_lastUpdated=ge<mark>&_sort=_lastUpdated``
and follows ``Bundle.link`` ``next``, yielding each page (one searchset message per matched
resource, with the included resources it refers to) with the newest ``meta.lastUpdated`` on it
as the cursor. The core (``hub.pipeline.pull``) stores the page through the ordinary intake and
only then moves the type's high-water mark to that cursor, so a rerun, or a run after a crash,
resumes where the stored data ends. ``ge`` (not ``gt``) re-reads the resources stamped with the
mark itself: a few repeats, never a gap; each repeat is the same resource version as a stored
message, so it is a duplicate, not stored or counted as accepted again. A server that ignores
``_sort`` is noticed (a page older than the one before) and the mark is then given only once
the whole type has been read.

429 answers wait for ``Retry-After`` (seconds or an HTTP date); 5xx answers and network
errors are retried with exponential backoff; an answer that stops the run names what the
server's OperationOutcome says. Authentication: a bearer token, or SMART backend services
(client credentials with a signed JWT assertion, RS384 or ES384).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hub.connector import Page, Poller
from hub.errors import ConfigError, HubError
from hub.settings import current

PULL_TYPES = ("Organization", "Patient", "Practitioner", "PractitionerRole", "Location", "Schedule", "Slot",
              "Appointment", "Encounter", "ServiceRequest", "Coverage", "Claim", "ChargeItem", "ClaimResponse",
              "ExplanationOfBenefit", "PaymentReconciliation")
# The R4 search parameters the pull sends, checked by the tests against the R4 search-parameter list
# (https://hl7.org/fhir/R4/searchparameter-registry.html), which the test server enforces as real
# servers do (400 + OperationOutcome for an unknown parameter or _include):
# - on every type: the result parameters _count, _sort, _include (and its :iterate form) and the common
#   parameter _lastUpdated;
SEARCH_PARAMS = ("_count", "_sort", "_lastUpdated", "_include", "_include:iterate")
# - _include <Type>:<reference search parameter of Type>, so that a resource maps on its own (payer
#   names, slot owners);
INCLUDES = {"Coverage": "Coverage:payor", "Slot": "Slot:schedule", "Claim": "Claim:insurer",
            "ClaimResponse": "ClaimResponse:insurer", "PractitionerRole": "PractitionerRole:practitioner",
            "PaymentReconciliation": "PaymentReconciliation:payment-issuer"}
# - ExplanationOfBenefit.insurer has no R4 search parameter: an EOB's payer Organization is reached
#   through its coverage (EOB.insurance.coverage, 1..1 in R4), whose payor is the insurer:
#   _include=ExplanationOfBenefit:coverage&_include:iterate=Coverage:payor. The Coverage is only the
#   way there (it is pulled as its own type): it is left out of the EOB's message, its payor kept.
#   Without it (a server that ignores :iterate), the payer is the insurer reference's display, else id.
ITERATED = {"ExplanationOfBenefit": ("ExplanationOfBenefit:coverage", "Coverage:payor")}
STEPS = {"ExplanationOfBenefit": frozenset({"Coverage"})}  # included only to reach what they refer to
OUTCOME_SHOWN = 300  # characters of a server's OperationOutcome shown in an error
OUTCOME_READ = 65536  # bytes of an error answer read for its OperationOutcome
MAX_WAIT = 300.0  # never sleep longer than this for one Retry-After


class PullError(HubError):
    """The FHIR server could not be read."""


def _setting(config: Mapping[str, Any], key: str, env: str) -> str | None:
    value = config.get(key) or current().env(env)
    return str(value) if value else None


class BearerToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def header(self) -> str:
        return f"Bearer {self.token}"

    def invalidate(self) -> bool:
        return False  # a fixed token cannot be renewed


class SmartBackendAuth:
    """SMART backend services: a JWT signed with the client's private key buys an access token."""

    def __init__(self, client_id: str, token_url: str, private_key: str, scope: str = "system/*.read",
                 opener: Callable[..., Any] = urllib.request.urlopen) -> None:
        self.client_id, self.token_url, self.scope = client_id, token_url, scope
        text = private_key
        if not text.lstrip().startswith("-----BEGIN"):
            try:
                text = Path(private_key).read_text()
            except OSError as exc:
                raise ConfigError("the fhir private_key is neither PEM text nor a readable file "
                                  f"({exc.strerror})") from None
        self.private_key = text
        self.opener = opener
        self._token: str | None = None
        self._expires = 0.0

    def _algorithm(self) -> str:
        # the signing libraries only for SMART backend services, not for every pull or the ingest path
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(self.private_key.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the fhir private_key is not a usable PEM private key ({type(exc).__name__})") from None
        return "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384"

    def assertion(self) -> str:
        import jwt  # as above: only when a client assertion is signed

        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "exp": now + 300,
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.private_key, algorithm=self._algorithm())

    def header(self) -> str:
        if self._token is None or time.time() > self._expires:
            form = urllib.parse.urlencode({
                "grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self.assertion()}).encode()
            request = urllib.request.Request(self.token_url, data=form, method="POST", headers={
                "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
            try:
                with self.opener(request, timeout=30) as resp:
                    answer = orjson.loads(resp.read())
            except urllib.error.HTTPError as exc:
                raise PullError(f"the SMART token endpoint refused the client ({exc.code})") from None
            except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
                raise PullError(f"the SMART token endpoint could not be read ({type(exc).__name__})") from None
            if not isinstance(answer, dict) or not answer.get("access_token"):
                raise PullError("the SMART token endpoint answered without an access_token")
            self._token = str(answer["access_token"])
            self._expires = time.time() + max(int(answer.get("expires_in") or 300) - 30, 10)
        return f"Bearer {self._token}"

    def invalidate(self) -> bool:
        self._token = None
        return True


def auth_from(config: Mapping[str, Any]) -> BearerToken | SmartBackendAuth | None:
    client_id = _setting(config, "client_id", "HUB_FHIR_CLIENT_ID")
    if client_id:
        token_url = _setting(config, "token_url", "HUB_FHIR_TOKEN_URL")
        key = _setting(config, "private_key", "HUB_FHIR_PRIVATE_KEY")
        if not token_url or not key:
            raise ConfigError("SMART backend services needs client_id, token_url and private_key "
                              "(or HUB_FHIR_CLIENT_ID, HUB_FHIR_TOKEN_URL, HUB_FHIR_PRIVATE_KEY)")
        return SmartBackendAuth(client_id, token_url, key, str(config.get("scope") or "system/*.read"))
    token = _setting(config, "token", "HUB_FHIR_TOKEN")
    return BearerToken(token) if token else None


def retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


@dataclass
class FhirClient:
    auth: BearerToken | SmartBackendAuth | None = None
    attempts: int = 5
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    waits: list[float] = field(default_factory=list)  # what was slept, for the run summary

    def get(self, url: str) -> bytes:
        renewed = False
        for attempt in range(1, self.attempts + 1):
            headers = {"Accept": "application/fhir+json"}
            if self.auth is not None:
                headers["Authorization"] = self.auth.header()
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return resp.read()
            except urllib.error.HTTPError as exc:
                try:
                    said = outcome_text(exc.read(OUTCOME_READ))
                except (OSError, ValueError):
                    said = ""
                finally:
                    exc.close()
                if exc.code == 401 and not renewed and self.auth is not None and self.auth.invalidate():
                    renewed = True  # an expired access token: fetch a new one once
                    continue
                if exc.code != 429 and exc.code < 500:
                    raise PullError(f"the FHIR server answered {exc.code} to {_shown(url)}{said}") from None
                if attempt == self.attempts:
                    raise PullError(f"the FHIR server still answered {exc.code} to {_shown(url)} "
                                    f"after {self.attempts} attempts{said}") from None
                wait = retry_after(exc.headers.get("Retry-After")) if exc.code in (429, 503) else None
                self._wait(wait if wait is not None else self.backoff * 2 ** (attempt - 1))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.attempts:
                    raise PullError(f"the FHIR server could not be reached at {_shown(url)} "
                                    f"({type(exc).__name__})") from None
                self._wait(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _wait(self, seconds: float) -> None:
        seconds = min(max(seconds, 0.0), MAX_WAIT)
        self.waits.append(seconds)
        self.sleep(seconds)


def outcome_text(body: bytes) -> str:
    """What a server's OperationOutcome says, for an error message: each issue's ``code`` and
    ``diagnostics`` (else ``details.text``), on one line, cut at ``OUTCOME_SHOWN`` characters;
    "" when the body is not an OperationOutcome. The text is the server's word about the request
    (an unknown parameter, a bad token), never a resource's content."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(doc, dict) or doc.get("resourceType") != "OperationOutcome":
        return ""
    said = []
    for issue in doc.get("issue") or ():
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None)
        parts = [str(p) for p in (issue.get("code"), text) if isinstance(p, str) and p]
        if parts:
            said.append(": ".join(parts))
    shown = " ".join("; ".join(said).split())  # one line, whatever the server's layout
    if not shown:
        return ""
    if len(shown) > OUTCOME_SHOWN:
        shown = shown[:OUTCOME_SHOWN - 3] + "..."
    return f" (OperationOutcome: {shown})"


def _shown(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # the query may name patients; keep it out


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def search_url(base: str, resource_type: str, mark: str | None, page_size: int) -> str:
    params = [("_count", str(page_size)), ("_sort", "_lastUpdated")]
    if mark:
        params.append(("_lastUpdated", f"ge{mark}"))
    if resource_type in INCLUDES:
        params.append(("_include", INCLUDES[resource_type]))
    if resource_type in ITERATED:
        first, *then = ITERATED[resource_type]
        params.append(("_include", first))
        params += [("_include:iterate", include) for include in then]
    return f"{base.rstrip('/')}/{resource_type}?{urllib.parse.urlencode(params)}"


def next_link(doc: dict[str, Any]) -> str | None:
    for link in doc.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def per_resource(doc: dict[str, Any], resource_type: str) -> tuple[tuple[bytes, ...], list[dict[str, Any]]]:
    """A searchset page as one message per matched resource (and the matched resources): a
    searchset Bundle of the resource's entry and the included entries it refers to, directly or
    through another included one (``_include:iterate``), in page order; an included resource that
    is only the way to another (``STEPS``) is left out. Each message is then deduplicated by its
    resources' versions and fails alone, whatever else shares its page, so a page read again (the
    rerun at the mark) stores nothing new."""
    entries = [e for e in doc.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    matches = [e for e in entries if e["resource"].get("resourceType") == resource_type]
    included = [e for e in entries if e["resource"].get("resourceType") not in (resource_type, "OperationOutcome")]
    keys: dict[str, list[int]] = {}
    for n, entry in enumerate(included):
        res = entry["resource"]
        for key in (f"{res.get('resourceType')}/{res.get('id')}" if res.get("id") else None, entry.get("fullUrl")):
            if isinstance(key, str):
                keys.setdefault(key, []).append(n)
    steps = STEPS.get(resource_type, frozenset())
    payloads = []
    for entry in matches:
        wanted: set[int] = set()
        todo = [entry["resource"]] if keys else []
        while todo:  # what the resource refers to, then what those refer to, each once
            for ref in _references(todo.pop()):
                for n in keys.get(ref, ()) or keys.get(_relative(ref), ()):
                    if n not in wanted:
                        wanted.add(n)
                        todo.append(included[n]["resource"])
        kept = [included[n] for n in sorted(wanted) if included[n]["resource"].get("resourceType") not in steps]
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [entry, *kept]}
        payloads.append(orjson.dumps(bundle))
    return tuple(payloads), [e["resource"] for e in matches]


def _references(value: Any) -> Iterator[str]:
    """Every ``reference`` string inside a resource."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            elif isinstance(item, dict | list):
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _relative(reference: str) -> str:
    """``Type/id`` of an absolute or versioned reference (``http://x/fhir/Type/id/_history/2``)."""
    parts = reference.split("/_history/", 1)[0].rstrip("/").rsplit("/", 2)
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


class FhirPoller(Poller):
    """Reads a practice's FHIR server at ``base``, type by type, page by page (see the module's docstring).

    ``config`` is the practice's fhir settings (``token`` or the SMART ones, ``page_size``,
    ``resource_types``); ``client`` replaces the HTTP client made from them (tests give one that
    does not sleep)."""

    def __init__(self, base: str, config: Mapping[str, Any] | None = None, *,
                 client: FhirClient | None = None) -> None:
        config = config or {}
        self.source = base
        self.client = client or FhirClient(auth=auth_from(config))
        self.page_size = int(config.get("page_size") or 100)
        self.types: Sequence[str] = tuple(config.get("resource_types") or PULL_TYPES)

    def resource_types(self) -> Sequence[str]:
        return self.types

    def poll(self, resource_type: str, cursor: str | None) -> Iterator[Page]:
        url: str | None = search_url(self.source, resource_type, cursor, self.page_size)
        newest: dt.datetime | None = None
        newest_text: str | None = None
        in_order = True
        while url:
            body = self.client.get(url)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise PullError(f"the FHIR server sent a page that is not JSON from {_shown(url)}") from None
            if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":  # an OperationOutcome, say
                raise PullError(f"the FHIR server sent something other than a Bundle from {_shown(url)}"
                                f"{outcome_text(body)}")
            payloads, matches = per_resource(doc, resource_type)
            stamps = [(t, r["meta"]["lastUpdated"]) for r in matches if isinstance(r.get("meta"), dict)
                      and (t := _instant(r["meta"].get("lastUpdated"))) is not None]
            mark = None
            if stamps:
                oldest_on_page = min(s[0] for s in stamps)
                if newest is not None and oldest_on_page < newest:
                    in_order = False  # the server ignores _sort: give the mark once the type is done
                page_newest = max(stamps, key=lambda s: s[0])
                if newest is None or page_newest[0] > newest:
                    newest, newest_text = page_newest
                if in_order:
                    mark = newest_text
            yield Page(payloads=payloads, cursor=mark, resources=len(matches))
            url = next_link(doc)
        if newest_text and not in_order:
            yield Page(cursor=newest_text, read=False)  # the whole type is stored: the mark may move
