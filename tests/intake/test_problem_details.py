"""Every API error is one shape: an RFC 9457 problem document (``application/problem+json``: type, title,
status, detail, instance; ``code`` and ``message`` kept for clients of the earlier shape). The walk takes
every operation of the served OpenAPI document and sends it bad requests (no key, a key of another role,
a method it does not take, an invalid parameter or body, a path naming nothing); an operation added later
is walked too. Statuses the walk cannot provoke on a healthy server (429, 500, 503) are checked in-process."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from hub.app import create_app
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.security.keys import create_key
from hub.store import writer
from hub.store.practices import add_practice

from . import feedline as feedline_plugin
from .conftest import FEEDLINE, Server, feedline

NOTHING = {"kpi": "no-such-kpi", "slug": "no-such-practice", "practice": "no-such-practice",
           "source_id": "NO-SUCH-RECORD", "message_id": str(2**40), "pair_id": str(2**40)}
EXISTING = {"slug": "alpha", "practice": "alpha", "source_id": "P1", "message_id": "1", "pair_id": "1",
            "kpi": "no_show_rate"}
# a body each JSON operation accepts, so that what is refused is the path (404), not the body
BODIES = {("post", "/api/v1/identity/review/{pair_id}"): {"decision": "accept"}}
# the required query of an operation, so that what is refused is the path (404), not the query
QUERIES = {("get", "/api/v1/reports/kpis/{kpi}/records"): "?site=alpha&month=2025-03"}


def assert_problem(answer: tuple[int, bytes, dict[str, str]], status: int | set[int], what: str) -> dict[str, Any]:
    got, body, headers = answer
    expected = status if isinstance(status, set) else {status}
    assert got in expected, f"{what}: {got} {body[:300]!r}"
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert content_type.split(";")[0] == "application/problem+json", f"{what}: {content_type}"
    doc = json.loads(body)
    assert doc["type"] == "about:blank" and doc["status"] == got and doc["title"] == HTTPStatus(got).phrase, what
    assert isinstance(doc["detail"], str) and doc["detail"], what
    assert doc["instance"].startswith("urn:uuid:") and len(doc["instance"]) == 45, what
    assert doc["code"] == got and doc["message"] == doc["detail"], what  # the earlier shape's members
    return doc


def operations(server: Server) -> Iterator[tuple[str, str, dict[str, Any]]]:
    document = json.loads(server.call("GET", "/api/v1/openapi.json")[1])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, operation


def fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no test value for a parameter of {path}"
    return path


def invalid(schema: dict[str, Any]) -> str | None:
    """A value the parameter's schema refuses, or None when every text passes."""
    if "enum" in schema:
        return "not-one-of-them"
    if schema.get("type") in ("integer", "boolean"):
        return "not-a-number-nor-a-truth"
    if schema.get("format") in ("date", "date-time"):
        return "not-a-date"
    if "maxLength" in schema:
        return "x" * (schema["maxLength"] + 1)
    return None


def request(server: Server, method: str, path: str, key: str | None, operation: dict[str, Any],
            body: Any = None, query: str = "") -> tuple[int, bytes, dict[str, str]]:
    if operation.get("operationId") == "pushMessages":
        return server.call(method.upper(), path + query, key, feedline(("M9", "Doe", "Jane", "F")), FEEDLINE)
    if body is not None:
        return server.call(method.upper(), path + query, key, json.dumps(body).encode(), "application/json")
    return server.call(method.upper(), path + query, key, b"" if method == "post" else None)


def test_every_operation_answers_bad_requests_with_a_problem_document(server: Server) -> None:
    walked = 0
    for method, route, operation in operations(server):
        what = f"{method.upper()} {route}"
        path = fill(route, EXISTING)
        assert_problem(request(server, method, path, None, operation), 401, f"{what} without a key")
        assert_problem(request(server, method, path, "hub_000000000000_notasecret", operation), 401,
                       f"{what} with an unknown key")
        other_role = server.keys["feed_beta"] if operation.get("operationId") == "pushMessages" \
            else server.keys["feed_alpha"]
        assert_problem(request(server, method, path, other_role, operation), 403, f"{what} with another role's key")
        problem = assert_problem(server.call("DELETE", path, server.keys["admin"]), 405, f"DELETE {route}")
        assert method.upper() in problem["detail"]  # it says which methods the route takes

        for parameter in operation.get("parameters", []):
            value = invalid(parameter["schema"]) if parameter["in"] == "query" else None
            if value is None:
                continue
            problem = assert_problem(request(server, method, path, server.keys["admin"], operation,
                                             body=BODIES.get((method, route)),
                                             query=f"?{parameter['name']}={value}"), 422,
                                     f"{what} with an invalid {parameter['name']}")
            assert parameter["name"] in problem["errors"]["query"], problem  # the field errors, by location
            assert parameter["name"] in problem["detail"]
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            problem = assert_problem(request(server, method, path, server.keys["admin"], operation, body={}), 422,
                                     f"{what} with an empty JSON body")
            assert problem["errors"]["json"], problem
            assert_problem(server.call(method.upper(), path, server.keys["admin"], b"{not json", "application/json"),
                           {400, 422}, f"{what} with a body that is not JSON")
        if "{" in route:
            assert_problem(request(server, method, fill(route, NOTHING), server.keys["admin"], operation,
                                   body=BODIES.get((method, route)), query=QUERIES.get((method, route), "")),
                           404, f"{what} naming nothing")
        walked += 1
    assert walked >= 14  # every operation of the document today (intake, messages, audit, reports, identity, ...)


