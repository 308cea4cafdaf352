"""Benchmark: time and peak memory of ``mash_hub.synth.generate`` (run as a script).

python benchmarks/bench_synth.py --people 1000000 [--seed 42] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from mash_hub.synth import generate


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is kilobytes on Linux and bytes on macOS.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(people: int, seed: int, out_dir: Path) -> dict[str, object]:
    start = time.perf_counter()
    summary = generate(people=people, seed=seed, out_dir=out_dir)
    elapsed = time.perf_counter() - start
    records = sum(summary.records.values())
    sizes = {name: path.stat().st_size for name, path in summary.files.items()}
    return {
        "people": summary.people,
        "households": summary.households,
        "records": summary.records,
        "total_records": records,
        "coverage": summary.coverage,
        "seconds": round(elapsed, 2),
        "people_per_second": round(summary.people / elapsed),
        "records_per_second": round(records / elapsed),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "file_bytes": sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--keep", type=Path, help="write into this directory and keep it")
    args = parser.parse_args()
    if args.keep is not None:
        result = run(args.people, args.seed, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
            result = run(args.people, args.seed, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"people            {result['people']:,} in {result['households']:,} households")
    print(f"records           {result['records']} (total {result['total_records']:,})")
    print(f"coverage          {result['coverage']:.1%} of people in at least one extract")
    print(f"wall time         {result['seconds']} s")
    print(
        f"throughput        {result['people_per_second']:,} people/s, "
        f"{result['records_per_second']:,} records/s"
    )
    print(f"peak RSS          {result['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
