"""Stage `dataset_features@<dataset>`: fixed-extractor features of a seeded sample of the TRAIN split."""

import argparse
from pathlib import Path

from mednns.metaspace.features import FeatureConfig, dataset_features
from pipelines.stage import config, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="dataset_features")
    parser.add_argument("data", help="prepared dataset folder")
    parser.add_argument("out", help="features file (.npz)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    dataset_features(data / "data.npz", data.name, config("features", FeatureConfig)).save(args.out)


if __name__ == "__main__":
    run(main)