def test_intake_refusals_and_unknown_routes_are_problem_documents(server: Server) -> None:
    feed = server.keys["feed_alpha"]
    push = "/api/v1/practices/alpha/messages"
    assert_problem(server.call("POST", push, feed, b"hello", "image/png"), 415, "an unread Content-Type")
    assert_problem(server.call("POST", push, feed, b"", FEEDLINE), 400, "an empty body")
    big = b"FEEDLINE\n" + b"x" * (6 * 1024 * 1024)
    assert_problem(server.call("POST", push, feed, big, FEEDLINE), 413, "a payload over HUB_MAX_PAYLOAD")
    assert_problem(server.call("GET", "/api/v1/no-such-route", feed), 404, "an unknown route")


def test_report_parameters_are_named_as_query_parameters(server: Server) -> None:
    analyst = server.keys["analyst"]
    problem = assert_problem(server.call("GET", "/api/v1/reports/kpis?by=site,galaxy", analyst), 400, "a bad by")
    assert problem["detail"].startswith("query parameter by: unknown dimension 'galaxy'"), problem
    assert "--by" not in problem["detail"] and problem["errors"] == {"query": {"by": [problem["detail"][20:]]}}
    problem = assert_problem(server.call("GET", "/api/v1/reports/kpis?by=site,week&from=9999-01-01", analyst),
                             400, "a year past the reports' span")
    assert "9999-01-01" in problem["detail"]
    assert_problem(server.call("GET", "/api/v1/reports/kpis?format=pdf", analyst), 422, "an unknown format")
    status, body, headers = server.call("GET", "/api/v1/reports/kpis?format=csv", analyst)
    assert status == 200 and headers["Content-Type"].startswith("text/csv") and body.startswith(b"section,")
    status, body, headers = server.call("GET", "/api/v1/reports/kpis?format=xlsx", analyst)
    assert status == 200 and body[:2] == b"PK" and "spreadsheetml" in headers["Content-Type"]  # a zip: XLSX


def test_a_tampered_message_is_refused_for_reprocessing_and_left_untouched(server: Server) -> None:
    admin = server.keys["admin"]
    status, _, headers = server.call("POST", "/api/v1/practices/alpha/messages", server.keys["feed_alpha"],
                                     feedline(("T1", "Tamper", "Tess", "F")), FEEDLINE)
    assert status == 200
    message_id = int(headers["X-Hub-Message-Ids"])
    database = server.env["HUB_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:  # a change made behind the hub's back: one letter of the name
        db.execute("UPDATE messages SET raw = replace(raw, 'Tamper', 'Tamped') WHERE id = ?", (message_id,))
        before = db.execute("SELECT raw, status, content_hash, queued_at FROM messages WHERE id = ?",
                            (message_id,)).fetchone()
    db.close()
    for call in (f"/api/v1/messages/{message_id}/reprocess", "/api/v1/messages/reprocess?status=processed"):
        problem = assert_problem(server.call("POST", call, admin), 409, f"reprocess {call}")
        assert f"message(s) {message_id} " in problem["detail"] and "no longer matches" in problem["detail"]
        assert problem["errors"] == {"messages": [message_id]} and "Tess" not in problem["detail"]
    with sqlite3.connect(database) as db:
        after = db.execute("SELECT raw, status, content_hash, queued_at FROM messages WHERE id = ?",
                           (message_id,)).fetchone()
        outcomes = [r[0] for r in db.execute("SELECT outcome FROM audit_log WHERE action = 'messages.reprocess'")]
    db.close()
    assert after == before  # untouched: not requeued, not re-read
    assert outcomes[-2:] == ["refused: content altered"] * 2


def app_client(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, rate: str) -> tuple[Any, dict[str, str]]:
    """An in-process app (no server: these answers need a fault injected into it) and an admin's header."""
    url = f"sqlite:///{tmp_path / f'hub-{rate}.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_KEY_CACHE_SECONDS", "0")
    monkeypatch.setenv("HUB_RATE_LIMIT", rate)
    monkeypatch.setenv("HUB_RATE_BURST", "2")
    runtime = Runtime.create(database_url=url, dispatcher="inline", plugins=load_plugins(extra=[feedline_plugin]))
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
        key = create_key(conn, "admin")
    return create_app(runtime).test_client(), {"Authorization": f"Bearer {key}"}


def answer(response: Any) -> tuple[int, bytes, dict[str, str]]:
    return response.status_code, response.data, dict(response.headers)


def test_a_rate_limited_call_is_a_problem_document(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, auth = app_client(tmp_path, monkeypatch, "1")
    answers = [answer(client.get("/api/v1/audit", headers=auth)) for _ in range(4)]  # a burst of 2 at 1 a second
    assert_problem(answers[-1], 429, "over the key's rate")
    assert int(answers[-1][2]["Retry-After"]) >= 1


def test_failed_and_unavailable_calls_are_problem_documents_without_data(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import hub.api.audit as audit_api

    client, auth = app_client(tmp_path, monkeypatch, "0")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("patient Jane Doe born 1980-02-03")  # an exception whose text quotes data

    monkeypatch.setattr(audit_api, "list_entries", broken)
    with caplog.at_level("INFO", logger="hub"):
        failed = answer(client.get("/api/v1/audit", headers=auth))
    problem = assert_problem(failed, 500, "an unexpected exception")
    assert "Jane" not in json.dumps(problem) and "Jane" not in caplog.text and "1980" not in caplog.text
    # the log line of the failure and the answer share the occurrence's id
    assert problem["instance"] in [getattr(r, "request_id", None) for r in caplog.records if r.levelname == "ERROR"]

    def down(*args: Any, **kwargs: Any) -> Any:
        raise sa_exc.OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(audit_api, "list_entries", down)
    unavailable = answer(client.get("/api/v1/audit", headers=auth))
    assert_problem(unavailable, 503, "the store down")
    assert unavailable[2]["Retry-After"] == "5"
