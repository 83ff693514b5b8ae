"""``hub settings``: the effective settings, secrets as ``***``; ``--markdown``: docs/settings.md."""

from __future__ import annotations

import click

from hub.commands.base import State, dumps, pass_state


@click.command("settings")
@click.option("--practice", help="Also the connector sections of this practice's mapping (secrets as ***).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--markdown", "as_markdown", is_flag=True,
              help="Print docs/settings.md instead: every setting and its default, generated from the settings "
                   "object and the built-in connectors (hub settings --markdown > docs/settings.md).")
@pass_state
def settings_command(state: State, practice: str | None, fmt: str, as_markdown: bool) -> None:
    """Every HUB_ setting with its effective value (secrets as ***, URLs without their password),
    whether the environment sets it, and what it does; then the connectors' settings, and with
    --practice the connector sections of that practice's mapping."""
    from hub.plugins import load_plugins
    from hub.settings import Settings, connector_listing, current, markdown

    if as_markdown:  # the defaults, whatever this environment says: the plugins of a plain installation
        click.echo(markdown(load_plugins(settings=Settings()).connectors.classes()), nl=False)
        return
    settings = current()
    core = settings.listing()
    connectors = connector_listing(state.plugins.connectors.classes(), settings)
    sections = _practice_sections(state, practice) if practice else None
    if fmt == "json":
        click.echo(dumps({"settings": core, "connectors": connectors,
                          **({"practice": practice, "sections": sections} if practice else {})}))
        return
    width = max(len(row["setting"]) for row in [*core, *connectors])
    for row in core:
        click.echo(f"{row['setting']:<{width}}  {row['value'] or '-'}{'' if row['set'] else '  (default)'}")
    for row in connectors:
        click.echo(f"{row['setting']:<{width}}  {row['value'] or '-'}  ({row['connector']} connector"
                   f"{'' if row['set'] else ', unset'})")
    for name, section in (sections or {}).items():
        click.echo(f"{practice} {name}: " + (", ".join(f"{k}={dumps(v)}" for k, v in section.items()) or "-"))


def _practice_sections(state: State, practice: str) -> dict[str, dict[str, object]]:
    """The practice's connector sections as they may be shown: each connector's secret keys as ***."""
    from hub.mapping import load_mapping
    from hub.settings import redact
    from hub.store.practices import get_practice

    with state.runtime.engine.connect() as conn:
        row = get_practice(conn, practice)
    mapping = load_mapping(row["mapping"], source=f"mapping of practice {practice}")
    classes = {cls.name: cls for cls in state.plugins.connectors.classes()}
    return {name: redact(section, getattr(classes.get(name), "config_schema", None))
            for name, section in sorted(mapping.connectors.items())}
