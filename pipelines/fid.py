"""Stage `fid`: pairwise Fréchet distances between the datasets' features -> a CSV (a DVC plot)."""

import argparse
from pathlib import Path

from mednns.metaspace.features import DatasetFeatures
from mednns.metaspace.fid import fid_table, write_fid_csv
from pipelines.stage import datasets, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fid")
    parser.add_argument("features", help="folder of <dataset>.npz features")
    parser.add_argument("out", help="FID table (.csv)")
    args = parser.parse_args(argv)
    feats = {d: DatasetFeatures.load(Path(args.features) / f"{d}.npz") for d in datasets()}
    write_fid_csv(fid_table({d: (f.mean, f.cov) for d, f in feats.items()}), args.out)


if __name__ == "__main__":
    run(main)
