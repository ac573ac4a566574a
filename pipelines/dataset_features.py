"""Stage `dataset_features@<dataset>`: fixed-extractor features of a seeded sample of the TRAIN split."""

from mednns.metaspace.features import FeatureConfig, dataset_features
from pipelines.stage import params, run


def main(argv: list[str]) -> None:
    (dataset,) = argv
    cfg = FeatureConfig.from_params(params("features"))
    dataset_features(f"data/prepared/{dataset}/data.npz", dataset, cfg).save(f"features/{dataset}.npz")


if __name__ == "__main__":
    run(main)
