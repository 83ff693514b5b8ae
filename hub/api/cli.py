"""``hub serve``: the web API and dashboard under gunicorn."""

from __future__ import annotations

import os

import click


def register(cli: click.Group) -> None:
    cli.add_command(serve)


@click.command()
@click.option("--host", default=lambda: os.environ.get("HUB_HOST", "127.0.0.1"), show_default="127.0.0.1",
              help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(1, 65535), default=lambda: int(os.environ.get("HUB_PORT", "8000")),
              show_default="8000")
@click.option("--workers", type=click.IntRange(1, 64), help="Server processes (HUB_WEB_WORKERS, default 2).")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads per process (HUB_WEB_THREADS, default 16).")
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Run the web API and dashboard (gunicorn, threaded workers)."""
    from hub.api.server import serve as run
    from hub.runtime import Runtime

    Runtime.create()  # open and upgrade the store once, before any worker starts; fail here if it cannot
    from hub.store.engine import dispose_engines

    dispose_engines()  # no pooled connection may cross the fork into the workers
    run(host, port, workers, threads)
