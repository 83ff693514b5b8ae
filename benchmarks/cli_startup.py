"""Start-up time of the command line: ``hub --version``, ``hub --help`` and ``hub normalize`` of one small
HL7 v2 file, each run many times, beside what any Python command pays in the same run (the interpreter
alone, and ``import click``).

A command line is felt in wall time, which other work on the machine stretches: each figure is the best
and the median of ``--runs`` runs, with the CPU time of the same runs (less sensitive to load) and the
load average. ``--against DIR`` times a second source tree (another checkout) in the same run, the runs
interleaved, and says whether both print the same. ``--bytecode`` lets Python keep compiled modules (in
a folder of its own under the temporary folder); without it every run compiles the hub's modules from
source, as when ``PYTHONDONTWRITEBYTECODE`` is set.

    .venv/bin/python benchmarks/cli_startup.py
    .venv/bin/python benchmarks/cli_startup.py --runs 25 --bytecode --against /tmp/hub-before
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL_FILE = "connectors/hub_hl7v2/samples/adt_a04.hl7"  # one ADT^A04: seven records
COMMANDS = {
    "hub --version": ["--version"],
    "hub --help": ["--help"],
    "hub normalize (one file)": ["normalize", "--practice", "northderm", SMALL_FILE],
}
RUN_HUB = "import sys\nfrom hub.cli import main\nsys.argv[0] = 'hub'\nsys.exit(main())"


def _environment(tree: Path, bytecode: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(tree / part) for part in (".", "connectors", "plugins"))
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tag = hashlib.sha256(str(tree).encode()).hexdigest()[:12]  # one folder per tree, kept between runs
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / f"hub-cli-bytecode-{tag}")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def _timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, done


def _line(label: str, walls: list[float], cpus: list[float], note: str = "") -> str:
    return (f"  {label:<34} wall best {min(walls):.3f} s  median {statistics.median(walls):.3f} s   "
            f"CPU best {min(cpus):.3f} s  median {statistics.median(cpus):.3f} s   "
            f"load {os.getloadavg()[0]:.2f}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--bytecode", action="store_true", help="let Python keep compiled modules between runs")
    parser.add_argument("--against", type=Path, help="another source tree of the hub, timed in the same run")
    args = parser.parse_args()
    trees = {"this tree": REPO} | ({f"{args.against}": args.against.resolve()} if args.against else {})
    print(f"{args.runs} runs each, {'with' if args.bytecode else 'without'} a bytecode cache; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    yardsticks = {"python -c pass": ["-c", "pass"], "python -c 'import click'": ["-c", "import click"]}
    for label, python_args in yardsticks.items():
        env = _environment(REPO, args.bytecode)
        _timed([sys.executable, *python_args], REPO, env)  # warm the file cache
        walls, cpus = [], []
        for _ in range(args.runs):
            wall, cpu, _done = _timed([sys.executable, *python_args], REPO, env)
            walls.append(wall)
            cpus.append(cpu)
        print(_line(label, walls, cpus))

    for label, hub_args in COMMANDS.items():
        print(label)
        outputs: dict[str, tuple[str, str]] = {}
        times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in trees}
        for name, tree in trees.items():  # warm, and what each prints
            done = _timed([sys.executable, "-c", RUN_HUB, *hub_args], tree, _environment(tree, args.bytecode))[2]
            if done.returncode != 0:
                sys.exit(f"{label} failed in {tree}: {done.stderr.strip()[-500:]}")
            outputs[name] = (done.stdout, done.stderr)
        for _ in range(args.runs):  # interleaved, so that both trees see the same load
            for name, tree in trees.items():
                wall, cpu, _done = _timed([sys.executable, "-c", RUN_HUB, *hub_args], tree,
                                          _environment(tree, args.bytecode))
                times[name][0].append(wall)
                times[name][1].append(cpu)
        same = len(set(outputs.values())) == 1
        for name in trees:
            note = "" if len(trees) == 1 else ("  (same output)" if same else "  (OUTPUT DIFFERS)")
            print(_line(name, *times[name], note))


if __name__ == "__main__":
    main()
