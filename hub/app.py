"""The web app factory: the API under /api/v1 (OpenAPI at /api/v1/openapi.json) and the dashboard.

Each API area is a module exposing ``blp`` (a ``flask_smorest.Blueprint``); the
factory registers every area module that is present, then the plugins' blueprints.
"""

from __future__ import annotations

import importlib
from typing import Any

from flask import Flask, jsonify
from flask_smorest import Api

from hub import __version__

API_AREAS = ("hub.api.intake", "hub.api.messages", "hub.api.audit", "hub.reports.api", "hub.onboarding.api")
PAGE_AREAS = ("hub.reports.dashboard",)  # plain Flask blueprints (not in the OpenAPI document)


def create_app(runtime: Any = None, config: dict[str, Any] | None = None) -> Flask:
    from hub.runtime import Runtime

    app = Flask("hub")
    app.config.update(
        API_TITLE="MSO Hub",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=5 * 1024 * 1024,
    )
    app.config.update(config or {})
    runtime = runtime or Runtime.create()
    app.extensions["hub"] = runtime
    api = Api(app, spec_kwargs={"components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}]})
    for name in API_AREAS:
        module = _optional(name)
        if module is not None:
            api.register_blueprint(module.blp, url_prefix="/api/v1")
    for name in PAGE_AREAS:
        module = _optional(name)
        if module is not None:
            app.register_blueprint(module.bp)
    runtime.plugins.hook.hub_flask_blueprints(app=app)

    @app.get("/healthz")
    def healthz() -> Any:
        import sqlalchemy as sa

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


def _optional(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
