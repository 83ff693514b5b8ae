"""The master patient index run: compare the new and changed patients, link, queue, re-cluster.

One run (``hub identity run``, after ingest, in the background of the servers):

1. takes the run lease (one run at a time, whichever process starts it);
2. reads every patient; the *changed* ones are those updated since the last run's high-water mark
   or never linked (``--full``: all of them, and the model is trained again);
3. pairs records by the deterministic rules (the same SSN, MBI, shared-system identifier or preset
   enterprise id) and scores the pairs the blocking rules let through (``hub.identity.matcher``),
   only pairs with a changed record on an incremental run;
4. keeps the pairs at or above the review threshold: ``link`` above the link threshold, ``review``
   between, an operator's decision (``accepted``, ``rejected``) never overwritten;
5. clusters every record (``hub.identity.cluster``) from the links, merges and decisions, and
   writes the enterprise ids that changed, telling the report upkeep which patients moved
   (``hub_patients_relinked``), in one transaction.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from hub.identity import features as feat
from hub.identity.cluster import Edge, Key, assign_ids, cluster
from hub.model.tables import RECORD_TABLES, identity_links, identity_pairs, identity_runs
from hub.settings import Settings, current
from hub.store.engine import writer

LEASE = dt.timedelta(minutes=30)  # a run not finished after this is taken for dead
BUCKET_MAX = 25  # records sharing one rule key beyond this: a placeholder value, not a person
_LOCK = 7305533  # PostgreSQL advisory lock namespace of the run lease
_PATIENT_COLUMNS = ("practice", "source_id", "family_name", "given_name", "birth_date", "sex", "postal_code",
                    "phone", "address_line", "email", "identifiers", "enterprise_id", "updated_at")
UNDECIDED = ("link", "review")


@dataclass
class RunSummary:
    full: bool = False
    patients: int = 0
    compared: int = 0  # new or changed records compared this run
    pairs: int = 0  # pairs kept (rules and matches at or above the review threshold)
    linked: int = 0  # records in a cluster of more than one
    enterprises: int = 0  # distinct enterprise ids
    review: int = 0  # open review queue after the run
    moved: int = 0  # records whose enterprise id changed
    seconds: float = 0.0
    run_id: int | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.skipped:
            return f"identity run skipped: {self.skipped}"
        kind = "full" if self.full else "incremental"
        return (f"identity run ({kind}): {self.patients} patients, {self.compared} compared, {self.pairs} pairs, "
                f"{self.enterprises} enterprise ids, {self.moved} moved, {self.review} to review, "
                f"{self.seconds:.1f} s")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def run_identity(engine: sa.Engine, *, full: bool = False, settings: Settings | None = None,
                 plugins: Any = None) -> RunSummary:
    """One run of the index (see the module docstring); ``plugins``: the plugin manager whose
    ``hub_patients_relinked`` hears of the patients that moved (default: the hub's plugins)."""
    started = time.perf_counter()
    s = settings or current()
    run_id = _take_lease(engine)
    if run_id is None:
        return RunSummary(full=full, skipped="another run is in progress")
    summary = RunSummary(full=full, run_id=run_id)
    model: dict[str, Any] | None = None
    watermark: dt.datetime | None = None
    try:
        with engine.connect() as conn:
            last = conn.execute(sa.select(identity_runs.c.watermark, identity_runs.c.model)
                                .where(identity_runs.c.finished_at.is_not(None), identity_runs.c.id != run_id)
                                .order_by(identity_runs.c.id.desc()).limit(1)).first()
            summary.full = full = full or last is None or last.model is None
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(*[RECORD_TABLES["patient"].c[c] for c in _PATIENT_COLUMNS]))]
            links = {(r.practice, r.source_id): r for r in conn.execute(sa.select(identity_links))}
        summary.patients = len(rows)
        watermark = max((_aware(r["updated_at"]) for r in rows), default=None)  # type: ignore[type-var]
        since = None if full or last is None else _aware(last.watermark)
        changed = [r for r in rows if full or since is None or (r["practice"], r["source_id"]) not in links
                   or _aware(r["updated_at"]) > since]  # type: ignore[operator]
        summary.compared = len(changed)
        if not changed and last is not None:
            model = last.model
        else:
            changed_set = {(c["practice"], c["source_id"]) for c in changed}
            known = [] if full else [r for r in rows if (r["practice"], r["source_id"]) not in changed_set]
            ordered = known + changed
            keys = [(r["practice"], r["source_id"]) for r in ordered]
            pairs, model = _pairs(ordered, len(known), None if full else last.model if last else None, s)
            summary.pairs = len(pairs)
            changed_keys = set(keys[len(known):])
            with writer(engine).begin() as conn:
                _replace_pairs(conn, pairs, keys, changed_keys, full)
        with writer(engine).begin() as conn:
            moved = _recluster(conn, [(r["practice"], r["source_id"]) for r in rows], summary)
            if moved:
                _tell(plugins, conn, moved)
            summary.review = conn.execute(sa.select(sa.func.count()).select_from(identity_pairs)
                                          .where(identity_pairs.c.status == "review")).scalar_one()
    finally:
        summary.seconds = round(time.perf_counter() - started, 3)
        with writer(engine).begin() as conn:
            conn.execute(sa.update(identity_runs).where(identity_runs.c.id == run_id).values(
                finished_at=_now(), watermark=watermark, summary=summary.to_dict(), model=model))
    return summary


