"""What ``hub demo`` spends its time on, per feed, beside a baseline measured in the same run.

    python benchmarks/demo_build.py                  # the demo's own volume (scale 0.35, 13 months)
    python benchmarks/demo_build.py --scale 1.0

For each practice it prints the messages its feed files hold and two rates:

- baseline: the same files read by the connector and mapped (``hub normalize``'s dry run:
  split, parse, map, validate; nothing stored), messages per second;
- full: the files taken in by ``hub demo`` (intake, durable save, processing, canonical upsert,
  lineage and the report rollups), messages per second, and its time as a multiple of the
  baseline's.

Then the time to generate the facts and render the feeds (each connector's ``render``), to write the
outputs, and the whole command.
Target: the whole demo under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.demo.build import build_demo, mapping_file
from hub.demo.feeds import feed_files
from hub.demo.generator import generate
from hub.mapping import load_mapping
from hub.pipeline.normalize import normalize_payload
from hub.plugins import load_plugins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.35)
    parser.add_argument("--months", type=int, default=13)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    plugins = load_plugins()

    began = time.perf_counter()
    truth = generate(seed=args.seed, months=args.months, scale=args.scale)
    files = {spec.slug: feed_files(truth, spec, plugins.connectors) for spec in truth.practices}
    made = time.perf_counter() - began

    baseline: dict[str, tuple[int, float]] = {}
    for spec in truth.practices:
        mapping = load_mapping(mapping_file(spec.slug).read_text(), source=spec.slug)
        began = time.perf_counter()
        messages = 0
        for f in files[spec.slug]:
            messages += len(normalize_payload(plugins, f.data, practice=spec.slug, mapping=mapping,
                                              connector=spec.feed, origin=f.name))
        baseline[spec.slug] = (messages, time.perf_counter() - began)

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        result = build_demo(Path(folder), seed=args.seed, months=args.months, scale=args.scale, plugins=plugins,
                            say=lines.append)
    full = {line.split()[0]: float(line.rsplit("(", 1)[1].split(" s)")[0]) for line in lines if "accepted" in line}
    outputs = next(float(line.rsplit("(", 1)[1].split(" s)")[0]) for line in lines if line.startswith("reports"))

    print(f"demo at scale {args.scale}, {args.months} months, seed {args.seed}")
    print(f"{'practice':<18} {'feed':<6} {'messages':>9} {'baseline msg/s':>15} {'full msg/s':>11} "
          f"{'full/baseline':>14}")
    for spec in truth.practices:
        count, seconds = baseline[spec.slug]
        stored = result.counts[spec.slug]["accepted"]
        print(f"{spec.slug:<18} {spec.feed:<6} {count:>9} {count / seconds:>15.0f} {stored / full[spec.slug]:>11.0f} "
              f"{full[spec.slug] / seconds:>13.1f}x")
    print(f"generate and render the feeds: {made:.1f} s; outputs (report, XLSX, dashboard, scorecard): "
          f"{outputs:.1f} s; whole demo: {result.seconds:.1f} s (target < 60 s)")


if __name__ == "__main__":
    main()
