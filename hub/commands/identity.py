"""``hub identity run|review|link|split|explain|export``: the master patient index (hub.identity).

Every command that reads or changes patient links leaves an audit row (address ``cli:`` and the
system user): the links are patient-level data.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from hub.commands.base import State, cli_user, dumps, pass_state

if TYPE_CHECKING:
    from hub.identity.mpi import RunSummary


def _audit(state: State, action: str, target: str | None, practice: str | None = None,
           outcome: str = "ok") -> None:
    from hub.security.audit import AuditEntry, record
    from hub.store.engine import writer

    with writer(state.runtime.engine).begin() as conn:
        record(conn, [AuditEntry(None, action, target, practice, f"cli:{cli_user()}", outcome)])


def link_after_ingest(runtime: Any) -> RunSummary | None:
    """The incremental run that follows an ingest, onboarding backfill or demo when the ingest
    processed its messages itself (inline) and patients changed (a queue's workers run their own,
    ``hub.identity.background``); its line goes to stderr. A failure leaves the ingest as it is
    and says so: the next run links what this one did not."""
    from hub.identity.background import pending
    from hub.identity.mpi import run_identity

    if runtime.dispatcher.name != "inline" or not pending(runtime.engine):
        return None
    try:
        summary = run_identity(runtime.engine, settings=runtime.settings, plugins=runtime.plugins)
    except Exception as exc:  # the stored messages stand; never a traceback here
        click.echo(f"hub: the patient index run failed ({type(exc).__name__}); run hub identity run", err=True)
        return None
    if summary.skipped or not summary.compared:
        return None
    click.echo(summary.describe(), err=True)
    return summary


@click.group("identity")
def identity_group() -> None:
    """The master patient index: one enterprise id per person across the practices (docs/identity.md)."""


@identity_group.command("run")
@click.option("--full", is_flag=True, help="Compare every patient and train the model again (default: only new "
                                           "and changed patients, with the model of the last full run).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def run_command(state: State, full: bool, fmt: str) -> None:
    """Link new and changed patients: rules, then the match model; links, review queue, enterprise ids."""
    from hub.identity.mpi import run_identity

    runtime = state.runtime
    summary = run_identity(runtime.engine, full=full, settings=runtime.settings, plugins=runtime.plugins)
    _audit(state, "identity.run", "full" if full else "incremental", outcome="skipped" if summary.skipped else "ok")
    click.echo(dumps(summary.to_dict()) if fmt == "json" else summary.describe())
    if summary.skipped:
        sys.exit(1)


@identity_group.group("review", invoke_without_command=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def review_group(ctx: click.Context, limit: int, offset: int, fmt: str) -> None:
    """The pairs between the two thresholds, most likely first: which fields agreed, and the weight.

    Decide one with ``hub identity review accept ID`` or ``reject ID``."""
    from hub.identity import review as index

    if ctx.invoked_subcommand is not None:
        return
    state = ctx.ensure_object(State)
    with state.runtime.engine.connect() as conn:
        total, pairs = index.review_queue(conn, limit=limit, offset=offset)
    _audit(state, "identity.review", None)
    if fmt == "json":
        click.echo(dumps({"total": total, "pairs": pairs}))
        return
    click.echo(f"{total} pair(s) to review")
    for p in pairs:
        agreed = ", ".join(f"{k}={v}" for k, v in p["agreement"].items() if v != "missing")
        click.echo(f"  #{p['id']}  {p['a']['practice']}/{p['a']['source_id']} ~ {p['b']['practice']}/"
                   f"{p['b']['source_id']}  weight {p['weight']:.1f}  p={p['probability']:.3f}  {agreed}")


def _decide(state: State, pair_id: int, accept: bool) -> None:
    from hub.identity import review as index

    runtime = state.runtime
    done = index.decide(runtime.engine, pair_id, accept=accept, by=f"cli:{cli_user()}", plugins=runtime.plugins)
    _audit(state, "identity.accept" if accept else "identity.reject", str(pair_id))
    click.echo(f"pair {pair_id} {done['status']}; {done['moved']} record(s) moved")


@review_group.command("accept")
@click.argument("pair_id", type=int)
@pass_state
def accept_command(state: State, pair_id: int) -> None:
    """Link the two records of a pair (a manual link: no run undoes it)."""
    _decide(state, pair_id, True)


@review_group.command("reject")
@click.argument("pair_id", type=int)
@pass_state
def reject_command(state: State, pair_id: int) -> None:
    """Keep the two records of a pair apart (no run links them again)."""
    _decide(state, pair_id, False)


@identity_group.command("link")
@click.argument("practice_a")
@click.argument("source_id_a")
@click.argument("practice_b")
@click.argument("source_id_b")
@pass_state
def link_command(state: State, practice_a: str, source_id_a: str, practice_b: str, source_id_b: str) -> None:
    """Link two patient records as one person (an operator's link wins over the matcher)."""
    from hub.identity import review as index

    runtime = state.runtime
    done = index.link(runtime.engine, (practice_a, source_id_a), (practice_b, source_id_b),
                      by=f"cli:{cli_user()}", plugins=runtime.plugins)
    _audit(state, "identity.link", f"{practice_a}/{source_id_a}~{practice_b}/{source_id_b}", practice_a)
    click.echo(f"linked; {done['moved']} record(s) moved")


@identity_group.command("split")
@click.argument("practice")
@click.argument("source_id")
@pass_state
def split_command(state: State, practice: str, source_id: str) -> None:
    """Take a patient record out of its enterprise id: it stays apart until an operator links it."""
    from hub.identity import review as index

    runtime = state.runtime
    done = index.split(runtime.engine, (practice, source_id), by=f"cli:{cli_user()}", plugins=runtime.plugins)
    _audit(state, "identity.split", f"{practice}/{source_id}", practice)
    click.echo(f"split; {done['moved']} record(s) moved")


@identity_group.command("explain")
@click.argument("practice")
@click.argument("source_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
def explain_command(state: State, practice: str, source_id: str, fmt: str) -> None:
    """How one patient record is linked: its enterprise id, the records under it, the pairs and weights."""
    from hub.identity import review as index

    with state.runtime.engine.connect() as conn:
        found = index.explain(conn, (practice, source_id))
    _audit(state, "identity.explain", f"{practice}/{source_id}", practice)
    if fmt == "json":
        click.echo(dumps(found))
        return
    if not found["linked"]:
        click.echo(f"{practice}/{source_id}: not linked yet (hub identity run)")
        return
    weight = f", weight {found['weight']:.1f}" if found["weight"] is not None else ""
    click.echo(f"{practice}/{source_id}: {found['enterprise_id']} by {found['method']}{weight}"
               f"{' (split off by an operator)' if found['split'] else ''}")
    click.echo(f"  {len(found['cluster'])} record(s) under this id:")
    for m in found["cluster"]:
        click.echo(f"    {m['practice']}/{m['source_id']}  {m['method']}")
    for p in found["pairs"]:
        other = p["b"] if (p["a"]["practice"], p["a"]["source_id"]) == (practice, source_id) else p["a"]
        agreed = ", ".join(f"{k}={v}" for k, v in p["agreement"].items() if v != "missing")
        weight = f" weight {p['weight']:.1f} p={p['probability']:.3f}" if p["weight"] is not None else ""
        click.echo(f"  pair #{p['id']} with {other['practice']}/{other['source_id']}: {p['status']} ({p['rule']})"
                   f"{weight}{'  ' + agreed if agreed else ''}")


@identity_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="A file (default: stdout).")
@pass_state
def export_command(state: State, fmt: str, output: str | None) -> None:
    """Every patient record: practice, source id, enterprise id and how it was linked."""
    from hub.identity import review as index

    counted: list[int] = []
    out = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    try:
        with state.runtime.engine.connect() as conn:
            out.writelines(index.export_lines(conn, fmt, counted))
    finally:
        if output:
            out.close()
    count = counted[0] if counted else 0
    _audit(state, "identity.export", fmt, outcome=str(count))
    if output:
        click.echo(f"{count} patient record(s) written to {output}", err=True)
