"""``hub mllp``: run the MLLP listener."""

from __future__ import annotations

import click

from hub.identity.background import IdentityTicker
from hub.logging import configure_logging
from hub.mllp.server import Limits, MllpServer
from hub.pipeline.dispatch_buffer import buffer_dispatcher
from hub.pipeline.sweeper import Sweeper
from hub.store.practices import get_practice


def register(cli: click.Group) -> None:
    cli.add_command(mllp)


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
              help="Seconds a client may take to send one whole message.")
@click.pass_context
def mllp(ctx: click.Context, practice: str | None, host: str, port: int, connector_name: str, max_size: int,
         idle_timeout: float, frame_timeout: float) -> None:
    """The MLLP listener: stores each message, then answers it (ACK) on the same connection."""
    configure_logging()
    runtime = ctx.obj.runtime
    connector = runtime.plugins.connectors.get(connector_name)
    if practice:
        with runtime.engine.connect() as conn:
            get_practice(conn, practice)  # an unknown practice is a start-up error, not a stream of rejections
    buffer_dispatcher(runtime)  # the ids of many small group commits go to the queue in batches
    limits = Limits(max_size=max_size, idle_timeout=idle_timeout, frame_timeout=frame_timeout)
    Sweeper(runtime).start()  # messages a crash left received are processed again (hub.pipeline.sweeper)
    IdentityTicker(runtime).start()  # patients linked in batches (hub.identity.background)
    MllpServer(runtime, connector, practice=practice, host=host, port=port, limits=limits).run()
