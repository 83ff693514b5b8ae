"""The master patient index: precision, recall, review queue, time and memory, beside the plain rule.

    .venv/bin/python benchmarks/identity.py [--people 100000] [--practices 4] [--new 1000] [--linked 1000000]

Part one. A synthetic population with known truth (``hub.testing.population``: nicknames, typos,
transposed and mistyped birth dates, hyphenated and changed family names, moves, missing phones
and emails, twins, parent/child namesakes, same-name-same-birth-date strangers) of ``--people``
people (0 skips part one) over ``--practices`` practices is written to a fresh SQLite store, then:

- a full run of the index (``hub.identity.mpi.run_identity(full=True)``);
- ``--new`` more patient records (new people, and people seen at another practice) are written
  and an incremental run follows;

each run beside the baseline in the same run: the plain rule, one person per normalized family
name + given name + birth date, computed over the same store. For each: pairwise precision and
recall at the link threshold, the review queue (and how many of its pairs are the same person),
seconds, and peak memory. Recall is broken down by hard case, and the non-matches (twins,
namesakes, strangers) by how many of their pairs were linked.

Part two (``--linked N``, 0 skips it): a store of N patient records linked by a full run, then an
incremental run over ``--new`` new patient records against it (target: under 60 s), with its
peak memory; precision and recall at that scale too.

Every run and the baseline go in a process of their own, and memory is that process's peak
resident set (``ru_maxrss``; DuckDB's memory is native, unseen by tracemalloc), with the peak
after its imports and the store's opening, before the work, beside it. The store keeps the hub's default settings.
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Key = tuple[str, str]
BATCH = 10_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


# ------------------------------------------------------------------ phases, each in a process of its own

def phase_build(args: argparse.Namespace) -> dict[str, Any]:
    """Generate a population of about ``--records`` records, write it, keep its truth and ``--new``
    more records (written by the ``add`` phase after the full run)."""
    from hub.testing.population import generate, grow

    per_person = 1.8 if args.practices >= 4 else 1.7
    people = max(1, round(args.records / per_person))
    pop = generate(people, args.practices, seed=args.seed)
    more = grow(pop, args.new, seed=args.seed + 1)
    seconds = write_records(args.db, pop.records, practices=pop.practices)
    with open(args.out, "wb") as fh:
        pickle.dump({"truth": pop.truth, "more": more.records, "more_truth": more.truth}, fh,
                    protocol=pickle.HIGHEST_PROTOCOL)
    return {"records": len(pop.records), "people": people, "write_seconds": seconds}


def phase_add(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.out, "rb") as fh:
        saved = pickle.load(fh)
    return {"records": len(saved["more"]), "write_seconds": write_records(args.db, saved["more"])}


def phase_match(args: argparse.Namespace) -> dict[str, Any]:
    from hub.identity.mpi import run_identity
    from hub.store.engine import get_engine

    engine = get_engine(args.db)
    before = _rss_mb()
    start = time.perf_counter()
    summary = run_identity(engine, full=args.full)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_before_mb": before, "peak_mb": _rss_mb(), "summary": summary.to_dict()}


def _norm(text: str | None) -> str:
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(filter(str.isalnum, text.lower()))


def phase_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """One person per normalized family name + given name + birth date (a record missing one is alone)."""
    import sqlalchemy as sa

    from hub.store.engine import get_engine

    engine = get_engine(args.db)
    before = _rss_mb()
    start = time.perf_counter()
    clusters: dict[str, str] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT practice, source_id, family_name, given_name, birth_date FROM patients"))
        for practice, source_id, family, given, born in rows:
            family, given = _norm(family), _norm(given)
            key = f"{practice}\x1f{source_id}"
            clusters[key] = f"{family}|{given}|{born}" if family and given and born else key
    seconds = time.perf_counter() - start
    with open(args.out, "w") as fh:
        json.dump(clusters, fh)
    return {"seconds": seconds, "rss_before_mb": before, "peak_mb": _rss_mb()}


def write_records(url: str, records: list[dict[str, Any]], practices: list[str] | None = None) -> float:
    from hub.store.canonical import upsert_records
    from hub.store.engine import get_engine, writer
    from hub.store.practices import add_practice

    engine = get_engine(url)
    start = time.perf_counter()
    if practices:
        with writer(engine).begin() as conn:
            for slug in practices:
                add_practice(conn, slug, slug.replace("-", " ").title())
    for i in range(0, len(records), BATCH):
        with writer(engine).begin() as conn:
            upsert_records(conn, [(r, None) for r in records[i:i + BATCH]])
    return time.perf_counter() - start


PHASES = {"build": phase_build, "add": phase_add, "match": phase_match, "baseline": phase_baseline}


def run_phase(name: str, db: str, **options: Any) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--db", db]
    for option, value in options.items():
        flag = "--" + option.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value not in (False, None):
            command += [flag, str(value)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"phase {name} failed ({done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------ scoring

def links_of(db: str) -> dict[Key, str]:
    import sqlalchemy as sa

    from hub.store.engine import get_engine

    with get_engine(db).connect() as conn:
        return {(p, s): e for p, s, e in conn.execute(sa.text(
            "SELECT practice, source_id, enterprise_id FROM identity_links"))}


def review_of(db: str) -> list[tuple[Key, Key]]:
    import sqlalchemy as sa

    from hub.store.engine import get_engine

    with get_engine(db).connect() as conn:
        return [((a, b), (c, d)) for a, b, c, d in conn.execute(sa.text(
            "SELECT practice_a, source_a, practice_b, source_b FROM identity_pairs WHERE status = 'review'"))]


def baseline_clusters(path: str) -> dict[Key, str]:
    with open(path) as fh:
        raw = json.load(fh)
    out: dict[Key, str] = {}
    for key, cluster in raw.items():
        practice, source_id = key.split("\x1f", 1)
        out[(practice, source_id)] = cluster
    return out


def by_case(truth: dict[Key, int], clusters: dict[Key, str], variations: dict[Key, tuple[str, ...]],
            related: dict[str, list[tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """Per hard case: (pairs linked, pairs) of the true pairs with a record of the case, and of the
    record pairs of related people (twins, ...: each linked one a false link)."""
    from hub.testing.population import pairs

    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pair in pairs(truth):
        a, b = tuple(pair)
        cases = set(variations.get(a, ())) | set(variations.get(b, ()))
        linked = a in clusters and clusters.get(a) == clusters.get(b)
        for case in cases or ("(none)",):
            out[case][0] += linked
            out[case][1] += 1
    records: dict[int, list[Key]] = defaultdict(list)
    for key, person in truth.items():
        records[person].append(key)
    for case, people in related.items():
        for x, y in people:
            for a in records[x]:
                for b in records[y]:
                    out[f"{case} (not a match)"][0] += a in clusters and clusters.get(a) == clusters.get(b)
                    out[f"{case} (not a match)"][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


# ------------------------------------------------------------------ printing

def line(label: str, values: list[str]) -> None:
    print(f"  {label:<40}" + "".join(f"{v:>22}" for v in values))


def score_rows(truth: dict[Key, int], matcher: dict[Key, str], baseline: dict[Key, str], review: list[tuple[Key, Key]],
               match: dict[str, Any], base: dict[str, Any]) -> None:
    from hub.testing.population import evaluate

    m, b = evaluate(truth, matcher), evaluate(truth, baseline)
    line("", ["index", "baseline"])
    line("precision at the link threshold", [f"{m[0]:.4f}", f"{b[0]:.4f}"])
    line("recall at the link threshold", [f"{m[1]:.4f}", f"{b[1]:.4f}"])
    line("pairs right / wrong / missed", [f"{m[2]}/{m[3]}/{m[4]}", f"{b[2]}/{b[3]}/{b[4]}"])
    true_review = sum(truth.get(x, -1) == truth.get(y, -2) for x, y in review)
    line("review queue (pairs; the same person)", [f"{len(review)} ({true_review})", "-"])
    line("seconds", [f"{match['seconds']:.1f}", f"{base['seconds']:.1f}"])
    line("peak memory, MB (after imports)", [f"{match['peak_mb']:.0f} ({match['rss_before_mb']:.0f})",
                                             f"{base['peak_mb']:.0f} ({base['rss_before_mb']:.0f})"])
    s = match["summary"]
    print(f"  index run: {s.get('patients')} patients, {s.get('compared')} compared, {s.get('pairs')} pairs kept, "
          f"{s.get('enterprises')} enterprise ids, {s.get('moved')} moved")


def case_rows(truth: dict[Key, int], matcher: dict[Key, str], baseline: dict[Key, str],
              variations: dict[Key, tuple[str, ...]], related: dict[str, list[tuple[int, int]]]) -> None:
    m, b = by_case(truth, matcher, variations, related), by_case(truth, baseline, variations, related)
    print("  by case: true pairs linked (recall); for non-matches, pairs linked (each a false link)")
    line("", ["index", "baseline", "pairs"])
    for case in sorted(m, key=lambda c: ("not a match" in c, -m[c][1])):
        (ml, n), (bl, _) = m[case], b[case]
        if "not a match" in case:
            line(case, [f"{ml}", f"{bl}", f"{n}"])
        else:
            line(case, [f"{ml / n:.3f}", f"{bl / n:.3f}", f"{n}"])


# ------------------------------------------------------------------ main

def part_one(args: argparse.Namespace, tmp: str) -> None:
    from hub.testing.population import generate, grow

    start = time.perf_counter()
    pop = generate(args.people, args.practices, seed=args.seed)
    generated = time.perf_counter() - start
    more = grow(pop, args.new, seed=args.seed + 1)
    db = f"sqlite:///{tmp}/part1.db"
    print(f"part one: {args.people:,} people, {len(pop.records):,} patient records at {args.practices} practices "
          f"(generated in {generated:.1f} s), {len(set(pop.truth.values())):,} persons")
    written = write_records(db, pop.records, practices=pop.practices)
    print(f"  written to a fresh SQLite store in {written:.1f} s")

    print(f"\nfull run over {len(pop.records):,} records")
    match = run_phase("match", db, full=True)
    base = run_phase("baseline", db, out=f"{tmp}/baseline.json")
    matcher_links = links_of(db)
    score_rows(pop.truth, matcher_links, baseline_clusters(f"{tmp}/baseline.json"), review_of(db), match, base)
    case_rows(pop.truth, matcher_links, baseline_clusters(f"{tmp}/baseline.json"), pop.variations, pop.related)

    of_known = sum(person < args.people for person in more.truth.values())
    write_records(db, more.records)
    truth = {**pop.truth, **more.truth}
    print(f"\nincremental run after {len(more.records):,} more records ({of_known} of people already seen, "
          f"{len(more.records) - of_known} of new people)")
    match = run_phase("match", db)
    base = run_phase("baseline", db, out=f"{tmp}/baseline.json")
    score_rows(truth, links_of(db), baseline_clusters(f"{tmp}/baseline.json"), review_of(db), match, base)


def part_two(args: argparse.Namespace, tmp: str) -> None:
    from hub.testing.population import evaluate

    big = f"sqlite:///{tmp}/part2.db"
    print(f"\npart two: {args.linked:,} records linked, then {args.new:,} new ones", flush=True)
    built = run_phase("build", big, records=args.linked, practices=args.practices, seed=args.seed + 7,
                      new=args.new, out=f"{tmp}/part2.pickle")
    print(f"  {built['records']:,} records of {built['people']:,} people written in {built['write_seconds']:.0f} s")
    line("", ["seconds", "peak MB (imports)", "compared"])
    full = run_phase("match", big, full=True)
    line(f"full run ({built['records']:,} records)", [f"{full['seconds']:.1f}",
         f"{full['peak_mb']:.0f} ({full['rss_before_mb']:.0f})", f"{full['summary'].get('compared')}"])
    added = run_phase("add", big, out=f"{tmp}/part2.pickle")
    incremental = run_phase("match", big)
    line(f"incremental run ({added['records']:,} new)", [f"{incremental['seconds']:.1f}",
         f"{incremental['peak_mb']:.0f} ({incremental['rss_before_mb']:.0f})",
         f"{incremental['summary'].get('compared')}"])
    with open(f"{tmp}/part2.pickle", "rb") as fh:
        saved = pickle.load(fh)
    precision, recall, *_ = evaluate({**saved["truth"], **saved["more_truth"]}, links_of(big))
    print(f"  incremental under 60 s: {'met' if incremental['seconds'] < 60 else 'NOT met'}; after it, precision "
          f"{precision:.4f}, recall {recall:.4f}, review queue {incremental['summary'].get('review')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=100_000, help="people of part one (0: skip it)")
    parser.add_argument("--practices", type=int, default=4)
    parser.add_argument("--new", type=int, default=1000, help="records added before the incremental run")
    parser.add_argument("--linked", type=int, default=1_000_000, help="records of part two (0: skip it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress as it comes, piped too

    with tempfile.TemporaryDirectory() as tmp:
        if args.people:
            part_one(args, tmp)
        if args.linked:
            part_two(args, tmp)


if __name__ == "__main__":
    main()
