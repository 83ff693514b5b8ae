"""API keys: 32 random bytes, shown once, stored as a SHA-256 hash.

A key reads ``hub_<key id>_<secret>``. The key id is public (it names the key in
the audit log); the secret's hash is compared in constant time. A slow password
hash is not needed: the secret has 256 bits of entropy, nothing to guess.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub.errors import HubError, NotFound
from hub.model.tables import api_keys, practices

ROLES = ("feed", "analyst", "admin")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    role: str
    practice: str | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(conn: sa.Connection, role: str, practice: str | None = None, *, label: str | None = None,
               expires_at: dt.datetime | None = None) -> str:
    """Store a new key and return its full text (the only time it is seen)."""
    if role not in ROLES:
        raise HubError(f"role must be one of {', '.join(ROLES)}")
    if role == "feed" and not practice:
        raise HubError("a feed key belongs to one practice: give --practice SLUG")
    if role != "feed" and practice:  # refused rather than stored and ignored: the role sees every practice
        raise HubError(f"an {role} key sees every practice: --practice applies to feed keys only")
    if practice and not conn.execute(sa.select(practices.c.slug).where(practices.c.slug == practice)).first():
        raise NotFound(f"no practice {practice!r} is registered")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    conn.execute(sa.insert(api_keys).values(key_id=key_id, secret_hash=_hash(secret), role=role,
                                            practice=practice, label=label,
                                            created_at=dt.datetime.now(dt.UTC), expires_at=expires_at))
    return f"hub_{key_id}_{secret}"


def authenticate(conn: sa.Connection, presented: str) -> ApiKey | None:
    """The key behind a bearer token, or None when it is unknown, revoked or expired."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "hub":
        return None
    _, key_id, secret = parts
    row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    expected = row.secret_hash if row else _hash("not a key")  # compare anyway: no timing hint
    if not hmac.compare_digest(expected, _hash(secret)) or row is None:
        return None
    now = dt.datetime.now(dt.UTC)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return ApiKey(row.key_id, row.role, row.practice)


def revoke_key(conn: sa.Connection, key_id: str) -> None:
    result = conn.execute(sa.update(api_keys).where(api_keys.c.key_id == key_id)
                          .values(revoked_at=dt.datetime.now(dt.UTC)))
    if result.rowcount == 0:
        raise NotFound(f"no key with id {key_id!r}")


def list_keys(conn: sa.Connection) -> list[dict[str, Any]]:
    cols = [c for c in api_keys.c if c.name != "secret_hash"]
    return [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(api_keys.c.created_at))]


def signing_secret(conn: sa.Connection, key_id: str) -> tuple[ApiKey, bytes] | None:
    """A live key by its id, with the stored hash of its secret, which signs what the key's holder was given
    (a console session): only the store knows it, and revoking the key voids what it signed."""
    row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= dt.datetime.now(dt.UTC):
        return None
    return ApiKey(row.key_id, row.role, row.practice), bytes.fromhex(row.secret_hash)
