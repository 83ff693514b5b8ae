"""The master patient index run: compare the new and changed patients, link, queue, re-cluster.

One run (``hub identity run``, after ingest, in the background of the servers):

1. takes the run lease (one run at a time, whichever process starts it);
2. reads every patient; the *changed* ones are those never compared or whose row was written since
   it was (``identity_links.compared_at``; ``--full``: all of them, and the model is trained again);
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
from typing import Any, NamedTuple

import sqlalchemy as sa

from hub.identity.cluster import Edge, Key, assign_ids, cluster
from hub.identity.features import RAW_COLUMNS, RULE_COLUMNS
from hub.model.tables import RECORD_TABLES, identity_links, identity_pairs, identity_runs
from hub.settings import Settings, current
from hub.store.engine import fetch_by_keys, writer

LEASE = dt.timedelta(minutes=30)  # a run not finished after this is taken for dead
_LOCK = 7305533  # PostgreSQL advisory lock namespace of the run lease
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
            since = None if full or last is None else _aware(last.watermark)
            watermark = _aware(conn.execute(sa.select(sa.func.max(RECORD_TABLES["patient"].c.updated_at))).scalar())
            rows = _read_patients(conn, full, s.identity_shared_systems)
        summary.patients = len(rows)
        rows.sort(key=lambda r: r[-1])  # the known first, then the new and changed
        new_from = sum(1 for r in rows if not r[-1])
        summary.compared = len(rows) - new_from
        keys = [(r[0], r[1]) for r in rows]
        seeds: set[Key] = set()
        if summary.compared or last is None:
            pairs, model = _pairs(rows, new_from, None if full else last.model if last else None, s)
            summary.pairs = len(pairs)
            seeds = set(keys[new_from:]) | {p.a for p in pairs} | {p.b for p in pairs}
            with writer(engine).begin() as conn:
                _replace_pairs(conn, pairs, set(keys[new_from:]), full)
        else:
            model = last.model
        with writer(engine).begin() as conn:
            if not full:
                seeds |= _merged_since(conn, since)
            moved = _recluster(conn, set(keys) if full else _closure(conn, seeds), prune=full)
            _mark_compared(conn, rows[new_from:], full)
            if moved:
                _tell(plugins, conn, moved)
            summary.moved = len(moved)
            _count(conn, summary)
    finally:
        summary.seconds = round(time.perf_counter() - started, 3)
        with writer(engine).begin() as conn:
            conn.execute(sa.update(identity_runs).where(identity_runs.c.id == run_id).values(
                finished_at=_now(), watermark=watermark, summary=summary.to_dict(), model=model))
    return summary


def _read_patients(conn: sa.Connection, full: bool, shared: Sequence[str]) -> list[tuple[Any, ...]]:
    """(practice, source id, the raw compared columns as text, identifiers as JSON text, a sent
    enterprise id, updated at, changed) of every patient; changed: never compared, or its row
    written since it was (``updated_at`` differs: whichever writer's clock, whatever commit order)."""
    p, links = RECORD_TABLES["patient"], identity_links
    changed: Any = sa.literal(1) if full else sa.case(
        (links.c.compared_at.is_(None), 1), (links.c.compared_at != p.c.updated_at, 1), else_=0)
    columns = [sa.cast(p.c[name], sa.String) if name == "birth_date" else p.c[name] for name in RAW_COLUMNS]
    joined = p.outerjoin(links, sa.and_(links.c.practice == p.c.practice, links.c.source_id == p.c.source_id))
    # identifiers only where they may hold an SSN, MBI or shared id: most rows then carry a NULL
    text = sa.cast(p.c.identifiers, sa.Text)
    markers = ["%ssn%", "%mbi%", '%"SS"%', "%.4.1%", "%.4.927%", *[f"%{x}%" for x in shared]]
    identifiers = sa.case((sa.or_(*[text.like(m) for m in markers]), text), else_=sa.null())
    # updated_at as the driver gives it (no conversion per row): written back as it came (_mark_compared)
    q = sa.select(p.c.practice, p.c.source_id, *columns, identifiers, p.c.enterprise_id,
                  sa.type_coerce(p.c.updated_at, sa.String), changed).select_from(joined)
    return [tuple(r) for r in conn.execute(q)]


def _mark_compared(conn: sa.Connection, compared: Sequence[tuple[Any, ...]], full: bool) -> None:
    links = identity_links
    if full:  # one statement rather than a million
        p = RECORD_TABLES["patient"]
        conn.execute(sa.update(links).values(compared_at=sa.select(p.c.updated_at).where(
            p.c.practice == links.c.practice, p.c.source_id == links.c.source_id).scalar_subquery()))
        return
    rows = [{"p": r[0], "s": r[1], "at": r[_UPDATED]} for r in compared]
    as_read = sa.DateTime() if conn.dialect.name == "postgresql" else sa.String()  # the driver's own value
    stmt = sa.update(links).where(links.c.practice == sa.bindparam("p"), links.c.source_id == sa.bindparam("s")
                                  ).values(compared_at=sa.bindparam("at", type_=as_read))
    for chunk in _chunks(rows, 5000):
        conn.execute(stmt, chunk)


def _merged_since(conn: sa.Connection, since: dt.datetime | None) -> set[Key]:
    """Both records of every merge the sources sent since the last run."""
    merges = RECORD_TABLES["patient_merge"]
    q = sa.select(merges.c.practice, merges.c.prior_source_id, merges.c.surviving_source_id)
    if since is not None:
        q = q.where(merges.c.updated_at > since)
    return {key for p, a, b in conn.execute(q) for key in ((p, a), (p, b))}


def _count(conn: sa.Connection, summary: RunSummary) -> None:
    links, pairs = identity_links, identity_pairs
    sizes = sa.select(links.c.enterprise_id, sa.func.count().label("n")).group_by(links.c.enterprise_id).subquery()
    summary.enterprises, linked = conn.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((sizes.c.n > 1, sizes.c.n), else_=0)), 0))).one()
    summary.linked = int(linked)
    summary.review = conn.execute(sa.select(sa.func.count()).select_from(pairs)
                                  .where(pairs.c.status == "review")).scalar_one()


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
    plugins.hook.hub_patients_relinked(conn=conn, patients=moved)


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


