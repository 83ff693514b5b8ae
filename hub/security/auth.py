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

from flask import current_app, g, request
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


def _state() -> dict[str, Any]:
    ext = current_app.extensions.setdefault("hub_auth", {})
    if not ext:
        ext["keys"] = KeyCache(float(os.environ.get("HUB_KEY_CACHE_SECONDS", "5")))
        ext["limiter"] = RateLimiter.from_env()
    return ext


def current_key() -> ApiKey | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    runtime = current_app.extensions["hub"]

    def load() -> ApiKey | None:
        with runtime.engine.connect() as conn:
            return authenticate(conn, token)

    return _state()["keys"].lookup(token, load)


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
