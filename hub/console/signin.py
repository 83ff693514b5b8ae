"""Who is at the console: an admin key, from a session cookie (a browser) or a bearer header (a script).

A browser signs in once with an admin key and gets a session cookie: ``key id . started . seen .
nonce . signature``, signed (HMAC-SHA256) with the stored hash of the key's secret. Nothing of a
session is kept server-side, so every ``hub serve`` worker checks any cookie alike, and:

- revoking or expiring the key ends its sessions at once (the signature no longer verifies);
- a session ends after ``HUB_CONSOLE_IDLE_MINUTES`` without a request (automatic log-off: each
  answer renews ``seen``) and 12 hours after sign-in in any case;
- the cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` and ``Secure`` whenever the
  request came over HTTPS (directly or through a trusted proxy, ``HUB_TRUSTED_PROXIES``).

Every form carries a CSRF token derived from the session (its signature key and nonce), checked on
every POST with the request's ``Origin`` (or ``Referer``); a bearer-header request needs neither, as
no browser sends that header on its own.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, url_for
from werkzeug.wrappers import Response

from hub.security.auth import auth_state, current_key
from hub.security.keys import ApiKey, signing_secret

COOKIE = "hub_console"
MAX_SESSION_S = 12 * 3600
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Signed:
    key: ApiKey
    started: int
    nonce: str
    secret: bytes

    @property
    def csrf(self) -> str:
        return _mac(self.secret, f"csrf.{self.key.key_id}.{self.started}.{self.nonce}")[:32]

    def cookie(self, now: int) -> str:
        body = f"{self.key.key_id}.{self.started}.{now}.{self.nonce}"
        return f"{body}.{_mac(self.secret, body)}"


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def _engine() -> Any:
    return current_app.extensions["hub"].engine


def start(key: ApiKey) -> Signed | None:
    """A new session for ``key`` (None when the key is no longer live)."""
    with _engine().connect() as conn:
        found = signing_secret(conn, key.key_id)
    if found is None:
        return None
    return Signed(found[0], int(time.time()), secrets.token_urlsafe(16), found[1])


def verify(cookie: str, now: int | None = None) -> Signed | None:
    """The session a cookie stands for, or None: malformed, forged, idle too long, too old, or its key
    revoked or expired."""
    parts = cookie.split(".")
    if len(parts) != 5 or not all(parts):
        return None
    key_id, started_s, seen_s, nonce, signature = parts
    if not (started_s.isdigit() and seen_s.isdigit()) or len(key_id) > 32:
        return None
    now = int(time.time()) if now is None else now
    idle = current_app.extensions["hub"].settings.console_idle_minutes * 60
    started, seen = int(started_s), int(seen_s)
    if now - seen > idle or now - started > MAX_SESSION_S or seen > now + 60:
        return None
    with _engine().connect() as conn:
        found = signing_secret(conn, key_id)
    if found is None:
        return None
    expected = _mac(found[1], f"{key_id}.{started_s}.{seen_s}.{nonce}")
    if not hmac.compare_digest(expected, signature):
        return None
    return Signed(found[0], started, nonce, found[1])


def set_cookie(response: Response, session: Signed) -> None:
    response.set_cookie(COOKIE, session.cookie(int(time.time())), httponly=True, samesite="Strict",
                        secure=request.is_secure, path="/console")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="Strict", secure=request.is_secure)


def same_origin() -> bool:
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return False
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def check_form() -> None:
    """A browser's POST: from this origin, with its session's CSRF token (else 403)."""
    session: Signed | None = g.get("console_session")
    if session is None:  # a script with a bearer header
        return
    if not same_origin() or not hmac.compare_digest(request.form.get("csrf", ""), session.csrf):
        abort(403, "this form is stale or came from another site: reload the page and try again")


def admin_page(view: F) -> F:
    """A console page: an admin key by bearer header or session cookie. No key: to the sign-in form
    (a script: 401); a key of another role: 403; over the key's rate: 429."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = None
        key = current_key() if request.headers.get("Authorization") else None
        if key is None and not request.headers.get("Authorization"):
            session = verify(request.cookies.get(COOKIE, ""))
            key = session.key if session else None
        if key is None:
            if request.headers.get("Authorization"):
                abort(401)
            return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
        if auth_state()["limiter"].take(key.key_id) > 0:
            abort(429)
        if key.role != "admin":
            abort(403, "the operations console is for admin keys")
        g.api_key, g.console_session = key, session
        if request.method == "POST":
            check_form()
        response = current_app.make_response(view(*args, **kwargs))
        if g.get("console_session") is not None:  # renew the idle clock (not on the way out)
            set_cookie(response, g.console_session)
        return response

    return wrapper  # type: ignore[return-value]
