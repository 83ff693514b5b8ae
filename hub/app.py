"""The web app factory: the API under /api/v1 (OpenAPI at /api/v1/openapi.json) and the dashboard.

Each API area is a module of ``hub.api`` exposing ``blp`` (a ``flask_smorest.Blueprint``); the
factory registers every area, then the plugins' blueprints.

Settings (the runtime's, ``hub.settings``): ``HUB_MAX_PAYLOAD`` (bytes, default 5 MiB; larger → 413),
``HUB_RATE_LIMIT`` / ``HUB_RATE_BURST`` (per key, see hub.security.ratelimit),
``HUB_TRUSTED_PROXIES`` (how many reverse proxies set X-Forwarded-For; default 0).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, jsonify, request
from flask_smorest import Api
from sqlalchemy import exc as sa_exc
from werkzeug.middleware.proxy_fix import ProxyFix

from hub import __version__, console
from hub.api import audit, dashboard, headers, identity, intake, messages, onboarding, reports
from hub.api.metrics import bp as metrics_bp
from hub.api.problems import HubApi, document_problems, problem_response, request_instance
from hub.pipeline.dispatch_buffer import buffer_dispatcher
from hub.runtime import Runtime
from hub.security.audit import AuditEntry, record
from hub.security.auth import client_address
from hub.store.engine import writer

API_AREAS = (intake, messages, audit, reports, onboarding, identity)
PAGE_AREAS = (dashboard, console)  # plain Flask blueprints (not in the OpenAPI document)
# endpoints that touch patient-level data: a refused request to them is audited too
AUDITED = {"intake.push_messages": "intake", "messages.list_messages": "messages.list",
           "messages.reprocess_message": "messages.reprocess", "messages.reprocess_messages": "messages.reprocess",
           "identity.Run": "identity.run", "identity.Review": "identity.review", "identity.Decide": "identity.decide",
           "identity.Link": "identity.link", "identity.Patient": "identity.explain",
           "identity.Split": "identity.split", "identity.Export": "identity.export",
           "reports.KpiRecords": "reports.drill"}

log = logging.getLogger("hub.http")


def create_app(runtime: Any = None, config: dict[str, Any] | None = None) -> Flask:
    runtime = runtime or Runtime.create()
    app = Flask("hub")
    app.config.update(
        API_TITLE="MSO Hub",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=runtime.settings.max_payload,
    )
    app.config.update(config or {})

    buffer_dispatcher(runtime)
    app.extensions["hub"] = runtime
    app.log_exception = _log_exception  # type: ignore[method-assign]
    api = HubApi(app, spec_kwargs={"components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]})
    for module in API_AREAS:
        api.register_blueprint(module.blp, url_prefix="/api/v1")
    for page in PAGE_AREAS:
        app.register_blueprint(page.bp)
    runtime.plugins.hook.hub_flask_blueprints(app=app)
    _document_payload_types(api, runtime)
    reports.document_formats(api)
    document_problems(api)

    app.register_blueprint(metrics_bp)
    _build_openapi_once(app)
    app.before_request(_refuse_oversized)
    app.before_request(_start_clock)
    app.after_request(_audit_refusal)
    app.after_request(_log_request)
    app.after_request(headers.harden)
    app.register_error_handler(sa_exc.OperationalError, _store_unavailable)
    app.register_error_handler(sa_exc.InterfaceError, _store_unavailable)
    # the push call's common case, without the framework (see hub.api.intake)
    app.wsgi_app = intake.IntakeFastPath(app.wsgi_app, app)  # type: ignore[method-assign]
    proxies = runtime.settings.trusted_proxies
    if proxies:  # outermost, so every path sees the real client address

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    @app.get("/healthz")
    def healthz() -> Any:
        try:
            with runtime.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            database = {"ok": True, "dialect": runtime.engine.dialect.name}
        except Exception as exc:  # report, never raise, from a health check
            database = {"ok": False, "error": type(exc).__name__}
        queue = runtime.dispatcher.describe()
        ok = bool(database["ok"] and queue.get("ok", True))
        return jsonify({"ok": ok, "database": database, "queue": queue}), 200 if ok else 503

    return app


def _document_payload_types(api: Api, runtime: Any) -> None:
    """The intake call reads whatever the installed connectors read: list their media types."""
    types = sorted({m for c in runtime.plugins.connectors.classes() for m in c.media_types})
    path = api.spec._paths.get("/api/v1/practices/{slug}/messages", {}).get("post")
    if path is not None:
        path["requestBody"] = {"required": True, "description": "one feed payload; the Content-Type picks "
                               "the connector", "content": {t: {"schema": {"type": "string"}} for t in types}}


def _store_unavailable(exc: Exception) -> Response:
    """The database is down or gone: a retryable 503, never a traceback or a 500."""
    log.error("the database is unavailable (%s)", type(exc).__name__)
    return problem_response(503, "the store is unavailable; retry later", headers={"Retry-After": "5"})


def _log_exception(exc_info: Any) -> None:
    """An unexpected exception of a view (answered 500): its type and the route template, never the filled-in
    path (an MRN may be in it) nor the traceback (it may quote values); the problem's instance id ties the
    answer to this line."""
    rule = request.url_rule.rule if request.url_rule else "(no route)"
    log.error("unexpected %s in %s %s", exc_info[0].__name__ if exc_info and exc_info[0] else "error",
              request.method, rule, extra={"request_id": request_instance()})


def _build_openapi_once(app: Flask) -> None:
    """The OpenAPI document is the same for the life of the process: built at its first call, not at every
    one (it costs milliseconds of CPU, and anyone may ask for it, as often as they like)."""
    endpoint = "api-docs.openapi_json"
    view: Any = app.view_functions.get(endpoint)
    if view is None:
        return
    built: list[bytes] = []

    def openapi_json() -> Response:
        if not built:
            built.append(view().get_data())
        return app.response_class(built[0], mimetype="application/json")

    app.view_functions[endpoint] = openapi_json


def _start_clock() -> None:
    g.started = time.perf_counter()


def _refuse_oversized() -> Any:
    limit = request.max_content_length
    length = request.content_length
    if limit is None or length is None or length <= limit:
        return None
    if length <= intake.DRAIN_LIMIT:  # a client blocked in send() would never read an early answer
        stream = request.environ["wsgi.input"]
        left = length
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
    g.started = time.perf_counter()
    return problem_response(413, f"the payload is {length} bytes; this server takes at most {limit}",
                            headers={"Connection": "close"} if length > intake.DRAIN_LIMIT else None)


def _audit_refusal(response: Response) -> Response:
    action = AUDITED.get(request.endpoint or "")
    if action is None and request.path.startswith("/api/v1/practices/") and request.method == "POST":
        action = "intake"
    if action is None or g.get("audited") or response.status_code == 429:
        return response

    key = g.get("api_key")
    view = request.view_args or {}
    slug = view.get("slug") or view.get("practice")
    target = (f"{slug}/{view['source_id']}" if "source_id" in view else slug) or next(
        (str(view[name]) for name in ("message_id", "pair_id") if name in view), None)
    try:
        with writer(current_app.extensions["hub"].engine).begin() as conn:
            record(conn, [AuditEntry(key.key_id if key else None, action, target, slug, client_address(),
                                     f"refused {response.status_code}")])
    except Exception as exc:
        log.error("could not write an audit entry (%s)", type(exc).__name__)
    return response


def _log_request(response: Response) -> Response:
    # the route template only: never a query value, a filled-in path or a body
    if not log.isEnabledFor(logging.INFO):
        return response
    started = g.get("started")
    key = g.get("api_key")
    log.info("%s %s %s", request.method, request.url_rule.rule if request.url_rule else "(no route)",
             response.status_code,
             extra={"key_id": key.key_id if key else None, "status": response.status_code,
                    "request_id": g.get("problem_instance"),
                    "duration_ms": round((time.perf_counter() - started) * 1e3, 2) if started else None,
                    "address": request.remote_addr})
    return response
