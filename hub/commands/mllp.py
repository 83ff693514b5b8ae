"""``hub mllp``: run the MLLP listener."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from hub.errors import ConfigError

if TYPE_CHECKING:
    import ssl  # imported by tls_context: every command line start imports this module


def start_after_processing_work(runtime: Any) -> None:
    """Where messages are processed: patients linked and report rollups refreshed in batches (in the
    listener, or in its processing child, away from the answers)."""
    from hub.identity.background import IdentityTicker
    from hub.reports.background import ReportRefresher

    IdentityTicker(runtime).start()  # patients linked in batches (hub.identity.background)
    ReportRefresher(runtime).start()  # report rollups kept current (hub.reports.background)


@click.command()
@click.option("--practice", help="Every message on this port belongs to this practice. Without it, the "
              "sending facility (MSH-4) picks the registered practice.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(0, 65535), required=True, help="TCP port to listen on.")
@click.option("--connector", "connector_name", default="hl7v2", show_default=True,
              help="The connector that splits and answers the messages.")
@click.option("--max-size", type=click.IntRange(min=1024), default=1_048_576, show_default=True,
              help="Largest message accepted, in bytes; larger ones are refused.")
@click.option("--idle-timeout", type=click.FloatRange(min=0.1), default=600.0, show_default=True,
              help="Seconds a connection may stay silent before it is closed.")
@click.option("--frame-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds a client may take to send one whole message (and to take its answer).")
@click.option("--max-connections", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Connections at once; one more closes the longest idle one.")
@click.option("--ack-after-processing", is_flag=True,
              help="Without a queue (HUB_REDIS_URL unset): process each message before its ACK, so that a "
              "message stored but not usable is answered AE, not AA; about half the speed on one connection.")
@click.pass_context
def mllp(ctx: click.Context, practice: str | None, host: str, port: int, connector_name: str, max_size: int,
         idle_timeout: float, frame_timeout: float, max_connections: int, ack_after_processing: bool) -> None:
    """The MLLP listener: stores each message, then answers it (ACK) on the same connection."""
    from hub.logging import configure_logging
    from hub.mllp.server import Limits, MllpServer
    from hub.pipeline.dispatch_buffer import buffer_dispatcher
    from hub.pipeline.sweeper import Sweeper
    from hub.store.practices import get_practice

    configure_logging()
    runtime = ctx.obj.runtime
    connector = runtime.plugins.connectors.get(connector_name)
    if practice:
        with runtime.engine.connect() as conn:
            get_practice(conn, practice)  # an unknown practice is a start-up error, not a stream of rejections
    # the ids of many small group commits go to the queue in batches; without a queue they are processed
    # after the answer, by a child process (a sender on one connection waits for each answer before it
    # sends the next: hub.pipeline.dispatch_buffer), which also runs the work that follows processing
    in_child = buffer_dispatcher(runtime, after_answer=not ack_after_processing,
                                 on_child_start=start_after_processing_work)
    limits = Limits(max_size=max_size, idle_timeout=idle_timeout, frame_timeout=frame_timeout,
                    max_connections=max_connections)
    tls = tls_context(runtime.settings.mllp_tls_cert, runtime.settings.mllp_tls_key)
    Sweeper(runtime).start()  # messages a crash left received are processed again (hub.pipeline.sweeper)
    if not in_child:
        start_after_processing_work(runtime)
    MllpServer(runtime, connector, practice=practice, host=host, port=port, limits=limits,
                tls=tls).run()


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server side of MLLP over TLS (HUB_MLLP_TLS_CERT / HUB_MLLP_TLS_KEY); None for plain TCP."""
    if not cert:
        if key:
            raise ConfigError("HUB_MLLP_TLS_KEY is set without HUB_MLLP_TLS_CERT")
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"HUB_MLLP_TLS_CERT / HUB_MLLP_TLS_KEY: cannot load the certificate and key "
                          f"({cert}): {exc.strerror or exc}") from None
    return context
