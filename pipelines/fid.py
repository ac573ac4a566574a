"""Stage `fid`: pairwise Fréchet distances between the datasets' features -> metrics/fid.csv (a plot)."""

from mednns.metaspace.features import DatasetFeatures
from mednns.metaspace.fid import fid_table, write_fid_csv
from pipelines.stage import params, run


def main(argv: list[str]) -> None:
    feats = {d: DatasetFeatures.load(f"features/{d}.npz") for d in params("datasets")}
    write_fid_csv(fid_table({d: (f.mean, f.cov) for d, f in feats.items()}), "metrics/fid.csv")


if __name__ == "__main__":
    run(main)
