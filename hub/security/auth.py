"""Bearer-key authentication and role checks for the web API.

``@require_roles("analyst", "admin")`` on a view: no or unknown key → 401, a key
of another role → 403. With ``practice_arg="slug"`` a ``feed`` key passes only for
the practice named in that URL argument (``admin`` passes for every practice).
The authenticated key is in ``flask.g.api_key``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request
from flask_smorest import abort

from hub.security.keys import ApiKey, authenticate

F = TypeVar("F", bound=Callable[..., Any])


def current_key() -> ApiKey | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    runtime = current_app.extensions["hub"]
    with runtime.engine.connect() as conn:
        return authenticate(conn, token.strip())


def require_roles(*roles: str, practice_arg: str | None = None) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = current_key()
            if key is None:
                abort(401, message="a valid API key is needed: Authorization: Bearer <key>")
            assert key is not None
            if key.role not in roles:
                abort(403, message=f"this call needs a key of role {' or '.join(roles)}")
            if practice_arg and key.role == "feed" and key.practice != kwargs.get(practice_arg):
                abort(403, message="this feed key belongs to another practice")
            g.api_key = key
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
