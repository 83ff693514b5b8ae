"""``hub mapping validate|unmapped|names``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hub.errors import MappingError


@click.group("mapping")
def mapping_group() -> None:
    """Practice mapping files: validate them, find unmapped codes."""


@mapping_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check mapping files against the schema and the MSO vocabularies; every problem with its line and key."""
    from hub.mapping.schema import check_text
    from hub.mapping.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    bad = 0
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            click.echo(f"{name}: not UTF-8 text", err=True)
            bad += 1
            continue
        data, problems = check_text(text, vocabulary)
        if problems:
            bad += 1
            for problem in problems:
                click.echo(f"{name}, {problem}", err=True)
            continue
        codes = sum(len(t or {}) for t in (data.get("code_maps") or {}).values())
        click.echo(f"{name}: ok (version {data.get('version', 1)}, {codes} codes, "
                   f"connectors: {', '.join(data.get('connectors') or {}) or 'none'})")
    if bad:
        sys.exit(1)


@mapping_group.command("unmapped")
@click.option("--practice", required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def unmapped(ctx: click.Context, practice: str, fmt: str) -> None:
    """Codes the practice sent that its mapping does not know: counts and an example message id."""
    from hub.mapping.unmapped import unmapped_codes
    from hub.store.practices import get_practice

    with ctx.obj.runtime.engine.connect() as conn:
        get_practice(conn, practice)
        rows = unmapped_codes(conn, practice)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"every code of {practice} is mapped")
        return
    click.echo(f"{'code map':<14} {'code':<28} {'count':>7}  {'example message':>15}  kinds")
    for r in rows:
        click.echo(f"{r['code_map']:<14} {r['code']!s:<28} {r['count']:>7}  {r['example_message_id'] or '-'!s:>15}  "
                   f"{', '.join(r['kinds'])}")
    click.echo(f"after fixing the mapping: hub practice mapping {practice} FILE && "
               f"hub messages reprocess --practice {practice}")


@mapping_group.command("update")
@click.argument("slug")
@click.argument("mapping_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--reprocess", is_flag=True, help="Then replay the practice's messages through the new mapping.")
@click.pass_context
def update(ctx: click.Context, slug: str, mapping_file: str, reprocess: bool) -> None:
    """Replace a practice's stored mapping with a newer version; show what changed.

    With ``--reprocess``, exit status 1 when a replayed message fails again (as hub messages reprocess);
    the new mapping stays stored."""
    from hub.mapping import load_mapping
    from hub.mapping.diff import describe_changes
    from hub.pipeline.replay import reprocess as replay
    from hub.store.engine import writer
    from hub.store.practices import get_practice, set_mapping

    text = Path(mapping_file).read_text(encoding="utf-8")
    new = load_mapping(text, source=mapping_file)
    runtime = ctx.obj.runtime
    with writer(runtime.engine).begin() as conn:
        stored = get_practice(conn, slug)["mapping"]
        old = load_mapping(stored, source=f"stored mapping of {slug}") if stored else None
        changes = describe_changes(old, new)
        if old is not None and stored != text and new.version <= old.version:
            raise MappingError(f"the mapping changed but its version did not rise (stored: {old.version}): "
                               "raise version", source=mapping_file, location="version")
        set_mapping(conn, slug, text)
    was = f"version {old.version} → " if old is not None else ""
    click.echo(f"mapping of {slug} updated ({was}version {new.version})")
    for line in changes:
        click.echo(f"  {line}")
    if reprocess:
        count = replay(runtime, practice=slug)
        click.echo(f"reprocessing {count['submitted']} message(s): processed {count['processed']}, "
                   f"error {count['error']}" + (" (queued)" if count["queued"] else ""))
        if count["error"]:
            click.echo(f"hub: {count['error']} message(s) still in error: see hub messages list --practice {slug} "
                       "--status error (hub messages resolve ID --reason ... for those no replay can fix)", err=True)
            sys.exit(1)
    else:
        click.echo(f"stored records keep their mapped values until: hub messages reprocess --practice {slug}")


@mapping_group.command("names")
def names() -> None:
    """The named transforms and HL7 v2 overrides a mapping file may use."""
    from hub.mapping.schema import HL7V2_OVERRIDES
    from hub.mapping.transforms import TRANSFORMS

    click.echo("transforms:")
    for name, (_, doc) in TRANSFORMS.items():
        click.echo(f"  {name:<22} {doc}")
    click.echo("hl7v2 overrides (connectors.hl7v2.overrides):")
    for name, (default, doc) in HL7V2_OVERRIDES.items():
        click.echo(f"  {name:<22} default {default:<9} {doc}")
