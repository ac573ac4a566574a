"""Stage `prepare@<dataset>` (and `prepare_holdout`): validate a dataset and write its prepared copy
to data/prepared/<dataset>/ (or the folder given second)."""

from mednns.data import prepare
from pipelines.stage import params, run


def main(argv: list[str]) -> None:
    dataset, *out = argv
    p = params("prepare")
    prepare(dataset, out[0] if out else f"data/prepared/{dataset}", size=int(p.get("size", 28)),
            download=bool(p.get("download", True)))


if __name__ == "__main__":
    run(main)
