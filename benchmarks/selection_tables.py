"""The selection benchmark's tables over several runs of it: the DVC stage's and the ad-hoc targets'
(`metrics/adhoc`), as the README shows them side by side, from their CSVs alone (nothing is trained).

Run: `python -m benchmarks.selection_tables metrics/selection_benchmark.csv metrics/adhoc/selection_benchmark_{pneumoniamnist,organamnist,pathmnist1k}.csv`
A later rerun of some methods (after a change to one of them) replaces their runs: `--update CSV`; extra
seeds of one target, run ad hoc, are tabled alone with `--datasets NAME`.
"""

from __future__ import annotations

import argparse

import pandas as pd

from mednns.selector.benchmark import markdown

RUN = ["regime", "dataset", "seed", "method"]


def combined(base: list[pd.DataFrame], updates: list[pd.DataFrame]) -> pd.DataFrame:
    """The runs of `base`, each passed once, with every run that an `updates` frame has again (same regime,
    dataset, seed and method) replaced by that frame's."""
    frames = []
    for group in (base, updates):
        rows = pd.concat(group, ignore_index=True) if group else pd.DataFrame(columns=RUN + ["epoch"])
        dup = rows.duplicated(RUN + ["epoch"])
        if dup.any():
            first = rows[dup].iloc[0]
            raise SystemExit(f"selection_tables: {first.dataset} / {first.method} / seed {first.seed} is in more "
                             "than one file; pass each run once")
        frames.append(rows)
    rows, new = frames
    if len(new):
        replaced = rows.set_index(RUN).index.isin(new.set_index(RUN).index)
        rows = pd.concat([rows[~replaced], new], ignore_index=True)
    return rows


def only(rows: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """The runs of `datasets` alone (all of them when empty)."""
    missing = sorted(set(datasets) - set(rows.dataset))
    if missing:
        raise SystemExit(f"selection_tables: no runs of {', '.join(missing)} in these files (they have "
                         f"{', '.join(sorted(set(rows.dataset)))})")
    return rows[rows.dataset.isin(datasets)] if datasets else rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="selection_tables")
    parser.add_argument("csv", nargs="+", help="per-run rows written by the selection benchmark")
    parser.add_argument("--update", action="append", default=[], metavar="CSV",
                        help="a later run of some methods: its runs replace the same runs of the files above")
    parser.add_argument("--datasets", default="", help="comma-separated target datasets to table (default: all)")
    args = parser.parse_args()
    rows = combined([pd.read_csv(p) for p in args.csv], [pd.read_csv(p) for p in args.update])
    print(markdown(only(rows, [d for d in args.datasets.split(",") if d])))


if __name__ == "__main__":
    main()
