"""Stage `prepare@<dataset>` (and `prepare_holdout`): validate a dataset, write its prepared copy."""

import argparse

from mednns.data import PrepareConfig, prepare
from pipelines.stage import config, run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="prepare")
    parser.add_argument("dataset", help="MedMNIST name, or a name / npz path under MEDNNS_DATA_DIR")
    parser.add_argument("out", help="output folder (data.npz + manifest.json)")
    args = parser.parse_args(argv)
    cfg = config("prepare", PrepareConfig)
    prepare(args.dataset, args.out, size=cfg.size, download=cfg.download)


if __name__ == "__main__":
    run(main)
