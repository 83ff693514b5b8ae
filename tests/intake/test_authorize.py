"""One check of a call's key (hub.security.auth.authorize), for the Flask views and the intake fast path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from hub.errors import HubError
from hub.security.auth import auth_state, authorize
from hub.security.keys import ApiKey, create_key, list_keys
from hub.security.ratelimit import RateLimiter
from hub.store.engine import writer
from hub.store.practices import add_practice

from .conftest import FEEDLINE, ROOT, feedline

FEED = ApiKey("f1", "feed", "alpha")
ADMIN = ApiKey("a1", "admin", None)
ANALYST = ApiKey("n1", "analyst", None)


class CountingLimiter(RateLimiter):
    """A limiter that lets ``allow`` requests through per key, then asks for a wait; it counts each take."""

    def __init__(self, allow: int = 1_000) -> None:
        super().__init__(rate=1.0)
        self.allow = allow
        self.taken: dict[str, int] = {}

    def take(self, key: str) -> float:
        self.taken[key] = self.taken.get(key, 0) + 1
        return 0.0 if self.taken[key] <= self.allow else 2.5


def test_the_checks_and_their_order() -> None:
    limiter = CountingLimiter()
    intake = ("feed", "admin")
    assert authorize(None, roles=intake, practice="alpha", limiter=limiter).status == 401
    assert limiter.taken == {}  # no key, nothing counted
    assert authorize(FEED, roles=intake, practice="alpha", limiter=limiter).allowed
    assert authorize(ADMIN, roles=intake, practice="beta", limiter=limiter).allowed  # admin: every practice
    assert authorize(FEED, roles=("feed",), limiter=limiter).allowed  # a call that names no practice
    other = authorize(FEED, roles=intake, practice="beta", limiter=limiter)
    assert (other.status, other.message) == (403, "this feed key belongs to another practice")
    role = authorize(ANALYST, roles=intake, practice="alpha", limiter=limiter)
    assert (role.status, role.message) == (403, "this call needs a key of role feed or admin")
    assert limiter.taken == {"f1": 3, "a1": 1, "n1": 1}  # every request of a key counts, refused or not


def test_a_key_over_its_rate_is_told_so_whatever_it_asks() -> None:
    limiter = CountingLimiter(allow=0)
    decision = authorize(ANALYST, roles=("feed", "admin"), practice="alpha", limiter=limiter)
    assert (decision.status, dict(decision.headers)) == (429, {"Retry-After": "3"})  # 2.5 s, rounded up
    assert decision.message == "too many requests for this key; slow down"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.syspath_prepend(str(ROOT))  # the test connector is tests.intake.feedline
    monkeypatch.setenv("HUB_PLUGINS", "tests.intake.feedline")
    monkeypatch.setenv("HUB_KEY_CACHE_SECONDS", "0")
    from hub.app import create_app
    from hub.runtime import Runtime

    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'auth.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
        add_practice(conn, "beta", "Beta")
        keys = {"feed": create_key(conn, "feed", "alpha"), "admin": create_key(conn, "admin"),
                "analyst": create_key(conn, "analyst")}
    app = create_app(runtime)
    app.config["keys"] = keys
    return app


def push(client: Any, slug: str, key: str | None, n: int) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(f"/api/v1/practices/{slug}/messages", data=feedline((f"M{n}", "F", "G", "F")),
                       content_type=FEEDLINE, headers=headers)


def test_fast_path_and_view_refuse_alike_and_count_a_request_once(app: Flask) -> None:
    keys = app.config["keys"]
    client = app.test_client()
    assert push(client, "alpha", keys["feed"], 0).status_code == 200  # through the view: alpha becomes known
    assert push(client, "beta", keys["admin"], 1).status_code == 200  # and beta
    assert {"alpha", "beta"} <= app.extensions["hub"].known_practices  # from here on the fast path decides
    limiter = CountingLimiter(allow=3)
    auth_state(app)["limiter"] = limiter
    feed_id = keys["feed"].split("_")[1]
    answers = [push(client, "beta", keys["feed"], 2 + i) for i in range(4)]
    assert [a.status_code for a in answers] == [403, 403, 403, 429]  # each refusal took one token, not two
    assert limiter.taken[feed_id] == 4
    assert answers[0].get_json()["message"] == "this feed key belongs to another practice"
    assert answers[3].headers["Retry-After"] == "3"
    assert answers[3].get_json()["message"] == "too many requests for this key; slow down"
    analyst = push(client, "alpha", keys["analyst"], 9)
    assert (analyst.status_code, analyst.get_json()["message"]) == (403, "this call needs a key of role feed or admin")
    unknown = push(client, "alpha", "hub_nokey_nosecret", 10)
    assert (unknown.status_code, unknown.get_json()["message"]) == (
        401, "a valid API key is needed: Authorization: Bearer <key>")
    # the views outside the fast path make the same check
    assert client.get("/api/v1/messages", headers={"Authorization": f"Bearer {keys['analyst']}"}).status_code == 403
    assert client.get("/api/v1/messages", headers={"Authorization": f"Bearer {keys['admin']}"}).status_code == 200


def test_a_practice_scope_that_a_role_cannot_honour_is_refused_at_creation(runtime) -> None:
    """An analyst or admin key sees every practice: a --practice given with it is refused, never stored
    and silently ignored."""
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "pb", "PB")
    for role in ("analyst", "admin"):
        with pytest.raises(HubError, match="feed keys only"), writer(runtime.engine).begin() as conn:
            create_key(conn, role, "pb")
    with runtime.engine.connect() as conn:
        assert list_keys(conn) == []