def _take_lease(engine: sa.Engine) -> int | None:
    now = _now()
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        busy = conn.execute(sa.select(identity_runs.c.id).where(
            identity_runs.c.finished_at.is_(None), identity_runs.c.started_at > now - LEASE)).first()
        if busy is not None:
            return None
        return int(conn.execute(sa.insert(identity_runs).values(started_at=now, full=False)
                                .returning(identity_runs.c.id)).scalar_one())


def _tell(plugins: Any, conn: sa.Connection, moved: list[Key]) -> None:
    if plugins is None:
        from hub.plugins import load_plugins

        plugins = load_plugins()
    manager = getattr(plugins, "hook", None) or plugins.manager.hook
    manager.hub_patients_relinked(conn=conn, patients=moved)


# ------------------------------------------------------------------ pairing
@dataclass(frozen=True)
class Pair:
    a: Key
    b: Key
    rule: str  # rule:<name> or match
    status: str  # link | review
    weight: float | None = None
    probability: float | None = None
    agreement: dict[str, str] | None = None


def _pairs(rows: Sequence[dict[str, Any]], new_from: int, model: dict[str, Any] | None, s: Settings
           ) -> tuple[list[Pair], dict[str, Any]]:
    from hub.identity import matcher

    keys = [(r["practice"], r["source_id"]) for r in rows]
    compared = [feat.features(r) for r in rows]
    out: dict[tuple[Key, Key], Pair] = {}
    for a, b, rule in _rule_pairs(rows, compared, new_from, frozenset(s.identity_shared_systems)):
        ka, kb = sorted((keys[a], keys[b]))
        out.setdefault((ka, kb), Pair(ka, kb, f"rule:{rule}", "link"))
    scored, used = matcher.score(compared, new_from=new_from or None, model=model, floor=s.identity_review,
                                 train=model is None)
    for p in scored:
        ka, kb = sorted((keys[p.left], keys[p.right]))
        linked = p.probability >= s.identity_link and not p.guarded
        out.setdefault((ka, kb), Pair(ka, kb, "match", "link" if linked else "review", round(p.weight, 3),
                                      round(p.probability, 6), p.agreement))
    return list(out.values()), used


def _rule_pairs(rows: Sequence[dict[str, Any]], compared: Sequence[dict[str, Any]], new_from: int,
                shared: frozenset[str]) -> Iterator[tuple[int, int, str]]:
    buckets: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        for rule, key in feat.identifier_keys(row.get("identifiers"), shared):
            buckets[(rule, key)].append(i)
        if row.get("enterprise_id"):  # sent by the source or set by a plugin: a shared enterprise id
            buckets[("enterprise-id", str(row["enterprise_id"]))].append(i)
    for (rule, _), members in buckets.items():
        if len(members) < 2 or len(members) > BUCKET_MAX or members[-1] < new_from:
            continue
        head = members[0]
        for other in members[1:]:
            # an SSN or MBI keyed in wrong is common; an id another index or a shared EHR assigned is not
            if rule not in ("ssn", "mbi") or _birth_dates_agree(compared[head]["birth_date"],
                                                                 compared[other]["birth_date"]):
                yield head, other, rule


def _birth_dates_agree(a: str | None, b: str | None) -> bool:
    """Equal, missing on a side, day and month swapped, or one character off: an identifier shared by
    records whose birth dates disagree beyond that is an error in one of them, left to the matcher."""
    if not a or not b or a == b:
        return True
    if a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]:
        return True
    return sum(x != y for x, y in zip(a, b, strict=False)) <= 1


