"""``hub serve``: the web app under gunicorn, with threaded workers.

Gunicorn runs ``HUB_WEB_WORKERS`` processes (default 2) of ``HUB_WEB_THREADS``
threads each (default 16): requests mostly wait on a commit, so threads are cheap
concurrency, and each process has one group-commit thread (hub.pipeline.group_commit).
The app is built in each worker after the fork (no shared connections).
``HUB_REQUEST_TIMEOUT`` (default 60 s) is the gunicorn worker timeout: a request
stuck longer than that has its worker restarted. Keep-alive is on (5 s) so a feed
reuses its connection.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication


class HubServer(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from hub.app import create_app
        from hub.logging import configure_logging

        configure_logging()
        return create_app()


def server_options(host: str, port: int, workers: int | None = None, threads: int | None = None) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers or int(os.environ.get("HUB_WEB_WORKERS", "2")),
        "threads": threads or int(os.environ.get("HUB_WEB_THREADS", "16")),
        "worker_class": "gthread",
        "timeout": int(os.environ.get("HUB_REQUEST_TIMEOUT", "60")),
        "graceful_timeout": 30,
        "keepalive": 5,
        "backlog": 2048,
        "accesslog": None,  # the app logs each request as JSON (hub.http), without query values
        "errorlog": "-",
        "loglevel": os.environ.get("HUB_LOG_LEVEL", "info").lower(),
        "proc_name": "hub-web",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
    }


def serve(host: str, port: int, workers: int | None = None, threads: int | None = None) -> None:
    HubServer(server_options(host, port, workers, threads)).run()
