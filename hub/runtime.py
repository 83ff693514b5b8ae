"""What a running hub holds: the settings, the store, the plugins and the dispatcher.

Built by the CLI and the app factory (never at import time). ``Runtime.create`` takes the
settings of the environment as it is at that moment (``hub.settings.current()``) unless it is
given some; code that has a runtime reads ``runtime.settings``."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import sqlalchemy as sa

from hub.pipeline.dispatch import Dispatcher, resolve_dispatcher
from hub.plugins import Plugins, load_plugins
from hub.settings import Settings, current
from hub.store.engine import database_url as database_url_of
from hub.store.engine import get_engine


@dataclass
class Runtime:
    engine: sa.Engine
    plugins: Plugins
    database_url: str
    settings: Settings = field(default_factory=current)
    dispatcher: Dispatcher = field(init=False)
    # slugs seen registered (practices are never removed): intake checks each once per process
    known_practices: set[str] = field(default_factory=set, init=False, repr=False)

    @classmethod
    def create(cls, *, database_url: str | None = None, plugins: Plugins | None = None,
               dispatcher: str | None = None, settings: Settings | None = None) -> Runtime:
        settings = settings or current()
        url = database_url_of(database_url or settings.database_url)
        runtime = cls(engine=get_engine(url, settings=settings), plugins=plugins or load_plugins(settings=settings),
                      database_url=url, settings=settings)
        runtime.dispatcher = resolve_dispatcher(runtime, dispatcher)
        tune_garbage_collector()
        return runtime


def tune_garbage_collector() -> None:
    """Ingest makes millions of short-lived dicts and few cycles: with Python's default thresholds
    the cycle collector took a fifth of ingest's CPU time, rescanning the same long-lived objects.
    Those (modules, plugins, the engine) are frozen out of its reach, and it runs less often."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
