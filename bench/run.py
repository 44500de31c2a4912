#!/usr/bin/env python3
"""Run the benchmarks and print one table.

    python bench/run.py [--only NAME[,NAME]] [--json]

Each `bench/bench_<name>.py` defines `run(args) -> BenchResult` (see bench/common.py):
rows for the table (median, p95, baseline, ratio) and flat metrics for `--json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import BenchResult, format_table  # noqa: E402


def discover() -> dict[str, pathlib.Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated benchmark names: " + ", ".join(discover()))
    parser.add_argument("--json", action="store_true", help="print one JSON object of metrics")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args(argv)
    found = discover()
    names = args.only.split(",") if args.only else list(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(found)}")
    results: list[BenchResult] = []
    for name in names:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", found[name])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.append(module.run(args))
    if args.json:
        merged: dict = {}
        for r in results:
            merged.update(r.metrics)
        print(json.dumps(merged))
    else:
        print(format_table([row for r in results for row in r.rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
