"""``GET /metrics``: Prometheus text exposition, computed from the store and the queue at scrape time.

Counting from the message store (not from in-process counters) makes every
server process, worker and MLLP listener agree without a shared metrics
registry, and the figures survive restarts. A scrape costs a few grouped
queries on indexed columns; scrape every 15-60 s, not every second.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app

from hub.model.tables import messages

bp = Blueprint("metrics", __name__)


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render(runtime: Any) -> str:
    now = dt.datetime.now(dt.UTC)
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[tuple[dict[str, Any], float]]) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{inner}}} {value}" if inner else f"{name} {value}")

    with runtime.engine.connect() as conn:
        by_status = conn.execute(sa.select(messages.c.practice, messages.c.connector, messages.c.status,
                                           sa.func.count()).group_by(messages.c.practice, messages.c.connector,
                                                                     messages.c.status)).all()
        last = conn.execute(sa.select(messages.c.practice, sa.func.max(messages.c.received_at))
                            .group_by(messages.c.practice)).all()
        oldest = conn.execute(sa.select(sa.func.min(messages.c.queued_at))
                              .where(messages.c.status == "received")).scalar()
    received: dict[tuple[str, str], int] = {}
    for practice, connector, _status, n in by_status:
        received[(practice, connector)] = received.get((practice, connector), 0) + n
    metric("hub_messages_received_total", "counter", "Messages received (every arrival, duplicates included)",
           [({"practice": p, "connector": c}, n) for (p, c), n in sorted(received.items())])
    for status, name, text in (("processed", "hub_messages_processed_total", "Messages processed"),
                               ("error", "hub_messages_failed_total", "Messages in error (see hub messages list)"),
                               ("duplicate", "hub_messages_duplicate_total", "Repeat arrivals of stored content"),
                               ("received", "hub_messages_pending", "Messages stored, not yet processed")):
        metric(name, "gauge" if status == "received" else "counter", text,
               [({"practice": p, "connector": c}, n) for p, c, s, n in sorted(by_status) if s == status])
    metric("hub_practice_last_message_age_seconds", "gauge", "Seconds since each practice's last message",
           [({"practice": p}, round((now - _aware(t)).total_seconds(), 3)) for p, t in sorted(last) if t])
    metric("hub_oldest_pending_message_age_seconds", "gauge", "Age of the oldest message waiting to be processed",
           [({}, round((now - _aware(oldest)).total_seconds(), 3) if oldest else 0.0)])
    queue = runtime.dispatcher.describe()
    metric("hub_queue_up", "gauge", "1 when the processing queue is reachable", [({}, 1 if queue.get("ok") else 0)])
    if "queued_jobs" in queue:
        metric("hub_queue_depth_jobs", "gauge", "Jobs waiting in the queue (each a batch of messages)",
               [({"queue": queue.get("queue", "hub")}, float(queue["queued_jobs"]))])
    return "\n".join(lines) + "\n"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(render(current_app.extensions["hub"]), mimetype="text/plain; version=0.0.4")
