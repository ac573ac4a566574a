"""Stage `evaluate`: leave-one-dataset-out evaluation of the meta-space against baselines
-> metrics/evaluate.json (a DVC metric) and metrics/evaluate.md (the README table)."""

from mednns.io import atomic_path, write_json
from mednns.metaspace import DatasetFeatures, FeatureConfig, MetaSpaceConfig
from mednns.metaspace.evaluate import (EvaluateConfig, SubnetFeatures, leave_one_out, markdown,
                                       prepared_train_split, summary)
from mednns.zoo import ZooConfig, read_zoo
from pipelines.stage import params, run


def main(argv: list[str]) -> None:
    datasets = list(params("datasets"))
    cfg = EvaluateConfig.from_params(params("evaluate"))
    zoo = read_zoo([f"zoo/{d}.parquet" for d in datasets])
    features = {d: DatasetFeatures.load(f"features/{d}.npz") for d in datasets}
    split = lambda d: prepared_train_split(f"data/prepared/{d}")  # noqa: E731
    # Subnets are recalibrated exactly as the zoo recalibrated them when it scored them.
    subnets = SubnetFeatures("models/supernets", lambda d: split(d).images,
                             ZooConfig.from_params(params("zoo")).recalib_batch)
    results = leave_one_out(zoo, features, MetaSpaceConfig.from_params(params("metaspace")),
                            FeatureConfig.from_params(params("features")), cfg, subnets, split)
    write_json("metrics/evaluate.json", summary(results))
    with atomic_path("metrics/evaluate.md") as tmp:
        tmp.write_text(markdown(results, cfg.top_k))


if __name__ == "__main__":
    run(main)
