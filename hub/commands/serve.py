"""``hub serve``: the web app under gunicorn, with threaded workers.

Gunicorn runs ``HUB_WEB_WORKERS`` processes (default 2) of ``HUB_WEB_THREADS``
threads each (default 16): requests mostly wait on a commit, so threads are cheap
concurrency, and each process has one group-commit thread (hub.pipeline.group_commit).
The app is built in each worker after the fork (no shared connections).
``HUB_REQUEST_TIMEOUT`` (default 60 s) is the gunicorn worker timeout: a request
stuck longer than that has its worker restarted. Keep-alive is on (5 s) so a feed
reuses its connection. The worker class is gunicorn's threaded worker with each request
read by its event loop before a thread takes it, under ``HUB_HEADER_TIMEOUT`` and
``HUB_BODY_TIMEOUT`` (hub.web_worker): a slow client holds no thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import click

from hub.settings import current

_log = logging.getLogger("hub.serve")


def hub_server(options: dict[str, Any]) -> Any:
    """The gunicorn application (gunicorn imported here: not by ``hub --help``)."""
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
            # the app and its libraries (flask, the store) imported in the worker, not by ``hub --help``
            from hub.app import create_app
            from hub.identity.background import IdentityTicker
            from hub.logging import configure_logging
            from hub.pipeline.sweeper import Sweeper
            from hub.reports.background import ReportRefresher

            configure_logging()
            app = _when_the_store_answers(create_app)
            Sweeper(app.extensions["hub"]).start()  # per worker process, after the fork (hub.pipeline.sweeper)
            IdentityTicker(app.extensions["hub"]).start()  # patients linked in batches (hub.identity.background)
            ReportRefresher(app.extensions["hub"]).start()  # report rollups kept current (hub.reports.background)
            return app

    return HubServer(options)


def _when_the_store_answers(build: Callable[[], Any]) -> Any:
    """The app of a worker, built once the store answers. The master checked the store before the first
    worker; a worker started later (after a crash or a restart) may meet a database that is down for a
    while, and gunicorn shuts the whole server down when a worker fails to boot: the worker waits instead
    (if it waits past ``HUB_REQUEST_TIMEOUT``, gunicorn starts another)."""
    from hub.errors import StoreError

    delay = 0.5
    while True:
        try:
            return build()
        except StoreError as exc:
            _log.error("a web worker cannot open the store yet (%s); it tries again in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def server_options(host: str, port: int, workers: int | None = None, threads: int | None = None) -> dict[str, Any]:
    from hub.web_worker import HubThreadWorker

    settings = current()
    return {
        "bind": f"{host}:{port}",
        "workers": workers or settings.web_workers,
        "threads": threads or settings.web_threads,
        "worker_class": HubThreadWorker,  # gthread, with requests read by its event loop (hub.web_worker)
        "timeout": settings.request_timeout,
        "graceful_timeout": 30,
        "keepalive": 5,
        "backlog": 2048,
        "sendfile": False,  # every answer through the worker's write-behind (hub.web_worker), files too
        "accesslog": None,  # the app logs each request as JSON (hub.http), without query values
        "errorlog": "-",
        "loglevel": (settings.log_level or "info").lower(),
        "proc_name": "hub-web",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
    }


def run_server(host: str, port: int, workers: int | None = None, threads: int | None = None) -> None:
    hub_server(server_options(host, port, workers, threads)).run()


@click.command()
@click.option("--host", default=lambda: current().host, show_default="127.0.0.1",
              help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(1, 65535), default=lambda: current().port,
              show_default="8000")
@click.option("--workers", type=click.IntRange(1, 64), help="Server processes (HUB_WEB_WORKERS, default 2).")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads per process (HUB_WEB_THREADS, default 16).")
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Run the web API and dashboard (gunicorn, threaded workers)."""
    from hub.runtime import Runtime
    from hub.store.engine import dispose_engines

    Runtime.create()  # open and upgrade the store once, before any worker starts; fail here if it cannot
    dispose_engines()  # no pooled connection may cross the fork into the workers
    run_server(host, port, workers, threads)
