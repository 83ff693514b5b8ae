"""``hub roster add-provider|add-location|list``: the MSO rosters practice codes map to."""

from __future__ import annotations

import json

import click


@click.group("roster")
def roster_group() -> None:
    """The MSO rosters (mappings/mso/providers.yaml and locations.yaml, or HUB_MSO_VOCABULARIES)."""


@roster_group.command("add-provider")
@click.argument("npi")
@click.option("--name", required=True, help="The provider's name, 'Family, Given'.")
@click.option("--specialty", help="The provider's specialty (dermatology, mohs_surgery, ...).")
def add_provider_command(npi: str, name: str, specialty: str | None) -> None:
    """Add a provider, by NPI, to the MSO provider roster.

    A practice's provider code then counts as rostered once its mapping maps it to this NPI
    (code_maps.provider), or when the practice sends the NPI itself."""
    from hub.onboarding.roster import add_provider

    path = add_provider(npi, name, specialty=specialty)
    click.echo(f"provider {npi.strip()} added to the roster ({path})")
    click.echo("map a practice's provider code to it in code_maps.provider of its mapping "
               f"(PRACTICE_CODE: \"{npi.strip()}\"), then: hub mapping update SLUG FILE --reprocess")


@roster_group.command("add-location")
@click.argument("code")
@click.option("--name", required=True, help="The location's name.")
@click.option("--city")
@click.option("--state")
def add_location_command(code: str, name: str, city: str | None, state: str | None) -> None:
    """Add a location, by its MSO code, to the MSO location roster."""
    from hub.onboarding.roster import add_location

    path = add_location(code, name, city=city, state=state)
    click.echo(f"location {code.strip()} added to the roster ({path})")
    click.echo("map a practice's location code to it in code_maps.location of its mapping "
               f"(PRACTICE_CODE: {code.strip()}), then: hub mapping update SLUG FILE --reprocess")


@roster_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def list_command(fmt: str) -> None:
    """The providers and locations on the MSO rosters."""
    from hub.mapping.vocabulary import vocabulary_folder
    from hub.onboarding.roster import roster

    found = roster()
    rosters = {name: {code: found.attributes(name, code) for code in sorted(found.codes(name))}
               for name in ("providers", "locations")}
    if fmt == "json":
        click.echo(json.dumps({"folder": str(vocabulary_folder()), **rosters}, indent=2))
        return
    click.echo(f"MSO rosters in {vocabulary_folder()}")
    for name, entries in rosters.items():
        click.echo(f"{name} ({len(entries)})")
        for code, attrs in entries.items():
            if name == "providers":
                label = ", ".join(str(attrs[k]) for k in ("family_name", "given_name") if attrs.get(k))
            else:
                label = str(attrs.get("name") or "")
            extra = " ".join(f"{k}={v}" for k, v in attrs.items()
                             if k not in ("family_name", "given_name", "name"))
            click.echo(f"  {code:<20} {label}{'  ' + extra if extra else ''}")
