"""Bearer-key authentication, role checks and the per-key rate limit for the web API.

``@require_roles("analyst", "admin")`` on a view: no or unknown key → 401, a key
of another role → 403, a key over its rate → 429 with ``Retry-After``. With
``practice_arg="slug"`` a ``feed`` key passes only for the practice named in that
URL argument (``admin`` passes for every practice). The authenticated key is in
``flask.g.api_key``.

``authorize`` is the one check behind it, for the decorator and for the intake
call's WSGI fast path (``hub.api.intake.IntakeFastPath``) alike.

A key's lookup is cached in the process for ``HUB_KEY_CACHE_SECONDS`` (default 5):
a revoked or expired key stops working within that many seconds, and a busy feed
costs no database round trip per request.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_smorest import abort

from hub.security.keys import ApiKey, authenticate
from hub.security.ratelimit import RateLimiter, retry_after_header

F = TypeVar("F", bound=Callable[..., Any])


class KeyCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, token: str, load: Callable[[], ApiKey | None]) -> ApiKey | None:
        if self.ttl_s <= 0:
            return load()
        digest = hashlib.sha256(token.encode()).hexdigest()  # never keep the token itself
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = load()
        with self._lock:
            if len(self._entries) > 10_000:  # unknown tokens must not grow the cache without bound
                self._entries.clear()
            self._entries[digest] = (now + self.ttl_s, key)
        return key


def auth_state(app: Flask | None = None) -> dict[str, Any]:
    """The app's key cache and rate limiter (``keys``, ``limiter``)."""
    extensions = (app or current_app).extensions
    ext = extensions.get("hub_auth")
    if not ext:
        with _state_lock:
            ext = extensions.get("hub_auth")
            if not ext:  # built whole before it is seen: other threads read it without the lock
                settings = extensions["hub"].settings
                ext = {"keys": KeyCache(settings.key_cache_seconds), "limiter": RateLimiter.from_settings(settings)}
                extensions["hub_auth"] = ext
    return ext


_state = auth_state
_state_lock = threading.Lock()


def bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def key_for_token(app: Flask, token: str) -> ApiKey | None:
    """The key behind a bearer token (cached, see above), or None."""
    runtime = app.extensions["hub"]

    def load() -> ApiKey | None:
        with runtime.engine.connect() as conn:
            return authenticate(conn, token)

    return auth_state(app)["keys"].lookup(token, load)


def current_key() -> ApiKey | None:
    token = bearer_token(request.headers.get("Authorization", ""))
    return key_for_token(current_app._get_current_object(), token) if token else None  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request's key may make the call: ``status`` 200, or the refusal's HTTP status with
    its message and headers, as the API answers it."""

    status: int
    message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.status == 200


ALLOWED = Decision(200)
_NO_KEY = Decision(401, "a valid API key is needed: Authorization: Bearer <key>")
_OTHER_PRACTICE = Decision(403, "this feed key belongs to another practice")


def authorize(key: ApiKey | None, *, roles: Collection[str], practice: str | None = None,
              limiter: RateLimiter) -> Decision:
    """The one check of a call's key, in this order: a key (401), within its rate (429, with
    ``Retry-After``; the request takes one of the key's tokens), of one of ``roles`` (403) and, for
    a ``feed`` key of a call that names a ``practice``, that practice's own (403)."""
    if key is None:
        return _NO_KEY
    wait = limiter.take(key.key_id)
    if wait > 0:
        return Decision(429, "too many requests for this key; slow down", {"Retry-After": retry_after_header(wait)})
    if key.role not in roles:
        return Decision(403, f"this call needs a key of role {' or '.join(roles)}")
    if practice is not None and key.role == "feed" and key.practice != practice:
        return _OTHER_PRACTICE
    return ALLOWED


# The environ entry in which a check made before Flask (the intake fast path, which leaves its
# refusals to the view) hands its outcome to the view: the request is checked, and counted, once.
DECIDED = "hub.authorized"


def hand_to_view(environ: dict[str, Any], key: ApiKey | None, roles: Collection[str], practice: str | None,
                 decision: Decision) -> None:
    """Leave ``authorize``'s refusal, made before Flask, for the view of the same call to answer."""
    environ[DECIDED] = (tuple(roles), practice, key, decision)


def _decide(roles: tuple[str, ...], practice: str | None) -> tuple[ApiKey | None, Decision]:
    decided = request.environ.pop(DECIDED, None)
    if decided is not None and decided[0] == roles and decided[1] == practice:
        return decided[2], decided[3]
    key = current_key()
    return key, authorize(key, roles=roles, practice=practice, limiter=_state()["limiter"])


def require_roles(*roles: str, practice_arg: str | None = None) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key, decision = _decide(roles, kwargs.get(practice_arg) if practice_arg else None)
            if key is not None:
                g.api_key = key
            if not decision.allowed:
                if decision.headers:
                    abort(decision.status, message=decision.message, headers=dict(decision.headers))
                abort(decision.status, message=decision.message)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def client_address() -> str | None:
    return request.remote_addr
