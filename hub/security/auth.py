"""Bearer-key authentication, role checks and the per-key rate limit for the web API.

``@require_roles("analyst", "admin")`` on a view: no or unknown key → 401, a key
of another role → 403, a key over its rate → 429 with ``Retry-After``. With
``practice_arg="slug"`` a ``feed`` key passes only for the practice named in that
URL argument (``admin`` passes for every practice). The authenticated key is in
``flask.g.api_key``.

A key's lookup is cached in the process for ``HUB_KEY_CACHE_SECONDS`` (default 5):
a revoked or expired key stops working within that many seconds, and a busy feed
costs no database round trip per request.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable
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
                ext = {"keys": KeyCache(float(os.environ.get("HUB_KEY_CACHE_SECONDS", "5"))),
                       "limiter": RateLimiter.from_env()}
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


def require_roles(*roles: str, practice_arg: str | None = None) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = current_key()
            if key is None:
                abort(401, message="a valid API key is needed: Authorization: Bearer <key>")
            assert key is not None
            g.api_key = key
            wait = _state()["limiter"].take(key.key_id)
            if wait > 0:
                abort(429, message="too many requests for this key; slow down",
                      headers={"Retry-After": retry_after_header(wait)})
            if key.role not in roles:
                abort(403, message=f"this call needs a key of role {' or '.join(roles)}")
            if practice_arg and key.role == "feed" and key.practice != kwargs.get(practice_arg):
                abort(403, message="this feed key belongs to another practice")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def client_address() -> str | None:
    return request.remote_addr
