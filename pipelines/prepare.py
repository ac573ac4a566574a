"""Stage `prepare@<dataset>`: validate a dataset and write data/prepared/<dataset>/."""

from mednns.data import prepare
from pipelines.stage import params, run


def main(argv: list[str]) -> None:
    (dataset,) = argv
    p = params("prepare")
    prepare(dataset, f"data/prepared/{dataset}", size=int(p.get("size", 28)),
            download=bool(p.get("download", True)))


if __name__ == "__main__":
    run(main)
