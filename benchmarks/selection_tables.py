"""The selection benchmark's tables over several runs of it: the DVC stage's and the ad-hoc targets'
(`metrics/adhoc`), as the README shows them side by side, from their CSVs alone (nothing is trained).

Run: `python -m benchmarks.selection_tables metrics/selection_benchmark.csv metrics/adhoc/selection_benchmark_{pneumoniamnist,organamnist,pathmnist1k}.csv`
"""

from __future__ import annotations

import argparse

import pandas as pd

from mednns.selector.benchmark import markdown


def main() -> None:
    parser = argparse.ArgumentParser(prog="selection_tables")
    parser.add_argument("csv", nargs="+", help="per-run rows written by the selection benchmark")
    args = parser.parse_args()
    rows = pd.concat([pd.read_csv(p) for p in args.csv], ignore_index=True)
    dup = rows.duplicated(["regime", "dataset", "seed", "method", "epoch"])
    if dup.any():
        first = rows[dup].iloc[0]
        raise SystemExit(f"selection_tables: {first.dataset} / {first.method} / seed {first.seed} is in more than "
                         "one file; pass each run once")
    print(markdown(rows))


if __name__ == "__main__":
    main()