def _replace_pairs(conn: sa.Connection, pairs: list[Pair], keys: list[Key], changed: set[Key], full: bool) -> None:
    t = identity_pairs
    if full:
        conn.execute(sa.delete(t).where(t.c.status.in_(UNDECIDED)))
    else:
        for practice, ids in _by_practice(changed).items():
            for chunk in _chunks(sorted(ids), 500):
                for side_p, side_s in ((t.c.practice_a, t.c.source_a), (t.c.practice_b, t.c.source_b)):
                    conn.execute(sa.delete(t).where(t.c.status.in_(UNDECIDED), side_p == practice,
                                                    side_s.in_(chunk)))
    decided = {(r[0], r[1], r[2], r[3]) for r in conn.execute(
        sa.select(t.c.practice_a, t.c.source_a, t.c.practice_b, t.c.source_b))}
    now = _now()
    rows = [{"practice_a": p.a[0], "source_a": p.a[1], "practice_b": p.b[0], "source_b": p.b[1], "rule": p.rule,
             "weight": p.weight, "probability": p.probability, "agreement": p.agreement, "status": p.status,
             "scored_at": now} for p in pairs if (*p.a, *p.b) not in decided]
    for chunk in _chunks(rows, 5000):
        conn.execute(sa.insert(t), chunk)


def _by_practice(keys: Iterable[Key]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for practice, source_id in keys:
        out[practice].add(source_id)
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ------------------------------------------------------------------ clustering
def _recluster(conn: sa.Connection, keys: list[Key], summary: RunSummary | None = None) -> list[Key]:
    """Cluster every patient from the stored pairs, merges and decisions; write the links that
    changed; return the records whose enterprise id changed."""
    t = identity_pairs
    edges: list[Edge] = []
    rejected: list[tuple[Key, Key]] = []
    for row in conn.execute(sa.select(t.c.practice_a, t.c.source_a, t.c.practice_b, t.c.source_b, t.c.rule,
                                      t.c.weight, t.c.status).where(t.c.status.in_(("link", "accepted", "rejected")))):
        a, b = (row.practice_a, row.source_a), (row.practice_b, row.source_b)
        if row.status == "rejected":
            rejected.append((a, b))
        elif row.status == "accepted":
            edges.append(Edge(a, b, "manual"))
        else:
            edges.append(Edge(a, b, row.rule if row.rule and row.rule.startswith("rule:") else "match", row.weight))
    merges = RECORD_TABLES["patient_merge"]
    known = set(keys)
    for practice, prior, surviving in conn.execute(sa.select(merges.c.practice, merges.c.prior_source_id,
                                                             merges.c.surviving_source_id)):
        a, b = (practice, prior), (practice, surviving)
        if a in known and b in known and a != b:
            edges.append(Edge(a, b, "merge"))
    current = {(r.practice, r.source_id): r for r in conn.execute(sa.select(identity_links))}
    split = [k for k, r in current.items() if r.split]
    roots, by_edge = cluster(keys, edges, rejected=rejected, split=split)
    ids = assign_ids(roots, {k: r.enterprise_id for k, r in current.items()})
    now = _now()
    inserts, updates, moved = [], [], []
    sizes: dict[str, int] = defaultdict(int)
    for eid in ids.values():
        sizes[eid] += 1
    for key, eid in ids.items():
        edge = by_edge.get(key)
        is_split = key in current and bool(current[key].split)
        method = edge.method if edge else ("split" if is_split else "alone")
        weight = edge.weight if edge else None
        was = current.get(key)
        link = {"practice": key[0], "source_id": key[1], "enterprise_id": eid, "method": method, "weight": weight,
               "split": is_split, "linked_at": now}
        if was is None:
            inserts.append(link)
            moved.append(key)
        elif was.enterprise_id != eid or was.method != method:
            updates.append(link)
            if was.enterprise_id != eid:
                moved.append(key)
    for chunk in _chunks(inserts, 5000):
        conn.execute(sa.insert(identity_links), chunk)
    for link in updates:
        conn.execute(sa.update(identity_links).where(identity_links.c.practice == link["practice"],
                                                     identity_links.c.source_id == link["source_id"])
                     .values(enterprise_id=link["enterprise_id"], method=link["method"], weight=link["weight"],
                             linked_at=link["linked_at"]))
    gone = [k for k in current if k not in ids]
    for practice, source_id in gone:
        conn.execute(sa.delete(identity_links).where(identity_links.c.practice == practice,
                                                     identity_links.c.source_id == source_id))
    if summary is not None:
        summary.moved = len(moved)
        summary.enterprises = len(sizes)
        summary.linked = sum(n for n in sizes.values() if n > 1)
    return moved


def recluster(engine: sa.Engine, plugins: Any = None) -> list[Key]:
    """Cluster again after an operator's decision (no scoring): the records that moved."""
    with writer(engine).begin() as conn:
        keys = [(p, s) for p, s in conn.execute(sa.select(RECORD_TABLES["patient"].c.practice,
                                                          RECORD_TABLES["patient"].c.source_id))]
        moved = _recluster(conn, keys)
        if moved:
            _tell(plugins, conn, moved)
    return moved
