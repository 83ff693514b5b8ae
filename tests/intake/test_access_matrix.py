"""Access control as a matrix: every route the app serves × every kind of caller, against the policy written
here from the HTTP contract (../shared/DESIGN.md), not read from the code. A route added without a line in
``POLICY`` fails the test, so none can be missed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from hub.app import create_app
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.security.keys import create_key
from hub.store import writer
from hub.store.practices import add_practice

from . import feedline as feedline_plugin
from .conftest import FEEDLINE, feedline

PUBLIC = "anyone"
# a console page (hub.console): admins only; with no key at all a browser is sent to the sign-in form
ADMIN_PAGE = "admin page"
# (method, route with {params}) → who may call it: a set of callers, or PUBLIC
POLICY: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/practices/{slug}/messages"): {"feed-own", "admin"},
    ("GET", "/api/v1/practices/{slug}/scorecard"): {"admin"},
    ("GET", "/api/v1/messages"): {"admin"},
    ("POST", "/api/v1/messages/reprocess"): {"admin"},
    ("POST", "/api/v1/messages/{message_id}/reprocess"): {"admin"},
    ("GET", "/api/v1/audit"): {"admin"},
    ("GET", "/api/v1/reports/kpis"): {"analyst", "admin"},
    ("GET", "/api/v1/reports/kpis/{kpi}/records"): {"analyst", "admin"},  # patient-level: audited
    # the master patient index: which records are one person is patient-level data, for admins only
    ("POST", "/api/v1/identity/run"): {"admin"},
    ("GET", "/api/v1/identity/review"): {"admin"},
    ("POST", "/api/v1/identity/review/{pair_id}"): {"admin"},
    ("POST", "/api/v1/identity/link"): {"admin"},
    ("GET", "/api/v1/identity/patients/{practice}/{source_id}"): {"admin"},
    ("POST", "/api/v1/identity/patients/{practice}/{source_id}/split"): {"admin"},
    ("GET", "/api/v1/identity/export"): {"admin"},
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # counts per practice and status, no patient data (restrict it at the proxy)
    ("GET", "/"): PUBLIC,  # the dashboard page: its data comes from the API, with the analyst's key
    ("GET", "/static/{filename}"): PUBLIC,
    # the operations console: the sign-in form and its stylesheet are public, every page is an admin's
    ("GET", "/console/login"): PUBLIC,
    ("POST", "/console/login"): PUBLIC,
    ("GET", "/console/static/{filename}"): PUBLIC,
    **{route: ADMIN_PAGE for route in (
        ("GET", "/console/"), ("GET", "/console/feeds"), ("GET", "/console/messages"),
        ("GET", "/console/messages/{message_id}"), ("POST", "/console/messages/{message_id}/reprocess"),
        ("POST", "/console/messages/reprocess"), ("GET", "/console/errors"), ("POST", "/console/errors/reprocess"),
        ("GET", "/console/onboarding"), ("GET", "/console/onboarding/{slug}"), ("GET", "/console/keys"),
        ("POST", "/console/keys"), ("POST", "/console/keys/{key_id}/revoke"), ("GET", "/console/audit"),
        ("POST", "/console/logout"))},
}
CALLERS = ("none", "unknown-key", "feed-own", "feed-other", "analyst", "admin")


@pytest.fixture(scope="module")
def app_and_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str | None]]]:
    folder = tmp_path_factory.mktemp("matrix")
    url = f"sqlite:///{folder / 'hub.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("HUB_DATABASE_URL", url)
    mp.setenv("HUB_KEY_CACHE_SECONDS", "0")
    mp.setenv("HUB_RATE_LIMIT", "0")
    runtime = Runtime.create(database_url=url, dispatcher="inline", plugins=load_plugins(extra=[feedline_plugin]))
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
        add_practice(conn, "beta", "Beta")
        keys: dict[str, str | None] = {
            "none": None, "unknown-key": "hub_000000000000_notasecret",
            "feed-own": create_key(conn, "feed", "alpha"), "feed-other": create_key(conn, "feed", "beta"),
            "analyst": create_key(conn, "analyst"), "admin": create_key(conn, "admin")}
    yield create_app(runtime), keys
    mp.undo()


def _routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, route) the app serves: its URL map and its OpenAPI document, as ``{param}`` routes."""
    found = set()
    for rule in app.url_map.iter_rules():
        route = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found |= {(m, route) for m in rule.methods - {"HEAD", "OPTIONS"}}
    document = app.test_client().get("/api/v1/openapi.json").json
    for path, operations in document["paths"].items():
        found |= {(m.upper(), "/api/v1" + path if not path.startswith("/api/v1") else path)
                  for m in operations if m in ("get", "post", "put", "patch", "delete")}
    return found


def test_every_route_has_a_policy(app_and_keys: Any) -> None:
    app, _ = app_and_keys
    missing = sorted(_routes(app) - set(POLICY))
    assert not missing, f"routes without an access policy in this matrix: {missing}"


def _call(client: Any, method: str, route: str, key: str | None) -> int:
    path = route.format(slug="alpha", message_id=1, filename="none.css", practice="alpha", source_id="MRN1",
                        pair_id=1, key_id="000000000000", kpi="no_show_rate")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if method == "POST" and route.endswith("/messages"):
        return int(client.post(path, data=feedline(("MRN1", "Family", "Given", "F")),
                               headers={**headers, "Content-Type": FEEDLINE}).status_code)
    return int(client.open(path, method=method, headers=headers).status_code)


@pytest.mark.parametrize("caller", CALLERS)
def test_each_caller_gets_what_the_policy_gives(app_and_keys: Any, caller: str) -> None:
    app, keys = app_and_keys
    client = app.test_client()
    wrong = []
    for (method, route), allowed in sorted(POLICY.items()):
        status = _call(client, method, route, keys[caller])
        if allowed == ADMIN_PAGE:
            allowed = {"admin"}
            if caller == "none":  # a browser without a session: to the sign-in form
                if status != 302:
                    wrong.append(f"{method} {route}: {status} for {caller}, expected 302 to the sign-in form")
                continue
        if status >= 500:
            wrong.append(f"{method} {route}: {status} for {caller}")
        elif allowed == PUBLIC or caller in allowed:
            if status in (401, 403):
                wrong.append(f"{method} {route}: {status}, but {caller} may call it")
        elif caller in ("none", "unknown-key"):
            if status != 401:
                wrong.append(f"{method} {route}: {status} for {caller}, expected 401")
        elif status != 403:
            wrong.append(f"{method} {route}: {status} for {caller}, expected 403")
    assert not wrong, "\n".join(wrong)
