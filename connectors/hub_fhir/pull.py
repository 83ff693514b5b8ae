"""Pulling from a practice's FHIR server: searches by ``_lastUpdated``, paging, retries, auth.

``FhirPoller`` is the connector's poller (``hub.connector.Poller``): it reads, the core stores.
For each resource type it searches ``<base>/<Type>?_lastUpdated=ge<mark>&_sort=_lastUpdated``
and follows ``Bundle.link`` ``next``, yielding each page (one searchset message) with the
newest ``meta.lastUpdated`` on it as the cursor. The core (``hub.pipeline.pull``) stores the
page through the ordinary intake and only then moves the type's high-water mark to that
cursor, so a rerun, or a run after a crash, resumes where the stored data ends. ``ge`` (not
``gt``) re-reads the resources stamped with the mark itself: a few repeats, never a gap; the
canonical upsert is idempotent. A server that ignores ``_sort`` is noticed (a page older than
the one before) and the mark is then given only once the whole type has been read.

429 answers wait for ``Retry-After`` (seconds or an HTTP date); 5xx answers and network
errors are retried with exponential backoff. Authentication: a bearer token, or SMART
backend services (client credentials with a signed JWT assertion, RS384 or ES384).
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
              "ExplanationOfBenefit")
# referenced resources asked for alongside, so that a page maps on its own (payer names, slot owners)
INCLUDES = {"Coverage": "Coverage:payor", "Slot": "Slot:schedule", "Claim": "Claim:insurer",
            "ExplanationOfBenefit": "ExplanationOfBenefit:insurer", "PractitionerRole": "PractitionerRole:practitioner"}
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
                    return resp.read()  # type: ignore[no-any-return]
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 401 and not renewed and self.auth is not None and self.auth.invalidate():
                    renewed = True  # an expired access token: fetch a new one once
                    continue
                if exc.code != 429 and exc.code < 500:
                    raise PullError(f"the FHIR server answered {exc.code} to {_shown(url)}") from None
                if attempt == self.attempts:
                    raise PullError(f"the FHIR server still answered {exc.code} to {_shown(url)} "
                                    f"after {self.attempts} attempts") from None
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
    return f"{base.rstrip('/')}/{resource_type}?{urllib.parse.urlencode(params)}"


def next_link(doc: dict[str, Any]) -> str | None:
    for link in doc.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]  # type: ignore[no-any-return]
    return None


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
            if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
                raise PullError(f"the FHIR server sent something other than a Bundle from {_shown(url)}")
            matches = [e["resource"] for e in doc.get("entry") or () if isinstance(e, dict)
                       and isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == resource_type]
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
            yield Page(payloads=(body,) if doc.get("entry") else (), cursor=mark, resources=len(matches))
            url = next_link(doc)
        if newest_text and not in_order:
            yield Page(cursor=newest_text, read=False)  # the whole type is stored: the mark may move
