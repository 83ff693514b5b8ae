"""Fuzz every reader of outside bytes: the ER7 tokenizer and parser, MLLP framing, the FHIR intake, the CSV
reader, the X12 reader and the mapping loader (the checks: ``tests/support/fuzz_targets.py``).

Each target runs for ``--inputs`` inputs (default a million) in its own process, with a per-input time
bound and a memory bound; seeds are the in-tree samples and the shared corpus (``../shared/corpus``),
read where they are. Only the documented user errors (``HubError``: ``ParseError``, ``ValidationError``,
``MappingError``) may escape a check; any other exception, a hang past the bound or memory past the
bound is a finding, saved under ``--artifacts`` and listed at the end (exit code 1).

Engines: ``atheris`` (coverage-guided libFuzzer, the optional ``fuzz`` extra) when it is installed,
else ``mutate``, a byte mutator over the seeds (deterministic for a ``--seed``).

    .venv/bin/python benchmarks/fuzz.py --inputs 20000                 # every target, a quick pass
    nice -n 10 .venv/bin/python benchmarks/fuzz.py --jobs 2            # the full run
    .venv/bin/python benchmarks/fuzz.py --targets er7 --engine mutate --inputs 5000
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import logging
import math
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_NAMES = ("er7", "mllp", "fhir", "csv", "x12", "mapping")
PROJECT_PACKAGES = ("hub", "hub_hl7v2", "hub_fhir", "hub_csv", "hub_x12", "tests.support")
PROGRESS_EVERY = 30.0  # seconds between progress lines of a child
WATCHDOG_FACTOR = 10  # the wall-clock backstop for a hang in C code: this many times --timeout, plus 30 s


class Hang(BaseException):
    """The per-input time bound passed (a BaseException, so no ``except Exception`` in a check hides it)."""


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stats:
    """Inputs run, the slowest one, and memory, for the child's report line."""

    def __init__(self, target: str, engine: str, inputs: int) -> None:
        self.target, self.engine, self.inputs = target, engine, inputs
        self.count = 0
        self.max_seconds = 0.0  # CPU time of the slowest input: what the bound is on
        self.max_wall = 0.0  # its wall-clock time, which on a busy machine includes waiting for a core
        self.busy_seconds = 0.0
        self.started = time.monotonic()
        self.last_progress = self.started
        self.rss_after_warmup: float | None = None
        self.findings: list[dict[str, Any]] = []
        self.seed_ms = 0.0
        self.budget = math.inf  # seconds: --max-minutes
        self.slowest = b""  # the slowest input so far, saved at the end (--artifacts)
        self.artifacts: Path | None = None

    def ran(self, seconds: float, wall: float) -> bool:
        """Count one input (its CPU and wall-clock seconds); False once the inputs or the time budget are spent."""
        self.count += 1
        self.busy_seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)
        self.max_wall = max(self.max_wall, wall)
        if self.count == min(10_000, max(self.inputs // 10, 1)):
            self.rss_after_warmup = _rss_mb()
        now = time.monotonic()
        if now - self.last_progress > PROGRESS_EVERY:
            self.last_progress = now
            print(f"[{self.target}] {self.count:,} inputs, {self.count / (now - self.started):,.0f}/s, "
                  f"slowest {self.max_seconds * 1e3:.1f} ms, rss {_rss_mb():.0f} MB", file=sys.stderr, flush=True)
        return self.count < self.inputs and now - self.started < self.budget

    def report(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        return {"target": self.target, "engine": self.engine, "inputs": self.count, "wall_s": round(wall, 1),
                "per_s": round(self.count / wall, 1) if wall else 0.0,
                "mean_ms": round(self.busy_seconds / max(self.count, 1) * 1e3, 3),
                "seed_ms": round(self.seed_ms, 3), "max_ms": round(self.max_seconds * 1e3, 1),
                "max_wall_ms": round(self.max_wall * 1e3, 1),
                "rss_warm_mb": round(self.rss_after_warmup or _rss_mb(), 1), "rss_end_mb": round(_rss_mb(), 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1), "findings": self.findings}


def _where(exc: BaseException) -> str:
    """The innermost project frame of a traceback: findings with the same one are one finding."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/site-packages/" not in f.filename and "/lib/python" not in f.filename]
    frame = (ours or frames or [None])[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"


# -- the byte mutator -------------------------------------------------------------------------------------------
class Mutator:
    """Seeds changed a few bytes at a time: flips, the format's tokens inserted (also many times over, for
    nesting and repetition), ranges deleted, duplicated or spliced from another seed, truncation."""

    def __init__(self, seeds: list[bytes], tokens: tuple[bytes, ...], max_len: int, seed: int) -> None:
        self.seeds = seeds or [b""]
        self.tokens = tokens or (b"\x00",)
        self.max_len = max_len
        self.rng = random.Random(seed)

    def __call__(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            return rng.randbytes(rng.randrange(0, 256))
        data = bytearray(rng.choice(self.seeds))
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 6, 8, 16))):
            self._mutate(data)
        return bytes(data[:self.max_len])

    def _mutate(self, data: bytearray) -> None:
        rng = self.rng
        at = rng.randrange(len(data) + 1)
        op = rng.randrange(10)
        if op == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op in (2, 3):
            data[at:at] = rng.choice(self.tokens)
        elif op == 4:
            data[at:at] = rng.choice(self.tokens) * rng.choice((2, 8, 64, 512, 4096))
        elif op == 5:
            del data[at:at + rng.choice((1, 2, 8, 64, 1024))]
        elif op == 6:
            start = rng.randrange(at + 1)
            data[at:at] = bytes(data[start:at]) * rng.choice((1, 1, 2, 16))
        elif op == 7:
            del data[at:]
        elif op == 8:
            other = rng.choice(self.seeds)
            start = rng.randrange(len(other) + 1)
            data[at:] = other[start:start + rng.randrange(1, 4096)]
        else:
            data[at:at] = str(rng.choice((-1, 0, 2**31, 2**63, 10**400, 1e-300))).encode()


class Attempt:
    """Run one input through a check: a user error with a message is fine, anything else is a finding
    (kept once per kind and place, its input saved), and the run goes on."""

    def __init__(self, name: str, check: Callable[[bytes], None], stats: Stats, artifacts: Path,
                 timeout: float) -> None:
        from hub.errors import HubError
        from tests.support.fuzz_targets import refused

        self.name, self.check, self.stats, self.artifacts = name, check, stats, artifacts
        self.user_error, self.refused = HubError, refused
        self.seen: set[str] = set()
        self.timeout = timeout

        def over(signum: int, frame: Any) -> None:
            raise Hang(f"over {timeout} s of CPU time")

        # the bound is on CPU time (ITIMER_PROF): on a shared machine wall-clock time mostly measures the others
        signal.signal(signal.SIGPROF, over)

    def __call__(self, data: bytes) -> bool:
        """False once the run is over (inputs or time spent)."""
        wall, cpu = time.perf_counter(), time.process_time()
        signal.setitimer(signal.ITIMER_PROF, self.timeout)
        try:
            try:
                self.check(data)
            except self.user_error as exc:
                self.refused(exc)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        except (Exception, Hang) as exc:  # a finding: anything but a user error with a message
            self.found(exc, data)
        seconds = time.process_time() - cpu
        if seconds > self.stats.max_seconds:
            self.stats.slowest = data
        return self.stats.ran(seconds, time.perf_counter() - wall)

    def found(self, exc: BaseException, data: bytes) -> None:
        kind = "hang" if isinstance(exc, Hang) else "memory" if isinstance(exc, MemoryError) else "crash"
        key = f"{kind} {type(exc).__name__} at {_where(exc)}"
        if key in self.seen:
            return
        self.seen.add(key)
        path = self.artifacts / f"{self.name}-{kind}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
        path.write_bytes(data)
        self.stats.findings.append({"kind": kind, "what": key, "message": str(exc)[:200], "input": str(path),
                                    "trace": "".join(traceback.format_exception(exc, limit=-6))})
        print(f"[{self.name}] FINDING {key}: {path}", file=sys.stderr, flush=True)


def _run_mutate(attempt: Attempt, seeds: list[bytes], tokens: tuple[bytes, ...], max_len: int,
                args: argparse.Namespace) -> None:
    # the memory bound: past it, an allocation fails with MemoryError (a finding) instead of the machine swapping
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + args.rss_mb * 2**20, resource.RLIM_INFINITY))
    mutator = Mutator(seeds, tokens, max_len, args.seed)
    queue = list(seeds)  # every seed once, as it is, then mutations
    going = True
    while going:
        data = queue.pop() if queue else mutator()
        # a signal is seen between bytecodes only: a loop inside C code is caught by this watchdog thread
        # (wall-clock, so generous: the machine may be shared)
        faulthandler.dump_traceback_later(WATCHDOG_FACTOR * args.timeout + 30, exit=True)
        try:
            going = attempt(data)
        finally:
            faulthandler.cancel_dump_traceback_later()


def _run_atheris(attempt: Attempt, seed_files: list[Path], token_list: tuple[bytes, ...], max_len: int,
                 args: argparse.Namespace, artifacts: Path) -> None:
    import atheris

    def one(data: bytes) -> None:
        if not attempt(data):
            _finish(attempt.stats)

    name = attempt.name
    # libFuzzer writes what it learns into the first folder it is given: a scratch folder, never the corpus;
    # the seeds are read where they are (-seed_inputs). Its -rss_limit_mb stops the process on a memory
    # blow-up, its -timeout (wall-clock, generous) on a hang inside C code (the parent reports either); a
    # hang in Python is the CPU-time bound's (``Attempt``), kept like any other finding, and the run goes on.
    scratch = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=artifacts))
    tokens = artifacts / f"{name}.dict"  # the format's delimiters and keywords, for libFuzzer to insert
    tokens.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in t) + '"\n' for t in token_list))
    argv = [sys.argv[0], str(scratch), f"-dict={tokens}", "-seed_inputs=" + ",".join(str(p) for p in seed_files),
            f"-runs={args.inputs + len(seed_files) + 100}",
            f"-timeout={math.ceil(WATCHDOG_FACTOR * args.timeout + 30)}", f"-rss_limit_mb={args.rss_mb}",
            f"-malloc_limit_mb={args.rss_mb}", f"-max_len={max_len}", f"-seed={args.seed}",
            f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1",
            "-handle_term=0", "-handle_int=0"]  # a stop from outside: the report line of how far it got
    atheris.Setup(argv, one)
    atheris.Fuzz()
    _finish(attempt.stats)


def _finish(stats: Stats) -> None:
    if stats.artifacts is not None:  # to look into what takes the time (replay it under a profiler)
        (stats.artifacts / f"{stats.target}-slowest.bin").write_bytes(stats.slowest)
    print(json.dumps(stats.report()), flush=True)
    sys.stdout.flush()
    os._exit(0)


def child(args: argparse.Namespace) -> None:
    """One target in this process: the seeds as they are (the baseline), then ``--inputs`` inputs."""
    logging.disable(logging.CRITICAL)  # connectors log what they skip; a million times over is noise
    name = args.child
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    if args.engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=list(PROJECT_PACKAGES)):
            from tests.support import fuzz_targets
    else:
        from tests.support import fuzz_targets
    target = fuzz_targets.TARGETS[name]
    corpus = Path(args.corpus)
    seed_files = target.seed_files(corpus=corpus)
    seeds = target.seeds(corpus=corpus)
    stats = Stats(name, args.engine, args.inputs)
    stats.artifacts = artifacts
    started = time.process_time()
    from hub.errors import HubError

    for data in seeds:  # warm the caches; the seeds' own time is the baseline of the per-input figures
        try:
            target.check(data)
        except HubError:
            pass
        except Exception as exc:  # the fuzzing proper runs the seeds again and reports it as a finding
            print(f"[{name}] a seed fails as it is: {type(exc).__name__} at {_where(exc)}", file=sys.stderr)
    stats.seed_ms = (time.process_time() - started) / max(len(seeds), 1) * 1e3
    stats.started = time.monotonic()
    stats.budget = args.max_minutes * 60
    # stopped from outside (Ctrl-C, kill): still say how far it got
    signal.signal(signal.SIGTERM, lambda signum, frame: _finish(stats))
    attempt = Attempt(name, target.check, stats, artifacts, args.timeout)
    if args.engine == "atheris":
        _run_atheris(attempt, seed_files, target.tokens, target.max_len, args, artifacts)
    else:
        _run_mutate(attempt, seeds, target.tokens, target.max_len, args)
    _finish(stats)


# -- the parent: one process per target ----------------------------------------------------------------------
def run_target(name: str, args: argparse.Namespace, artifacts: Path) -> dict[str, Any]:
    log = artifacts / f"{name}.log"
    cmd = [sys.executable, __file__, "--child", name, "--inputs", str(args.inputs), "--engine", args.engine,
           "--timeout", str(args.timeout), "--max-minutes", str(args.max_minutes), "--rss-mb", str(args.rss_mb),
           "--seed", str(args.seed),
           "--corpus", args.corpus, "--artifacts", str(artifacts)]
    with log.open("w") as err:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    # the child stopped on its own: libFuzzer does on a crash, a timeout or the memory limit
    tail = log.read_text(errors="replace")[-3000:]
    kind = "hang" if "timeout" in tail else "memory" if "out-of-memory" in tail or "rss" in tail else "crash"
    return {"target": name, "engine": args.engine, "inputs": None, "exit": done.returncode,
            "findings": [{"kind": kind, "what": f"process stopped ({done.returncode})", "log": str(log),
                          "trace": tail}]}


def main(argv: list[str] | None = None) -> int:
    try:
        import atheris  # noqa: F401

        default_engine = "atheris"
    except ImportError:
        default_engine = "mutate"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(TARGET_NAMES), help=f"comma-separated: {', '.join(TARGET_NAMES)}")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    parser.add_argument("--engine", choices=("atheris", "mutate"), default=default_engine,
                        help=f"atheris (coverage-guided) or mutate (byte mutator); default here: {default_engine}")
    parser.add_argument("--timeout", type=float, default=2.0, help="CPU seconds one input may take (default 2)")
    parser.add_argument("--max-minutes", type=float, default=math.inf,
                        help="stop a target after this long even short of --inputs (reported as run)")
    parser.add_argument("--rss-mb", type=int, default=1024, help="memory one target may use, MB (default 1024)")
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once (default 1: the machine is shared)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus"),
                        help="the seed corpus, read in place")
    parser.add_argument("--artifacts", default=None, help="where findings and logs go (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGET_NAMES]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)} (known: {', '.join(TARGET_NAMES)})")
    artifacts = Path(args.artifacts or tempfile.mkdtemp(prefix="hub-fuzz-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"engine {args.engine}, {args.inputs:,} inputs per target, bound {args.timeout} s of CPU per input and "
          f"{args.rss_mb} MB per target; corpus {args.corpus}; findings and logs in {artifacts}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda n: run_target(n, args, artifacts), names))
    print("\nper input, CPU ms: seed (the baseline: an unchanged seed), mean and max of the fuzzed inputs; "
          "max wall: the slowest by the clock")
    print(f"{'target':8} {'inputs':>10} {'per s':>7} {'seed':>7} {'mean':>7} {'max':>7} {'max wall':>8} "
          f"{'rss warm':>9} {'rss end':>8} {'peak':>7}  findings")
    found = 0
    for r in results:
        found += len(r["findings"])
        if r.get("inputs") is None:
            print(f"{r['target']:8} {'stopped':>10}  {r['findings'][0]['kind']}: see {r['findings'][0]['log']}")
            continue
        print(f"{r['target']:8} {r['inputs']:>10,} {r['per_s']:>7,.0f} {r['seed_ms']:>7.2f} {r['mean_ms']:>7.2f} "
              f"{r['max_ms']:>7.1f} {r['max_wall_ms']:>8.1f} {r['rss_warm_mb']:>8.0f}M {r['rss_end_mb']:>7.0f}M "
              f"{r['peak_rss_mb']:>6.0f}M  {len(r['findings'])}")
    for r in results:
        for f in r["findings"]:
            print(f"\n== {r['target']}: {f['kind']} {f['what']} {f.get('input') or f.get('log')}\n{f['trace']}")
    (artifacts / "results.json").write_text(json.dumps(results, indent=1))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