def _pairs(rows: Sequence[tuple[Any, ...]], new_from: int, model: dict[str, Any] | None, s: Settings
           ) -> tuple[list[Pair], dict[str, Any]]:
    from hub.identity import matcher

    keys = [(r[0], r[1]) for r in rows]
    columns = {name: [r[2 + i] for r in rows] for i, name in enumerate((*RAW_COLUMNS, *RULE_COLUMNS))}
    raw = matcher.raw_table({"unique_id": list(range(len(rows))), **columns})
    scored, rules, used = matcher.score(raw, new_from=new_from, model=model, floor=s.identity_review,
                                        train=model is None, shared=s.identity_shared_systems)
    out: dict[tuple[Key, Key], Pair] = {}
    for a, b, rule in rules:
        ka, kb = sorted((keys[a], keys[b]))
        out.setdefault((ka, kb), Pair(ka, kb, f"rule:{rule}", "link"))
    for p in scored:
        ka, kb = sorted((keys[p.left], keys[p.right]))
        out.setdefault((ka, kb), Pair(ka, kb, "match", p.status(s.identity_link), round(p.weight, 3),
                                      round(p.probability, 6), p.agreement))
    return list(out.values()), used


_UPDATED = 2 + len(RAW_COLUMNS) + len(RULE_COLUMNS)  # then changed


def _replace_pairs(conn: sa.Connection, pairs: list[Pair], changed: set[Key], full: bool) -> None:
    t = identity_pairs
    if full:
        conn.execute(sa.delete(t).where(t.c.status.in_(UNDECIDED)))
    else:
        for practice, ids in _by_practice(changed).items():
            for chunk in _chunks(sorted(ids), 500):
                for side_p, side_s in ((t.c.practice_a, t.c.source_a), (t.c.practice_b, t.c.source_b)):
                    conn.execute(sa.delete(t).where(t.c.status.in_(UNDECIDED), side_p == practice,
                                                    side_s.in_(chunk)))
    # what is left of the pairs of changed records are decisions, which no run overwrites
    decided = {(r[0], r[1], r[2], r[3]) for r in conn.execute(
        sa.select(t.c.practice_a, t.c.source_a, t.c.practice_b, t.c.source_b).where(t.c.status.not_in(UNDECIDED)))}
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
_PAIR_COLUMNS = "practice_a, source_a, practice_b, source_b, rule, weight, status"


def _touching(conn: sa.Connection, keys: set[Key], statuses: tuple[str, ...]) -> list[Any]:
    """The pairs of these statuses with a record among ``keys`` (all of them when ``keys`` is huge)."""
    wanted = ", ".join(f"'{status}'" for status in statuses)
    if len(keys) > 20_000:
        rows = conn.execute(sa.text(f"SELECT {_PAIR_COLUMNS} FROM identity_pairs WHERE status IN ({wanted})"))
        return [r for r in rows if (r[0], r[1]) in keys or (r[2], r[3]) in keys]
    out: dict[tuple[Any, ...], Any] = {}
    for practice, ids in _by_practice(keys).items():
        for side in ("a", "b"):  # an index look-up per side: (practice, source id) leads both
            for r in fetch_by_keys(conn, f"SELECT {_PAIR_COLUMNS} FROM identity_pairs WHERE status IN ({wanted}) "
                                         f"AND practice_{side} = :p AND source_{side} IN :keys", ids, p=practice):
                out[tuple(r[:4])] = r
    return list(out.values())


class _Link(NamedTuple):
    enterprise_id: str
    method: str
    split: bool


def _links_of(conn: sa.Connection, keys: Iterable[Key]) -> dict[Key, _Link]:
    return {(r[0], r[1]): _Link(r[2], r[3], bool(r[4])) for practice, ids in _by_practice(keys).items()
            for r in fetch_by_keys(conn, "SELECT practice, source_id, enterprise_id, method, split FROM identity_links "
                                         "WHERE practice = :p AND source_id IN :keys", ids, p=practice)}


def _merges(conn: sa.Connection, keys: set[Key] | None) -> list[tuple[Key, Key]]:
    merges = RECORD_TABLES["patient_merge"]
    practices = None if keys is None else sorted({k[0] for k in keys})
    q = sa.select(merges.c.practice, merges.c.prior_source_id, merges.c.surviving_source_id)
    if practices is not None:
        q = q.where(merges.c.practice.in_(practices))
    out = []
    for practice, prior, surviving in conn.execute(q):
        a, b = (practice, prior), (practice, surviving)
        if a != b and (keys is None or a in keys or b in keys):
            out.append((a, b))
    return out


def _closure(conn: sa.Connection, seeds: set[Key]) -> set[Key]:
    """The records whose clusters a change to ``seeds`` may touch: the seeds, everyone under their
    enterprise ids, their partners by link, decision or merge, and so on until nothing is added."""
    members, frontier = set(seeds), set(seeds)
    while frontier:
        found: set[Key] = set()
        eids = {r.enterprise_id for r in _links_of(conn, frontier).values()}
        found |= {(p, s) for p, s in fetch_by_keys(
            conn, "SELECT practice, source_id FROM identity_links WHERE enterprise_id IN :keys", eids)}
        for r in _touching(conn, frontier, ("link", "accepted")):
            found |= {(r[0], r[1]), (r[2], r[3])}
        for a, b in _merges(conn, frontier):
            found |= {a, b}
        frontier = found - members
        members |= frontier
    return members


def _recluster(conn: sa.Connection, keys: set[Key], *, prune: bool = False) -> list[Key]:
    """Cluster ``keys`` (whole clusters: everyone, or a ``_closure``) from the stored pairs, merges and
    decisions; write the links that changed; return the records whose enterprise id changed.
    ``prune``: ``keys`` are every patient, and links of records no longer stored go."""
    edges: list[Edge] = []
    rejected: list[tuple[Key, Key]] = []
    for r in _touching(conn, keys, ("link", "accepted", "rejected")):
        a, b = (r[0], r[1]), (r[2], r[3])
        if a not in keys or b not in keys:
            continue
        rule, weight, status = r[4], r[5], r[6]
        if status == "rejected":
            rejected.append((a, b))
        elif status == "accepted":
            edges.append(Edge(a, b, "manual"))
        else:
            edges.append(Edge(a, b, rule if rule and rule.startswith("rule:") else "match", weight))
    for a, b in _merges(conn, None if prune else keys):
        if a in keys and b in keys:
            edges.append(Edge(a, b, "merge"))
    if prune:
        current = {(r.practice, r.source_id): _Link(r.enterprise_id, r.method, r.split)
                   for r in conn.execute(sa.select(identity_links))}
    else:
        current = _links_of(conn, keys)
    split = [k for k, r in current.items() if r.split and k in keys]
    roots, by_edge = cluster(keys, edges, rejected=rejected, split=split)
    ids = assign_ids(roots, {k: r.enterprise_id for k, r in current.items() if k in keys})
    now = _now()
    inserts, updates, moved = [], [], []
    for key, eid in ids.items():
        edge = by_edge.get(key)
        was = current.get(key)
        is_split = was is not None and bool(was.split)
        method = edge.method if edge else ("split" if is_split else "alone")
        weight = edge.weight if edge else None
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
    by_key = (identity_links.c.practice == sa.bindparam("p"), identity_links.c.source_id == sa.bindparam("s"))
    if updates:
        conn.execute(sa.update(identity_links).where(*by_key).values(
            enterprise_id=sa.bindparam("eid"), method=sa.bindparam("how"), weight=sa.bindparam("w"),
            linked_at=sa.bindparam("at", type_=identity_links.c.linked_at.type)),
            [{"p": u["practice"], "s": u["source_id"], "eid": u["enterprise_id"], "how": u["method"],
              "w": u["weight"], "at": u["linked_at"]} for u in updates])
    gone = [{"p": k[0], "s": k[1]} for k in current if k not in ids] if prune else []
    if gone:
        conn.execute(sa.delete(identity_links).where(*by_key), gone)
    return moved


def recluster(engine: sa.Engine, seeds: set[Key], plugins: Any = None) -> list[Key]:
    """Cluster again around ``seeds`` after an operator's decision (no scoring): the records that moved."""
    with writer(engine).begin() as conn:
        moved = _recluster(conn, _closure(conn, seeds))
        if moved:
            _tell(plugins, conn, moved)
    return moved
